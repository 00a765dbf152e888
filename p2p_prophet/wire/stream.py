"""Transfer streams: batches of changesets after an optional preamble, sans-IO.

A transfer stream is::

    preamble message*  (RESOLUTION* BATCH_END)*  (CHANGESET* BATCH_END)*  BATCH_END(last)

Resolution batches come before any changeset batch (P4); a batch holds one kind only and
its BATCH_END states how many it held; a BATCH_END with ``last`` set ends the stream, and
nothing may follow it.  A receiver integrates each batch when its BATCH_END arrives, so
an interrupted stream leaves whole batches only.

:class:`TransferReader` checks all of this, the limits, and every changeset (its id
against its body, and the body with the model's own decoder), and turns bytes into
events.  :func:`encode_batch` and :func:`encode_end` are the writing side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from p2p_prophet.errors import MalformedChangeSet
from p2p_prophet.model import ChangeSet
from p2p_prophet.wire import messages as m
from p2p_prophet.wire.errors import ErrorCode, ProtocolError
from p2p_prophet.wire.frames import FrameDecoder
from p2p_prophet.wire.limits import DEFAULT_LIMITS, Limits


@dataclass(frozen=True)
class Batch:
    """A whole batch, all of one kind: decoded changesets with their canonical bodies and
    their seals (None: unsigned)."""

    resolution: bool
    changesets: tuple[tuple[ChangeSet, bytes, bytes | None], ...]

    @property
    def size(self) -> int:
        """Bytes of bodies and seals, as the batch limit counts them."""
        return sum(len(body) + len(seal or b"") for _, body, seal in self.changesets)


@dataclass(frozen=True)
class Ended:
    """The stream's last BATCH_END arrived."""


Event = m.Message | Batch | Ended


class PeerError(ProtocolError):
    """The peer sent an ERROR message instead of (the rest of) the stream."""


