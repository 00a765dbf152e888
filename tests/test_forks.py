"""Forked origins (issue 17, part 1): a replica restored from a backup numbers new
changesets with numbers it had already shared; any exchange between two replicas that
hold different changesets under one number finds it, moves nothing of that origin, and
says so on both sides (sync/forks.py).  Path to path, and over HTTP both ways.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from p2p_prophet.store import Replica
from p2p_prophet.sync.forks import Fork, forks_found
from tests.conftest import ReplicaFactory
from tests.test_replication import Cloner, cloned, net  # noqa: F401  (fixtures)
from tests.transports import Transport


def _forked_world(
    make_replica: ReplicaFactory,
    cloned: Cloner,  # noqa: F811
    net: Transport,  # noqa: F811
    tmp_path: Path,
    *,
    old_edits: int = 1,
) -> tuple[str, str, Replica, Replica, Replica]:
    """The issue's reproduction: Alice backs up, makes ``old_edits`` edits that Bob
    pulls, is restored from the backup, makes one edit (a new alice#2) that Carol pulls.
    Returns alice's origin, the ticket's uuid, restored Alice, Bob and Carol."""
    alice = make_replica("alice")
    ticket = alice.create("ticket", {"status": "new"})
    bob, carol = cloned(alice, "bob"), cloned(alice, "carol")
    alice.close()
    backup = shutil.copytree(alice.path, tmp_path / "alice-backup")
    alice = Replica.open(alice.path)
    for n in range(old_edits):
        alice.update("ticket", ticket, {"status": f"open-{n}"})  # alice#2...
    net.transfer(bob, alice)
    origin = alice.uuid
    alice.close()
    restored = Replica.open(backup)
    restored.update("ticket", ticket, {"status": "closed"})  # another alice#2
    net.transfer(carol, restored)
    assert bob.main.ticket(origin) == 1 + old_edits and carol.main.ticket(origin) == 2
    return origin, ticket, restored, bob, carol


def test_an_exchange_finds_a_forked_origin_and_moves_none_of_it(
    net: Transport,  # noqa: F811
    make_replica: ReplicaFactory,
    cloned: Cloner,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    origin, _, restored, bob, carol = _forked_world(make_replica, cloned, net, tmp_path)
    with restored:
        bob_before, carol_before = bob.main.digest(), carol.main.digest()
        carol.create("note", {"text": "not forked: this still moves"})
        caplog.set_level(logging.WARNING, logger="p2p_prophet.sync.exchange")
        result = net.transfer(bob, carol)
        assert result.forks == [Fork(origin, 2)]
        assert result.changesets.integrated == 1  # the note, and nothing of alice
        assert bob.main.ticket(origin) == carol.main.ticket(origin) == 2
        assert bob.main.digest() != bob_before  # the note arrived
        assert carol.main.digest() != carol_before
        # Both sides say so, in one line naming the origin and the number...
        lines = [r.getMessage() for r in caplog.records if f"{origin}#2" in r.getMessage()]
        assert len(lines) >= 2 and all(line.startswith("forked origin:") for line in lines)
        # ... and both remember it, for `peers` and the node's status.
        for replica, peer in ((bob, carol), (carol, bob)):
            [entry] = forks_found(replica)
            assert (entry["origin"], entry["seq"], entry["peer"]) == (origin, 2, peer.uuid)


@pytest.mark.parametrize("direction", ["longer pulls", "shorter pulls"])
def test_the_side_that_cannot_see_a_fork_is_shown_it(
    net: Transport,  # noqa: F811
    make_replica: ReplicaFactory,
    cloned: Cloner,  # noqa: F811
    tmp_path: Path,
    direction: str,
) -> None:
    """Bob holds alice#1..3 (old), Carol alice#1..2 (new): only Bob can compare at #2 on
    the heads; Carol learns it from his witness, whichever of them starts."""
    origin, _, restored, bob, carol = _forked_world(
        make_replica, cloned, net, tmp_path, old_edits=2
    )
    with restored:
        receiver, sender = (bob, carol) if direction == "longer pulls" else (carol, bob)
        result = net.transfer(receiver, sender)
        assert result.forks == [Fork(origin, 2)]
        assert result.changesets.integrated == 0
        assert (bob.main.ticket(origin), carol.main.ticket(origin)) == (3, 2)
        for replica, peer in ((bob, carol), (carol, bob)):
            assert [(e["origin"], e["seq"], e["peer"]) for e in forks_found(replica)] == [
                (origin, 2, peer.uuid)
            ]
