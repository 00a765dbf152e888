"""Running a scenario: N simulated peers on a topology, a workload, until convergence.

Everything runs in one trio process on virtual time (MockClock with autojump), so a
simulated hour takes as long as the CPU needs.  Every peer is a real replica on disk
running the real gossip scheduler, node app and ``sync/`` code over the in-memory
transport.  The same scenario with the same seed gives the same report, wall-clock
fields aside.

A run: build the graph; make the peers (each starting from a shared replica of
``records`` tickets); put the initially sleeping laptops to sleep; start gossip,
partitions and churn; play the workload; then wait until every peer holds every
changeset and resolution and all digests are equal, or until ``max_simulated_s``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import resource
import signal
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import trio
import trio.testing

from p2p_prophet.gossip import GossipConfig
from p2p_prophet.sim import metrics
from p2p_prophet.sim.disruptions import (
    Churn,
    initially_asleep,
    plan_partitions,
    run_churn,
    run_partition,
)
from p2p_prophet.sim.handles import HandleBudget
from p2p_prophet.sim.peer import Holdings, SimPeer
from p2p_prophet.sim.scenario import Scenario, ScenarioError, as_range
from p2p_prophet.sim.theory import run_rounds
from p2p_prophet.sim.topology import build_topology
from p2p_prophet.sim.transport import LinkModel, SimNetwork
from p2p_prophet.sim.workload import Workload, apply, preload
from p2p_prophet.store import Replica

# Called about once per simulated second: (simulated seconds, fraction of all
# (peer, changeset) pairs held, the run's limit in simulated seconds).
ProgressFn = Callable[[float, float, float], None]

CHECK_EVERY_S = 0.1  # virtual seconds between convergence checks


@dataclass
class Outcome:
    """A finished run: the report (report.json) and the data behind the plots."""

    report: dict[str, Any]
    graph: nx.Graph
    bytes_by_peer: list[int] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return bool(self.report["converged"])


def gossip_config(table: dict[str, Any]) -> GossipConfig:
    defaults = GossipConfig()
    try:
        return GossipConfig(
            interval=float(table.get("interval_s", 1.0)),
            fanout=int(table.get("fanout", defaults.fanout)),
            k=int(table.get("k", defaults.k)),
            rumor_interval=float(table.get("rumor_interval_s", defaults.rumor_interval)),
            max_concurrent=int(table.get("max_concurrent", defaults.max_concurrent)),
            backoff_cap=float(table.get("backoff_cap_s", defaults.backoff_cap)),
        )
    except ValueError as exc:
        raise ScenarioError(f"[gossip]: {exc}") from None


def link_models(
    network: dict[str, Any], graph: nx.Graph, names: list[str]
) -> tuple[LinkModel, dict[frozenset[str], LinkModel]]:
    """The default link model, and one per edge whose attributes (or bridge flag) say
    otherwise."""
    default = LinkModel(
        latency_s=as_range(network.get("latency_ms", 0), 1 / 1000),
        loss=float(network.get("loss", 0.0)),
        bandwidth_bps=float(network.get("bandwidth_kbps", 0)) * 1000,
    )
    bridge = LinkModel(
        latency_s=as_range(
            network.get("bridge_latency_ms", network.get("latency_ms", 0)), 1 / 1000
        ),
        loss=float(network.get("bridge_loss", default.loss)),
        bandwidth_bps=float(network.get("bridge_bandwidth_kbps", network.get("bandwidth_kbps", 0)))
        * 1000,
    )
    links = {}
    for a, b, attrs in graph.edges(data=True):
        base = bridge if attrs.get("bridge") else default
        if not attrs.get("bridge") and not {"latency_ms", "loss", "bandwidth_kbps"} & set(attrs):
            continue
        latency = attrs.get("latency_ms")
        try:
            links[frozenset((names[a], names[b]))] = LinkModel(
                latency_s=base.latency_s if latency is None else as_range(latency, 1 / 1000),
                loss=float(attrs.get("loss", base.loss)),
                bandwidth_bps=float(attrs.get("bandwidth_kbps", base.bandwidth_bps / 1000)) * 1000,
            )
        except (TypeError, ValueError, IndexError):
            raise ScenarioError(
                f"the link {a}-{b} has a bad latency_ms, loss or bandwidth_kbps: {attrs}"
            ) from None
    return default, links


async def _run(
    scenario: Scenario, root: Path, seed: int, progress: ProgressFn | None, interruptible: bool
) -> Outcome:
    started_wall = time.perf_counter()
    rng = random.Random(seed)
    graph = build_topology(scenario.topology, seed, scenario.base)
    if not nx.is_connected(graph):
        parts = nx.number_connected_components(graph)
        raise ScenarioError(
            f"the {scenario.topology.get('kind', 'complete')} topology falls into {parts} "
            "separate parts, so its peers can never converge; use a connected graph "
            "(for erdos_renyi, a larger p)"
        )
    names = [f"p{i}" for i in graph.nodes]
    default, links = link_models(scenario.network, graph, names)
    network = SimNetwork(random.Random(rng.random()), default, links)
    config = gossip_config(scenario.gossip)
    try:
        workload = Workload.from_table(scenario.workload)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"[workload]: {exc}") from None
    skew_ms = float(scenario.network.get("clock_skew_ms", 0))
    db_uuid = _seeded_uuid(rng)
    holdings = Holdings(len(names))
    storage = _storage(scenario.run.get("storage", "auto"), len(names))
    budget = _handle_budget(len(names)) if storage == "disk" else None
    peers = []
    for name in names:
        # Seeded replica ids: conflicts break ties by origin, so runs repeat only if
        # the ids do.
        ids = (_seeded_uuid(rng), _seeded_uuid(rng))
        if storage == "memory":
            replica = Replica.in_memory(Path(f"memory:{name}"), db_uuid, replica_uuids=ids)
        else:
            replica = Replica.init(root / name, db_uuid=db_uuid, replica_uuids=ids)
        if budget is not None:
            budget.watch(replica)
        peers.append(
            SimPeer(
                name,
                replica,
                network,
                config,
                seed=rng.getrandbits(32),
                holdings=holdings,
                clock_skew_s=rng.uniform(-skew_ms, skew_ms) / 1000,
                advertise_digests=bool(scenario.gossip.get("advertise_digests", True)),
            )
        )
    for a, b in graph.edges:
        peers[a].neighbours.append(peers[b])
        peers[b].neighbours.append(peers[a])
    shared = preload(peers, workload.records)
    gc.freeze()  # the peers live for the whole run: no collection need walk them (_lazy_gc)
    for peer in peers:
        peer.ready()
    hot = max(1, min(workload.hot_records, workload.records))

    churn = Churn.from_table(scenario.churn)
    network.conditions.asleep = initially_asleep(churn, peers, rng)
    partitions = plan_partitions(scenario.network.get("partitions", []), names, rng)
    plan = workload.plan(len(peers), rng)
    churn_rngs = [random.Random(rng.getrandbits(32)) for _ in peers]
    edit_rng = random.Random(rng.getrandbits(32))
    names_by_origin = {p.replica.uuid: p.name for p in peers}

    max_s = float(scenario.run.get("max_simulated_s", 3600))
    updates: list[metrics.Update] = []
    kinds = {"create": 0, "update": 0, "delete": 0}
    start = trio.current_time()
    rounds_at_start = sum(p.scheduler.rounds for p in peers)
    convergence_s: float | None = None
    last_edit_s = 0.0

    async def play() -> None:
        nonlocal last_edit_s
        for serial, edit in enumerate(plan):
            await trio.sleep_until(start + edit.at)
            writer = peers[edit.writer]
            done = apply(edit, writer, shared, hot, edit_rng, serial)
            kinds[done] += 1
            origin = writer.replica.uuid
            updates.append(metrics.Update(origin, writer.ticket(origin), edit.at))
            last_edit_s = edit.at

    async def report_progress() -> None:
        while progress is not None:
            progress(trio.current_time() - start, holdings.held_fraction, max_s)
            await trio.sleep(1.0)

    async with trio.open_nursery() as nursery:
        for peer in peers:
            if not peer.asleep:
                await nursery.start(peer.live)
            if churn.active:
                nursery.start_soon(run_churn, churn, peer, churn_rngs[int(peer.name[1:])], nursery)
        for partition in partitions:
            nursery.start_soon(run_partition, network.conditions, partition, start)
        nursery.start_soon(report_progress)
        interrupted = False
        with trio.move_on_at(start + max_s) as running:
            if interruptible:

                async def stop_on_ctrl_c() -> None:
                    # Ctrl-C ends the run where it is and still reports on it: a long
                    # study stopped by hand keeps its figures.
                    nonlocal interrupted
                    with trio.open_signal_receiver(signal.SIGINT) as signals:
                        async for _ in signals:
                            interrupted = True
                            running.cancel()
                            return

                nursery.start_soon(stop_on_ctrl_c)
            await play()
            while True:
                if holdings.missing == 0 and metrics.converged(peers):
                    convergence_s = trio.current_time() - start
                    break
                await trio.sleep(CHECK_EVERY_S)
        end_s = trio.current_time() - start
        if progress is not None:
            progress(end_s, holdings.held_fraction, max_s)
        nursery.cancel_scope.cancel()

    digests = {p.replica.main.digest() for p in peers}
    ok = convergence_s is not None and len(digests) == 1
    sample = metrics.sample_updates(updates, random.Random(seed))
    arrivals = metrics.arrival_times(sample, peers)
    conflicts, resolutions, listed = metrics.conflicts_and_resolutions(peers)
    received = sum(p.received for p in peers)
    skipped = sum(p.skipped for p in peers)
    bytes_by_peer = metrics.per_peer(network.bytes_by_peer, peers)
    n = len(peers)
    report: dict[str, Any] = {
        "mode": "async",
        "converged": ok,
        "interrupted": interrupted,
        "held_fraction": round(holdings.held_fraction, 6),
        "convergence_s": None if convergence_s is None else round(convergence_s, 3),
        "settle_s": None if convergence_s is None else round(convergence_s - last_edit_s, 3),
        "rounds": round((sum(p.scheduler.rounds for p in peers) - rounds_at_start) / n, 2),
        "peers": n,
        "storage": storage,
        "edges": graph.number_of_edges(),
        "changesets": len(updates),
        "edits": kinds,
        "conflicts": conflicts,
        "conflicts_listed": listed,
        "resolutions": resolutions,
        "resolutions_per_conflict": round(resolutions / conflicts, 3) if conflicts else None,
        "exchanges": sum(p.exchanges for p in peers),
        "messages": network.requests,
        "messages_per_peer": round(2 * network.requests / n, 1),
        "lost_requests": network.lost,
        "unreachable_requests": network.unreachable,
        "bytes_total": network.bytes_total,
        "bytes_per_peer": round(sum(bytes_by_peer) / n),
        "bytes_per_peer_max": max(bytes_by_peer),
        "redundant_ratio": round(skipped / (received + skipped), 4) if received + skipped else 0.0,
        "spread": metrics.spread_times(sample, arrivals),
        "epidemic": metrics.epidemic_curve(sample, arrivals, end_s),
        "coverage": metrics.coverage_curve(sample, arrivals, end_s),
        "simulated_s": round(end_s, 3),
        "seed": seed,
        "wall_s": round(time.perf_counter() - started_wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not ok:
        report["differing_peers"] = metrics.diagnose(peers, names_by_origin)
        if len(digests) > 1 and not report["differing_peers"]:
            report["differing_peers"] = [
                {"why": [f"equal tickets but {len(digests)} different digests (a P1 bug)"]}
            ]
    for peer in peers:
        peer.replica.close()
    return Outcome(report, graph, bytes_by_peer)


def simulate(
    scenario: Scenario,
    *,
    seed: int | None = None,
    root: Path | None = None,
    progress: ProgressFn | None = None,
    interruptible: bool = False,
) -> Outcome:
    """Run ``scenario`` on virtual time (see docs/simulation.md); in rounds mode, run
    the synchronous-rounds model instead (``theory.py``).

    With ``interruptible`` (the main thread only), Ctrl-C ends the run early and the
    report covers what ran, with ``interrupted`` true; a second Ctrl-C stops at once."""
    seed = scenario.seed if seed is None else seed
    if scenario.mode == "rounds":
        report, graph = run_rounds(scenario, seed)
        report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return Outcome(report, graph)
    with _deterministic_trio(seed), _lazy_gc(), _quiet_nodes():
        clock = trio.testing.MockClock(autojump_threshold=0)
        if root is not None:
            return trio.run(_run, scenario, root, seed, progress, interruptible, clock=clock)
        with tempfile.TemporaryDirectory(prefix="p2p-sim-", dir=_scratch()) as tmp:
            return trio.run(_run, scenario, Path(tmp), seed, progress, interruptible, clock=clock)


@contextlib.contextmanager
def _quiet_nodes() -> Iterator[None]:
    """The simulated nodes' own log lines (a failed sync, a peer discovered) are the
    report's figures, counted; one per event would drown a run's output.  Errors still
    show."""
    logger = logging.getLogger("p2p_prophet.node")
    saved = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved)


def _scratch() -> str | None:
    """Where the replicas go: RAM (tmpfs) where there is one, since every commit is
    fsync'd and a simulation makes hundreds of thousands; else the system's temp dir.
    They are real SQLite files either way."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _seeded_uuid(rng: random.Random) -> str:
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


