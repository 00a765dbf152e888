"""Records, changes, changesets and stamps, and their canonical CBOR encoding.

Canonical encoding (docs/model.md gives the byte layout):

* A changeset encodes as one CBOR array::

      [1, origin, origin_seq, creator, created, kind, changes]           unchained
      [2, origin, origin_seq, creator, created, kind, changes, prev]     chained

  ``origin_seq`` is null only for a "before" fix-up (nullification), which never leaves
  the replica.  ``changes`` is an array of ``[type, uuid, op, props]`` and ``props`` an
  array of ``[name, old, new]`` or, for a write that carries another edit's stamp (an
  "after" fix-up), ``[name, old, new, hlc, origin]``.
* A *chained* changeset (format 2, made by a signed replica) also names ``prev``, the id
  (32 bytes) of its origin's changeset ``origin_seq - 1``, or null for ``origin_seq`` 1
  and only then.  The id covers ``prev``, so one signature over the id of an origin's
  latest changeset vouches for every one before it (docs/security.md).  Nullifications are
  never chained.  An unchained changeset encodes exactly as before chains existed, so
  every id made then stays valid.
* There are no CBOR maps in the encoding, so no map-key ordering rules are needed; integers
  and floats take their shortest exact form (cbor2's ``canonical=True``), and the encoder
  emits definite lengths only.  The same value therefore gives the same bytes on every
  machine, and ``ChangeSet.decode(b).encode() == b`` for every ``b`` that decodes.
* A changeset's id is the SHA-256 of that encoding.  The local sequence number is not part
  of it, so the same changeset has the same id in every replica's log.

Values are text, int (64-bit signed), finite float, bool or null.  Equality of values is
strict: ``True`` is not ``1`` and ``1`` is not ``1.0`` (see :func:`same_value`).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cbor2

from p2p_prophet.errors import InvalidValue, MalformedChangeSet, ProphetError

Value = str | int | float | bool | None

FORMAT_VERSION = 1  # an unchained changeset: 7 items
CHAINED_FORMAT_VERSION = 2  # a chained one: 8 items, the last its prev
ID_BYTES = 32  # a changeset id: SHA-256

MAX_NAME_LENGTH = 64
MAX_CREATOR_LENGTH = 256
MAX_TEXT_BYTES = 1 << 20  # 1 MiB of UTF-8 text per property value
MAX_PROPS_PER_CHANGE = 1024
MAX_CHANGES_PER_CHANGESET = 1024
# A local edit may encode to at most MAX_EDIT_BYTES.  An "after" fix-up carries the old and
# the new value of each conflicted property of one incoming edit, so it can be twice as
# large; every changeset that may travel therefore fits in MAX_CHANGESET_BYTES, which is
# what decoding (and the wire's frame limit) accepts.
MAX_EDIT_BYTES = 4 << 20
MAX_CHANGESET_BYTES = 2 * MAX_EDIT_BYTES + (64 << 10)
MAX_DEPTH = 5  # changeset > changes > change > props > prop
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_valid_names: set[str] = set()
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class Kind(StrEnum):
    """What a changeset is: an edit, or one of the two fix-ups of a conflict (P5)."""

    EDIT = "edit"
    NULLIFICATION = "nullification"  # "before" fix-up: local only, never sent
    RESOLUTION = "resolution"  # "after" fix-up: sent like any changeset


class Op(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, order=True, slots=True)
class Stamp:
    """The total order on writes (P6): hybrid logical time, then origin uuid."""

    hlc: int
    origin: str


@dataclass(frozen=True, slots=True)
class PropChange:
    """One property of one record going from ``old`` to ``new`` (null: absent).

    ``stamp`` is set only on writes that carry another edit's stamp (the "after" fix-up
    copies the winning edit's stamp); otherwise the write's stamp is its changeset's.
    """

    name: str
    old: Value
    new: Value
    stamp: Stamp | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One record's create, update or delete within a changeset."""

    type: str
    uuid: str
    op: Op
    props: tuple[PropChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    """A live record: its type, uuid and properties (null-valued ones are absent)."""

    type: str
    uuid: str
    props: Mapping[str, Value]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "uuid": self.uuid, "props": dict(self.props)}


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """One transaction of one replica, identified by ``(origin, origin_seq)``.

    A ``chained`` changeset also names ``prev``, the id of its origin's changeset
    ``origin_seq - 1`` (None for ``origin_seq`` 1): a signed replica chains its own
    changesets (:class:`~p2p_prophet.store.appender.LogAppender` does it) and accepts only
    chained ones.  Unchained, ``prev`` is None.  Construction does not check the pairing;
    :meth:`from_cbor_obj` does, and :meth:`to_cbor_obj` only ever writes what it accepts
    for a well-formed changeset.
    """

    origin: str
    origin_seq: int | None
    creator: str
    created: int
    kind: Kind
    changes: tuple[Change, ...]
    prev: bytes | None = None
    chained: bool = False

    @property
    def stamp(self) -> Stamp:
        """The stamp of every write in this changeset that does not carry its own."""
        return Stamp(self.created, self.origin)

    def to_cbor_obj(self) -> list[Any]:
        obj = [
            CHAINED_FORMAT_VERSION if self.chained else FORMAT_VERSION,
            self.origin,
            self.origin_seq,
            self.creator,
            self.created,
            self.kind.value,
            [[c.type, c.uuid, c.op.value, [_prop_obj(p) for p in c.props]] for c in self.changes],
        ]
        if self.chained:
            obj.append(self.prev)
        return obj

    def encode(self) -> bytes:
        """The canonical encoding (see the module docstring)."""
        return canonical(self.to_cbor_obj())

    @property
    def id(self) -> bytes:
        """SHA-256 of the canonical encoding: the same on every replica."""
        return changeset_id(self.encode())

    @classmethod
    def decode(cls, body: bytes) -> ChangeSet:
        """Decode and validate a canonical body.

        Raises :class:`MalformedChangeSet` if the bytes are not CBOR, do not have the
        changeset's shape, hold invalid names or values, or are not in canonical form
        (so that the id computed by any replica from these bytes is the same).
        """
        if len(body) > MAX_CHANGESET_BYTES:
            raise MalformedChangeSet(
                f"a changeset of {len(body)} bytes exceeds the limit of {MAX_CHANGESET_BYTES}"
            )
        try:
            obj = strict_loads(body, MAX_DEPTH)
        except CBORError as exc:
            raise MalformedChangeSet(str(exc)) from None
        cs = cls.from_cbor_obj(obj)
        # Once validated, the decoded object has exactly the changeset's shape, so
        # re-encoding it is re-encoding the changeset.
        if canonical(obj) != body:
            raise MalformedChangeSet("changeset is not in canonical encoding")
        return cs

    @classmethod
    def from_cbor_obj(cls, obj: Any) -> ChangeSet:
        """Build a changeset from an already-decoded CBOR array, validating every field."""
        if not isinstance(obj, list) or len(obj) not in (7, 8):
            raise MalformedChangeSet(
                "a changeset is an array of 7 items (format 1) or 8 (format 2, chained)"
            )
        version = obj[0]
        if type(version) is not int or version not in (FORMAT_VERSION, CHAINED_FORMAT_VERSION):
            raise MalformedChangeSet(f"unknown changeset format version {version!r}")
        chained = version == CHAINED_FORMAT_VERSION
        if len(obj) != (8 if chained else 7):
            raise MalformedChangeSet(
                f"a changeset of format version {version} has {8 if chained else 7} items,"
                f" not {len(obj)}"
            )
        origin, origin_seq, creator, created, kind, changes = obj[1:7]
        _check(is_uuid(origin), "origin is not a canonical uuid")
        kind = _KINDS.get(kind) if isinstance(kind, str) else None
        if kind is None:
            raise MalformedChangeSet(f"unknown changeset kind {obj[5]!r}")
        if kind is Kind.NULLIFICATION:
            _check(origin_seq is None, "a nullification has no origin_seq")
        else:
            _check(
                type(origin_seq) is int and 1 <= origin_seq <= INT_MAX,
                "origin_seq is not a positive integer",
            )
        _check(
            isinstance(creator, str) and len(creator) <= MAX_CREATOR_LENGTH,
            "creator is not short text",
        )
        _check(type(created) is int and 0 <= created <= INT_MAX, "created is not a stamp")
        _check(isinstance(changes, list), "changes is not an array")
        _check(
            len(changes) <= MAX_CHANGES_PER_CHANGESET,
            f"more than {MAX_CHANGES_PER_CHANGESET} changes in one changeset",
        )
        prev = None
        if chained:
            prev = obj[7]
            # A nullification never leaves its replica, so it is never chained.
            _check(kind is not Kind.NULLIFICATION, "a nullification is never chained")
            if origin_seq == 1:
                _check(prev is None, "prev of an origin's first changeset is not null")
            else:
                _check(
                    type(prev) is bytes and len(prev) == ID_BYTES,
                    f"prev is not a changeset id of {ID_BYTES} bytes",
                )
        return cls(
            origin=origin,
            origin_seq=origin_seq,
            creator=creator,
            created=created,
            kind=kind,
            changes=tuple(_change_from_obj(c) for c in changes),
            prev=prev,
            chained=chained,
        )


