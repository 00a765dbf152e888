"""The wire: frames, messages, transfer streams and their limits; sans-IO.

Bytes in, validated messages out, and back.  Nothing here does I/O or trusts a peer:
every decoder checks what it reads against :class:`Limits` and raises
:class:`ProtocolError` only (docs/protocol.md specifies the format).
"""

from p2p_prophet.wire.errors import ErrorCode, ProtocolError
from p2p_prophet.wire.frames import FrameDecoder, frame
from p2p_prophet.wire.limits import DEFAULT_LIMITS, Limits
from p2p_prophet.wire.messages import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    BatchEnd,
    Changeset,
    Counts,
    Error,
    Hello,
    Message,
    Receipt,
    Vectors,
    Witness,
    decode,
    encode,
)
from p2p_prophet.wire.stream import (
    Batch,
    Ended,
    PeerError,
    TransferReader,
    encode_batch,
    encode_end,
    read_messages,
)

__all__ = [
    "DEFAULT_LIMITS",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Batch",
    "BatchEnd",
    "Changeset",
    "Counts",
    "Ended",
    "Error",
    "ErrorCode",
    "FrameDecoder",
    "Hello",
    "Limits",
    "Message",
    "PeerError",
    "ProtocolError",
    "Receipt",
    "TransferReader",
    "Vectors",
    "Witness",
    "decode",
    "encode",
    "encode_batch",
    "encode_end",
    "frame",
    "read_messages",
]
