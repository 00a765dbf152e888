"""Running a scenario: N simulated peers on a topology, a workload, until convergence.

Everything runs in one trio process on virtual time (MockClock with autojump), so a
simulated hour takes as long as the CPU needs.  Every peer is a real replica on disk
running the real gossip scheduler, node app and ``sync/`` code over the in-memory
transport.  The same scenario with the same seed gives the same report, wall-clock
fields aside.
"""

from __future__ import annotations

import contextlib
import random
import resource
import tempfile
import time
import tomllib
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import trio
import trio.testing

from p2p_prophet.errors import ProphetError
from p2p_prophet.gossip import GossipConfig
from p2p_prophet.sim.peer import SimPeer
from p2p_prophet.sim.transport import LinkModel, SimNetwork
from p2p_prophet.store import Replica


class ScenarioError(ProphetError):
    """A scenario file that cannot be run as written."""


@dataclass(frozen=True)
class Scenario:
    seed: int = 1
    topology: dict[str, Any] = field(default_factory=lambda: {"kind": "complete", "n": 10})
    network: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    gossip: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Scenario:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"{path}: {exc}") from None
        known = {"seed", "topology", "network", "workload", "gossip", "run"}
        unknown = set(doc) - known
        if unknown:
            raise ScenarioError(f"{path}: unknown key {sorted(unknown)[0]!r}")
        return cls(**doc)


def build_topology(spec: dict[str, Any], seed: int) -> nx.Graph:
    """The graph of a ``[topology]`` table (nodes 0..n-1)."""
    kind = spec.get("kind", "complete")
    n = int(spec.get("n", 10))
    builders = {
        "complete": lambda: nx.complete_graph(n),
        "ring": lambda: nx.cycle_graph(n),
        "line": lambda: nx.path_graph(n),
        "star": lambda: nx.star_graph(n - 1),
        "random_regular": lambda: nx.random_regular_graph(int(spec.get("d", 3)), n, seed=seed),
        "erdos_renyi": lambda: nx.erdos_renyi_graph(n, float(spec.get("p", 0.1)), seed=seed),
        "watts_strogatz": lambda: nx.connected_watts_strogatz_graph(
            n, int(spec.get("k", 4)), float(spec.get("p", 0.1)), seed=seed
        ),
        "barabasi_albert": lambda: nx.barabasi_albert_graph(n, int(spec.get("m", 2)), seed=seed),
    }
    if kind not in builders:
        raise ScenarioError(f"unknown topology kind {kind!r} ({', '.join(builders)})")
    graph: nx.Graph = builders[kind]()
    return nx.convert_node_labels_to_integers(graph)