_KINDS = {k.value: k for k in Kind}
_OPS = {o.value: o for o in Op}


class CBORError(ProphetError):
    """Bytes are not CBOR, or use CBOR features our encodings never use."""


def _refuse_tag(*_args: Any) -> Any:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed here")


# Tags cbor2 decodes by itself (bignums, dates, shared references that can build cycles,
# ...) are refused through semantic_decoders; any other tag reaches tag_hook.
_NO_TAGS: dict[int, Any] = {tag: _refuse_tag for tag in (*range(0, 300), 1004, 55799)}


def strict_loads(data: bytes, max_depth: int) -> Any:
    """Decode one CBOR item from untrusted bytes, refusing what our encodings never use.

    No tags, no indefinite lengths, map keys only text or bytes and never repeated, at
    most ``max_depth`` nested containers, and nothing after the item.  Memory stays
    proportional to ``len(data)``: cbor2 does not preallocate for a claimed length.
    Raises :class:`CBORError`.
    """
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(
            stream,
            max_depth=max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
            semantic_decoders=_NO_TAGS,
            tag_hook=_refuse_tag,
        ).decode()
    except Exception as exc:  # cbor2 raises several unrelated types on bad input
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc}" if cause is None else f"{exc}: {cause}"
        raise CBORError(f"not valid CBOR: {detail}") from None
    if stream.tell() != len(data):
        raise CBORError(f"{len(data) - stream.tell()} bytes after the CBOR item")
    return obj


