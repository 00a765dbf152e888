"""Conflicts and their canonical fingerprints (P7).

Two notions live here.

**A conflict met** (:class:`PropConflict`, from integration): an incoming change that does
not apply cleanly, because a property's ``old`` differs from the current value (and the
incoming value is not the same as the current one, which would be an identical change),
or because it touches a deleted or unknown record.  What is met depends on arrival order;
it decides only the log's fix-ups (the nullification and the resolution).

**A conflict listed** (:func:`conflicts_among`): what ``p2p-prophet conflicts`` shows and
``resolve`` answers, a function of the *set* of writes a replica holds, never of their
order, so every replica holding the same changesets lists the same conflicts with the
same fingerprints and choices (P1).  For each property, its writes are taken in stamp
order; a write that neither started from the value of the write just before it (its
``old``) nor made the same value *did not see* that write: the two are concurrent and
fall in one group, which the next write joins on the same test.  A group of two or more
writes is a conflict on that property; its ``base`` is the value just before the group
(None if it starts the property's history), its choices every write of the group.
Properties of one record whose groups share a changeset are one conflict (one edit that
clashed with others on several properties).  A deleted record lists instead the writes
its deletes did not see: each property whose last value no delete's ``old`` names.  A
record whose create this replica lacks is listed as ``missing``, until the create comes.

The fingerprint must be the same on every replica that holds the same conflict.  So it is
built only from what all see alike: the record, the kind, and per property the ``base``
value and the choices ``(value, stamp)`` *sorted*, never "mine" and "theirs".  Properties
are sorted by name and everything is canonical CBOR, so dict order and arrival order
cannot leak in.  A conflict of two writes met at integration and the same two writes
listed encode alike, so the resolution database's answers serve both.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import cbor2

from p2p_prophet.model import Stamp, Value, canonical, same_value


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

    @property
    def choices(self) -> tuple[Choice, ...]:
        return (self.local, self.incoming)


@dataclass(frozen=True, slots=True)
class ConcurrentWrites:
    """A property's writes that did not see each other (two or more), from ``base``."""

    name: str
    base: Value
    choices: tuple[Choice, ...]


