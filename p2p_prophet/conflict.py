"""Conflicts and their canonical fingerprints (P7).

A conflict is found when an incoming change does not apply cleanly: a property's ``old``
differs from the current value (and the incoming value is not the same as the current one,
which would be an identical change), or the change touches a deleted or unknown record.

The fingerprint must be the same on every replica that meets the same conflict, whichever
edit it saw first.  So it is built only from what both sides see alike: the record, the
kind, and per property the common ``base`` value both edits started from and the two
choices ``(value, stamp)`` *sorted*, never "mine" and "theirs".  Properties are sorted by
name and everything is canonical CBOR, so dict order and arrival order cannot leak in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cbor2

from p2p_prophet.model import Stamp, Value, canonical


class ConflictKind(StrEnum):
    PROPS = "props"  # concurrent writes to the same properties
    DELETE = "delete"  # an update and a delete of the same record (the delete wins)
    MISSING = "missing"  # a change to a record this replica has never seen created


@dataclass(frozen=True, slots=True)
class Choice:
    """One side of a conflict: a value and the stamp of the write that made it.

    ``stamp`` is None for a property this replica never had a write for.
    """

    value: Value
    stamp: Stamp | None

    def sort_key(self) -> tuple[int, str]:
        return (-1, "") if self.stamp is None else (self.stamp.hlc, self.stamp.origin)

    def to_cbor_obj(self) -> list[Any]:
        if self.stamp is None:
            return [self.value, None, None]
        return [self.value, self.stamp.hlc, self.stamp.origin]


@dataclass(frozen=True, slots=True)
class PropConflict:
    """A property both sides changed from ``base``: ``local`` (what this replica held)
    against ``incoming`` (what the incoming change wrote)."""

    name: str
    base: Value
    local: Choice
    incoming: Choice

    @property
    def winner(self) -> Choice:
        """The deterministic answer (P6): the larger stamp wins."""
        return max(self.local, self.incoming, key=Choice.sort_key)

    def to_cbor_obj(self) -> list[Any]:
        choices = sorted(canonical(c.to_cbor_obj()) for c in (self.local, self.incoming))
        return [self.name, self.base, [_raw(c) for c in choices]]


@dataclass(frozen=True, slots=True)
class Conflict:
    type: str
    uuid: str
    kind: ConflictKind
    props: tuple[PropConflict, ...]

    def encode(self) -> bytes:
        """Canonical CBOR: ``["conflict", kind, type, uuid, [[name, base, [c1, c2]]...]]``."""
        props = sorted(self.props, key=lambda p: p.name)
        return canonical(
            ["conflict", self.kind.value, self.type, self.uuid, [p.to_cbor_obj() for p in props]]
        )

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()


def _raw(encoded: bytes) -> Any:
    # Choices are sorted by their canonical bytes (a total order over mixed value types);
    # decode them back so the outer encoding nests arrays, not byte strings.
    return cbor2.loads(encoded)