def canonical(obj: Any) -> bytes:
    """Deterministic CBOR: shortest integers and floats, definite lengths."""
    return bytes(cbor2.dumps(obj, canonical=True))


def changeset_id(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def encode_value(value: Value) -> bytes:
    return canonical(value)


def decode_value(data: bytes) -> Value:
    value: Value = cbor2.loads(data)
    return value


def same_value(a: Value, b: Value) -> bool:
    """Strict equality: same type and same value (``-0.0`` differs from ``0.0``)."""
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return math.copysign(1.0, a) == math.copysign(1.0, b)
    return True


def check_name(name: object, what: str = "name") -> str:
    """Validate a record type or property name; return it."""
    if name in _valid_names:  # names repeat endlessly; validate each one once
        return name
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise InvalidValue(
            f"invalid {what} {name!r}: use letters, digits, '_', '.', '-' "
            f"(starting with a letter or '_'), at most {MAX_NAME_LENGTH} characters"
        )
    if len(_valid_names) < 4096:
        _valid_names.add(name)
    return name


def check_uuid(value: object) -> str:
    """Validate and return a record or replica uuid in canonical (lowercase) form."""
    if not is_uuid(value):
        raise InvalidValue(f"{value!r} is not a canonical lowercase uuid")
    assert isinstance(value, str)
    return value


def check_value(value: object) -> Value:
    """Validate a property value; return it unchanged."""
    kind = type(value)
    if kind is str:
        check_text(value, "text")  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise InvalidValue(f"integer {value} does not fit in 64 bits")
        return value  # type: ignore[return-value]
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise InvalidValue(f"float {value!r} is not finite")
        return value  # type: ignore[return-value]
    if value is None or kind is bool:
        return value  # type: ignore[return-value]
    # Subclasses (an IntEnum, a str subclass) would encode differently from their value.
    raise InvalidValue(f"{kind.__name__} is not a property type (text, int, float, bool)")


def check_text(text: str, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """Text must be encodable as UTF-8 (no lone surrogates, which CBOR cannot carry) in
    at most ``limit`` bytes."""
    size = len(text)
    if not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidValue(f"{what} {text[:40]!r} is not valid Unicode") from None
    if size > limit:
        raise InvalidValue(f"{what} of {size} bytes exceeds the limit of {limit} bytes")
    return text


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def sorted_props(props: Iterable[PropChange]) -> tuple[PropChange, ...]:
    return tuple(sorted(props, key=lambda p: p.name))


def is_uuid(value: object) -> bool:
    # Exactly the strings str(uuid.UUID(...)) produces: lowercase 8-4-4-4-12 hex.
    return isinstance(value, str) and _UUID.match(value) is not None


def _prop_obj(p: PropChange) -> list[Any]:
    if p.stamp is None:
        return [p.name, p.old, p.new]
    return [p.name, p.old, p.new, p.stamp.hlc, p.stamp.origin]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise MalformedChangeSet(message)


def _change_from_obj(obj: Any) -> Change:
    _check(isinstance(obj, list) and len(obj) == 4, "a change is an array of 4 items")
    rtype, ruuid, op, props = obj
    try:
        check_name(rtype, "record type")
        check_uuid(ruuid)
    except InvalidValue as exc:
        raise MalformedChangeSet(str(exc)) from None
    op = _OPS.get(op) if isinstance(op, str) else None
    if op is None:
        raise MalformedChangeSet(f"unknown change op {obj[2]!r}")
    _check(isinstance(props, list), "props is not an array")
    _check(
        len(props) <= MAX_PROPS_PER_CHANGE,
        f"more than {MAX_PROPS_PER_CHANGE} properties in one change",
    )
    parsed = tuple(_prop_from_obj(p) for p in props)
    names = [p.name for p in parsed]
    _check(len(set(names)) == len(names), "a property appears twice in one change")
    return Change(type=rtype, uuid=ruuid, op=op, props=parsed)


def _prop_from_obj(obj: Any) -> PropChange:
    _check(isinstance(obj, list) and len(obj) in (3, 5), "a prop change has 3 or 5 items")
    try:
        name = check_name(obj[0], "property name")
        old, new = check_value(obj[1]), check_value(obj[2])
    except InvalidValue as exc:
        raise MalformedChangeSet(str(exc)) from None
    stamp = None
    if len(obj) == 5:
        hlc, origin = obj[3], obj[4]
        _check(type(hlc) is int and 0 <= hlc <= INT_MAX, "prop stamp hlc is not a stamp")
        _check(is_uuid(origin), "prop stamp origin is not a canonical uuid")
        stamp = Stamp(hlc, origin)
    return PropChange(name=name, old=old, new=new, stamp=stamp)