class TransferReader:
    """Bytes in, events out: preamble messages, then :class:`Batch` es, then
    :class:`Ended`.

    ``preamble`` lists the message types expected before the stream, in order (for an
    exchange response: VECTORS).  An ERROR message in their place, or anywhere in the
    stream, raises :class:`PeerError`.  Everything else that breaks the rules raises
    :class:`ProtocolError`; after an error the reader must not be fed again.
    """

    def __init__(
        self, preamble: Iterable[type[m.Message]] = (), limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._limits = limits
        self._frames = FrameDecoder(limits)
        self._preamble = list(preamble)
        self._batch: list[tuple[ChangeSet, bytes, bytes | None]] = []
        self._batch_bytes = 0
        self._batch_kind: bool | None = None  # True: resolutions
        self._seen_changesets = False
        self._ended = False
        self._pending: ProtocolError | None = None
        self.batches = 0
        self.changesets = 0

    @property
    def bytes_received(self) -> int:
        return self._frames.bytes_received

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def buffered(self) -> int:
        """Bytes held for what is not yet an event: the frame in progress and the
        changesets of the batch in progress (what a node counts against its memory
        bound)."""
        return self._frames.pending + self._batch_bytes

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by ``data``.

        If ``data`` also holds something bad after whole batches, those batches are
        returned first and the error is raised by the next :meth:`feed` or :meth:`close`:
        a receiver keeps every whole batch that came before a fault.
        """
        self._raise_pending()
        events: list[Event] = []
        try:
            for content in self._frames.feed(data):
                if self._ended:
                    raise ProtocolError(
                        ErrorCode.MALFORMED, "data after the stream's last batch end"
                    )
                events.extend(self._message(m.decode(content, self._limits)))
        except ProtocolError as exc:
            if not events:
                raise
            self._pending = exc
        return events

    def _raise_pending(self) -> None:
        if self._pending is not None:
            exc, self._pending = self._pending, None
            raise exc

    def close(self) -> None:
        """The bytes have ended: raise TRUNCATED unless the stream was complete (or the
        error found after the last batch returned)."""
        self._raise_pending()
        self._frames.close()
        if not self._ended:
            where = (
                "before it began"
                if self._preamble
                else f"after {self.batches} whole batches ({self.changesets} changesets)"
            )
            raise ProtocolError(ErrorCode.TRUNCATED, f"the peer's stream stopped {where}")

    def _message(self, msg: m.Message) -> list[Event]:
        if isinstance(msg, m.Error):
            raise PeerError(msg.code, msg.message)
        if self._preamble:
            expected = self._preamble.pop(0)
            if not isinstance(msg, expected):
                raise ProtocolError(
                    ErrorCode.MALFORMED,
                    f"expected {expected.__name__.upper()}, got {type(msg).__name__.upper()}",
                )
            return [msg]
        if isinstance(msg, m.Changeset):
            self._take(msg)
            return []
        if isinstance(msg, m.BatchEnd):
            return self._end_batch(msg)
        raise ProtocolError(
            ErrorCode.MALFORMED, f"unexpected {type(msg).__name__.upper()} in a transfer stream"
        )

    def _take(self, msg: m.Changeset) -> None:
        if msg.resolution and self._seen_changesets:
            raise ProtocolError(
                ErrorCode.MALFORMED, "a resolution came after changesets: resolutions go first"
            )
        if self._batch_kind is not None and self._batch_kind != msg.resolution:
            raise ProtocolError(ErrorCode.MALFORMED, "a batch mixes resolutions and changesets")
        self._batch_kind = msg.resolution
        self._seen_changesets |= not msg.resolution
        limits = self._limits
        if len(self._batch) >= limits.max_batch_changesets:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"a batch of more than {limits.max_batch_changesets} changesets",
            )
        self._batch_bytes += len(msg.body) + len(msg.seal or b"")
        if self._batch_bytes > limits.max_batch_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"a batch of more than {limits.max_batch_bytes} bytes"
            )
        try:
            cs = ChangeSet.decode(msg.body)
        except MalformedChangeSet as exc:
            raise ProtocolError(
                ErrorCode.INVALID_CHANGESET,
                f"changeset {len(self._batch) + 1} of batch {self.batches + 1}: {exc}",
            ) from None
        self._batch.append((cs, msg.body, msg.seal))

    def _end_batch(self, msg: m.BatchEnd) -> list[Event]:
        if msg.count != len(self._batch):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"a batch end counts {msg.count} changesets, the batch held {len(self._batch)}",
            )
        events: list[Event] = []
        if self._batch:
            events.append(Batch(bool(self._batch_kind), tuple(self._batch)))
            self.batches += 1
            self.changesets += len(self._batch)
        self._batch = []
        self._batch_bytes = 0
        self._batch_kind = None
        if msg.last:
            self._ended = True
            events.append(Ended())
        return events


def read_messages(
    data: bytes, expected: Iterable[type[m.Message]], limits: Limits = DEFAULT_LIMITS
) -> list[m.Message]:
    """Decode ``data`` as exactly the ``expected`` messages, in order, and nothing else.

    An ERROR message raises :class:`PeerError`; anything else unexpected, missing or left
    over raises :class:`ProtocolError`.
    """
    wanted = list(expected)
    frames = FrameDecoder(limits)
    contents = frames.feed(data)
    frames.close()
    if len(contents) != len(wanted):
        names = ", ".join(t.__name__.upper() for t in wanted)
        raise ProtocolError(ErrorCode.MALFORMED, f"expected exactly {names}")
    messages: list[m.Message] = []
    for content, kind in zip(contents, wanted, strict=True):
        msg = m.decode(content, limits)
        if isinstance(msg, m.Error):
            raise PeerError(msg.code, msg.message)
        if not isinstance(msg, kind):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"expected {kind.__name__.upper()}, got {type(msg).__name__.upper()}",
            )
        messages.append(msg)
    return messages


def encode_batch(rows: Iterable[tuple[bytes, bytes, bytes | None]], *, resolution: bool) -> bytes:
    """The frames of one batch of ``(id, body, seal)`` triples (seal None: unsigned) and
    its BATCH_END."""
    parts = [m.encode_changeset(id_, body, seal, resolution=resolution) for id_, body, seal in rows]
    parts.append(m.encode(m.BatchEnd(len(parts))))
    return b"".join(parts)


def encode_end() -> bytes:
    """The stream's last BATCH_END (an empty batch)."""
    return m.encode(m.BatchEnd(0, last=True))
