"""Crash safety of integration: kill -9 during a pull of 20,000 changesets, 20 times."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2p_prophet.store import Replica
from p2p_prophet.sync import clone, transfer

HERE = Path(__file__).parent
# Forty batches, as many places for a kill to land as ever; half the data in each (the
# suite's time: this test was its second longest at 20,000 changesets).
CHANGESETS = 10_000
BATCH = 250


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 changesets from two origins, with conflicts, fix-ups and resolutions."""
    root = tmp_path_factory.mktemp("source")
    alice = Replica.init(root / "alice")
    with alice.edits() as batch:
        uuids = [batch.create("ticket", {"status": "new", "n": i}) for i in range(8_000)]
    bob, _ = clone(alice, root / "bob")
    rng = random.Random(7)
    with alice.edits() as a, bob.edits() as b:
        for i in range(995):
            uuid = uuids[rng.randrange(len(uuids))]
            a.update("ticket", uuid, {"status": f"a{i}"})
            b.update("ticket", uuid, {"status": f"b{i}", "owner": "bob"})
    transfer(alice, bob)  # conflicts: nullifications (never sent) and resolutions
    total = alice.main.ticket(alice.uuid) + alice.main.ticket(bob.uuid)
    assert total >= CHANGESETS
    alice.close()
    bob.close()
    return root / "alice"


def check_consistent(path: Path) -> None:
    conn = sqlite3.connect(path / "replica.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Replica.open(path) as replica:
        for origin, ticket in replica.main.tickets().items():
            seqs = [
                r[0]
                for r in replica.main.conn.execute(
                    "SELECT origin_seq FROM changesets WHERE origin = ? AND origin_seq "
                    "IS NOT NULL ORDER BY seq",
                    (origin,),
                )
            ]
            # Tickets never exceed what is stored, and what is stored has no gap (P2).
            assert seqs == list(range(1, ticket + 1))


@pytest.mark.slow
def test_kill_9_during_pulls_never_breaks_the_replica(source: Path, tmp_path: Path) -> None:
    with Replica.open(source) as s:
        expected_digest = s.main.digest()
        expected_tickets = s.main.tickets()
        db_uuid = s.db_uuid
    rng = random.Random(20261121)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    landed_mid_pull = 0
    for round_no in range(20):
        dest = tmp_path / f"dest{round_no}"
        Replica.init(dest, db_uuid=db_uuid).close()
        child = subprocess.Popen(
            [sys.executable, str(HERE / "pull_child.py"), str(dest), str(source), str(BATCH)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        kill_after = rng.randrange(0, CHANGESETS // BATCH)
        deadline = time.monotonic() + 120
        for line in child.stdout:
            if line.startswith("batch") and int(line.split()[1]) >= kill_after:
                break
            assert time.monotonic() < deadline
        time.sleep(rng.uniform(0, 0.02))  # land inside a batch, or inside a commit
        child.send_signal(signal.SIGKILL)
        child.wait()

        check_consistent(dest)
        with Replica.open(dest) as d:
            landed_mid_pull += d.main.tickets() != expected_tickets
            with Replica.open(source) as s:
                transfer(d, s)  # the second pull completes from the tickets
            assert d.main.digest() == expected_digest
            assert d.main.tickets() == expected_tickets
        check_consistent(dest)
    assert landed_mid_pull >= 15
