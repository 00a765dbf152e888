"""Framing: a stream is a CBOR sequence (RFC 8742) of byte strings, one message each.

Each frame is one CBOR byte string (major type 2, definite length) whose content is the
CBOR encoding of one message.  The byte string's head states the content's length before
any of it arrives, so a receiver refuses an oversized frame after reading at most 9
bytes, and buffers at most one frame: it never has to parse a message to find where the
next one starts.
"""

from __future__ import annotations

from p2p_prophet.wire.errors import ErrorCode, ProtocolError
from p2p_prophet.wire.limits import DEFAULT_LIMITS, Limits

_BSTR = 0x40  # major type 2


def frame_head(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes (shortest form)."""
    if length < 24:
        return bytes((_BSTR | length,))
    if length < 0x100:
        return bytes((_BSTR | 24, length))
    if length < 0x10000:
        return bytes((_BSTR | 25,)) + length.to_bytes(2, "big")
    if length < 0x100000000:
        return bytes((_BSTR | 26,)) + length.to_bytes(4, "big")
    return bytes((_BSTR | 27,)) + length.to_bytes(8, "big")


def frame(content: bytes) -> bytes:
    """Wrap one encoded message as a frame."""
    return frame_head(len(content)) + content


class FrameDecoder:
    """Turns bytes as they arrive into frame contents; sans-IO.

    ``feed`` returns the frames completed by the new bytes; ``close`` at the end of the
    stream raises if a frame was cut short.  Raises :class:`ProtocolError` (TOO_LARGE,
    MALFORMED, TRUNCATED) and nothing else.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limit = limits.max_frame_bytes
        self._buffer = bytearray()
        self._pos = 0
        self.bytes_received = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.bytes_received += len(data)
        buf = self._buffer
        buf += data
        frames = []
        pos = self._pos
        end = len(buf)
        while pos < end:
            parsed = self._head(buf, pos, end)
            if parsed is None:
                break
            start, length = parsed
            if end - start < length:
                break
            frames.append(bytes(buf[start : start + length]))
            pos = start + length
        # Drop consumed bytes now and then, not after every frame (that would be O(n^2)).
        if pos > 65536 or pos == end:
            del buf[:pos]
            pos = 0
        self._pos = pos
        return frames

    def _head(self, buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
        initial = buf[pos]
        if initial & 0xE0 != _BSTR:
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"expected a frame (a CBOR byte string), found initial byte 0x{initial:02x}",
            )
        info = initial & 0x1F
        if info < 24:
            return pos + 1, info
        if info > 27:
            # 31 is an indefinite-length byte string: its length is not known up front.
            raise ProtocolError(
                ErrorCode.MALFORMED, "a frame must be a definite-length CBOR byte string"
            )
        size = 1 << (info - 24)
        if end - pos < 1 + size:
            return None
        length = int.from_bytes(buf[pos + 1 : pos + 1 + size], "big")
        if length > self._limit:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"a frame of {length} bytes exceeds the limit of {self._limit} bytes",
            )
        return pos + 1 + size, length

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a complete frame."""
        return len(self._buffer) - self._pos

    def close(self) -> None:
        """The stream has ended: raise TRUNCATED if it ended inside a frame."""
        if self.pending:
            raise ProtocolError(
                ErrorCode.TRUNCATED,
                f"the stream ended inside a frame ({self.pending} bytes of it arrived)",
            )
