"""The replica store: opening, local edits, the log, tickets, digest, durability."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import ReplicaFactory

from p2p_prophet.clock import pack
from p2p_prophet.errors import (
    InvalidValue,
    NotAReplica,
    ProphetError,
    RecordNotFound,
    ReplicaNotFound,
    StorageError,
)
from p2p_prophet.model import ChangeSet, Kind, Op, PropChange, Stamp
from p2p_prophet.store import Replica
from p2p_prophet.store.schema import SCHEMA_VERSION


def decoded_log(replica: Replica) -> list[ChangeSet]:
    return [ChangeSet.decode(r.body) for r in replica.main.changesets_after(0, 1_000_000)]


# -- opening ------------------------------------------------------------------------------


def test_a_new_replica_has_two_databases_with_their_own_uuids(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    assert (alice.path / "replica.db").is_file()
    assert (alice.path / "resolutions.db").is_file()
    assert alice.resolutions.get_meta("replica_uuid") != alice.uuid
    assert alice.resolutions.get_meta("db_uuid") == alice.db_uuid
    for db in (alice.main, alice.resolutions):
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_clone_joins_an_existing_database_id(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    bob = make_replica("bob", db_uuid=alice.db_uuid)
    assert bob.db_uuid == alice.db_uuid
    assert bob.uuid != alice.uuid


def test_opening_a_missing_replica_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ReplicaNotFound, match="p2p-prophet init"):
        Replica.open(tmp_path / "nowhere")


def test_init_refuses_a_directory_that_holds_something(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ProphetError, match="not an empty directory"):
        Replica.init(tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_foreign_sqlite_file_is_refused_not_misread(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    conn = sqlite3.connect(tmp_path / "other" / "replica.db")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotAReplica, match="not a p2p_prophet one"):
        Replica.open(tmp_path / "other")


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "replica.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(NotAReplica, match="not a p2p_prophet database"):
        Replica.open(tmp_path / "junk")


def test_a_replica_from_a_newer_version_is_refused(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    alice.main.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    alice.close()
    with pytest.raises(NotAReplica, match="newer"):
        Replica.open(alice.path)


def test_a_replica_missing_its_resolution_database_is_reported_damaged(
    make_replica: ReplicaFactory,
) -> None:
    alice = make_replica("alice")
    alice.close()
    (alice.path / "resolutions.db").unlink()
    with pytest.raises(NotAReplica, match="damaged"):
        Replica.open(alice.path)


# -- local edits --------------------------------------------------------------------------


def test_create_appends_one_changeset_and_stamps_every_property(
    make_replica: ReplicaFactory,
) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"summary": "Wifi", "status": "open", "prio": 2, "gone": None})
    [cs] = decoded_log(alice)
    assert (cs.origin, cs.origin_seq, cs.kind) == (alice.uuid, 1, Kind.EDIT)
    [change] = cs.changes
    assert (change.type, change.uuid, change.op) == ("ticket", uuid, Op.CREATE)
    assert change.props == (
        PropChange("prio", None, 2),
        PropChange("status", None, "open"),
        PropChange("summary", None, "Wifi"),
    )
    row = alice.main.find_record("ticket", uuid)
    assert row is not None
    props = alice.main.props(row.rid)
    assert {n: p.value for n, p in props.items()} == {
        "prio": 2,
        "status": "open",
        "summary": "Wifi",
    }
    assert {p.stamp for p in props.values()} == {Stamp(cs.created, alice.uuid)}


def test_update_records_the_values_it_replaced(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "open", "prio": 2})
    cs = alice.update("ticket", uuid, {"status": "stalled", "prio": None, "owner": "bob"})
    assert cs is not None
    assert cs.changes[0].props == (
        PropChange("owner", None, "bob"),
        PropChange("prio", 2, None),
        PropChange("status", "open", "stalled"),
    )
    row = alice.main.find_record("ticket", uuid)
    assert row is not None
    props = alice.main.props(row.rid)
    # A deleted property keeps its stamp (so an older write cannot bring it back).
    assert props["prio"].value is None
    assert props["prio"].stamp == cs.stamp
    assert props["owner"].stamp == props["status"].stamp == cs.stamp
    assert [r.to_json()["props"] for r in alice.main.live_records("ticket")] == [
        {"owner": "bob", "status": "stalled"}
    ]


def test_an_update_that_changes_nothing_writes_nothing(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "open", "prio": 2})
    assert alice.update("ticket", uuid, {"status": "open"}) is None
    # 2 and 2.0 are different values: that is a change.
    assert alice.update("ticket", uuid, {"prio": 2.0}) is not None
    assert alice.main.latest_seq() == 2


def test_delete_keeps_what_was_lost_in_the_changeset(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    uuid = alice.create("ticket", {"status": "open"})
    cs = alice.delete("ticket", uuid)
    assert cs.changes[0].op is Op.DELETE
    assert cs.changes[0].props == (PropChange("status", "open", None),)
    assert list(alice.main.live_records()) == []
    row = alice.main.find_record("ticket", uuid)
    assert row is not None and row.deleted == cs.stamp
    with pytest.raises(RecordNotFound, match="deleted"):
        alice.update("ticket", uuid, {"status": "closed"})
    with pytest.raises(RecordNotFound):
        alice.delete("ticket", uuid)


def test_editing_an_unknown_record_is_a_clear_error(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    with pytest.raises(RecordNotFound, match="no ticket"):
        alice.update("ticket", "00000000-0000-4000-8000-000000000000", {"a": "b"})
    assert alice.main.latest_seq() == 0


def test_invalid_names_and_values_write_nothing(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    with pytest.raises(InvalidValue):
        alice.create("ticket", {"bad name": 1})
    with pytest.raises(InvalidValue):
        alice.create("no spaces please", {})
    with pytest.raises(InvalidValue):
        alice.create("ticket", {"x": float("nan")})
    assert alice.main.latest_seq() == 0


def test_an_edit_too_large_to_travel_is_refused_and_leaves_no_gap(
    make_replica: ReplicaFactory,
) -> None:
    replica = make_replica()
    five_megabytes = {f"part{i}": "é" * (1 << 19) for i in range(5)}  # 1 MiB of UTF-8 each
    with replica.edits() as batch:
        with pytest.raises(InvalidValue, match="at most"):
            batch.create("note", five_megabytes)
        with pytest.raises(InvalidValue, match="1048576 bytes"):
            batch.create("note", {"body": "é" * (1 << 19) + "x"})
        batch.create("note", {"body": "small"})
    [row] = replica.main.changesets_after(0, 10)
    assert row.origin_seq == 1  # the refused edits took no number


def test_a_batch_is_one_transaction_and_each_edit_its_own_changeset(
    make_replica: ReplicaFactory,
) -> None:
    alice = make_replica("alice")
    with alice.edits() as batch:
        a = batch.create("ticket", {"n": 1})
        batch.create("ticket", {"n": 2})
        batch.update("ticket", a, {"n": 10})  # reads a record created in this batch
    log = decoded_log(alice)
    assert [cs.origin_seq for cs in log] == [1, 2, 3]
    assert [cs.created for cs in log] == sorted({cs.created for cs in log})
    assert alice.main.tickets() == {alice.uuid: 3}


def test_an_exception_in_a_batch_rolls_all_of_it_back(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    alice.create("ticket", {"n": 0})
    before = alice.main.digest()
    with pytest.raises(RecordNotFound), alice.edits() as batch:
        for n in range(1, 500):
            batch.create("ticket", {"n": n})
        batch.update("ticket", "00000000-0000-4000-8000-000000000000", {"n": 1})
    assert alice.main.digest() == before
    assert alice.main.latest_seq() == 1
    assert alice.main.tickets() == {alice.uuid: 1}
    # ...and the replica goes on numbering from where the committed log ends.
    alice.create("ticket", {"n": 1})
    assert [cs.origin_seq for cs in decoded_log(alice)] == [1, 2]


def test_import_with_given_uuids_refuses_duplicates(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    uuid = "00000000-0000-4000-8000-0000000000aa"
    alice.create("ticket", {}, uuid=uuid)
    with pytest.raises(ProphetError, match="already exists"):
        alice.create("ticket", {}, uuid=uuid)
    with pytest.raises(ProphetError, match="already exists"), alice.edits() as batch:
        other = "00000000-0000-4000-8000-0000000000bb"
        batch.create("ticket", {}, uuid=other)
        batch.create("ticket", {}, uuid=other)


# -- digest -------------------------------------------------------------------------------


def test_equal_records_give_equal_digests_whatever_the_history(
    make_replica: ReplicaFactory,
) -> None:
    u1, u2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
    alice = make_replica("alice")
    alice.create("ticket", {"status": "open", "prio": 1}, uuid=u1)
    alice.create("note", {"text": "hi"}, uuid=u2)
    bob = make_replica("bob")
    bob.create("note", {"text": "draft"}, uuid=u2)
    bob.create("ticket", {"status": "new"}, uuid=u1)
    bob.update("note", u2, {"text": "hi"})
    bob.update("ticket", u1, {"status": "open", "prio": 1})
    assert alice.main.digest() == bob.main.digest()
    bob.update("ticket", u1, {"prio": True})  # True is not 1
    assert alice.main.digest() != bob.main.digest()


def test_digest_ignores_deleted_records(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    empty = alice.main.digest()
    uuid = alice.create("ticket", {"status": "open"})
    assert alice.main.digest() != empty
    alice.delete("ticket", uuid)
    assert alice.main.digest() == empty


# -- the clock across restarts ------------------------------------------------------------


def test_stamps_keep_increasing_across_a_restart_with_a_clock_set_back(
    make_replica: ReplicaFactory,
) -> None:
    alice = make_replica("alice")
    alice.clock.observe(pack(4_000_000_000_000))  # a stamp from the far future
    uuid = alice.create("ticket", {"n": 1})
    last = decoded_log(alice)[-1].created
    alice.close()
    reopened = Replica.open(alice.path)
    try:
        cs = reopened.update("ticket", uuid, {"n": 2})
        assert cs is not None and cs.created > last
    finally:
        reopened.close()


# -- storage failures ---------------------------------------------------------------------


def test_a_full_disk_is_a_clear_error_and_loses_nothing(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    alice.create("ticket", {"status": "open"})
    before = (alice.main.digest(), alice.main.tickets(), alice.main.latest_seq())
    # Cap the file at its current size: SQLite then fails exactly as on a full disk
    # (SQLITE_FULL, "database or disk is full").
    pages = alice.main.conn.execute("PRAGMA page_count").fetchone()[0]
    alice.main.conn.execute(f"PRAGMA max_page_count = {pages}")
    full = pytest.raises(StorageError, match=r"disk is full.*nothing was written")
    with full, alice.edits() as batch:
        for n in range(5_000):
            batch.create("ticket", {"summary": "x" * 200, "n": n})
    assert (alice.main.digest(), alice.main.tickets(), alice.main.latest_seq()) == before
    alice.main.conn.execute("PRAGMA max_page_count = 1073741823")
    alice.create("ticket", {"status": "new"})
    assert alice.main.latest_seq() == 2


def test_a_directory_name_with_uri_characters_is_just_a_path(tmp_path: Path) -> None:
    path = tmp_path / "notes #1 ?draft"
    with Replica.init(path) as replica:
        replica.create("note", {"text": "hi"})
    assert (path / "replica.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes #1 ?draft"]
    with Replica.open(path) as replica:
        assert replica.main.count_live() == 1


def test_text_that_is_not_valid_unicode_is_refused(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    with pytest.raises(InvalidValue, match="not valid Unicode"):
        alice.create("note", {"text": "broken \ud800 surrogate"})
    assert alice.main.latest_seq() == 0


def test_an_overlong_creator_stops_writes_but_not_reads(
    make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_replica("alice")
    alice.create("note", {"text": "before"})
    alice.close()
    monkeypatch.setenv("P2P_PROPHET_CREATOR", "x" * 300)
    with Replica.open(alice.path) as again:
        assert again.main.count_live() == 1  # reading works
        with pytest.raises(InvalidValue, match="P2P_PROPHET_CREATOR"):
            again.create("note", {"text": "after"})
        assert again.main.latest_seq() == 1


def test_meta_values_come_back_exactly_as_stored(make_replica: ReplicaFactory) -> None:
    alice = make_replica("alice")
    with alice.main.transaction():
        alice.main.set_meta("label", "0123")
    assert alice.main.get_meta("label") == "0123"


def test_a_remembered_value_lasts_exactly_until_the_database_changes(tmp_path: Path) -> None:
    replica = Replica.init(tmp_path / "r")
    db = replica.main
    computed: list[int] = []

    def live() -> int:
        computed.append(db.count_live())
        return computed[-1]

    assert db.remembered("live", live) == db.remembered("live", live) == 0
    assert len(computed) == 1  # unchanged: not computed again
    replica.create("ticket", {"summary": "ours"})
    assert db.remembered("live", live) == 1
    with Replica.open(tmp_path / "r") as other:  # another connection, as a CLI edit
        other.create("ticket", {"summary": "theirs"})
    assert db.remembered("live", live) == 2
    with pytest.raises(RuntimeError), db.transaction():
        db.set_meta("note", "rolled back")
        raise RuntimeError("abandoned")
    assert db.remembered("live", live) == 2  # computed again, and the same
    assert computed == [0, 1, 2, 2]
    assert db.park() and db.remembered("live", live) == 2  # a new connection starts afresh
    assert computed == [0, 1, 2, 2, 2]
    replica.close()
