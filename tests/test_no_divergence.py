"""No silent divergence (issue 17): random edits, deletes, pulls, syncs, backups and
restores from backups on 3 to 4 replicas, then exchanges until quiet.  Afterwards every
replica holds the same state, exports the same records and lists the same conflicts
(fingerprints, choices, answers); every acknowledged write is present or superseded by
the documented rule (a later write of the property, or a delete; a write re-issued after
a restore keeps its time); and each origin's
changesets have strictly increasing stamps.  Path to path: the exchange is the same
over a node (tests/test_forks.py runs the recovery both ways).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from p2p_prophet.errors import ErrorCode, Refused
from p2p_prophet.model import Stamp
from p2p_prophet.store import Replica
from p2p_prophet.store.history import refresh_conflicts
from p2p_prophet.sync import clone, transfer
from p2p_prophet.sync.human import list_conflicts
from p2p_prophet.sync.integrate import SUPERSEDED_TYPE
from p2p_prophet.sync.local import sync_with
from tests.test_convergence import listed_rows, record_keys

VALUES = st.sampled_from(["open", "stalled", "closed", "new"])
PROPS = st.sampled_from(["status", "owner"])
ROUNDS = 8  # exchanges until quiet: each round, every replica pulls from every other


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, list[tuple]]:  # type: ignore[type-arg]
    n = draw(st.integers(3, 4))
    replica = st.integers(0, n - 1)
    record = st.integers(0, 3)
    action = st.one_of(
        st.tuples(st.just("update"), replica, record, st.dictionaries(PROPS, VALUES, min_size=1)),
        st.tuples(st.just("create"), replica),
        st.tuples(st.just("delete"), replica, record),
        st.tuples(st.just("pull"), replica, replica),
        st.tuples(st.just("sync"), replica, replica),
        st.tuples(st.just("backup"), replica),
        st.tuples(st.just("restore"), replica),
        # The story of the issue, in one step, so that it is common: a backup, an edit
        # another replica pulls, the restore, and an edit under a number used before.
        st.tuples(st.just("story"), replica, replica, record, VALUES, VALUES),
    )
    return n, draw(st.lists(action, min_size=1, max_size=25))


@dataclass(frozen=True)
class Acknowledged:
    """A write a command returned from: it must survive, or be superseded, unless the
    replica it was made on was restored from a backup before anyone else got it (then
    it is gone with the disk it was on: nobody can bring it back)."""

    uuid: str
    name: str | None  # None: the create or delete of the record itself
    stamp: Stamp
    replica: int  # where it was made
    origin: str  # its changeset
    seq: int
    id: bytes


class World:
    def __init__(self, root: Path, n: int) -> None:
        self.root = root
        first = Replica.init(root / "r0")
        self.records = [first.create("ticket", {"status": "new"}) for _ in range(4)]
        self.replicas = [first] + [clone(first, root / f"r{i}")[0] for i in range(1, n)]
        self.acknowledged: list[Acknowledged] = []

    def run(self, action: tuple) -> None:  # type: ignore[type-arg]
        kind, i = action[0], action[1]
        who = self.replicas[i]
        backup = self.root / f"backup-{i}"
        if kind == "story":
            _, _, j, rec, lost, kept = action
            self.run(("backup", i))
            self.run(("update", i, rec, {"status": lost}))
            self.run(("pull", j, i))
            self.run(("restore", i))
            self.run(("update", i, rec, {"owner": kept}))
        elif kind in ("pull", "sync"):
            self.exchange(who, self.replicas[action[2]], kind)
        elif kind == "backup":
            who.close()
            shutil.rmtree(backup, ignore_errors=True)
            shutil.copytree(who.path, backup)
            self.replicas[i] = Replica.open(who.path)
        elif kind == "restore" and backup.exists():
            # What only this replica held since the backup is gone with its disk.
            others = [r for j, r in enumerate(self.replicas) if j != i]
            with Replica.open(backup) as kept:
                self.acknowledged = [a for a in self.acknowledged if _survives(a, [*others, kept])]
            who.close()
            shutil.rmtree(who.path)
            shutil.copytree(backup, who.path)
            self.replicas[i] = Replica.open(who.path)
        elif kind == "create":
            uuid = who.create("ticket", {"status": "new"})
            self.records.append(uuid)
            self.ack(i, uuid, None)
        elif kind in ("update", "delete"):
            uuid = self.records[action[2]]
            if uuid not in {r.uuid for r in who.main.live_records("ticket")}:
                return
            if kind == "delete":
                who.delete("ticket", uuid)
                self.ack(i, uuid, None)
            elif who.update("ticket", uuid, action[3]) is not None:
                for name in action[3]:
                    self.ack(i, uuid, name)

    def exchange(self, who: Replica, other: Replica, kind: str) -> None:
        if who is other:
            return
        try:
            result = transfer(who, other) if kind == "pull" else sync_with(who, other).pulled
        except Refused as exc:  # the other side was restored and has not recovered yet
            assert exc.code is ErrorCode.LOST_HISTORY
            event("an exchange refused: the other side was restored")
            return
        if result.recovered:
            event("a restored replica recovered")
        if result.forks:
            event("a fork found between two others")

    def ack(self, i: int, uuid: str, name: str | None) -> None:
        who = self.replicas[i]
        row = who.main.find_record("ticket", uuid)
        assert row is not None
        props = who.main.props(row.rid)
        stamp = (row.deleted or row.created) if name is None else props[name].stamp
        seq = who.main.ticket(who.uuid)
        id_ = who.main.changeset_id(who.uuid, seq)
        assert id_ is not None
        self.acknowledged.append(Acknowledged(uuid, name, stamp, i, who.uuid, seq, id_))

    def quiesce(self) -> None:
        for _ in range(ROUNDS):
            for a, b in itertools.permutations(self.replicas, 2):
                try:
                    result = transfer(a, b)
                except Refused as exc:
                    assert exc.code is ErrorCode.LOST_HISTORY
                    continue
                if result.recovered:
                    event("a restored replica recovered while quiescing")
            if self._quiet():
                return
        raise AssertionError(f"not quiet after {ROUNDS} rounds of exchanges")

    def _quiet(self) -> bool:
        return (
            len({r.main.digest() for r in self.replicas}) == 1
            and len({tuple(sorted(r.main.tickets().items())) for r in self.replicas}) == 1
            and len({tuple(sorted(r.resolutions.tickets().items())) for r in self.replicas}) == 1
        )

    def close(self) -> None:
        for r in self.replicas:
            r.close()


@settings(max_examples=150, deadline=None)
@given(schedules())
def test_random_schedules_with_restores_never_diverge(schedule: tuple[int, list[tuple]]) -> None:  # type: ignore[type-arg]
    n, actions = schedule
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), n)
        try:
            for action in actions:
                world.run(action)
            world.quiesce()
            replicas = world.replicas
            exports = [list(r.main.live_records()) for r in replicas]
            assert all(e == exports[0] for e in exports)
            listed = [list_conflicts(r) for r in replicas]
            assert all(entries == listed[0] for entries in listed)
            for r in replicas:
                _check_acknowledged(r, world.acknowledged)
                _check_stamps_increase(r)
                # The list kept as writes came and went is the one computed afresh.
                kept = listed_rows(r)
                with r.main.transaction():
                    refresh_conflicts(r.main, record_keys(r))
                assert listed_rows(r) == kept
        finally:
            world.close()


def _survives(ack: Acknowledged, replicas: list[Replica]) -> bool:
    """Whether some replica holds the changeset of ``ack``, or one re-issued in its
    place (a supersession names it: sync/restore.py)."""
    for r in replicas:
        if r.main.changeset_id(ack.origin, ack.seq) == ack.id:
            return True
        for notice in r.main.live_records(SUPERSEDED_TYPE):
            if ack.id.hex() in str(notice.props.get("ids", "")).split(","):
                return True
    return False


def _check_acknowledged(replica: Replica, acknowledged: list[Acknowledged]) -> None:
    for ack in acknowledged:
        row = replica.main.find_record("ticket", ack.uuid)
        assert row is not None, f"the create of {ack.uuid} was lost"
        if ack.name is None or row.deleted is not None:
            continue  # the record exists; a delete supersedes its writes
        # A write re-issued after a restore keeps its hlc (under another origin).
        stored = replica.main.props(row.rid).get(ack.name)
        assert stored is not None and stored.stamp.hlc >= ack.stamp.hlc, (
            f"{ack.uuid}.{ack.name} written at {ack.stamp} was lost: now {stored}"
        )


def _check_stamps_increase(replica: Replica) -> None:
    for db in (replica.main, replica.resolutions):
        by_origin: dict[str, list[tuple[int, int]]] = {}
        for row in db.changesets_after(0, 10**9):
            if row.origin_seq is not None:
                by_origin.setdefault(row.origin, []).append((row.origin_seq, row.created))
        for origin, rows in by_origin.items():
            stamps = [created for _, created in sorted(rows)]
            assert all(a < b for a, b in itertools.pairwise(stamps)), origin