class PropChoices(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def base(self) -> Value: ...
    @property
    def choices(self) -> tuple[Choice, ...]: ...


def _prop_obj(p: PropChoices) -> list[Any]:
    choices = sorted(canonical(c.to_cbor_obj()) for c in p.choices)
    return [p.name, p.base, [_raw(c) for c in choices]]


P = TypeVar("P", bound=PropChoices)


@dataclass(frozen=True, slots=True)
class Conflict(Generic[P]):
    """A conflict on one record: met at integration (``P`` is :class:`PropConflict`) or
    listed from the writes held (:class:`ConcurrentWrites`); both encode alike."""

    type: str
    uuid: str
    kind: ConflictKind
    props: Sequence[P]

    def encode(self) -> bytes:
        """Canonical CBOR: ``["conflict", kind, type, uuid, [[name, base, [c1, c2]]...]]``."""
        props = sorted(self.props, key=lambda p: p.name)
        return canonical(
            ["conflict", self.kind.value, self.type, self.uuid, [_prop_obj(p) for p in props]]
        )

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()


def _raw(encoded: bytes) -> Any:
    # Choices are sorted by their canonical bytes (a total order over mixed value types);
    # decode them back so the outer encoding nests arrays, not byte strings.
    return cbor2.loads(encoded)


# -- conflicts as a function of the writes held -------------------------------------------

RECORD = ""  # the name of a record's own write: its create or delete (no property has it)


class WriteKind(StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    ECHO = "r"  # a resolution's write, carrying the stamp of the write it repeats


@dataclass(frozen=True, slots=True)
class Write:
    """One write a replica holds: of property ``name`` (:data:`RECORD` for the record
    itself), made by the changeset logged here as ``seq``, from ``old`` to ``new``."""

    name: str
    seq: int
    kind: WriteKind
    stamp: Stamp
    old: Value
    new: Value


def conflicts_among(
    rtype: str, ruuid: str, writes: Iterable[Write]
) -> list[Conflict[ConcurrentWrites]]:
    """The conflicts of one record, given every write to it a replica holds (module
    docstring): the same set of writes gives the same conflicts, whatever its order."""
    props: dict[str, list[Write]] = defaultdict(list)
    deletes: list[Write] = []
    created = False
    writes = list(writes)
    for w in _orphan_echoes(writes):
        props[w.name].append(w)
    for w in writes:
        if w.kind is WriteKind.ECHO:
            continue  # a repeat of a write held: it decides nothing (orphans above)
        if w.name == RECORD:
            created = created or w.kind is WriteKind.CREATE
            if w.kind is WriteKind.DELETE:
                deletes.append(w)
        elif w.kind is WriteKind.DELETE:
            deletes.append(w)
        else:
            props[w.name].append(w)
    for history in props.values():
        history.sort(key=lambda w: (w.stamp.hlc, w.stamp.origin))
    if deletes:
        return _unseen_by_deletes(rtype, ruuid, props, deletes)
    if not created:
        # Only that the create is not held: a list of the writes would change with each
        # one, which the incremental upkeep (store/history.py) does not watch for.
        return [Conflict(rtype, ruuid, ConflictKind.MISSING, ())]
    return _concurrent(rtype, ruuid, props)


def _orphan_echoes(writes: list[Write]) -> list[Write]:
    """The resolutions' repeats of writes that are not held: the repeated changeset was
    superseded (sync/restore.py) and dropped, and the repeat now stands for it.  One per
    property and stamp, the same on every replica (the least ``old`` by canonical
    bytes)."""
    real = {(w.name, w.stamp) for w in writes if w.kind is not WriteKind.ECHO}
    orphans: dict[tuple[str, Stamp], Write] = {}
    for w in writes:
        if w.kind is WriteKind.ECHO and (w.name, w.stamp) not in real:
            kept = orphans.get((w.name, w.stamp))
            if kept is None or canonical(w.old) < canonical(kept.old):
                orphans[(w.name, w.stamp)] = w
    return list(orphans.values())


def _choice(w: Write) -> Choice:
    return Choice(w.new, w.stamp)


def _concurrent(
    rtype: str, ruuid: str, props: dict[str, list[Write]]
) -> list[Conflict[ConcurrentWrites]]:
    # Each property's groups of writes that did not see each other, with the changesets
    # (local seqs) they involve.
    groups: list[tuple[ConcurrentWrites, set[int]]] = []
    for name, history in sorted(props.items()):
        run: list[Write] = []  # the current group, in stamp order
        base: Value = None  # the value just before it
        for w in history:
            if run and not _saw(w, run[-1]):
                run.append(w)
                continue
            if len(run) > 1:
                groups.append(_group(name, base, run))
            base = run[-1].new if run else None
            run = [w]
        if len(run) > 1:
            groups.append(_group(name, base, run))
    # Groups that share a changeset are one conflict: union-find over the groups.
    parent = list(range(len(groups)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[int, int] = {}
    for i, (_, seqs) in enumerate(groups):
        for seq in seqs:
            if seq in owner:
                parent[find(i)] = find(owner[seq])
            else:
                owner[seq] = i
    merged: dict[int, list[ConcurrentWrites]] = defaultdict(list)
    for i, (group, _) in enumerate(groups):
        merged[find(i)].append(group)
    return [
        Conflict(rtype, ruuid, ConflictKind.PROPS, tuple(sorted(gs, key=lambda g: g.name)))
        for gs in merged.values()
    ]


def _saw(w: Write, previous: Write) -> bool:
    """Whether ``w`` can have been made after ``previous`` (it started from its value),
    or made the same value: either way, no conflict between them."""
    return same_value(w.old, previous.new) or same_value(w.new, previous.new)


def _group(name: str, base: Value, run: list[Write]) -> tuple[ConcurrentWrites, set[int]]:
    return ConcurrentWrites(name, base, tuple(_choice(w) for w in run)), {w.seq for w in run}


def _unseen_by_deletes(
    rtype: str, ruuid: str, props: dict[str, list[Write]], deletes: list[Write]
) -> list[Conflict[ConcurrentWrites]]:
    """A deleted record: each property whose last value no delete started from (no
    deleter saw it) is a write the delete overrode unseen."""
    last_delete = max(deletes, key=lambda w: (w.stamp.hlc, w.stamp.origin))
    seen: dict[str, list[Value]] = defaultdict(list)
    for d in deletes:
        if d.name != RECORD:
            seen[d.name].append(d.old)
    lost = []
    for name, history in sorted(props.items()):
        last = history[-1]
        if last.new is None or any(same_value(old, last.new) for old in seen[name]):
            continue
        olds = [d.old for d in deletes if d.name == name and d.seq == last_delete.seq]
        base = olds[0] if olds else None
        lost.append(ConcurrentWrites(name, base, (_choice(last), Choice(None, last_delete.stamp))))
    return [Conflict(rtype, ruuid, ConflictKind.DELETE, tuple(lost))] if lost else []
