"""Forked origins (issue 17, part 1): a replica restored from a backup numbers new
changesets with numbers it had already shared; any exchange between two replicas that
hold different changesets under one number finds it, moves nothing of that origin, and
says so on both sides (sync/forks.py).  Path to path, and over HTTP both ways.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2p_prophet.errors import ErrorCode, Refused
from p2p_prophet.keys import Identity
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone, transfer
from p2p_prophet.sync.forks import Fork, forks_found
from tests.conftest import ReplicaFactory
from tests.test_replication import Cloner, cloned, net, props_of  # noqa: F401  (fixtures)
from tests.transports import Transport, make_transport


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


# -- recovery: the restored replica takes its lost history back (sync/restore.py) ---------


@pytest.fixture(params=["path", "http-pull"])
def puller(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """A transport where the receiver calls: a restored replica recovers when it pulls
    (a node does so at its next gossip, which is a sync, the caller's side)."""
    transport = make_transport(request.param)
    yield transport
    transport.close()


def _round(replicas: list[Replica], transport: Transport) -> None:
    """Every replica pulls from every other once."""
    for receiver in replicas:
        for sender in replicas:
            if receiver is not sender:
                try:
                    transport.transfer(receiver, sender)
                except Refused as exc:  # the restored replica, until it has pulled
                    assert exc.code is ErrorCode.LOST_HISTORY


def _exchange_until_equal(replicas: list[Replica], transport: Transport, rounds: int = 4) -> int:
    """Rounds of pulls until all digests are equal, and one more (in which every
    replica, as the caller, finds no fork left with any other); returns the rounds it
    took to converge (bounded: fails after ``rounds``)."""
    for n in range(1, rounds + 1):
        _round(replicas, transport)
        if len({r.main.digest() for r in replicas}) == 1:
            _round(replicas, transport)
            return n
    raise AssertionError(f"no convergence after {rounds} rounds")


def test_the_issue_reproduction_ends_with_equal_digests_and_every_write_kept(
    puller: Transport, make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    def clone_of(source: Replica, name: str) -> Replica:
        return puller.clone(source, tmp_path / name)

    origin, ticket, restored, bob, carol = _forked_world(make_replica, clone_of, puller, tmp_path)
    with restored:
        # Bob and Carol first: the fork is found, nothing of alice moves.
        assert puller.transfer(bob, carol).forks == [Fork(origin, 2)]
        # The restored replica pulls from Bob, who holds its lost alice#2.
        result = puller.transfer(restored, bob)
        [line] = result.recovered
        assert "took back 1 lost changesets" in line and "re-issued" in line
        assert restored.uuid != origin  # its post-restore edit moved to a fresh origin
        assert restored.main.ticket(origin) == 2
        _exchange_until_equal([restored, bob, carol], puller)
        for replica in (restored, bob, carol):
            assert replica.main.ticket(origin) == 2  # the lost history, everywhere
            # The edit made after the restore is kept: re-issued, it keeps its time,
            # which is after the lost one's, and wins over it.
            assert props_of(replica, "ticket", ticket)["status"] == "closed"
            assert forks_found(replica) == []
        assert len({r.main.tickets().__repr__() for r in (restored, bob, carol)}) == 1
        exported = {tuple(sorted(map(repr, r.main.live_records()))) for r in (bob, carol)}
        assert len(exported) == 1


def test_three_restores_in_a_row_converge(
    puller: Transport, make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    """Alice is put back to the same backup three times; each time she writes, then
    meets a peer holding what she lost, recovers, and shares.  Every write is kept and
    all converge."""
    alice = make_replica("alice")
    ticket = alice.create("ticket", {"status": "new"})
    bob = puller.clone(alice, tmp_path / "bob")
    carol = puller.clone(alice, tmp_path / "carol")
    alice.update("ticket", ticket, {"status": "before any restore"})
    alice.close()
    backup = shutil.copytree(alice.path, tmp_path / "alice-backup")
    alice = Replica.open(alice.path)
    alice.update("ticket", ticket, {"status": "lost by the first restore"})
    _round([alice, bob, carol], puller)
    alice.close()
    notes, origins = [], set()
    for n in range(3):
        current = Replica.open(shutil.copytree(backup, tmp_path / f"alice-{n}"))
        with current:
            notes.append(current.create("note", {"text": f"after restore {n}"}))
            current.update("ticket", ticket, {"status": f"after restore {n}"})
            result = puller.transfer(current, bob if n % 2 else carol)
            assert result.recovered, f"restore {n} went unnoticed"
            origins.add(current.uuid)
            _round([current, bob, carol], puller)
    assert len(origins) == 3  # each recovery moved its edits to a fresh origin
    with Replica.open(tmp_path / "alice-2") as last:
        _exchange_until_equal([last, bob, carol], puller)
        for replica in (last, bob, carol):
            assert {r.uuid for r in replica.main.live_records("note")} == set(notes)
            assert props_of(replica, "ticket", ticket)["status"] == "after restore 2"


def test_a_signed_replica_restored_from_a_backup_is_told_to_clone_not_moved(
    tmp_path: Path, alice: Identity, bob: Identity
) -> None:
    """A signed replica's origin is its key: it is not moved to a fresh origin by itself;
    pulling from a peer that holds what it lost is refused, saying what to do."""
    first = Replica.init(tmp_path / "alice", identity=alice)
    ticket = first.create("ticket", {"status": "new"})
    peer, _ = clone(first, tmp_path / "bob", identity=bob)
    first.close()
    backup = shutil.copytree(tmp_path / "alice", tmp_path / "alice-backup")
    with Replica.open(tmp_path / "alice") as before:
        before.update("ticket", ticket, {"status": "lost"})
        transfer(peer, before)
    with peer, Replica.open(backup) as restored:
        origin = restored.uuid
        restored.update("ticket", ticket, {"status": "after the restore"})
        with pytest.raises(Refused, match="clone a fresh replica") as refusal:
            transfer(restored, peer)
        assert refusal.value.code is ErrorCode.LOST_HISTORY
        # Nothing moved: not its origin, not its edit since the restore.
        assert restored.uuid == origin
        assert props_of(restored, "ticket", ticket)["status"] == "after the restore"
