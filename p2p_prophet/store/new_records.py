"""Records created in the current transaction, buffered for bulk insertion.

Local edits and integration both create many records in one transaction (a bulk import,
a clone).  Rather than two statements per record, rows are buffered here and written with
one ``executemany`` per table.  The owner must :meth:`NewRecords.flush` before reading a
buffered record back (``key in buffer`` tells) and before committing.
"""

from __future__ import annotations

from collections.abc import Iterable

from p2p_prophet.model import Stamp, Value, encode_value
from p2p_prophet.store.database import Database


class NewRecords:
    """A buffer of new records for ``db``; use inside ``db.transaction()`` only."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._next_rid = db.next_rid()
        self._keys: set[tuple[str, str]] = set()
        self._records: list[tuple[int, str, str, int, str]] = []
        self._props: list[tuple[int, str, bytes | None, int, str]] = []

    def __contains__(self, key: tuple[str, str]) -> bool:
        """Is ``(type, uuid)`` buffered (and so not yet readable from the database)?"""
        return key in self._keys

    def add(
        self, rtype: str, ruuid: str, created: Stamp, props: Iterable[tuple[str, Value, Stamp]]
    ) -> int:
        """Buffer a record and its properties ``(name, value, stamp)``; return its rid.

        Null values are stored as deleted properties that keep their stamp."""
        rid = self._next_rid
        self._next_rid += 1
        self._keys.add((rtype, ruuid))
        self._records.append((rid, rtype, ruuid, created.hlc, created.origin))
        self._props.extend(
            (rid, name, None if value is None else encode_value(value), s.hlc, s.origin)
            for name, value, s in props
        )
        return rid

    def flush(self) -> None:
        if self._records:
            self._db.insert_records(self._records)
            self._records.clear()
        if self._props:
            self._db.insert_new_props(self._props)
            self._props.clear()
        self._keys.clear()
