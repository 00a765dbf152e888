"""The state a gateway keeps for one foreign replica, under that replica's uuid (P9).

Three things, in tables of the gateway's ``replica.db`` (schema version 2):

* the foreign replica's own merge tickets: how much of this replica's log it has been
  given.  They are never the gateway's tickets: pushing to Fossil reads Fossil's tickets,
  not what the gateway pulled from Taskwarrior (Prophet's bug, P9);
* the mapping between foreign ids and record uuids;
* per item, the version last synced, whether our push wrote it (so a pull does not echo
  our own write back as a foreign change), and the properties it had then (so a pull sends
  only what really changed in the foreign store).

Everything goes through the replica's database connection, so a pull records the foreign
state in the same SQLite transaction as the changesets it makes: a killed pull leaves
neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cbor2

from p2p_prophet.model import Value, canonical
from p2p_prophet.store.database import Database


@dataclass(frozen=True)
class KnownItem:
    foreign_id: str
    record_type: str
    record_uuid: str
    version: str
    seen: dict[str, Value]
    pushed: bool


class ForeignState:
    """The state handle of foreign replica ``uuid`` in ``db`` (a replica's main database).
    Writes join the caller's transaction, or are one each."""

    def __init__(self, db: Database, uuid: str) -> None:
        self.db = db
        self.uuid = uuid

    @classmethod
    def register(cls, db: Database, uuid: str, kind: str, location: str) -> ForeignState:
        with db.transaction():
            db.conn.execute(
                "INSERT INTO foreign_replicas (uuid, kind, location) VALUES (?, ?, ?) "
                "ON CONFLICT (uuid) DO UPDATE SET location = excluded.location",
                (uuid, kind, location),
            )
        return cls(db, uuid)

    # -- merge tickets -------------------------------------------------------------------

    def tickets(self) -> dict[str, int]:
        rows = self.db.conn.execute(
            "SELECT origin, seq FROM foreign_tickets WHERE foreign_uuid = ?", (self.uuid,)
        )
        return dict(rows.fetchall())

    def set_tickets(self, tickets: Mapping[str, int]) -> None:
        with self.db.transaction():
            self.db.conn.executemany(
                "INSERT INTO foreign_tickets (foreign_uuid, origin, seq) VALUES (?, ?, ?) "
                "ON CONFLICT (foreign_uuid, origin) DO UPDATE SET seq = max(seq, excluded.seq)",
                [(self.uuid, origin, seq) for origin, seq in tickets.items()],
            )

    # -- items ---------------------------------------------------------------------------

    def items(self) -> dict[str, KnownItem]:
        """Every item known, by foreign id."""
        rows = self.db.conn.execute(
            "SELECT foreign_id, record_type, record_uuid, version, seen, pushed "
            "FROM foreign_items WHERE foreign_uuid = ?",
            (self.uuid,),
        )
        return {row[0]: _known(row) for row in rows}

    def remember(
        self,
        foreign_id: str,
        record_type: str,
        record_uuid: str,
        version: str,
        seen: Mapping[str, Value],
        *,
        pushed: bool,
    ) -> None:
        """Record ``foreign_id`` as ``record_uuid`` at ``version`` with properties ``seen``;
        ``pushed``: our push wrote this version."""
        with self.db.transaction():
            self.db.conn.execute(
                "INSERT INTO foreign_items (foreign_uuid, foreign_id, record_type, "
                "record_uuid, version, seen, pushed) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (foreign_uuid, foreign_id) DO UPDATE SET "
                "version = excluded.version, seen = excluded.seen, pushed = excluded.pushed",
                (
                    self.uuid,
                    foreign_id,
                    record_type,
                    record_uuid,
                    version,
                    canonical(dict(seen)),
                    int(pushed),
                ),
            )


def _known(row: tuple[str, str, str, str, bytes, int]) -> KnownItem:
    foreign_id, rtype, ruuid, version, seen, pushed = row
    return KnownItem(foreign_id, rtype, ruuid, version, cbor2.loads(seen), bool(pushed))
