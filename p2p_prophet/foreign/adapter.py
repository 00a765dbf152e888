"""The gateway contract: what an adapter to a foreign store provides.

A foreign replica is a store that is not ours (a Taskwarrior task list, a Fossil ticket
database).  Its adapter presents it as a set of *items*, each with a stable foreign id and
its fields as the store holds them, and maps fields onto record properties and back.
The gateway (``gateway.py``) does the rest: which items changed since the last sync, which
records the foreign store lacks, and the state it keeps under the foreign replica's uuid.

Adapters run the store's own program (``task``, ``fossil``) and never touch its files
directly, so whatever the store checks on a write, it still checks.  Every failure --
the program missing, a store that is not one, a write the program refuses -- is raised as
:class:`ForeignError` with the program's own message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from p2p_prophet.errors import ProphetError
from p2p_prophet.model import Value


class ForeignError(ProphetError):
    """A foreign store could not be read or written; nothing was recorded for it."""


@dataclass(frozen=True)
class Item:
    """One item of a foreign store as it is now.  ``fields``: the store's own fields
    (JSON values), without the ones that change by themselves (Taskwarrior's urgency and
    display id).  ``deleted``: the store marks it deleted (it may still list it).
    ``modified_ms``: the wall-clock time (Unix ms) of its last change, if the store
    keeps one."""

    foreign_id: str
    fields: Mapping[str, Any]
    deleted: bool = False
    modified_ms: int | None = None  # when it last changed, where the store says

    @property
    def version(self) -> str:
        """A hash of the fields: equal versions, nothing changed in between."""
        blob = json.dumps(self.fields, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


class Adapter(Protocol):
    """One foreign store.  ``uuid`` names it as a replica (stable across runs and moves
    where the store has an id of its own); ``record_type`` is the type its items become."""

    kind: str
    location: str
    record_type: str
    read_only: bool
    properties: frozenset[str]  # the record properties the mapping knows
    purges: bool  # an item can vanish from the store (then its record is deleted)

    @property
    def uuid(self) -> str: ...

    def items(self) -> list[Item]:
        """Every item the store holds now (deleted ones too, where it keeps them)."""
        ...

    def to_props(self, item: Item) -> dict[str, Value]:
        """The item's fields as record properties (only the ones the mapping knows)."""
        ...

    def create(self, record_uuid: str, props: Mapping[str, Value]) -> Item:
        """Create an item holding ``props``; return it as the store now has it."""
        ...

    def update(self, item: Item, changed: Mapping[str, Value]) -> Item:
        """Set the fields behind ``changed`` (None: cleared) on ``item``, writing nothing
        if the store already holds those values; return the item as it is now."""
        ...

    def delete(self, item: Item) -> Item:
        """Mark ``item`` deleted in the store's own way; return it as it is now."""
        ...
