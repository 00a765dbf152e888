"""A native replica as the gateway to a foreign one: pull and push (docs/foreign.md).

**Pull** reads every item of the foreign store and, in one SQLite transaction of the
gateway's replica, turns what changed since the last sync into the gateway's own edits
and records the new state under the foreign replica's uuid.  An item whose version is the
one last synced (pulled, or written by our own push) is skipped: that is how our pushes
are not echoed back.  An item that changed is compared field by field with the
properties it had then, so only real foreign changes become edits.

**Push** finds the records touched by changesets the foreign replica has not been given
(above *its* merge tickets, never the gateway's), and for each writes to the foreign
store the properties that differ from what that store last had.  Each item's new state
is recorded as soon as the store has taken it, so a push cut short (a refused write, a
killed process) leaves the state true for what was written; the foreign tickets move only
when every write went through, so the next push retries the rest.

The gateway's own merge tickets and log are never written by a push, and pull writes
only its own edits: the foreign state is separate (P9).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2p_prophet.clock import unpack
from p2p_prophet.foreign.adapter import Adapter, ForeignError, Item
from p2p_prophet.model import ChangeSet, Value, is_uuid, new_uuid, same_value
from p2p_prophet.store import Replica
from p2p_prophet.store.database import RecordRow, StoredProp
from p2p_prophet.store.foreign_state import ForeignState, KnownItem

READ_CHUNK = 500


@dataclass
class ForeignResult:
    """What a pull made in the gateway, or a push made in the foreign store."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    ours: int = 0  # pull: items left as our own push wrote them (not echoed back)
    skipped: list[str] = field(default_factory=list)  # why some items were left alone

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "ours": self.ours,
            "skipped": self.skipped,
        }


def open_state(replica: Replica, adapter: Adapter) -> ForeignState:
    return ForeignState.register(replica.main, adapter.uuid, adapter.kind, adapter.location)


def pull(replica: Replica, adapter: Adapter, items: list[Item] | None = None) -> ForeignResult:
    """Bring the foreign store's changes since the last sync into ``replica``
    (``items``: the store's items, if the caller has just read them)."""
    if items is None:
        items = adapter.items()  # read first: a broken store fails before any write
    result = ForeignResult()
    with replica.main.transaction():
        state = open_state(replica, adapter)
        known = state.items()
        listed = {item.foreign_id for item in items}
        with replica.edits() as batch:
            for item in items:
                before = known.get(item.foreign_id)
                if before is not None and before.version == item.version:
                    if before.pushed:
                        result.ours += 1  # our own push wrote this version: no echo
                    else:
                        result.unchanged += 1
                    continue
                props = adapter.to_props(item)
                if before is None:
                    if item.deleted:
                        continue  # deleted before we ever saw it: nothing to bring
                    rtype = adapter.record_type
                    adopted = _adoptable(replica, rtype, item)
                    if adopted is not None:
                        # A task another gateway of this database pushed, under the
                        # record's own uuid: the same record, not a new one.  If the
                        # record is deleted here, delete wins: a push deletes the task.
                        record_uuid = item.foreign_id
                        newer = (
                            _newer_there(
                                replica.main.props(adopted.rid), props, item, adapter.properties
                            )
                            if adopted.live
                            else {}
                        )
                        if newer and batch.update(rtype, record_uuid, newer):
                            result.updated += 1
                        else:
                            result.unchanged += 1
                    else:
                        record_uuid = item.foreign_id if is_uuid(item.foreign_id) else new_uuid()
                        batch.create(rtype, props, record_uuid)
                        result.created += 1
                else:
                    rtype, record_uuid = before.record_type, before.record_uuid
                    row = replica.main.find_record(rtype, record_uuid)
                    live = row is not None and row.live
                    if item.deleted:
                        if live:
                            batch.delete(rtype, record_uuid)
                            result.deleted += 1
                    elif not live:
                        # Deleted here and changed there: delete wins (P6), as it would
                        # between two native replicas.
                        result.skipped.append(
                            f"{adapter.kind} item {item.foreign_id} changed, but its "
                            f"record {record_uuid} is deleted here"
                        )
                    elif batch.update(rtype, record_uuid, _changes(before.seen, props)):
                        result.updated += 1
                    else:
                        result.unchanged += 1
                state.remember(
                    item.foreign_id, rtype, record_uuid, item.version, props, pushed=False
                )
            for gone in sorted(set(known) - listed) if adapter.purges else ():
                # Purged from the store (Taskwarrior's `purge`): the record goes too.
                before = known[gone]
                row = replica.main.find_record(before.record_type, before.record_uuid)
                if row is not None and row.live:
                    batch.delete(before.record_type, before.record_uuid)
                    result.deleted += 1
    return result


