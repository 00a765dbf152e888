"""The writes a replica holds, and the conflict list kept from them.

Every changeset that enters a log (a local edit, an integrated one, a resolution minted
here; never a nullification, which writes nothing) leaves one row per write in the
``writes`` table: per property its stamp, ``old`` and ``new``, and per record its create
or delete.  The listed conflicts (``conflicts`` table) are a function of those rows
(:func:`p2p_prophet.conflict.conflicts_among`), recomputed for a record whenever a write
may change them: one that lands anywhere but at the end of its property's stamp order,
one that did not start from the value before it, and every delete.  A write appended in
stamp order that saw the value before it (every local update, and nearly every pulled
one) changes no conflict, so the common path costs one insert per write and nothing else.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from p2p_prophet.conflict import RECORD, Write, WriteKind, conflicts_among
from p2p_prophet.model import (
    Change,
    ChangeSet,
    Kind,
    Op,
    Stamp,
    Value,
    decode_value,
    encode_value,
)

if TYPE_CHECKING:
    from p2p_prophet.store.database import Database

# (rid, name, seq, kind, hlc, origin, old, new)
WriteRow = tuple[int, str, int, str, int, str, bytes | None, bytes | None]

FILL_CHUNK = 1000


def write_rows(rid: int, seq: int, cs: ChangeSet, change: Change) -> list[WriteRow]:
    """The rows of the writes ``change`` (of changeset ``cs``, logged as ``seq``) makes to
    record ``rid``; none for a nullification."""
    if cs.kind is Kind.NULLIFICATION:
        return []
    stamp = cs.stamp
    rows: list[WriteRow] = []
    if cs.kind is Kind.RESOLUTION:
        kind = WriteKind.ECHO
    elif change.op is Op.CREATE:
        kind = WriteKind.CREATE
    elif change.op is Op.DELETE:
        kind = WriteKind.DELETE
    else:
        kind = WriteKind.UPDATE
    if kind in (WriteKind.CREATE, WriteKind.DELETE):
        rows.append((rid, RECORD, seq, kind.value, stamp.hlc, stamp.origin, None, None))
    for p in change.props:
        s = p.stamp or stamp
        new = None if kind is WriteKind.DELETE else p.new
        rows.append((rid, p.name, seq, kind.value, s.hlc, s.origin, _encoded(p.old), _encoded(new)))
    return rows


def _encoded(value: Value) -> bytes | None:
    return None if value is None else encode_value(value)


class History:
    """The writes of one transaction, buffered, and the records whose conflicts they
    may change; use inside ``db.transaction()`` only."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._rows: list[WriteRow] = []
        self._stale: dict[int, tuple[str, str]] = {}

    def add(self, rid: int, seq: int, cs: ChangeSet, change: Change) -> None:
        self._rows.extend(write_rows(rid, seq, cs, change))

    def stale(self, rid: int, rtype: str, ruuid: str) -> None:
        """Mark a record whose conflicts the writes of this transaction may change."""
        self._stale[rid] = (rtype, ruuid)

    def flush(self) -> int:
        """Write the buffered writes, then list anew the conflicts of every record
        marked stale (its records and props must be written already).  Returns how many
        conflicts are listed now that were not before."""
        if self._rows:
            self._db.insert_writes(self._rows)
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
        writes = [
            Write(name, seq, WriteKind(kind), Stamp(hlc, origin), _value(old), _value(new_))
            for name, seq, kind, hlc, origin, old, new_ in db.writes_of(rid)
        ]
        conflicts = conflicts_among(rtype, ruuid, writes)
        last = max((w.seq for w in writes), default=0)
        rows = [(c.fingerprint, rtype, ruuid, last, c.encode()) for c in conflicts]
        before = db.replace_conflicts(rtype, ruuid, rows)
        new += len({r[0] for r in rows} - before)
    return new


def _value(blob: bytes | None) -> Value:
    return None if blob is None else decode_value(blob)


def fill_from_log(db: Database) -> None:
    """Fill the writes and the conflict list from the whole log (a database migrated
    from before they existed), inside the migration's transaction."""
    rids: dict[tuple[str, str], int] = {}
    after = 0
    while rows := db.changesets_after(after, FILL_CHUNK):
        batch: list[WriteRow] = []
        for row in rows:
            if row.origin_seq is None:
                continue  # a nullification writes nothing
            cs = ChangeSet.decode(row.body)
            for change in cs.changes:
                key = (change.type, change.uuid)
                if key not in rids:
                    record = db.find_record(*key)
                    if record is None:
                        continue
                    rids[key] = record.rid
                batch.extend(write_rows(rids[key], row.seq, cs, change))
        db.insert_writes(batch)
        after = rows[-1].seq
    refresh_conflicts(db, {rid: key for key, rid in rids.items()})


def drop(db: Database, seqs: Collection[int]) -> None:
    """Take the changesets logged as ``seqs`` out of ``db``, inside the caller's
    transaction: their log rows and writes, and their effect on the state.  Every record
    they wrote is rebuilt from the writes that remain (the state is a function of the
    changesets held: the stamp order per property, the largest delete), and its
    conflicts listed anew; a record nothing remains of is gone."""
    keys = {rid: key for rid in db.writes_at(seqs) if (key := db.record_key(rid)) is not None}
    for rtype, ruuid in keys.values():
        db.replace_conflicts(rtype, ruuid, ())  # they may name a dropped changeset
    db.drop_log_rows(seqs)
    remaining = {rid: key for rid, key in keys.items() if _rebuild(db, rid)}
    refresh_conflicts(db, remaining)


def _rebuild(db: Database, rid: int) -> bool:
    """Rebuild record ``rid`` from its writes; False if none remain (it is removed)."""
    props: dict[str, tuple[bytes | None, Stamp]] = {}
    created: Stamp | None = None
    deleted: Stamp | None = None
    first: Stamp | None = None
    for name, _, kind, hlc, origin, _, new in db.writes_of(rid):
        stamp = Stamp(hlc, origin)
        first = stamp if first is None else min(first, stamp)
        if name == RECORD:
            if kind == WriteKind.CREATE.value:
                created = stamp if created is None else min(created, stamp)
            elif kind == WriteKind.DELETE.value:
                deleted = stamp if deleted is None else max(deleted, stamp)
        elif kind != WriteKind.DELETE.value and (name not in props or stamp > props[name][1]):
            props[name] = (new, stamp)
    db.rebuild_record(rid, props, created or first, deleted)
    return first is not None
