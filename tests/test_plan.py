"""Planning what a peer lacks: log order, bounded batches, index lookups only."""

from __future__ import annotations

from pathlib import Path

from conftest import ReplicaFactory

from p2p_prophet.store import Replica
from p2p_prophet.sync import clone, lacking_changesets, plan, transfer, vector_digest
from p2p_prophet.sync.vector import count_lacking, dominates, lacking


def query_plan(replica: Replica, sql: str, *args: object) -> str:
    rows = replica.main.conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
    return " / ".join(r[-1] for r in rows)


def test_lookups_go_through_indexes_not_scans(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    by_origin = query_plan(
        alice,
        "SELECT * FROM changesets WHERE origin = ? AND origin_seq > ? ORDER BY origin_seq LIMIT 10",
        alice.uuid,
        3,
    )
    assert "USING INDEX changesets_by_origin" in by_origin and "SCAN" not in by_origin
    after_seq = query_plan(alice, "SELECT * FROM changesets WHERE seq > ? ORDER BY seq LIMIT 10", 5)
    assert "USING INTEGER PRIMARY KEY" in after_seq
    ticket = query_plan(alice, "SELECT seq FROM tickets WHERE origin = ?", alice.uuid)
    assert "USING PRIMARY KEY" in ticket
    record = query_plan(alice, "SELECT rid FROM records WHERE type = ? AND uuid = ?", "t", "u")
    assert record.startswith("SEARCH records USING") and "INDEX" in record


def test_what_a_peer_lacks_comes_in_my_log_order(make_replica: ReplicaFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_replica("alice")
    bob, _ = clone(alice, tmp_path / "bob")
    carol, _ = clone(alice, tmp_path / "carol")
    for n in range(3):  # interleave two origins in Alice's log
        alice.create("ticket", {"n": n})
        bob.create("ticket", {"n": 10 + n})
        transfer(alice, bob)
    rows = list(lacking_changesets(alice.main, carol.main.tickets()))
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert {r.origin for r in rows} == {alice.uuid, bob.uuid}
    assert len(rows) == count_lacking(alice.main.tickets(), carol.main.tickets()) == 6
    # A peer that has Bob's changesets already is sent only Alice's.
    only_alices = list(lacking_changesets(alice.main, {bob.uuid: 3}))
    assert {r.origin for r in only_alices} == {alice.uuid}
    bob.close()
    carol.close()


def test_nullifications_are_never_planned(make_replica: ReplicaFactory, tmp_path: Path) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "new"})
    bob, _ = clone(alice, tmp_path / "bob")
    alice.update("ticket", uuid, {"status": "open"})
    bob.update("ticket", uuid, {"status": "stalled"})
    transfer(alice, bob)
    kinds = [r.kind for r in alice.main.changesets_after(0, 100)]
    assert "nullification" in kinds
    planned = [r.kind for r in lacking_changesets(alice.main, {})]
    assert "nullification" not in planned
    assert len(planned) == len(kinds) - 1
    bob.close()


def test_batches_are_bounded(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    with alice.edits() as batch:
        for n in range(2_500):
            batch.create("ticket", {"n": n})
    sizes = [len(b) for b in plan(alice.main, {}, batch_size=1000)]
    assert sizes == [1000, 1000, 500]


def test_vectors_and_their_digests() -> None:
    a, b = {"x": 3, "y": 1}, {"x": 1, "z": 2}
    assert lacking(a, b) == {"x": 1, "y": 0}
    assert count_lacking(a, b) == 3
    assert not dominates(a, b) and dominates({"x": 3, "y": 1, "z": 2}, b)
    assert vector_digest(a) == vector_digest({"y": 1, "x": 3})
    assert vector_digest({"x": 3, "q": 0}) == vector_digest({"x": 3})
    assert vector_digest(a) != vector_digest(b) and len(vector_digest(a)) == 16
