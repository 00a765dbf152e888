"""Local edits: each create, update or delete appends one changeset.

Every write takes a fresh HLC stamp, and each property remembers the stamp of the edit
that wrote it (P6).  The ``old`` values in a changeset are the values the edit replaced.

Speed: rows are buffered and written with one ``executemany`` per table when the batch
needs to read (an update or delete reads the record's current properties) or commits, so
a bulk load of creates costs a few statements per thousand records, not per record.
"""

from __future__ import annotations

from collections.abc import Mapping

from p2p_prophet.clock import HybridClock
from p2p_prophet.errors import AlreadyExists, InvalidValue, RecordNotFound
from p2p_prophet.keys.signing import Signer
from p2p_prophet.model import (
    MAX_EDIT_BYTES,
    MAX_PROPS_PER_CHANGE,
    Change,
    ChangeSet,
    Kind,
    Op,
    PropChange,
    Value,
    check_name,
    check_uuid,
    check_value,
    new_uuid,
    same_value,
)
from p2p_prophet.store.appender import LogAppender
from p2p_prophet.store.database import Database, RecordRow
from p2p_prophet.store.history import History
from p2p_prophet.store.new_records import NewRecords


class EditBatch:
    """Edits sharing one transaction; obtain one from :meth:`Replica.edits`.

    With a ``signer`` (a signed replica's), every edit is chained and sealed as it is
    logged (:class:`LogAppender`), and the changesets returned are the chained ones.
    """

    def __init__(
        self,
        db: Database,
        origin: str,
        creator: str,
        clock: HybridClock,
        signer: Signer | None = None,
    ) -> None:
        self._db = db
        self._origin = origin
        self._creator = creator
        self._clock = clock
        self._log = LogAppender(db, origin, signer)
        self._new = NewRecords(db)
        self._history = History(db)

    def create(self, rtype: str, props: Mapping[str, Value], uuid: str | None = None) -> str:
        """Create a record of ``rtype`` with ``props`` (null values are left out).

        With ``uuid``, the record gets that uuid (bulk import); it must not exist yet.
        Returns the record's uuid.
        """
        check_name(rtype, "record type")
        if uuid is None:
            uuid = new_uuid()
        else:
            check_uuid(uuid)
            if (rtype, uuid) in self._new or self._db.find_record(rtype, uuid):
                raise AlreadyExists(f"{rtype} {uuid} already exists")
        changes = tuple(
            PropChange(name, None, value)
            for name, value in sorted(_checked(props).items())
            if value is not None
        )
        change = Change(rtype, uuid, Op.CREATE, changes)
        cs = self._append(change)
        stamp = cs.stamp
        rid = self._new.add(rtype, uuid, stamp, ((p.name, p.new, stamp) for p in changes))
        self._history.add(rid, self._log.last_seq, cs, change)
        return uuid

    def update(self, rtype: str, uuid: str, props: Mapping[str, Value]) -> ChangeSet | None:
        """Set properties of a live record (a null value deletes the property).

        Properties already holding the given value are left alone; if that is all of
        them, no changeset is written and None is returned.
        """
        row = self._live(rtype, uuid)
        current = self._db.props(row.rid)
        changes = []
        for name, value in sorted(_checked(props).items()):
            stored = current.get(name)
            old = None if stored is None else stored.value
            if not same_value(old, value):
                changes.append(PropChange(name, old, value))
        if not changes:
            return None
        change = Change(rtype, uuid, Op.UPDATE, tuple(changes))
        cs = self._append(change)
        self._db.write_props((row.rid, p.name, p.new, cs.stamp) for p in changes)
        # A local update starts from the values here and is stamped after every write
        # seen: it changes no conflict (store/history.py).
        self._history.add(row.rid, self._log.last_seq, cs, change)
        return cs

    def delete(self, rtype: str, uuid: str) -> ChangeSet:
        """Delete a live record; the changeset records the values it had."""
        row = self._live(rtype, uuid)
        changes = tuple(
            PropChange(name, stored.value, None)
            for name, stored in sorted(self._db.props(row.rid).items())
            if stored.value is not None
        )
        change = Change(rtype, uuid, Op.DELETE, changes)
        cs = self._append(change)
        self._db.mark_deleted(row.rid, cs.stamp)
        self._history.add(row.rid, self._log.last_seq, cs, change)
        self._history.stale(row.rid, rtype, uuid)  # a deleted record lists other conflicts
        return cs

    def flush(self) -> None:
        """Write buffered rows (called before reads and at commit)."""
        self._log.flush()
        self._new.flush()
        self._history.flush()

    def _live(self, rtype: str, uuid: str) -> RecordRow:
        self.flush()
        row = self._db.find_record(rtype, uuid)
        if row is None or not row.live:
            raise RecordNotFound(f"no {rtype} {uuid}" + ("" if row is None else " (deleted)"))
        return row

    def _append(self, change: Change) -> ChangeSet:
        if len(change.props) > MAX_PROPS_PER_CHANGE:
            raise InvalidValue(
                f"{len(change.props)} properties in one edit; at most {MAX_PROPS_PER_CHANGE}"
            )
        cs = ChangeSet(
            origin=self._origin,
            origin_seq=self._log.peek_own_seq(),
            creator=self._creator,
            created=self._clock.now(),
            kind=Kind.EDIT,
            changes=(change,),
        )
        # The body as logged (chained, in a signed replica) is what the limit bounds.
        cs, body = self._log.own(cs)
        if len(body) > MAX_EDIT_BYTES:
            # Checked before the number is taken, so a refused edit leaves no gap.
            raise InvalidValue(
                f"this edit of {change.type} {change.uuid} encodes to {len(body)} bytes; "
                f"one edit may hold at most {MAX_EDIT_BYTES} (split it into several)"
            )
        return self._log.append_own(cs, body)


def _checked(props: Mapping[str, Value]) -> dict[str, Value]:
    for name, value in props.items():
        check_name(name, "property name")
        check_value(value)
    return dict(props)
