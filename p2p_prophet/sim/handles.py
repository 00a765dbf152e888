"""A budget of open SQLite databases, for simulations with more peers than file handles.

Each replica is two SQLite databases in WAL mode, three open files each; the open-file
limit (often 20,000, not raisable without privileges) then caps a simulation at about
3,000 peers.  The budget keeps at most ``limit`` databases open: each use marks one most
recently used, and going over the limit parks (closes) the least recently used one that
is not inside a transaction.  A parked database reopens itself on its next use.  Peers
that are busy stay open; the quiet majority costs no handles.
"""

from __future__ import annotations

from collections import OrderedDict

from p2p_prophet.store.database import Database
from p2p_prophet.store.replica import Replica


class HandleBudget:
    def __init__(self, limit: int) -> None:
        if limit < 2:
            raise ValueError("a handle budget needs room for at least one replica")
        self.limit = limit
        self.open: OrderedDict[int, Database] = OrderedDict()
        self.opens = 0  # databases opened (or reopened) under the budget

    def watch(self, replica: Replica) -> None:
        for db in (replica.main, replica.resolutions):
            db.on_use = self._used
            self._used(db)

    def _used(self, db: Database) -> None:
        key = id(db)
        if key in self.open:
            self.open.move_to_end(key)
            return
        self.opens += 1
        self.open[key] = db
        kept: list[Database] = []
        while self.open and len(self.open) + len(kept) > self.limit:
            _, oldest = self.open.popitem(last=False)
            if oldest is db or not oldest.park():
                kept.append(oldest)  # in use right now: stays open
        for busy in kept:
            self.open[id(busy)] = busy
