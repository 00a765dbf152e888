"""The writes a replica holds, and the conflict list kept from them.

Every changeset that enters a log (a local edit, an integrated one, a resolution minted
here; never a nullification, which writes nothing) leaves one row per record it wrote to
in ``record_changes``: ``(rid, seq)``.  A record's writes (per property its stamp,
``old`` and ``new``; its create or delete) are read back from those changesets when
needed.  The listed conflicts (``conflicts`` table) are a function of those writes
(:func:`p2p_prophet.conflict.conflicts_among`), recomputed for a record whenever a write
may change them: one that lands anywhere but at the end of its property's stamp order,
one that did not start from the value before it, a resolution's repeat of a write, and
every delete.  A write appended in stamp order that saw the value before it (every local
update, and nearly every pulled one) changes no conflict, so the common path costs one
small insert per changeset and nothing else; the rare one decodes the record's
changesets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from p2p_prophet.conflict import RECORD, Write, WriteKind, conflicts_among
from p2p_prophet.model import Change, ChangeSet, Kind, Op, Stamp, Value, encode_value

if TYPE_CHECKING:
    from p2p_prophet.store.database import Database

FILL_CHUNK = 1000


def writes_of(seq: int, cs: ChangeSet, change: Change) -> list[Write]:
    """The writes ``change`` (of changeset ``cs``, logged as ``seq``) makes to its record;
    none for a nullification."""
    if cs.kind is Kind.NULLIFICATION:
        return []
    stamp = cs.stamp
    if cs.kind is Kind.RESOLUTION:
        kind = WriteKind.ECHO
    elif change.op is Op.CREATE:
        kind = WriteKind.CREATE
    elif change.op is Op.DELETE:
        kind = WriteKind.DELETE
    else:
        kind = WriteKind.UPDATE
    writes = []
    if kind in (WriteKind.CREATE, WriteKind.DELETE):
        writes.append(Write(RECORD, seq, kind, stamp, None, None))
    for p in change.props:
        new = None if kind is WriteKind.DELETE else p.new
        writes.append(Write(p.name, seq, kind, p.stamp or stamp, p.old, new))
    return writes


def record_writes(db: Database, rid: int, rtype: str, ruuid: str) -> list[Write]:
    """Every write the replica holds of record ``rid`` (``rtype ruuid``), read from the
    changesets that wrote to it."""
    writes = []
    for seq, body in db.changes_of(rid):
        cs = ChangeSet.decode(body)
        for change in cs.changes:
            if change.type == rtype and change.uuid == ruuid:
                writes.extend(writes_of(seq, cs, change))
    return writes


class History:
    """The records the changesets of one transaction wrote to, buffered, and the
    records whose conflicts they may change; use inside ``db.transaction()`` only."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._rows: list[tuple[int, int]] = []
        self._stale: dict[int, tuple[str, str]] = {}

    def add(self, rid: int, seq: int, cs: ChangeSet, change: Change) -> None:
        if cs.kind is not Kind.NULLIFICATION:
            self._rows.append((rid, seq))

    def stale(self, rid: int, rtype: str, ruuid: str) -> None:
        """Mark a record whose conflicts the writes of this transaction may change."""
        self._stale[rid] = (rtype, ruuid)

    def flush(self) -> int:
        """Write what was buffered, then list anew the conflicts of every record marked
        stale (its changesets must be in the log already).  Returns how many conflicts
        are listed now that were not before."""
        if self._rows:
            self._db.insert_record_changes(self._rows)
            self._rows.clear()
        if not self._stale:
            return 0
        stale, self._stale = self._stale, {}
        return refresh_conflicts(self._db, stale)


def refresh_conflicts(db: Database, records: Mapping[int, tuple[str, str]]) -> int:
    """List anew the conflicts of ``records`` (rid -> type, uuid) from their writes;
    return how many are listed now that were not before."""
    new = 0
    for rid, (rtype, ruuid) in records.items():
        writes = record_writes(db, rid, rtype, ruuid)
        conflicts = conflicts_among(rtype, ruuid, writes)
        last = max((w.seq for w in writes), default=0)
        rows = [(c.fingerprint, rtype, ruuid, last, c.encode()) for c in conflicts]
        before = db.replace_conflicts(rtype, ruuid, rows)
        new += len({r[0] for r in rows} - before)
    return new


def fill_from_log(db: Database) -> None:
    """Fill ``record_changes`` and the conflict list from the whole log (a database
    migrated from before they existed), inside the migration's transaction."""
    rids: dict[tuple[str, str], int] = {}
    after = 0
    while rows := db.changesets_after(after, FILL_CHUNK):
        batch: list[tuple[int, int]] = []
        for row in rows:
            if row.origin_seq is None:
                continue  # a nullification writes nothing
            for change in ChangeSet.decode(row.body).changes:
                key = (change.type, change.uuid)
                if key not in rids:
                    record = db.find_record(*key)
                    if record is None:
                        continue
                    rids[key] = record.rid
                batch.append((rids[key], row.seq))
        db.insert_record_changes(batch)
        after = rows[-1].seq
    refresh_conflicts(db, {rid: key for key, rid in rids.items()})


def drop(db: Database, seqs: Collection[int]) -> None:
    """Take the changesets logged as ``seqs`` out of ``db``, inside the caller's
    transaction: their log rows, and their effect on the state.  Every record they
    wrote is rebuilt from the writes that remain (the state is a function of the
    changesets held: the stamp order per property, the largest delete), and its
    conflicts listed anew; a record nothing remains of is gone."""
    keys = {rid: key for rid in db.writes_at(seqs) if (key := db.record_key(rid)) is not None}
    for rtype, ruuid in keys.values():
        db.replace_conflicts(rtype, ruuid, ())  # they may name a dropped changeset
    db.drop_log_rows(seqs)
    remaining = {rid: key for rid, key in keys.items() if _rebuild(db, rid, *key)}
    refresh_conflicts(db, remaining)


def _rebuild(db: Database, rid: int, rtype: str, ruuid: str) -> bool:
    """Rebuild record ``rid`` from its writes; False if none remain (it is removed)."""
    props: dict[str, tuple[bytes | None, Stamp]] = {}
    created: Stamp | None = None
    deleted: Stamp | None = None
    first: Stamp | None = None
    for w in record_writes(db, rid, rtype, ruuid):
        first = w.stamp if first is None else min(first, w.stamp)
        if w.name == RECORD:
            if w.kind is WriteKind.CREATE:
                created = w.stamp if created is None else min(created, w.stamp)
            elif w.kind is WriteKind.DELETE:
                deleted = w.stamp if deleted is None else max(deleted, w.stamp)
        elif w.kind is not WriteKind.DELETE and (w.name not in props or w.stamp > props[w.name][1]):
            props[w.name] = (_encoded(w.new), w.stamp)
    db.rebuild_record(rid, props, created or first, deleted)
    return first is not None


def _encoded(value: Value) -> bytes | None:
    return None if value is None else encode_value(value)
