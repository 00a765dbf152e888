"""Workloads: who edits what, and when.

Before the run every peer holds ``records`` tickets (created on one peer, then cloned, as
a team that starts from a shared replica).  The first ``hot_records`` of them are hot.
During the run, ``writers`` random peers each make ``edits_per_writer`` edits at uniform
random times within ``duration_s``.  Each edit is, by a draw per edit:

* with probability ``conflict_rate``: an update of a random hot record, which every
  writer edits, so concurrent updates conflict and must resolve (P5-P7);
* else with probability ``delete_rate``: a delete of a random record the writer holds
  live (not a hot one); two writers deleting the same record concurrently is a conflict
  too;
* otherwise: a create.

The whole plan is drawn from the seed before the run starts, so it does not depend on
how the run goes; only a delete's target is chosen at the time, among what the writer
holds then.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from p2p_prophet.sim.peer import SimPeer
from p2p_prophet.sync.local import transfer

RTYPE = "ticket"
Kind = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class PlannedEdit:
    at: float  # virtual seconds after the workload starts
    writer: int  # index into the peers
    kind: Kind
    hot: int  # which hot record (for updates)


@dataclass(frozen=True)
class Workload:
    writers: int = 1
    edits_per_writer: int = 10
    records: int = 20
    hot_records: int = 2
    conflict_rate: float = 0.0
    delete_rate: float = 0.0
    duration_s: float = 60.0

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> Workload:
        values = {k: table[k] for k in cls.__dataclass_fields__ if k in table}
        workload = cls(**values)
        if workload.conflict_rate and workload.hot_records > workload.records:
            raise ValueError("hot_records cannot exceed records")
        return workload

    def plan(self, peers: int, rng: random.Random) -> list[PlannedEdit]:
        writers = rng.sample(range(peers), min(self.writers, peers))
        hot = max(1, min(self.hot_records, self.records))
        edits = []
        for writer in writers:
            for _ in range(self.edits_per_writer):
                at = rng.uniform(0, self.duration_s)
                draw = rng.random()
                kind: Kind = "create"
                if self.records and draw < self.conflict_rate:
                    kind = "update"
                elif draw < self.conflict_rate + self.delete_rate:
                    kind = "delete"
                edits.append(PlannedEdit(at, writer, kind, rng.randrange(hot)))
        return sorted(edits, key=lambda e: (e.at, e.writer))


def preload(peers: list[SimPeer], count: int) -> list[str]:
    """``count`` records created on the first peer and cloned to all; their uuids."""
    if count == 0:
        return []
    first = peers[0]
    with first.replica.edits() as batch:
        uuids = [
            batch.create(RTYPE, {"summary": f"shared {i}", "status": "open"}) for i in range(count)
        ]
    for peer in peers[1:]:
        transfer(peer.replica, first.replica)
    return uuids


def apply(
    edit: PlannedEdit, peer: SimPeer, shared: list[str], hot: int, rng: random.Random, serial: int
) -> str:
    """Make ``edit`` on ``peer``; returns what it did (a delete with nothing left to
    delete becomes a create)."""
    if edit.kind == "update" and shared:
        target = shared[edit.hot % hot]
        row = peer.replica.main.find_record(RTYPE, target)
        if row is not None and row.live:
            peer.edit(RTYPE, {"status": f"{peer.name}-{serial}"}, uuid=target)
            return "update"
    if edit.kind == "delete":
        candidates = shared[hot:] + peer.created
        while candidates:
            target = candidates.pop(rng.randrange(len(candidates)))
            if peer.delete(RTYPE, target):
                return "delete"
    peer.created.append(peer.edit(RTYPE, {"summary": f"by {peer.name} #{serial}"}))
    return "create"
