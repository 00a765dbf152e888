"""Numbering and buffered writing of changesets into a replica's log.

Inside one transaction, a :class:`LogAppender` hands out local sequence numbers and, for
the replica's own changesets, origin sequence numbers; it buffers the rows and writes them
with the merge tickets they imply in one ``flush``, so the tickets never run ahead of the
log (P2) and a batch of thousands of changesets costs two statements.
"""

from __future__ import annotations

from p2p_prophet.model import ChangeSet, changeset_id
from p2p_prophet.store.database import Database, LogRow


class LogAppender:
    """Appends changesets to ``db``'s log; use inside ``db.transaction()`` only."""

    def __init__(self, db: Database, own_origin: str) -> None:
        self._db = db
        self.own_origin = own_origin
        self._next_seq = db.latest_seq() + 1
        self._next_own_seq = db.ticket(own_origin) + 1
        self._rows: list[LogRow] = []
        self._tickets: dict[str, int] = {}

    def peek_own_seq(self) -> int:
        """The origin sequence number :meth:`next_own_seq` will hand out next."""
        return self._next_own_seq

    def next_own_seq(self) -> int:
        """Reserve the next origin sequence number of this replica's own changesets."""
        n = self._next_own_seq
        self._next_own_seq += 1
        return n

    def append(self, cs: ChangeSet, body: bytes | None = None) -> int:
        """Buffer ``cs`` (with its canonical ``body`` if already known); return its seq."""
        if body is None:
            body = cs.encode()
        seq = self._next_seq
        self._next_seq += 1
        self._rows.append(
            LogRow(
                seq, cs.origin, cs.origin_seq, cs.kind.value, changeset_id(body), cs.created, body
            )
        )
        if cs.origin_seq is not None:
            self._tickets[cs.origin] = cs.origin_seq
        return seq

    def flush(self) -> None:
        """Write buffered changesets and the tickets they advance."""
        if self._rows:
            self._db.insert_changesets(self._rows)
            self._db.set_tickets(self._tickets)
            self._rows.clear()
            self._tickets.clear()