FILES_PER_DATABASE = 3  # the database, its -wal and its -shm
SPARE_FILES = 512


def _storage(asked: str, peers: int) -> str:
    """Where the replicas live: ``disk`` (SQLite files, on tmpfs where there is one) or
    ``memory`` (SQLite databases in this process, no file handles).  ``auto`` takes disk
    while every replica's files fit the open-file limit at once, memory beyond: parking
    databases to stay under the limit (a :class:`HandleBudget`, what ``disk`` does
    then) costs a reopen on almost every exchange once a gossip wave touches them all.
    """
    if asked != "auto":
        return asked
    return "disk" if _fits_open_files(peers) else "memory"


def _open_file_limit() -> float:
    """The soft open-file limit, raised to the hard limit first (never lowered again)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return float("inf") if soft == resource.RLIM_INFINITY else soft


def _fits_open_files(peers: int) -> bool:
    return 2 * peers * FILES_PER_DATABASE + SPARE_FILES <= _open_file_limit()


def _handle_budget(peers: int) -> HandleBudget | None:
    """A budget of open databases when two per peer would not fit the open-file limit
    (raised to the hard limit first)."""
    if _fits_open_files(peers):
        return None
    soft = int(_open_file_limit())
    room = (soft - SPARE_FILES) // FILES_PER_DATABASE
    if room < 16:
        raise ScenarioError(f"the open-file limit ({soft}) leaves no room for replicas")
    return HandleBudget(room)


@contextlib.contextmanager
def _lazy_gc() -> Iterator[None]:
    """Run Python's cycle collector far less often during a run.

    Every query makes a SQLite cursor, and each connection keeps a weak reference to its
    last (up to 200) cursors: thousands of connections hold millions of them, and each
    full collection walks them all.  At 3,000 peers, 28% of the run's wall time went to
    the collector, most of it in 32 full collections.  A run makes few reference cycles
    that outlive a young collection, so collecting the youngest generation every 20,000
    allocations instead of 700, and the older ones as rarely in proportion, loses no
    memory that matters (the same peak RSS), and the setup's objects are frozen out of
    the collections once the peers exist.  Both are undone afterwards.
    """
    saved = gc.get_threshold()
    gc.set_threshold(20_000, 20, 20)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


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
