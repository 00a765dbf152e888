"""P8 across processes: stamps of one origin strictly increase, however many processes
(CLI commands, a node, a gateway) write to the same replica (issue 17, part 3).

The clock runs ahead of the wall clock as soon as a replica integrates a change from a
laptop whose clock is ahead; then a writer that did not read the clock other processes
persisted would mint stamps at or below theirs.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path

from p2p_prophet.clock import wall_ms
from p2p_prophet.model import Kind
from p2p_prophet.store import Replica
from p2p_prophet.sync.local import clone, transfer
from tests.transports import HttpTransport

AHEAD_MS = 30_000


def _cli(replica: Path, *args: str) -> None:
    env = {**os.environ, "P2P_PROPHET_CREATOR": "cli@test"}
    subprocess.run(
        [sys.executable, "-m", "p2p_prophet", "-R", str(replica), *args],
        check=True,
        capture_output=True,
        env=env,
    )


def _own_stamps_strictly_increase(path: Path) -> int:
    """Check, for each of the replica's own origins (main and resolution database), that
    the ``created`` stamps of its changesets (fix-ups included) strictly increase in the
    order they were committed; return how many were checked."""
    checked = 0
    with Replica.open(path) as replica:
        for db in (replica.main, replica.resolutions):
            origin = db.get_meta("replica_uuid")
            stamps = [
                row.created for row in db.changesets_after(0, 1_000_000) if row.origin == origin
            ]
            pairs = list(itertools.pairwise(stamps))
            bad = [(a, b) for a, b in pairs if b <= a]
            assert not bad, f"{origin}: stamps went backwards or repeated: {bad[:3]}"
            checked += len(stamps)
    return checked


def _ahead_world(tmp_path: Path, edits: int) -> tuple[Path, Path, str]:
    """Alice's replica, whose clock is AHEAD_MS ahead of the wall after integrating a
    note from a laptop whose clock is ahead, and another laptop's replica (its clock
    right) holding ``edits`` concurrent edits of a ticket Alice will also edit, so that
    pulling them mints fix-ups, and their stamps move nobody's clock."""
    alice_path, laptop_path = tmp_path / "alice", tmp_path / "laptop"
    with Replica.init(alice_path) as alice:
        ticket = alice.create("ticket", {"status": "new", "n": 0})
        laptop, _ = clone(alice, laptop_path)
        fast, _ = clone(alice, tmp_path / "fast")
        with laptop, fast:
            fast.clock.wall = lambda: wall_ms() + AHEAD_MS
            fast.create("note", {"text": "from a laptop whose clock is ahead"})
            transfer(alice, fast)
            assert alice.clock.last >> 16 > wall_ms() + AHEAD_MS // 2
            for i in range(edits):
                laptop.update("ticket", ticket, {"status": f"laptop-{i}", "n": i})
    return alice_path, laptop_path, ticket


def test_a_pull_after_another_process_edited_mints_later_stamps(tmp_path: Path) -> None:
    """The deterministic interleaving: a long-lived handle (a node's) opened before a CLI
    process edits the replica, then integrates; its fix-ups come after the CLI's stamps."""
    alice_path, laptop_path, ticket = _ahead_world(tmp_path, edits=3)
    with Replica.open(alice_path) as node_handle, Replica.open(laptop_path) as laptop:
        for i in range(3):
            _cli(alice_path, "update", "ticket", ticket, f"status=cli-{i}")
        result = transfer(node_handle, laptop)
        assert result.changesets.conflicts > 0  # fix-ups were minted by the stale handle
    assert _own_stamps_strictly_increase(alice_path) >= 6


def test_a_pull_and_a_stream_of_updates_at_once_keep_stamps_increasing(tmp_path: Path) -> None:
    alice_path, laptop_path, ticket = _ahead_world(tmp_path, edits=300)
    failures: list[BaseException] = []
    first_update_done = threading.Event()

    def updates() -> None:
        try:
            for i in range(12):
                _cli(alice_path, "update", "ticket", ticket, f"status=cli-{i}", f"n={1000 + i}")
                first_update_done.set()
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
        finally:
            first_update_done.set()

    writer = threading.Thread(target=updates)
    with Replica.open(alice_path) as alice, Replica.open(laptop_path) as laptop:
        writer.start()
        # After one update, the laptop's edits conflict with Alice's: fix-ups are minted
        # while the CLI goes on writing, in small batches (many transactions to interleave).
        first_update_done.wait()
        pulled = transfer(alice, laptop, batch_size=2)
        writer.join()
    assert not failures, failures
    assert pulled.changesets.integrated == 300
    with Replica.open(alice_path) as alice:
        kinds = {row.kind for row in alice.main.changesets_after(0, 1_000_000)}
    assert Kind.NULLIFICATION.value in kinds  # the pull minted fix-ups
    assert _own_stamps_strictly_increase(alice_path) >= 13


def test_a_node_taking_a_push_after_cli_edits_mints_later_stamps(tmp_path: Path) -> None:
    """The same over a node: it opened the replica before the CLI edited it, then takes a
    push over HTTP that conflicts with the CLI's edits; its fix-ups come after them."""
    alice_path, laptop_path, ticket = _ahead_world(tmp_path, edits=3)
    transport = HttpTransport(push=True)
    try:
        with Replica.open(alice_path) as node_replica, Replica.open(laptop_path) as laptop:
            transport.node(node_replica)  # serving from here on
            for i in range(3):
                _cli(alice_path, "update", "ticket", ticket, f"status=cli-{i}")
            result = transport.transfer(node_replica, laptop)  # the laptop pushes
            assert result.changesets.conflicts > 0
    finally:
        transport.close()
    assert _own_stamps_strictly_increase(alice_path) >= 6
