"""Numbering, chaining, sealing and buffered writing of changesets into a replica's log.

Inside one transaction, a :class:`LogAppender` hands out local sequence numbers and, for
the replica's own changesets, origin sequence numbers; it buffers the rows and writes them
with the merge tickets they imply in one ``flush``, so the tickets never run ahead of the
log (P2) and a batch of thousands of changesets costs two statements.

It is also the one place where a signed replica's changesets are chained and sealed
(docs/security.md, Signed changesets): given a :class:`~p2p_prophet.keys.signing.
Signer`, every numbered changeset of its own origin that goes through :meth:`append_own`
gets ``prev`` (the id of that origin's changeset before it), is encoded, and is sealed
over its id.  Callers build their changesets unchained and use what :meth:`own` or
:meth:`append_own` hand back, so local edits, "after" fix-ups, answers in the resolution
database and a person's resolutions are all signed the same way.  Changesets received
from elsewhere go through :meth:`append` and are stored exactly as they came, seal
included.
"""

from __future__ import annotations

from dataclasses import replace

from p2p_prophet.errors import StorageError
from p2p_prophet.keys.signing import Signer
from p2p_prophet.model import ChangeSet, changeset_id
from p2p_prophet.store.database import Database, LogRow


class LogAppender:
    """Appends changesets to ``db``'s log; use inside ``db.transaction()`` only.

    With a ``signer``, this replica's own numbered changesets (``own_origin``'s, through
    :meth:`append_own`) are chained and sealed; without, they are logged unchained.
    """

    def __init__(self, db: Database, own_origin: str, signer: Signer | None = None) -> None:
        self._db = db
        self.own_origin = own_origin
        self._signer = signer
        self._next_seq = db.latest_seq() + 1
        self._next_own_seq = db.ticket(own_origin) + 1
        self._rows: list[LogRow] = []
        self._tickets: dict[str, int] = {}
        # (origin_seq, id) of the own origin's latest changeset appended here, so that a
        # batch of edits reads the previous id from the log once, not once per edit.
        self._last_own: tuple[int, bytes] | None = None

    @property
    def signs(self) -> bool:
        """Whether this appender chains and seals the replica's own changesets."""
        return self._signer is not None

    def peek_own_seq(self) -> int:
        """The origin sequence number the next own changeset must carry."""
        return self._next_own_seq

    def own(self, cs: ChangeSet) -> tuple[ChangeSet, bytes]:
        """``cs``, the next of this replica's own changesets (numbered
        :meth:`peek_own_seq`), as it will be logged, and its canonical body: chained to
        the own origin's previous changeset if this appender signs, unchanged otherwise.

        Nothing is reserved or buffered: a caller may inspect the body (its size) and
        then either drop it or pass both to :meth:`append_own`.
        """
        if cs.origin != self.own_origin or cs.origin_seq != self._next_own_seq:
            raise ValueError(
                f"{cs.origin}#{cs.origin_seq} is not this log's next own changeset "
                f"({self.own_origin}#{self._next_own_seq})"
            )
        if self._signer is not None and not cs.chained:
            cs = replace(cs, prev=self._prev_id(cs.origin_seq), chained=True)
        return cs, cs.encode()

    def append_own(self, cs: ChangeSet, body: bytes | None = None) -> ChangeSet:
        """Take the next own origin sequence number for ``cs`` (which must carry it),
        chain and seal it if this appender signs, and buffer it.

        ``cs`` and ``body`` may come from :meth:`own` (then they are used as they are) or
        be an unchained changeset (then :meth:`own` is applied here).  Returns the
        changeset as logged.
        """
        if body is None or (self._signer is not None and not cs.chained):
            cs, body = self.own(cs)
        elif cs.origin != self.own_origin or cs.origin_seq != self._next_own_seq:
            self.own(cs)  # raises, naming the mismatch
        self._next_own_seq += 1
        id_ = changeset_id(body)
        seal = None if self._signer is None else self._signer.seal(id_)
        self._buffer(cs, body, id_, seal)
        return cs

    def append(self, cs: ChangeSet, body: bytes | None = None, seal: bytes | None = None) -> int:
        """Buffer ``cs`` exactly as given (with its canonical ``body`` if already known,
        and its ``seal`` if it has one); return its local seq.

        For changesets received from elsewhere and for nullifications, which take no
        origin sequence number; this replica's own numbered changesets go through
        :meth:`append_own`.
        """
        if body is None:
            body = cs.encode()
        return self._buffer(cs, body, changeset_id(body), seal)

    @property
    def last_seq(self) -> int:
        """The local seq of the changeset appended last."""
        return self._next_seq - 1

    def _buffer(self, cs: ChangeSet, body: bytes, id_: bytes, seal: bytes | None) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self._rows.append(
            LogRow(seq, cs.origin, cs.origin_seq, cs.kind.value, id_, cs.created, body, seal)
        )
        if cs.origin_seq is not None:
            self._tickets[cs.origin] = cs.origin_seq
            if cs.origin == self.own_origin:
                # However it got here (even received back from a peer), it is the own
                # origin's latest: the next own changeset follows and links to it.
                self._last_own = (cs.origin_seq, id_)
                self._next_own_seq = max(self._next_own_seq, cs.origin_seq + 1)
        return seq

    def _prev_id(self, origin_seq: int) -> bytes | None:
        if origin_seq == 1:
            return None
        if self._last_own is not None and self._last_own[0] == origin_seq - 1:
            return self._last_own[1]
        prev = self._db.changeset_id(self.own_origin, origin_seq - 1)
        if prev is None:  # the prefix invariant (P2) says it is there
            raise StorageError(
                f"{self._db.path}: the log lacks {self.own_origin}#{origin_seq - 1}, which"
                f" #{origin_seq} must link to; the replica is damaged (nothing was written)"
            )
        self._last_own = (origin_seq - 1, prev)
        return prev

    def flush(self) -> None:
        """Write buffered changesets and the tickets they advance."""
        if self._rows:
            self._db.insert_changesets(self._rows)
            self._db.set_tickets(self._tickets)
            self._rows.clear()
            self._tickets.clear()