def push(replica: Replica, adapter: Adapter) -> ForeignResult:
    """Write to the foreign store what ``replica`` has that it lacks."""
    if adapter.read_only:
        raise ForeignError(
            f"{adapter.kind}:{adapter.location} is read-only here: pull from it, never push"
        )
    items = {item.foreign_id: item for item in adapter.items()}
    state = open_state(replica, adapter)
    db = replica.main
    target = db.tickets()  # what the foreign replica holds once this push is through
    by_record = {(k.record_type, k.record_uuid): k for k in state.items().values()}
    result = ForeignResult()
    for rtype, record_uuid in _touched(replica, state.tickets(), adapter.record_type):
        row = db.find_record(rtype, record_uuid)
        live = row is not None and row.live
        props = {} if row is None or not live else _mapped_props(replica, row, adapter)
        known = by_record.get((rtype, record_uuid))
        current = None if known is None else items.get(known.foreign_id)
        if known is None or current is None:
            if not live:
                continue
            if known is not None:
                result.skipped.append(
                    f"{rtype} {record_uuid}: its {adapter.kind} item {known.foreign_id} is gone "
                    "from the store; it is not created again"
                )
                continue
            written = adapter.create(record_uuid, props)
            result.created += 1
        elif not live:
            if current.deleted:
                result.unchanged += 1
                continue
            written = adapter.delete(current)
            result.deleted += 1
        else:
            changed = _changes(known.seen, props)
            if not changed:
                result.unchanged += 1
                continue
            written = adapter.update(current, changed)
            if written.version == current.version:
                result.unchanged += 1
            else:
                result.updated += 1
        _remember_written(state, adapter, rtype, record_uuid, known, current, written)
    state.set_tickets(target)
    return result


def clone(
    source: Adapter, path: Path, *, create: Callable[[Path], Replica] = Replica.init
) -> tuple[Replica, ForeignResult]:
    """A new replica (a new database, made by ``create``: the CLI makes one with members)
    at ``path`` holding what ``source`` holds.  If ``source`` cannot be read, nothing is
    left at ``path``."""
    items = source.items()  # a missing program or a broken store fails before anything exists
    replica = create(path)
    try:
        return replica, pull(replica, source, items)
    except BaseException:
        replica.close()
        shutil.rmtree(path, ignore_errors=True)
        raise


# -- helpers -------------------------------------------------------------------------------


def _changes(seen: dict[str, Value], now: dict[str, Value]) -> dict[str, Value]:
    """The properties of ``now`` that differ from ``seen`` (None: no longer there)."""
    changed: dict[str, Value] = {
        name: value for name, value in now.items() if not same_value(seen.get(name), value)
    }
    changed.update({name: None for name in seen if name not in now})
    return changed


def _adoptable(replica: Replica, rtype: str, item: Item) -> RecordRow | None:
    """The record ``item`` already is (a store using our uuids, where another gateway
    of this database put it), live or deleted; None if there is none."""
    if not is_uuid(item.foreign_id):
        return None
    return replica.main.find_record(rtype, item.foreign_id)


def _newer_there(
    stored: dict[str, StoredProp], there: dict[str, Value], item: Item, names: frozenset[str]
) -> dict[str, Value]:
    """Where an adopted item and its record differ, the item's values that were written
    after the record's (wall-clock time of the item's last change against each
    property's stamp: the larger wins, as between native replicas).  An item with no
    time of its own wins nowhere: the record's values stay, and a push sends them."""
    if item.modified_ms is None:
        return {}
    newer: dict[str, Value] = {}
    for name in sorted(names):
        mine = stored.get(name)
        if same_value(None if mine is None else mine.value, there.get(name)):
            continue
        written_ms = 0 if mine is None else unpack(mine.stamp.hlc)[0]
        if item.modified_ms > written_ms:
            newer[name] = there.get(name)
    return newer


def _mapped_props(replica: Replica, row: RecordRow, adapter: Adapter) -> dict[str, Value]:
    """The record's live properties that ``adapter`` maps (a push looks at no others)."""
    return {
        name: p.value
        for name, p in replica.main.props(row.rid).items()
        if p.value is not None and name in adapter.properties
    }


def _touched(replica: Replica, tickets: dict[str, int], rtype: str) -> list[tuple[str, str]]:
    """The records of ``rtype`` changed by changesets above ``tickets``, sorted by
    type and uuid."""
    touched: set[tuple[str, str]] = set()
    for origin in replica.main.tickets():
        for row in replica.main.origin_run(origin, tickets.get(origin, 0), READ_CHUNK):
            for change in ChangeSet.decode(row.body).changes:
                if change.type == rtype:
                    touched.add((change.type, change.uuid))
    return sorted(touched)


def _remember_written(
    state: ForeignState,
    adapter: Adapter,
    rtype: str,
    record_uuid: str,
    known: KnownItem | None,
    before: Item | None,
    written: Item,
) -> None:
    """Record the item our push wrote.  If the store had changed it since the last sync
    (a change not pulled yet), keep the old version and merge only the written fields
    into what was seen, so the next pull still finds that foreign change."""
    seen = adapter.to_props(written)
    if known is not None and before is not None and before.version != known.version:
        had = adapter.to_props(before)
        merged = dict(known.seen)
        for name in set(seen) | set(had):
            if not same_value(had.get(name), seen.get(name)):  # a field this push wrote
                if seen.get(name) is None:
                    merged.pop(name, None)
                else:
                    merged[name] = seen[name]
        state.remember(written.foreign_id, rtype, record_uuid, known.version, merged, pushed=False)
        return
    state.remember(written.foreign_id, rtype, record_uuid, written.version, seen, pushed=True)