async def _run(scenario: Scenario, root: Path, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    graph = build_topology(scenario.topology, seed)
    latency = scenario.network.get("latency_ms", [0, 0])
    network = SimNetwork(
        random.Random(rng.random()),
        LinkModel(
            latency_s=(latency[0] / 1000, latency[1] / 1000),
            loss=float(scenario.network.get("loss", 0.0)),
        ),
    )
    g = scenario.gossip
    config = GossipConfig(
        interval=float(g.get("interval_s", 1.0)),
        fanout=int(g.get("fanout", 2)),
        k=int(g.get("k", 2)),
    )
    db_uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
    peers = [
        SimPeer(
            f"p{i}",
            Replica.init(root / f"p{i}", db_uuid=db_uuid),
            network,
            config,
            seed=rng.getrandbits(32),
        )
        for i in graph.nodes
    ]
    for a, b in graph.edges:
        peers[a].add_neighbour(f"p{b}")
        peers[b].add_neighbour(f"p{a}")

    w = scenario.workload
    writers = rng.sample(peers, min(int(w.get("writers", 1)), len(peers)))
    edits = int(w.get("edits_per_writer", 10))
    duration = float(w.get("duration_s", 60))
    max_s = float(scenario.run.get("max_simulated_s", 3600))
    schedule = sorted(
        (rng.uniform(0, duration), i, writer)
        for i, writer in enumerate(writers)
        for _ in range(edits)
    )
    total_edits = len(schedule)

    async def workload() -> None:
        start = trio.current_time()
        for at, _, writer in schedule:
            await trio.sleep_until(start + at)
            writer.edit("ticket", {"summary": f"edit by {writer.name}", "at": round(at, 3)})

    def converged() -> bool:
        first = peers[0].replica
        vector = first.main.tickets(), first.resolutions.tickets()
        return all(
            (p.replica.main.tickets(), p.replica.resolutions.tickets()) == vector for p in peers
        )

    started_wall = time.perf_counter()
    start = trio.current_time()
    convergence_s: float | None = None
    async with trio.open_nursery() as nursery:
        for peer in peers:
            await nursery.start(peer.loop.run)
        await workload()
        with trio.move_on_at(start + max_s):
            while True:
                if converged():
                    convergence_s = trio.current_time() - start
                    break
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    for peer in peers:
        await peer.aclose()

    digests = {p.replica.main.digest() for p in peers}
    ok = convergence_s is not None and len(digests) == 1
    received = sum(p.received for p in peers)
    skipped = sum(p.skipped for p in peers)
    bytes_total = sum(network.bytes_sent.values()) // 2  # each request counted at both ends
    report: dict[str, Any] = {
        "converged": ok,
        "convergence_s": None if convergence_s is None else round(convergence_s, 3),
        "rounds": round(sum(p.scheduler.rounds for p in peers) / len(peers), 2),
        "peers": len(peers),
        "edges": graph.number_of_edges(),
        "changesets": total_edits,
        "exchanges": sum(p.exchanges for p in peers),
        "requests": network.requests,
        "lost_requests": network.lost,
        "bytes_total": bytes_total,
        "bytes_per_peer": round(bytes_total / len(peers)),
        "redundant_ratio": round(skipped / (received + skipped), 4) if received + skipped else 0.0,
        "seed": seed,
        "wall_s": round(time.perf_counter() - started_wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not ok:
        vectors = {p.name: p.replica.main.tickets() for p in peers}
        reference = vectors[peers[0].name]
        report["differing_peers"] = sorted(n for n, v in vectors.items() if v != reference)
    for peer in peers:
        peer.replica.close()
    return report


def simulate(
    scenario: Scenario, *, seed: int | None = None, root: Path | None = None
) -> dict[str, Any]:
    """Run ``scenario`` on virtual time; return its report (see docs/simulation.md)."""
    seed = scenario.seed if seed is None else seed
    with _deterministic_trio(seed):
        clock = trio.testing.MockClock(autojump_threshold=0)
        if root is not None:
            return trio.run(_run, scenario, root, seed, clock=clock)
        with tempfile.TemporaryDirectory(prefix="p2p-sim-") as tmp:
            return trio.run(_run, scenario, Path(tmp), seed, clock=clock)


@contextlib.contextmanager
def _deterministic_trio(seed: int) -> Iterator[None]:
    """Make trio's scheduler repeatable for one run.

    Trio orders the tasks that become ready at the same instant by chance (to shake out
    ordering bugs), with a generator of its own, and by timer ties broken by memory
    address.  On virtual time everything happens at a few shared instants, so a run
    repeats only if that order does: this switches on the deterministic mode trio keeps
    for Hypothesis (tasks sorted by creation, then shuffled by a seeded generator).
    Trio has no public switch for it; the private one is restored afterwards.
    """
    run_module: Any = trio._core._run
    saved = run_module._ALLOW_DETERMINISTIC_SCHEDULING, run_module._r.getstate()
    run_module._ALLOW_DETERMINISTIC_SCHEDULING = True
    run_module._r.seed(seed)
    try:
        yield
    finally:
        run_module._ALLOW_DETERMINISTIC_SCHEDULING = saved[0]
        run_module._r.setstate(saved[1])
