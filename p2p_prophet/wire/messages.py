"""The messages of protocol version 2, and their strict decoding.

Every message is a CBOR array whose first item is its type number (docs/protocol.md gives
each one byte by byte)::

    HELLO       [0, version, db_uuid, replica_uuid, resolutions_uuid,
                 main_digest, resolutions_digest]
    VECTORS     [1, main_vector, resolutions_vector, heads, witnesses]
    CHANGESET   [2, id, body]  or  [2, id, body, seal]
    RESOLUTION  [3, id, body]  or  [3, id, body, seal]
    BATCH_END   [4, count, last]
    ERROR       [5, code, message]
    RECEIPT     [6, resolution_counts, changeset_counts]

A HELLO's version sits at the same place in every version, so that a node can tell a
newer peer "I do not speak your version" before reading anything else.

Version 2 added the optional seal of a signed changeset (docs/security.md): 96 bytes, its
origin's public key and signature over its id.  A version 1 peer would drop seals, so the
two are not mixed.  Version 3 added the heads to VECTORS (the first bytes of the id of
each origin's last changeset held), so that any exchange notices a forked origin
(docs/replication.md, "Forked origins"); its witnesses name any origin, not only the
receiver's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from p2p_prophet.keys.signing import SEAL_BYTES
from p2p_prophet.model import INT_MAX, CBORError, canonical, is_uuid, strict_loads
from p2p_prophet.wire.errors import ErrorCode, ProtocolError, code_of
from p2p_prophet.wire.frames import frame
from p2p_prophet.wire.limits import DEFAULT_LIMITS, Limits

PROTOCOL_VERSION = 3
SUPPORTED_VERSIONS = (3,)
DIGEST_BYTES = 8
ID_BYTES = 32
HEAD_BYTES = 8  # of an id, in heads and witnesses: enough to tell two changesets apart


class MessageType(IntEnum):
    HELLO = 0
    VECTORS = 1
    CHANGESET = 2
    RESOLUTION = 3
    BATCH_END = 4
    ERROR = 5
    RECEIPT = 6


@dataclass(frozen=True)
class Hello:
    """Who a node is and a short digest of each of its vectors (equal digests both ways:
    nothing to exchange)."""

    db_uuid: str
    replica_uuid: str
    resolutions_uuid: str
    main_digest: bytes
    resolutions_digest: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Witness:
    """ "My ``origin``#``seq`` has an id starting with ``id``" (:data:`HEAD_BYTES`), at a
    place the receiver holds but the sender's heads do not show: how the side that found
    a fork lets the other see it too."""

    origin: str
    seq: int
    id: bytes


@dataclass(frozen=True)
class Vectors:
    """A replica's merge-ticket vectors (records and resolutions), the first
    :data:`HEAD_BYTES` of the id of each origin's last changeset held (``heads``: the
    main vector's origins in sorted order, then the resolution vector's), and witnesses
    at other places (both databases' origins: an origin is a uuid of one or the other)."""

    main: Mapping[str, int]
    resolutions: Mapping[str, int]
    heads: bytes = b""
    witnesses: tuple[Witness, ...] = ()

    def head_ids(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """The heads as ``origin -> id prefix``, for the main and the resolution vector."""
        out: tuple[dict[str, bytes], dict[str, bytes]] = ({}, {})
        at = 0
        for vector, ids in zip((self.main, self.resolutions), out, strict=True):
            for origin in sorted(vector):
                ids[origin] = self.heads[at : at + HEAD_BYTES]
                at += HEAD_BYTES
        return out


@dataclass(frozen=True)
class Changeset:
    """One changeset (RESOLUTION: one of the resolution database) with its id, and its
    seal if it is signed."""

    id: bytes
    body: bytes
    resolution: bool = False
    seal: bytes | None = None


@dataclass(frozen=True)
class BatchEnd:
    """The end of a batch of ``count`` changesets; ``last``: the end of the stream."""

    count: int
    last: bool = False


@dataclass(frozen=True)
class Error:
    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Counts:
    received: int = 0
    integrated: int = 0
    skipped: int = 0
    conflicts: int = 0
    resolutions_minted: int = 0
    resolutions_reused: int = 0


@dataclass(frozen=True)
class Receipt:
    """What the receiver of a push did with it."""

    resolutions: Counts = field(default_factory=Counts)
    changesets: Counts = field(default_factory=Counts)


Message = Hello | Vectors | Changeset | BatchEnd | Error | Receipt


# -- encoding ------------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The frame carrying ``message``."""
    return frame(canonical(to_obj(message)))


def encode_changeset(
    id_: bytes, body: bytes, seal: bytes | None = None, *, resolution: bool = False
) -> bytes:
    """The frame of one changeset, built without a detour through :class:`Changeset`."""
    obj = [3 if resolution else 2, id_, body]
    if seal is not None:
        obj.append(seal)
    return frame(canonical(obj))


def to_obj(message: Message) -> list[Any]:
    match message:
        case Hello():
            return [
                MessageType.HELLO,
                message.version,
                message.db_uuid,
                message.replica_uuid,
                message.resolutions_uuid,
                message.main_digest,
                message.resolutions_digest,
            ]
        case Vectors():
            return [
                MessageType.VECTORS,
                dict(message.main),
                dict(message.resolutions),
                message.heads,
                [[w.origin, w.seq, w.id] for w in message.witnesses],
            ]
        case Changeset():
            kind = MessageType.RESOLUTION if message.resolution else MessageType.CHANGESET
            obj = [kind, message.id, message.body]
            if message.seal is not None:
                obj.append(message.seal)
            return obj
        case BatchEnd():
            return [MessageType.BATCH_END, message.count, message.last]
        case Error():
            return [MessageType.ERROR, message.code.value, message.message]
        case Receipt():
            return [
                MessageType.RECEIPT,
                _counts_obj(message.resolutions),
                _counts_obj(message.changesets),
            ]
    raise TypeError(f"not a message: {message!r}")


def _counts_obj(c: Counts) -> list[int]:
    return [
        c.received,
        c.integrated,
        c.skipped,
        c.conflicts,
        c.resolutions_minted,
        c.resolutions_reused,
    ]


# -- decoding ------------------------------------------------------------------------------


def decode(content: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode and validate the content of one frame.

    Raises :class:`ProtocolError`: MALFORMED for anything that is not exactly a message of
    this protocol, UNSUPPORTED_VERSION for a HELLO of another version.
    """
    try:
        obj = strict_loads(content, limits.max_depth)
    except CBORError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, str(exc)) from None
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int:
        raise _malformed("a message is an array that starts with its type number")
    kind = obj[0]
    if kind == MessageType.CHANGESET or kind == MessageType.RESOLUTION:
        return _changeset(obj, kind == MessageType.RESOLUTION)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise _malformed(f"unknown message type {kind}")
    return decoder(obj, limits)


def _changeset(obj: list[Any], resolution: bool) -> Changeset:
    what = "RESOLUTION" if resolution else "CHANGESET"
    _expect(len(obj) in (3, 4), f"{what} has 3 items, or 4 with a seal")
    id_, body = obj[1], obj[2]
    seal = obj[3] if len(obj) == 4 else None
    _expect(type(id_) is bytes and len(id_) == ID_BYTES, f"{what} id is not 32 bytes")
    _expect(type(body) is bytes, f"{what} body is not a byte string")
    # Only the length here: whether the seal verifies is for a signed receiver to check.
    _expect(
        seal is None or (type(seal) is bytes and len(seal) == SEAL_BYTES),
        f"{what} seal is not {SEAL_BYTES} bytes",
    )
    if hashlib.sha256(body).digest() != id_:
        raise ProtocolError(
            ErrorCode.INVALID_CHANGESET,
            f"a changeset's id {id_.hex()[:16]}… does not match its body",
        )
    return Changeset(id_, body, resolution, seal)


def _hello(obj: list[Any], limits: Limits) -> Hello:
    _expect(len(obj) >= 2 and type(obj[1]) is int, "HELLO starts with [0, version]")
    version = obj[1]
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"the peer speaks protocol version {version}; this node speaks "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}. Upgrade the older of the two",
        )
    _expect(len(obj) == 7, "HELLO has 7 items")
    _, _, db_uuid, replica_uuid, res_uuid, main_digest, res_digest = obj
    for name, value in (("db", db_uuid), ("replica", replica_uuid), ("resolutions", res_uuid)):
        _expect(is_uuid(value), f"HELLO {name} uuid is not a canonical uuid")
    for value in (main_digest, res_digest):
        _expect(type(value) is bytes and len(value) == DIGEST_BYTES, "HELLO digest is not 8 bytes")
    return Hello(db_uuid, replica_uuid, res_uuid, main_digest, res_digest, version)


def _vector(obj: Any, limits: Limits) -> dict[str, int]:
    _expect(isinstance(obj, dict), "a vector is a map")
    if len(obj) > limits.max_vector_entries:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"a vector of {len(obj)} origins exceeds the limit of {limits.max_vector_entries}",
        )
    for origin, seq in obj.items():
        _expect(is_uuid(origin), "a vector's key is not a canonical uuid")
        _expect(type(seq) is int and 1 <= seq <= INT_MAX, "a vector's ticket is not positive")
    vector: dict[str, int] = obj
    return vector


def _vectors(obj: list[Any], limits: Limits) -> Vectors:
    _expect(len(obj) == 5, "VECTORS has 5 items")
    _, main, resolutions, heads, witnesses = obj
    _expect(isinstance(witnesses, list), "VECTORS witnesses is not an array")
    if len(witnesses) > limits.max_witnesses:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"more than {limits.max_witnesses} witnesses")
    parsed = []
    for w in witnesses:
        _expect(isinstance(w, list) and len(w) == 3, "a witness has 3 items")
        origin, seq, id_ = w
        _expect(is_uuid(origin), "a witness's origin is not a canonical uuid")
        _expect(type(seq) is int and 1 <= seq <= INT_MAX, "a witness's seq is not positive")
        _expect(
            type(id_) is bytes and len(id_) == HEAD_BYTES,
            f"a witness's id is not {HEAD_BYTES} bytes",
        )
        parsed.append(Witness(origin, seq, id_))
    main_vector, resolutions_vector = _vector(main, limits), _vector(resolutions, limits)
    _expect(
        type(heads) is bytes
        and len(heads) == HEAD_BYTES * (len(main_vector) + len(resolutions_vector)),
        f"VECTORS heads is not {HEAD_BYTES} bytes for each origin of its vectors",
    )
    return Vectors(main_vector, resolutions_vector, heads, tuple(parsed))


def _batch_end(obj: list[Any], limits: Limits) -> BatchEnd:
    _expect(len(obj) == 3, "BATCH_END has 3 items")
    _, count, last = obj
    _expect(type(count) is int and 0 <= count <= INT_MAX, "BATCH_END count is not a count")
    _expect(type(last) is bool, "BATCH_END last is not a boolean")
    return BatchEnd(count, last)


def _error(obj: list[Any], limits: Limits) -> Error:
    _expect(len(obj) == 3, "ERROR has 3 items")
    _, code, message = obj
    _expect(isinstance(code, str) and len(code) <= 64, "ERROR code is not short text")
    _expect(isinstance(message, str), "ERROR message is not text")
    return Error(code_of(code), message[: limits.max_message_chars])


def _counts(obj: Any) -> Counts:
    _expect(
        isinstance(obj, list)
        and len(obj) == 6
        and all(type(n) is int and 0 <= n <= INT_MAX for n in obj),
        "RECEIPT counts are 6 counts",
    )
    return Counts(*obj)


def _receipt(obj: list[Any], limits: Limits) -> Receipt:
    _expect(len(obj) == 3, "RECEIPT has 3 items")
    return Receipt(_counts(obj[1]), _counts(obj[2]))


_DECODERS: dict[int, Callable[[list[Any], Limits], Message]] = {
    MessageType.HELLO: _hello,
    MessageType.VECTORS: _vectors,
    MessageType.BATCH_END: _batch_end,
    MessageType.ERROR: _error,
    MessageType.RECEIPT: _receipt,
}


def _malformed(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, message)


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise _malformed(message)
