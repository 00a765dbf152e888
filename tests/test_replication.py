"""Replication between replicas on paths: the scenarios of docs/replication.md."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ReplicaFactory
from transports import Transport, make_transport

from p2p_prophet.clock import MAX_HLC, pack, wall_ms
from p2p_prophet.errors import ErrorCode, ProphetError, Refused
from p2p_prophet.model import Change, ChangeSet, Kind, Op, PropChange
from p2p_prophet.store import Replica
from p2p_prophet.sync import (
    ConflictKind,
    IntegrationError,
    integrate,
    integrate_resolutions,
)
from p2p_prophet.sync.human import list_conflicts, resolve_conflict


def log_of(replica: Replica) -> list[ChangeSet]:
    return [ChangeSet.decode(r.body) for r in replica.main.changesets_after(0, 10**9)]


def fingerprints(replica: Replica) -> set[str]:
    return {r[0] for r in replica.main.conn.execute("SELECT fingerprint FROM conflicts")}


def props_of(replica: Replica, rtype: str, uuid: str) -> dict[str, object]:
    [record] = [r for r in replica.main.live_records(rtype) if r.uuid == uuid]
    return dict(record.props)


Cloner = Callable[[Replica, str], Replica]


@pytest.fixture(params=["path", "http-pull", "http-push"])
def net(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """The way changesets move in a scenario: path to path, or over HTTP (every scenario
    must end with the same digests whichever way they move)."""
    transport = make_transport(request.param)
    yield transport
    transport.close()


@pytest.fixture
def cloned(tmp_path: Path, net: Transport) -> Iterator[Cloner]:
    """``cloned(source, name)``: a new replica of source's database, fully pulled."""
    opened: list[Replica] = []

    def make(source: Replica, name: str) -> Replica:
        replica = net.clone(source, tmp_path / name)
        opened.append(replica)
        return replica

    yield make
    for replica in opened:
        replica.close()


# -- 1. separate databases, explicit consent, no echo ------------------------------------


def test_separate_databases_merge_only_with_consent(
    net: Transport, make_replica: ReplicaFactory
) -> None:
    if not net.can_force:
        pytest.skip("a node never takes another database's changesets (tested in test_net)")
    alice, bob = make_replica("alice"), make_replica("bob")
    alice.create("ticket", {"summary": "alice's"})
    bob.create("ticket", {"summary": "bob's"})
    with pytest.raises(Refused) as refusal:
        net.transfer(bob, alice)
    assert refusal.value.code is ErrorCode.WRONG_DATABASE
    assert bob.main.latest_seq() == 1  # the refusal wrote nothing

    first = net.transfer(bob, alice, force=True)
    assert first.changesets.integrated == 1
    assert {r.props["summary"] for r in bob.main.live_records()} == {"alice's", "bob's"}

    again = net.transfer(bob, alice, force=True)
    assert again.changesets.received == 0 and bob.main.latest_seq() == 2

    net.transfer(alice, bob, force=True)  # Alice takes Bob's record...
    back = net.transfer(bob, alice, force=True)  # ...and Bob pulling her back gets no echo.
    assert back.changesets.received == 0
    assert [cs.origin for cs in log_of(bob)].count(bob.uuid) == 1
    assert alice.main.digest() == bob.main.digest()


def test_a_replica_cannot_pull_from_itself(net: Transport, make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    with pytest.raises(Refused) as refusal:
        net.transfer(alice, alice)
    assert refusal.value.code is ErrorCode.SAME_REPLICA


# -- 2. high-water marks -----------------------------------------------------------------


def test_tickets_are_high_water_marks(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    for n in range(5):
        alice.create("ticket", {"n": n})
    bob = cloned(alice, "bob")
    assert bob.main.ticket(alice.uuid) == alice.main.ticket(alice.uuid) == 5
    uuid = bob.create("ticket", {"n": 99})
    bob.update("ticket", uuid, {"n": 100})
    net.transfer(alice, bob)
    assert alice.main.ticket(bob.uuid) == bob.main.ticket(bob.uuid) == 2


# -- 3. a chain ----------------------------------------------------------------------------


def test_changesets_flow_along_a_chain(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    bob = cloned(alice, "bob")
    carol = cloned(bob, "carol")
    alice.create("ticket", {"summary": "from alice"})
    net.transfer(bob, alice)
    net.transfer(carol, bob)
    assert carol.main.ticket(alice.uuid) == 1
    direct = net.transfer(carol, alice)
    assert direct.changesets.received == 0
    assert carol.main.digest() == alice.main.digest()


# -- 4. identical concurrent edits ---------------------------------------------------------


def test_identical_concurrent_edits_are_not_a_conflict(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "new"})
    bob = cloned(alice, "bob")
    alice.update("ticket", uuid, {"status": "open"})
    bob.update("ticket", uuid, {"status": "open"})
    a = net.transfer(alice, bob).changesets
    b = net.transfer(bob, alice).changesets
    assert (a.conflicts, a.resolutions_minted, b.conflicts, b.resolutions_minted) == (0, 0, 0, 0)
    kinds = {cs.kind for r in (alice, bob) for cs in log_of(r)}
    assert kinds == {Kind.EDIT}
    assert alice.main.digest() == bob.main.digest()


# -- 5. a real conflict ----------------------------------------------------------------------


def concurrent_status_edits(
    make_replica: ReplicaFactory, cloned: Cloner
) -> tuple[Replica, Replica, str]:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "new", "summary": "Printer on fire"})
    bob = cloned(alice, "bob")
    alice.update("ticket", uuid, {"status": "open"})
    bob.update("ticket", uuid, {"status": "stalled"})
    return alice, bob, uuid


