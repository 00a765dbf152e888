"""What a run measured: convergence, the epidemic curve, cost, and why peers differ.

The epidemic curve follows up to :data:`CURVE_SAMPLE` updates (changesets made by the
workload, drawn with the run's seed): for each, the virtual time each peer first held
it, from the tickets each peer records as they rise (:meth:`SimPeer.observe`).  Two
views come from that:

* ``epidemic``: at each age (seconds since the update was made), the mean fraction of
  peers holding it -- the classic S-curve of an epidemic;
* ``coverage``: at each moment of the run, the fraction of (peer, update) pairs held
  among updates already made -- partitions and heals show up here.
"""

from __future__ import annotations

import math
import random
import statistics
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from p2p_prophet.sim.peer import SimPeer

CURVE_SAMPLE = 100
CURVE_POINTS = 60


@dataclass(frozen=True)
class Update:
    origin: str
    seq: int
    made_at: float


def converged(peers: list[SimPeer]) -> bool:
    """Every peer holds the same changesets and resolutions (equal merge tickets)."""
    first = peers[0].replica
    want = first.main.tickets(), first.resolutions.tickets()
    return all((p.replica.main.tickets(), p.replica.resolutions.tickets()) == want for p in peers)


def arrival_times(updates: list[Update], peers: list[SimPeer]) -> list[list[float | None]]:
    """For each update, the time each peer first held it (None: never)."""
    return [[p.held_since(u.origin, u.seq) for p in peers] for u in updates]


def epidemic_curve(
    updates: list[Update], arrivals: list[list[float | None]], horizon: float
) -> dict[str, list[float]]:
    """Mean fraction of peers holding an update, by the update's age."""
    if not updates:
        return {"age_s": [], "fraction": []}
    delays = [
        sorted(t - u.made_at for t in times if t is not None)
        for u, times in zip(updates, arrivals, strict=True)
    ]
    n = len(arrivals[0])
    longest = max((d[-1] for d in delays if d), default=0.0)
    ages = _grid(min(longest, horizon))
    fraction = [statistics.fmean(_count_le(d, age) / n for d in delays) for age in ages]
    return {"age_s": [round(a, 3) for a in ages], "fraction": [round(f, 4) for f in fraction]}


def spread_times(
    updates: list[Update], arrivals: list[list[float | None]]
) -> dict[str, float | None]:
    """Mean time for an update to reach half, 90% and all of the peers."""
    result: dict[str, float | None] = {}
    for name, share in (("t50_s", 0.5), ("t90_s", 0.9), ("t100_s", 1.0)):
        reach = []
        for u, times in zip(updates, arrivals, strict=True):
            held = sorted(t for t in times if t is not None)
            need = max(1, math.ceil(share * len(times) - 1e-9))
            if len(held) >= need:
                reach.append(held[need - 1] - u.made_at)
        result[name] = round(statistics.fmean(reach), 3) if reach else None
    return result


def coverage_curve(
    updates: list[Update], arrivals: list[list[float | None]], end: float
) -> dict[str, list[float]]:
    """Fraction of (peer, update) pairs held among the updates made so far, over time."""
    if not updates:
        return {"t_s": [], "fraction": []}
    times = _grid(end)
    fraction = []
    for t in times:
        made = [a for u, a in zip(updates, arrivals, strict=True) if u.made_at <= t]
        if not made:
            fraction.append(0.0)
            continue
        held = sum(1 for a in made for x in a if x is not None and x <= t)
        fraction.append(held / (len(made) * len(made[0])))
    return {"t_s": [round(t, 3) for t in times], "fraction": [round(f, 4) for f in fraction]}


def sample_updates(updates: list[Update], rng: random.Random) -> list[Update]:
    if len(updates) <= CURVE_SAMPLE:
        return list(updates)
    return sorted(rng.sample(updates, CURVE_SAMPLE), key=lambda u: (u.made_at, u.origin))


def conflicts_and_resolutions(peers: list[SimPeer]) -> tuple[int, int, int]:
    """Distinct conflicts met anywhere (by fingerprint: each is answered in the
    resolution databases, minted or reused), distinct resolution changesets minted for
    them anywhere, and the most conflicts any peer lists (at convergence every peer
    lists the same: the list is a function of the changesets held)."""
    met: set[str] = set()
    resolutions: set[bytes] = set()
    listed = 0
    for peer in peers:
        met.update(str(r.props.get("fingerprint")) for r in peer.replica.resolutions.live_records())
        resolutions.update(peer.replica.main.resolution_ids())
        listed = max(listed, len(peer.replica.main.conflict_fingerprints()))
    return len(met), len(resolutions), listed


def diagnose(peers: list[SimPeer], names_by_origin: dict[str, str]) -> list[dict[str, Any]]:
    """Which peers differ from the union of what anyone holds, and why it may be."""
    held = [(p.replica.main.tickets(), p.replica.resolutions.tickets()) for p in peers]
    best: dict[str, int] = {}
    best_res: dict[str, int] = {}
    for tickets, res in held:
        for origin, seq in tickets.items():
            best[origin] = max(best.get(origin, 0), seq)
        for origin, seq in res.items():
            best_res[origin] = max(best_res.get(origin, 0), seq)
    report = []
    for peer, (tickets, res) in zip(peers, held, strict=True):
        lacking = {
            names_by_origin.get(o, o): best[o] - tickets.get(o, 0)
            for o in sorted(best)
            if tickets.get(o, 0) < best[o]
        }
        lacking_res = sum(best_res[o] - res.get(o, 0) for o in best_res)
        if not lacking and not lacking_res:
            continue
        why = []
        if peer.asleep:
            why.append("asleep")
        backing_off = [p.id for p in peer.scheduler.peers.peers.values() if p.failures]
        if backing_off:
            why.append(f"backing off from {len(backing_off)} of its peers")
        if not peer.scheduler.peers.peers:
            why.append("knows no awake peer")
        report.append(
            {
                "peer": peer.name,
                "lacks_changesets_from": lacking,
                "lacks_resolutions": lacking_res,
                "why": why or ["still catching up when the run ended"],
            }
        )
    return report


def per_peer(values: dict[str, int], peers: list[SimPeer]) -> list[int]:
    return [values.get(p.name, 0) for p in peers]


def _grid(end: float) -> list[float]:
    if end <= 0:
        return [0.0]
    return [end * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]


def _count_le(sorted_values: list[float], limit: float) -> int:
    return bisect_right(sorted_values, limit)
