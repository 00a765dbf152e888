"""Fossil ticket databases as foreign replicas, through the real ``fossil`` program.

``fossil:PATH`` names a ``.fossil`` repository.  Reading runs ``fossil sql --readonly``
on its ``ticket`` table (JSON output); writing runs ``fossil ticket add`` and ``fossil
ticket change``, which make ticket artifacts exactly as the web UI does.  Fossil needs to
know who writes: it uses ``$USER`` (or the repository's default user), which must be a
user of that repository.

The foreign replica's uuid comes from the repository's project code, so a repository
keeps its identity when it is moved or cloned.

The mapping onto record properties (docs/foreign.md):

=================  ===========================================================
record property    Fossil ticket field
=================  ===========================================================
summary            title
status             status, in lower case ("Open" <-> "open"); pushing capitalises
                   each word ("review" -> "Review")
(record deleted)   status "Deleted" (Fossil cannot delete a ticket)
priority           priority, in lower case, like status
type, severity,    the fields of the same names, as Fossil holds them
resolution,
subsystem, foundin
=================  ===========================================================
"""

from __future__ import annotations

import json
import re
import uuid as uuidlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2p_prophet.foreign.adapter import ForeignError, Item
from p2p_prophet.foreign.programs import run
from p2p_prophet.model import Value

NAMESPACE = uuidlib.UUID("3d5e8a0c-9b7f-4f1e-8c2d-6a4b1e9f0c37")  # ours, for uuid5
LOWERED = ("status", "priority")  # Fossil capitalises these, records keep lower case
AS_IS = ("type", "severity", "resolution", "subsystem", "foundin")
COLUMNS = ("tkt_uuid", "tkt_mtime", "title", *LOWERED, *AS_IS)
DELETED = "Deleted"
ADDED = re.compile(r"ticket add succeeded for ([0-9a-f]{40,64})")


