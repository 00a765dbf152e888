"""Scheduled partitions and laptop churn, as tasks on the virtual clock.

* A partition (``[[network.partitions]]``) splits the network at ``at_s``: a random
  ``fraction`` of the peers (default one half), or the listed ``nodes``, on one side and
  everyone else on the other.  Links across the split refuse connections until
  ``heal_s`` (never, if absent).  Several partitions may overlap.
* Churn (``[churn]``) puts laptops to sleep and wakes them.  Each peer alternates awake
  and asleep spells drawn from exponential distributions with means ``mean_awake_s`` and
  ``mean_asleep_s``; starting asleep with probability ``asleep_fraction``, which is then
  also the long-run fraction asleep at any moment.  Given the fraction and one mean, the
  other mean follows.  Churn stops when the run stops (when all have converged).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import trio

from p2p_prophet.sim.peer import SimPeer
from p2p_prophet.sim.transport import Conditions


@dataclass(frozen=True)
class Partition:
    at_s: float
    heal_s: float | None
    side: frozenset[str]


def plan_partitions(
    tables: list[dict[str, Any]], names: list[str], rng: random.Random
) -> list[Partition]:
    partitions = []
    for table in tables:
        if "nodes" in table:
            side = frozenset(names[int(i)] for i in table["nodes"] if 0 <= int(i) < len(names))
        else:
            count = round(float(table.get("fraction", 0.5)) * len(names))
            side = frozenset(rng.sample(names, count))
        heal = table.get("heal_s")
        partitions.append(
            Partition(float(table["at_s"]), None if heal is None else float(heal), side)
        )
    return partitions


async def run_partition(conditions: Conditions, partition: Partition, start: float) -> None:
    await trio.sleep_until(start + partition.at_s)
    conditions.partitions.append(partition.side)
    if partition.heal_s is None:
        return
    await trio.sleep_until(start + partition.heal_s)
    conditions.partitions.remove(partition.side)


@dataclass(frozen=True)
class Churn:
    asleep_fraction: float = 0.0
    mean_awake_s: float = 0.0
    mean_asleep_s: float = 0.0

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> Churn:
        fraction = float(table.get("asleep_fraction", 0.0))
        awake = float(table.get("mean_awake_s", 0.0))
        asleep = float(table.get("mean_asleep_s", 0.0))
        if fraction <= 0:
            return cls()
        if not awake and not asleep:
            asleep = 60.0
        if not asleep:
            asleep = awake * fraction / (1 - fraction)
        if not awake:
            awake = asleep * (1 - fraction) / fraction
        return cls(fraction, awake, asleep)

    @property
    def active(self) -> bool:
        return self.asleep_fraction > 0


def initially_asleep(churn: Churn, peers: list[SimPeer], rng: random.Random) -> set[str]:
    return {p.name for p in peers if churn.active and rng.random() < churn.asleep_fraction}


async def run_churn(churn: Churn, peer: SimPeer, rng: random.Random, nursery: trio.Nursery) -> None:
    """Alternate ``peer`` between awake and asleep spells, forever (until cancelled)."""
    while True:
        if peer.asleep:
            await trio.sleep(rng.expovariate(1 / churn.mean_asleep_s))
            peer.wake(nursery)
        else:
            await trio.sleep(rng.expovariate(1 / churn.mean_awake_s))
            peer.sleep()
