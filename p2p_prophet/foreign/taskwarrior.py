"""Taskwarrior task lists as foreign replicas, through the real ``task`` program.

``taskwarrior:PATH`` names a Taskwarrior data directory (what ``TASKDATA`` or
``data.location`` would name).  Every call runs ``task`` with that directory, no user
configuration (``TASKRC=/dev/null``: the gateway must read the same fields whoever runs
it), no hooks, and no garbage collection or recurrence on reads (an export must not change
the store).  Reading is ``task export`` (JSON); writing is ``task import`` of one task at a
time, so a task Taskwarrior refuses is reported by name and the tasks before it stay
written and recorded.

The mapping onto record properties (docs/foreign.md):

=================  ===========================================================
record property    Taskwarrior
=================  ===========================================================
summary            description (required: a task without one is refused)
status             pending, waiting, recurring -> "open"; completed -> "closed".
                   Pushing: closed, done, completed, fixed, resolved, rejected,
                   verified -> completed; anything else makes a completed (or
                   deleted) task pending again, and leaves a waiting or recurring
                   task as it is
(record deleted)   status deleted
project            project
priority           H, M, L <-> "high", "medium", "low" (pushing: immediate and
                   critical -> H, zero -> L; another value is not sent, and the
                   task keeps its own priority)
due                due, as ISO 8601 ("2026-12-01T00:00:00Z"); a record whose due
                   is not an ISO 8601 date is refused, naming it
tags               tags, as one comma-separated text, sorted
=================  ===========================================================

A task's uuid is its record's uuid when the record came from here and vice versa, so a
task pushed and pulled back is the same record, and a repeated import is harmless.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from p2p_prophet.foreign.adapter import ForeignError, Item
from p2p_prophet.foreign.programs import run
from p2p_prophet.model import Value

NAMESPACE = uuidlib.UUID("6b1f4cf4-3d0e-4c62-9a8e-2f6c2b5f7a10")  # ours, for uuid5
# Fields Taskwarrior recomputes by itself: not part of an item's version.
VOLATILE = frozenset({"id", "urgency"})
CLOSED = frozenset({"closed", "done", "completed", "fixed", "resolved", "rejected", "verified"})
PRIORITY_IN = {"H": "high", "M": "medium", "L": "low"}
PRIORITY_OUT = {
    "high": "H",
    "immediate": "H",
    "critical": "H",
    "medium": "M",
    "low": "L",
    "zero": "L",
}
STAMP = "%Y%m%dT%H%M%SZ"  # Taskwarrior's date format in JSON


class Taskwarrior:
    kind = "taskwarrior"
    properties = frozenset({"summary", "status", "project", "priority", "due", "tags"})
    purges = True  # `task purge` removes deleted tasks for good

    def __init__(self, location: str, *, record_type: str = "ticket", read_only: bool = False):
        self.path = Path(location).expanduser().resolve()
        self.location = str(self.path)
        self.record_type = record_type
        self.read_only = read_only

    @property
    def uuid(self) -> str:
        # Taskwarrior keeps no id for a task list: the directory is its identity.
        return str(uuidlib.uuid5(NAMESPACE, f"taskwarrior:{self.location}"))

    # -- reading ---------------------------------------------------------------------------

    def items(self) -> list[Item]:
        if not self.path.is_dir():
            raise ForeignError(f"taskwarrior:{self.location}: no Taskwarrior data directory there")
        out = self._task("export", what=f"reading taskwarrior:{self.location}")
        try:
            tasks = json.loads(out or "[]")
        except json.JSONDecodeError as exc:
            raise ForeignError(
                f"reading taskwarrior:{self.location}: `task export` gave no JSON ({exc.msg})"
            ) from None
        if not isinstance(tasks, list) or not all(
            isinstance(t, dict) and isinstance(t.get("uuid"), str) for t in tasks
        ):
            raise ForeignError(f"reading taskwarrior:{self.location}: tasks without a uuid")
        return [_item(task) for task in tasks]

    def to_props(self, item: Item) -> dict[str, Value]:
        f = item.fields
        props: dict[str, Value] = {}
        if isinstance(f.get("description"), str):
            props["summary"] = f["description"]
        props["status"] = "closed" if f.get("status") == "completed" else "open"
        if isinstance(f.get("project"), str):
            props["project"] = f["project"]
        if f.get("priority") in PRIORITY_IN:
            props["priority"] = PRIORITY_IN[f["priority"]]
        if isinstance(f.get("due"), str):
            props["due"] = _iso(f["due"])
        tags = f.get("tags")
        if isinstance(tags, list) and tags:
            props["tags"] = ",".join(sorted(str(t) for t in tags))
        return props

    # -- writing ---------------------------------------------------------------------------

    def create(self, record_uuid: str, props: Mapping[str, Value]) -> Item:
        task: dict[str, Any] = {
            "uuid": record_uuid,
            "status": "pending",
            "entry": datetime.now(UTC).strftime(STAMP),
        }
        _apply(task, {"summary": props.get("summary"), **props}, record_uuid)
        return self._import(task)

    def update(self, item: Item, changed: Mapping[str, Value]) -> Item:
        task = dict(item.fields)
        _apply(task, changed, item.foreign_id)
        if task == dict(item.fields):
            return item
        return self._import(task)

    def delete(self, item: Item) -> Item:
        task = {**item.fields, "status": "deleted"}
        task.setdefault("end", datetime.now(UTC).strftime(STAMP))
        return self._import(task)

    # -- the program -------------------------------------------------------------------------

    def _import(self, task: dict[str, Any]) -> Item:
        """Import one task (a whole task: import replaces it) and read it back."""
        where = f"writing task {task['uuid']} to taskwarrior:{self.location}"
        self._task("import", "-", what=where, stdin=json.dumps([task]))
        out = self._task(f"uuid:{task['uuid']}", "export", what=where)
        try:
            [written] = json.loads(out)
        except (json.JSONDecodeError, ValueError):
            raise ForeignError(f"{where}: Taskwarrior took it but does not list it") from None
        return _item(written)

    def _task(self, *args: str, what: str, stdin: str | None = None) -> str:
        argv = [
            "task",
            "rc.verbose=nothing",
            "rc.confirmation=off",
            "rc.hooks=off",
            "rc.gc=off",
            "rc.recurrence=off",
            "rc.json.array=on",
            *args,
        ]
        env = {"TASKDATA": self.location, "TASKRC": "/dev/null"}
        return run(argv, what=what, package="taskwarrior", env=env, stdin=stdin)


def _item(task: dict[str, Any]) -> Item:
    fields = {k: v for k, v in task.items() if k not in VOLATILE}
    modified = None
    if isinstance(task.get("modified"), str):
        try:
            when = datetime.strptime(task["modified"], STAMP).replace(tzinfo=UTC)
            modified = int(when.timestamp() * 1000)
        except ValueError:
            pass
    return Item(
        str(task["uuid"]), fields, deleted=task.get("status") == "deleted", modified_ms=modified
    )


def _apply(task: dict[str, Any], props: Mapping[str, Value], uuid: str) -> None:
    """Set the Taskwarrior fields behind ``props`` on ``task`` (None clears)."""
    for name, value in props.items():
        if name == "summary":
            if not isinstance(value, str) or not value.strip():
                raise ForeignError(
                    f"record {uuid}: Taskwarrior needs a description, and its summary is "
                    f"{'empty' if value is not None else 'missing'}"
                )
            task["description"] = value
        elif name == "status":
            closed = isinstance(value, str) and value.lower() in CLOSED
            if closed and task.get("status") != "completed":
                task["status"] = "completed"
                task.setdefault("end", datetime.now(UTC).strftime(STAMP))
            elif not closed and task.get("status") in ("completed", "deleted", None):
                task["status"] = "pending"
                task.pop("end", None)
        elif name == "priority":
            if value is None:
                task.pop("priority", None)
            elif isinstance(value, str) and value.lower() in PRIORITY_OUT:
                task["priority"] = PRIORITY_OUT[value.lower()]
            # Another value has no Taskwarrior priority: the task keeps its own.
        elif name == "due":
            _set(task, "due", None if value is None else _stamp(value, uuid))
        elif name == "tags":
            tags = sorted({t.strip() for t in str(value).split(",") if t.strip()}) if value else []
            _set(task, "tags", tags or None)
        elif name == "project":
            _set(task, "project", None if value is None else str(value))


def _set(task: dict[str, Any], field: str, value: Any) -> None:
    if value is None:
        task.pop(field, None)
    else:
        task[field] = value


def _iso(stamp: str) -> str:
    try:
        return datetime.strptime(stamp, STAMP).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return stamp  # not Taskwarrior's format: keep it as it is


def _stamp(value: Value, uuid: str) -> str:
    """An ISO 8601 date (or date and time) as Taskwarrior's JSON date.  Taskwarrior's
    import crashes on anything else, so that is refused here, naming the record."""
    text = str(value)
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).strftime(STAMP)
    raise ForeignError(
        f"record {uuid}: due {text!r} is not a date Taskwarrior can take; use ISO 8601 "
        "(2026-12-01 or 2026-12-01T09:00:00Z)"
    )