def test_a_conflict_gets_exactly_the_fix_ups_in_the_pullers_log(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice, bob, uuid = concurrent_status_edits(make_replica, cloned)
    before = len(log_of(alice))
    result = net.transfer(alice, bob).changesets
    assert (result.integrated, result.conflicts, result.resolutions_minted) == (1, 1, 1)
    before_fixup, original, after_fixup = log_of(alice)[before:]
    # The "before" fix-up: local, no origin_seq, puts status back to the edit's old value.
    assert before_fixup.kind is Kind.NULLIFICATION and before_fixup.origin_seq is None
    assert before_fixup.origin == alice.uuid
    [nulled] = before_fixup.changes[0].props
    assert (nulled.name, nulled.old, nulled.new) == ("status", "open", "new")
    # The original changeset, unchanged (same id as in Bob's log).
    assert original.id == log_of(bob)[-1].id
    # The "after" fix-up: Alice's next origin_seq, carrying the winning edit's stamp.
    assert after_fixup.kind is Kind.RESOLUTION and after_fixup.origin_seq == 3
    [answer] = after_fixup.changes[0].props
    winner = props_of(alice, "ticket", uuid)["status"]
    assert answer.new == winner and answer.stamp is not None
    alices_edit, bobs_edit = log_of(alice)[before - 1], original
    winning_edit = max(alices_edit, bobs_edit, key=lambda cs: cs.stamp)
    assert winner == winning_edit.changes[0].props[0].new
    assert answer.stamp == winning_edit.stamp  # not a new stamp (P6)

    # Bob pulls Alice back: the conflict is already answered, nothing new is minted.
    back = net.transfer(bob, alice)
    assert back.resolutions.integrated == 1  # the answer arrived first (P4)
    assert back.changesets.resolutions_minted == 0 and back.changesets.resolutions_reused == 1
    assert alice.main.digest() == bob.main.digest()
    assert fingerprints(alice) == fingerprints(bob) and len(fingerprints(alice)) == 1
    # Further pulls, either way, add nothing.
    for receiver, sender in ((alice, bob), (bob, alice), (alice, bob)):
        assert net.transfer(receiver, sender).changesets.received == 0


def test_the_winner_is_the_same_whichever_side_pulls_first(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner, tmp_path: Path
) -> None:
    alice, bob, uuid = concurrent_status_edits(make_replica, cloned)
    alice.close()
    bob.close()
    winners, digests = [], []
    for order in ("alice-first", "bob-first"):
        a = Replica.open(shutil.copytree(alice.path, tmp_path / order / "alice"))
        b = Replica.open(shutil.copytree(bob.path, tmp_path / order / "bob"))
        pairs = [(a, b), (b, a)] if order == "alice-first" else [(b, a), (a, b)]
        for receiver, sender in pairs:
            net.transfer(receiver, sender)
        assert a.main.digest() == b.main.digest()
        winners.append(props_of(a, "ticket", uuid)["status"])
        digests.append(a.main.digest())
        a.close()
        b.close()
    assert winners[0] == winners[1] and digests[0] == digests[1]


def test_a_third_replica_reuses_the_resolution(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice, bob, _ = concurrent_status_edits(make_replica, cloned)
    net.transfer(alice, bob)
    for source in (alice, bob):
        net.transfer(bob, alice)
        carol = cloned(source, f"carol-from-{source.path.name}")
        carol_log = log_of(carol)
        assert carol.main.digest() == alice.main.digest()
        assert not any(cs.kind is Kind.RESOLUTION and cs.origin == carol.uuid for cs in carol_log)
        assert fingerprints(carol) == fingerprints(alice)  # same fingerprint everywhere (P7)


def test_a_persons_choice_wins_everywhere(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice, bob, uuid = concurrent_status_edits(make_replica, cloned)
    net.transfer(alice, bob)
    [conflict] = list_conflicts(alice)
    assert {c["value"] for c in conflict["props"][0]["choices"]} == {"open", "stalled"}
    assert resolve_conflict(alice, "ticket", uuid, {"status": "blocked"}) == [
        conflict["fingerprint"]
    ]
    net.transfer(bob, alice)
    assert props_of(bob, "ticket", uuid)["status"] == "blocked"
    assert alice.main.digest() == bob.main.digest()
    carol = cloned(bob, "carol")
    assert props_of(carol, "ticket", uuid)["status"] == "blocked"


# -- 6. deletes, disjoint edits, several properties ------------------------------------------


def test_delete_against_delete(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "new"})
    bob = cloned(alice, "bob")
    alice.delete("ticket", uuid)
    bob.delete("ticket", uuid)
    assert net.transfer(alice, bob).changesets.conflicts == 0
    assert net.transfer(bob, alice).changesets.conflicts == 0
    assert list(alice.main.live_records()) == list(bob.main.live_records()) == []
    a, b = alice.main.find_record("ticket", uuid), bob.main.find_record("ticket", uuid)
    assert a is not None and b is not None and a.deleted == b.deleted  # same tombstone


def test_delete_wins_over_a_concurrent_update_everywhere(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "new"})
    keep = alice.create("ticket", {"status": "kept"})
    bob = cloned(alice, "bob")
    bob.delete("ticket", uuid)
    alice.update("ticket", uuid, {"status": "open", "owner": "alice"})  # later stamp
    net.transfer(alice, bob)
    net.transfer(bob, alice)
    for replica in (alice, bob):
        assert [r.uuid for r in replica.main.live_records()] == [keep]
        [conflict] = list_conflicts(replica)
        assert conflict["kind"] == ConflictKind.DELETE
    assert alice.main.digest() == bob.main.digest()
    assert fingerprints(alice) == fingerprints(bob)
    with pytest.raises(ProphetError, match="delete wins"):
        resolve_conflict(alice, "ticket", uuid, {"status": "open"})


def test_disjoint_property_edits_are_both_kept(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "new", "owner": "nobody"})
    bob = cloned(alice, "bob")
    alice.update("ticket", uuid, {"status": "open"})
    bob.update("ticket", uuid, {"owner": "bob"})
    assert net.transfer(alice, bob).changesets.conflicts == 0
    assert net.transfer(bob, alice).changesets.conflicts == 0
    assert props_of(alice, "ticket", uuid) == {"status": "open", "owner": "bob"}
    assert alice.main.digest() == bob.main.digest()