class Fossil:
    kind = "fossil"
    properties = frozenset(
        {"summary", "status", "priority", "type", "severity", "resolution", "subsystem", "foundin"}
    )
    # Fossil never deletes a ticket; one missing from a listing is a clone (same project
    # code, same foreign replica) that has not got it yet, not a deletion.
    purges = False

    def __init__(self, location: str, *, record_type: str = "ticket", read_only: bool = False):
        self.path = Path(location).expanduser().resolve()
        self.location = str(self.path)
        self.record_type = record_type
        self.read_only = read_only
        self._uuid: str | None = None

    @property
    def uuid(self) -> str:
        if self._uuid is None:
            rows = self._sql("SELECT value FROM config WHERE name = 'project-code'")
            if not rows or not isinstance(rows[0].get("value"), str):
                raise ForeignError(f"fossil:{self.location}: the repository has no project code")
            self._uuid = str(uuidlib.uuid5(NAMESPACE, f"fossil:{rows[0]['value']}"))
        return self._uuid

    # -- reading ---------------------------------------------------------------------------

    def items(self) -> list[Item]:
        rows = self._sql(f"SELECT {', '.join(COLUMNS)} FROM ticket ORDER BY tkt_id")
        return [_item(row) for row in rows]

    def to_props(self, item: Item) -> dict[str, Value]:
        f = item.fields
        props: dict[str, Value] = {}
        if isinstance(f.get("title"), str) and f["title"]:
            props["summary"] = f["title"]
        for name in LOWERED:
            if isinstance(f.get(name), str) and f[name]:
                props[name] = f[name].lower()
        for name in AS_IS:
            if isinstance(f.get(name), str) and f[name]:
                props[name] = f[name]
        return props

    # -- writing ---------------------------------------------------------------------------

    def create(self, record_uuid: str, props: Mapping[str, Value]) -> Item:
        fields = _fields(props)
        fields.setdefault("status", "Open")
        out = self._fossil(
            "ticket", "add", *_pairs(fields), what=f"adding {record_uuid} to fossil:{self.location}"
        )
        found = ADDED.search(out)
        if found is None:
            raise ForeignError(f"fossil:{self.location}: `fossil ticket add` said: {out.strip()}")
        return self._read(found.group(1))

    def update(self, item: Item, changed: Mapping[str, Value]) -> Item:
        wanted = _fields(changed, clear=True)
        different = {k: v for k, v in wanted.items() if (item.fields.get(k) or "") != v}
        if not different:
            return item
        self._change(item, different)
        return self._read(item.foreign_id)

    def delete(self, item: Item) -> Item:
        self._change(item, {"status": DELETED})
        return self._read(item.foreign_id)

    # -- the program -------------------------------------------------------------------------

    def _change(self, item: Item, fields: dict[str, str]) -> None:
        self._fossil(
            "ticket",
            "change",
            item.foreign_id,
            *_pairs(fields),
            what=f"changing ticket {item.foreign_id} in fossil:{self.location}",
        )

    def _read(self, tkt_uuid: str) -> Item:
        rows = self._sql(
            f"SELECT {', '.join(COLUMNS)} FROM ticket WHERE tkt_uuid = '{tkt_uuid}'"
        )  # tkt_uuid is hex, checked by ADDED or read from the table itself
        if len(rows) != 1:
            raise ForeignError(f"fossil:{self.location}: ticket {tkt_uuid} is not in the table")
        return _item(rows[0])

    def _sql(self, query: str) -> list[dict[str, Any]]:
        if not self.path.is_file():
            raise ForeignError(f"fossil:{self.location}: no Fossil repository there")
        out = self._fossil(
            "sql",
            "--readonly",
            stdin=f".mode json\n{query};\n",
            what=f"reading fossil:{self.location}",
        )
        try:
            rows = json.loads(out) if out.strip() else []
        except json.JSONDecodeError as exc:
            raise ForeignError(
                f"reading fossil:{self.location}: `fossil sql` gave no JSON ({exc.msg})"
            ) from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ForeignError(f"reading fossil:{self.location}: unexpected rows from `fossil sql`")
        return rows

    def _fossil(self, *args: str, what: str, stdin: str | None = None) -> str:
        argv = ["fossil", *args, "-R", self.location]
        try:
            return run(argv, what=what, package="fossil", stdin=stdin)
        except ForeignError as exc:
            if "determine user" in str(exc) or "no such user" in str(exc):
                raise ForeignError(
                    f"{exc} (Fossil records who makes each change: set USER to one of "
                    f"`fossil user list -R {self.location}`, or make one the default with "
                    "`fossil user default`)"
                ) from None
            raise


def _item(row: dict[str, Any]) -> Item:
    fields = {k: v for k, v in row.items() if k != "tkt_uuid" and v not in (None, "")}
    return Item(str(row["tkt_uuid"]), fields, deleted=fields.get("status") == DELETED)


def _fields(props: Mapping[str, Value], *, clear: bool = False) -> dict[str, str]:
    """Fossil's fields for ``props``; with ``clear``, None values become empty fields."""
    fields: dict[str, str] = {}
    for name, value in props.items():
        if name not in Fossil.properties:
            continue  # not mapped (a property named "title" is not the title)
        column = "title" if name == "summary" else name
        if value is None:
            if clear:
                fields[column] = ""
            continue
        text = str(value)
        fields[column] = _capitalised(text) if column in LOWERED else text
    return fields


def _capitalised(text: str) -> str:
    return "_".join(part[:1].upper() + part[1:] for part in text.split("_"))


def _pairs(fields: dict[str, str]) -> list[str]:
    """``-q`` and the ``FIELD VALUE`` arguments in its quoted form."""
    return ["-q", *(part for name in sorted(fields) for part in (name, _quoted(fields[name])))]


QUOTES = {
    "\\": "\\\\",
    " ": "\\s",
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\f": "\\f",
    "\v": "\\v",
    "\0": "\\0",
}


def _quoted(value: str) -> str:
    """``value`` in the encoding of ``fossil ticket ... --quote``.  A value starting with
    "-" would be taken for an option; escaped ("\\-", which decodes to "-") it is not."""
    text = "".join(QUOTES.get(ch, ch) for ch in value)
    return "\\" + text if text.startswith("-") else text