def test_a_conflict_on_several_properties_has_one_fingerprint_everywhere(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "new", "owner": "nobody", "prio": 1})
    bob = cloned(alice, "bob")
    carol = cloned(alice, "carol")
    alice.update("ticket", uuid, {"status": "open", "owner": "alice", "prio": 2})
    bob.update("ticket", uuid, {"prio": 3, "owner": "bob", "status": "stalled"})  # other order
    net.transfer(alice, bob)  # Alice meets it with her edit first...
    net.transfer(carol, bob)  # ...Carol with Bob's first, and before any answer exists.
    net.transfer(carol, alice)
    net.transfer(bob, carol)
    [fingerprint] = fingerprints(alice)
    assert fingerprints(bob) == fingerprints(carol) == {fingerprint}
    [conflict] = list_conflicts(carol)
    assert [p["name"] for p in conflict["props"]] == ["owner", "prio", "status"]
    for replica in (alice, bob, carol):
        for other in (alice, bob, carol):
            if other is not replica:
                net.transfer(replica, other)
    assert alice.main.digest() == bob.main.digest() == carol.main.digest()


# -- protocol violations ------------------------------------------------------------------


def test_a_gap_in_an_origins_changesets_is_refused_whole(
    make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    for n in range(3):
        alice.create("ticket", {"n": n})
    bob = make_replica("bob", db_uuid=alice.db_uuid)
    rows = alice.main.changesets_after(0, 10)
    with pytest.raises(IntegrationError, match="before #2"):
        integrate(bob, [rows[0].body, rows[2].body])
    assert bob.main.latest_seq() == 0 and bob.main.tickets() == {}


def test_a_nullification_is_never_accepted(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice, bob, _ = concurrent_status_edits(make_replica, cloned)
    net.transfer(alice, bob)
    [nullification] = [r for r in alice.main.changesets_after(0, 100) if r.kind == "nullification"]
    carol = cloned(alice, "carol")
    assert all(cs.kind is not Kind.NULLIFICATION or cs.origin == carol.uuid for cs in log_of(carol))
    with pytest.raises(IntegrationError, match="nullification"):
        integrate(carol, [nullification.body])


def test_replaying_a_whole_log_changes_nothing(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice, bob, _ = concurrent_status_edits(make_replica, cloned)
    net.transfer(alice, bob)
    state = (alice.main.digest(), alice.main.tickets(), alice.main.latest_seq())
    bodies = [r.body for r in alice.main.changesets_after(0, 100) if r.origin_seq is not None]
    result = integrate(alice, bodies)
    assert result.skipped == len(bodies) and result.integrated == 0
    assert (alice.main.digest(), alice.main.tickets(), alice.main.latest_seq()) == state


def restored_from_backup(
    make_replica: ReplicaFactory, cloned: Cloner, tmp_path: Path
) -> tuple[Replica, Replica]:
    """Alice backs up after alice#1, shares alice#2 with Bob, then restores the backup:
    returns (restored Alice, who ends at #1; Bob, who holds alice#2)."""
    alice = make_replica("alice")
    alice.create("ticket", {"n": 1})
    alice.close()
    backup = shutil.copytree(alice.path, tmp_path / "alice-backup")
    alice = Replica.open(alice.path)
    alice.create("ticket", {"n": 2})  # alice#2, shared with Bob below
    bob = cloned(alice, "bob")
    alice.close()
    return Replica.open(backup), bob


def test_a_replica_that_lost_shared_changesets_is_stopped_until_it_pulls(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner, tmp_path: Path
) -> None:
    """Whoever asks the restored replica for changesets, or gives it any, is refused,
    and told that it recovers at its next pull; pulling, it takes its lost history back
    (sync/restore.py)."""
    restored, bob = restored_from_backup(make_replica, cloned, tmp_path)
    origin = restored.uuid
    try:
        # Bob pulls from it; or it pushes to Bob (a push does not recover).
        with pytest.raises(Refused, match="recovers by itself") as refusal:
            net.transfer(bob, restored)
        assert refusal.value.code is ErrorCode.LOST_HISTORY
        if net.name == "http-push":  # Bob pushes to the restored replica's node
            with pytest.raises(Refused) as refusal:
                net.transfer(restored, bob)
            assert refusal.value.code is ErrorCode.LOST_HISTORY
            return
        result = net.transfer(restored, bob)  # the restored replica pulls
        assert result.recovered and "took back 1 lost changesets" in result.recovered[0]
        # It numbers anew under a fresh origin: its own now names the lost history.
        assert restored.uuid != origin and restored.main.ticket(origin) == 2
        assert restored.main.digest() == bob.main.digest()
    finally:
        restored.close()


def test_an_answer_that_arrives_before_its_edit_changes_no_state(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    """P1 holds at every moment, not only at the end: two replicas holding the same
    changesets have the same digest even while a person's answer is still on its way."""
    alice, bob, uuid = concurrent_status_edits(make_replica, cloned)
    x = cloned(alice, "x")  # before the conflict is met anywhere
    net.transfer(alice, bob)  # Alice meets it and mints the policy's answer
    w = cloned(alice, "w")  # W meets it through Alice's log and reuses her answer
    resolve_conflict(alice, "ticket", uuid, {"status": "blocked"})  # a person's choice
    answers = [r.body for r in alice.resolutions.changesets_after(0, 100)]
    persons_edit = alice.main.ticket(alice.uuid)
    integrate_resolutions(w, answers)  # W gets the person's answer, not yet the edit
    integrate_resolutions(x, answers)  # so does X, and only then meets the conflict
    integrate(
        x,
        [
            r.body
            for r in alice.main.changesets_after(0, 100)
            if r.origin_seq is not None and (r.origin, r.origin_seq) != (alice.uuid, persons_edit)
        ],
    )
    assert w.main.tickets() == x.main.tickets()
    assert w.resolutions.tickets() == x.resolutions.tickets()
    assert w.main.digest() == x.main.digest()
    assert props_of(x, "ticket", uuid)["status"] != "blocked"  # not before the edit itself
    for replica in (w, x):
        net.transfer(replica, alice)
    assert props_of(x, "ticket", uuid)["status"] == props_of(w, "ticket", uuid)["status"]
    assert w.main.digest() == x.main.digest() == alice.main.digest()


def test_changes_to_an_unknown_record_still_follow_the_stamp_order(
    make_replica: ReplicaFactory,
) -> None:
    """Out of causal order (only a broken or hostile sender does this), an update that
    deletes a property must still beat an older create, whichever arrives first."""
    record = "00000000-0000-4000-8000-0000000000ee"
    writer_a = "00000000-0000-4000-8000-00000000000a"
    writer_b = "00000000-0000-4000-8000-00000000000b"
    create = ChangeSet(
        writer_a,
        1,
        "a",
        100,
        Kind.EDIT,
        (Change("ticket", record, Op.CREATE, (PropChange("owner", None, "ann"),)),),
    ).encode()
    drop_owner = ChangeSet(
        writer_b,
        1,
        "b",
        200,
        Kind.EDIT,
        (Change("ticket", record, Op.UPDATE, (PropChange("owner", "ann", None),)),),
    ).encode()
    first, second = make_replica("first"), make_replica("second")
    integrate(first, [create, drop_owner])
    integrate(second, [drop_owner])
    assert [c["kind"] for c in list_conflicts(second)] == ["missing"]
    integrate(second, [create])
    assert first.main.digest() == second.main.digest()
    assert props_of(second, "ticket", record) == {}
    # The conflict list is a function of the changesets held: once the create is there,
    # nothing is missing, on either replica.
    assert list_conflicts(first) == list_conflicts(second) == []


def test_a_restored_replica_that_renumbered_is_stopped_too(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner, tmp_path: Path
) -> None:
    restored, bob = restored_from_backup(make_replica, cloned, tmp_path)
    try:
        restored.create("ticket", {"n": "not 2"})  # a different alice#2: same number
        assert restored.main.ticket(restored.uuid) == bob.main.ticket(restored.uuid)
        with pytest.raises(Refused) as refusal:
            net.transfer(bob, restored)
        assert refusal.value.code is ErrorCode.LOST_HISTORY
        assert bob.main.ticket(restored.uuid) == 2  # and nothing moved
    finally:
        restored.close()


def test_a_conflict_over_large_text_still_converges(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    """The resolution database records long winning text by its digest, so an answer
    always fits in one value, however large the values in conflict."""
    alice = make_replica("alice")
    uuid = alice.create("note", {"body": "short"})
    bob = cloned(alice, "bob")
    alice.update("note", uuid, {"body": "a" * (1 << 20)})  # 1 MiB each
    bob.update("note", uuid, {"body": "b" * (1 << 20)})
    assert net.transfer(alice, bob).changesets.conflicts == 1
    net.transfer(bob, alice)
    assert alice.main.digest() == bob.main.digest()
    assert len(props_of(alice, "note", uuid)["body"]) == 1 << 20  # type: ignore[arg-type]


# -- clock bounds (p2p_prophet/clock.py, Bounds) ---------------------------------------------


def _state(replica: Replica) -> tuple[str, dict[str, int], int, int]:
    return (
        replica.main.digest(),
        replica.main.tickets(),
        replica.main.latest_seq(),
        replica.clock.last,
    )


def test_a_stamp_too_far_ahead_is_refused_whole_until_the_clock_catches_up(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    alice.create("ticket", {"summary": "on time"})
    bob = cloned(alice, "bob")
    alice.create("ticket", {"summary": "also on time"})
    two_days = 2 * 86_400_000
    alice.clock.last = pack(wall_ms() + two_days)  # Alice's clock runs two days fast
    alice.create("ticket", {"summary": "from the day after tomorrow"})
    before = _state(bob)
    with pytest.raises(ProphetError, match=rf"{alice.uuid}#3 .*ahead of this replica's clock"):
        net.transfer(bob, alice)
    assert _state(bob) == before  # not even the on-time edit of the batch, nor the clock
    bob.clock.wall = lambda: wall_ms() + two_days  # ...until Bob's clock is there too
    net.transfer(bob, alice)
    assert bob.main.digest() == alice.main.digest()


def test_a_stamp_at_the_end_of_the_range_is_refused_and_the_clock_keeps_working(
    net: Transport, make_replica: ReplicaFactory, cloned: Cloner
) -> None:
    alice = make_replica("alice")
    bob = cloned(alice, "bob")
    alice.clock.last = MAX_HLC - 1
    alice.create("ticket", {"summary": "poison"})  # created = 2^63 - 1
    with pytest.raises(ProphetError, match=r"beyond any date|ahead of this replica's clock"):
        net.transfer(bob, alice)
    assert bob.clock.last < pack(wall_ms() + 60_000)
    bob.create("ticket", {"summary": "Bob still writes"})
