"""The simulator: real replicas and gossip on virtual time over an in-memory transport."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from p2p_prophet.gossip import GossipConfig
from p2p_prophet.keys import Identity
from p2p_prophet.security.membership import add_member, remove_member
from p2p_prophet.sim import Scenario, ScenarioError, TopologyError, build_topology, simulate
from p2p_prophet.sim.disruptions import Churn, plan_partitions
from p2p_prophet.sim.peer import EPOCH_MS, Holdings, SimPeer
from p2p_prophet.sim.transport import Conditions, LinkModel, SimNetwork
from p2p_prophet.sim.workload import Workload
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone

WALL = ("wall_s", "peak_rss_mb")


def scenario(**changes: Any) -> Scenario:
    base: dict[str, Any] = {
        "topology": {"kind": "ring", "n": 8},
        "workload": {"writers": 3, "edits_per_writer": 3, "duration_s": 10},
        "gossip": {"interval_s": 1.0},
    }
    base.update(changes)
    return Scenario(**base)


def without_wall_clock(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in WALL}


# -- whole runs ----------------------------------------------------------------------------


def test_a_ring_of_peers_converges_and_counts_what_it_cost() -> None:
    report = simulate(scenario()).report
    assert report["converged"] is True and report["peers"] == 8
    assert report["changesets"] == 9 and report["edits"]["create"] == 9
    assert 0 < report["convergence_s"] < 120
    assert report["bytes_total"] > 0 and report["exchanges"] > 0
    assert report["bytes_per_peer"] * 8 >= report["bytes_total"]  # each byte has two ends
    # Every sampled update reached every peer, and the curve ends there.
    assert report["epidemic"]["fraction"][-1] == 1.0
    assert report["spread"]["t100_s"] is not None
    assert report["spread"]["t50_s"] <= report["spread"]["t100_s"]


def test_the_same_seed_gives_the_same_report_and_another_seed_another() -> None:
    busy = scenario(
        network={"loss": 0.2, "latency_ms": [1, 30], "clock_skew_ms": 5000},
        churn={"asleep_fraction": 0.3, "mean_asleep_s": 5},
        workload={"writers": 4, "edits_per_writer": 4, "duration_s": 10, "conflict_rate": 0.3},
    )
    first, again = simulate(busy, seed=7).report, simulate(busy, seed=7).report
    assert json.dumps(without_wall_clock(first), sort_keys=True) == json.dumps(
        without_wall_clock(again), sort_keys=True
    )
    other = simulate(busy, seed=8).report
    assert without_wall_clock(other) != without_wall_clock(first)


def test_peers_converge_through_heavy_message_loss() -> None:
    report = simulate(scenario(network={"loss": 0.3, "latency_ms": [1, 30]})).report
    assert report["converged"] is True
    assert report["lost_requests"] > 0


def test_a_partition_holds_updates_back_until_it_heals() -> None:
    # Half the ring cut off from 2 s to 40 s; writes go on on both sides.
    split = scenario(
        network={"partitions": [{"at_s": 2, "heal_s": 40, "nodes": [0, 1, 2, 3]}]},
        workload={"writers": 4, "edits_per_writer": 3, "duration_s": 20},
    )
    report = simulate(split, seed=2).report
    assert report["converged"] is True
    assert report["unreachable_requests"] > 0
    assert report["convergence_s"] >= 40  # nothing crossed before the heal
    coverage = dict(zip(report["coverage"]["t_s"], report["coverage"]["fraction"], strict=True))
    during = [f for t, f in coverage.items() if 25 <= t <= 39]
    assert during and max(during) < 1.0


def test_a_partition_that_never_heals_is_reported_with_who_lacks_what() -> None:
    split = scenario(
        network={"partitions": [{"at_s": 0, "nodes": [0, 1, 2, 3]}]},
        run={"max_simulated_s": 60},
    )
    report = simulate(split, seed=3).report
    assert report["converged"] is False
    differing = report["differing_peers"]
    assert differing and all(d["lacks_changesets_from"] for d in differing)
    assert any("backing off" in why for d in differing for why in d["why"])


def test_ctrl_c_ends_a_run_early_and_still_reports_on_it() -> None:
    split = scenario(
        network={"partitions": [{"at_s": 0, "nodes": [0, 1, 2, 3]}]},
        run={"max_simulated_s": 3600},
    )
    calls = 0

    def progress(simulated_s: float, held: float, limit: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:  # a person presses Ctrl-C a few simulated seconds in
            os.kill(os.getpid(), signal.SIGINT)

    report = simulate(split, seed=3, progress=progress, interruptible=True).report
    assert report["interrupted"] is True and report["converged"] is False
    assert 3 <= report["simulated_s"] < 10  # stopped there, not at the 3600 s limit
    assert 0 < report["held_fraction"] < 1
    assert report["differing_peers"] and report["exchanges"] > 0
    # Without the flag (a library caller), the same run goes on to its limit.
    assert simulate(split, seed=3, progress=None).report["interrupted"] is False


def test_sleeping_laptops_catch_up_when_they_wake() -> None:
    churn = scenario(
        topology={"kind": "complete", "n": 10},
        churn={"asleep_fraction": 0.5, "mean_asleep_s": 20},
        workload={"writers": 4, "edits_per_writer": 4, "duration_s": 30},
    )
    report = simulate(churn, seed=4).report
    assert report["converged"] is True
    # Updates take far longer to reach everyone than with everyone awake.
    awake = simulate(
        scenario(topology={"kind": "complete", "n": 10}, workload=churn.workload), seed=4
    ).report
    assert report["spread"]["t100_s"] > 5 * awake["spread"]["t100_s"]


def storm(**changes: Any) -> Scenario:
    """Six skewed peers editing one hot record at once: conflicts and deletes."""
    return scenario(
        topology={"kind": "complete", "n": 6},
        network={"latency_ms": [20, 200], "clock_skew_ms": 30000},
        workload={
            "writers": 6,
            "edits_per_writer": 8,
            "duration_s": 5,
            "records": 10,
            "hot_records": 1,
            "conflict_rate": 0.6,
            "delete_rate": 0.2,
        },
        **changes,
    )


def test_conflicts_resolve_once_and_deletes_spread() -> None:
    report = simulate(storm(), seed=5).report
    assert report["converged"] is True
    assert report["edits"]["update"] > 10 and report["edits"]["delete"] > 0
    assert report["conflicts"] > 0
    # Peers that see a conflict at the same time each mint a resolution, but one that
    # already holds another's answer does not: far fewer than one per peer (6 here).
    assert 1 <= report["resolutions_per_conflict"] <= 2


def test_bandwidth_makes_the_same_run_slower() -> None:
    fast = simulate(scenario(), seed=6).report
    slow = simulate(scenario(network={"bandwidth_kbps": 8}), seed=6).report
    assert slow["converged"] is True
    assert slow["spread"]["t100_s"] > fast["spread"]["t100_s"] + 0.5


# -- the network model, alone --------------------------------------------------------------


def test_conditions_refuse_sleepers_and_links_across_a_split() -> None:
    conditions = Conditions(asleep={"p9"}, partitions=[frozenset({"p1", "p2"})])
    assert conditions.reachable("p1", "p2") and conditions.reachable("p3", "p4")
    assert not conditions.reachable("p1", "p3")
    assert not conditions.reachable("p3", "p9") and not conditions.reachable("p9", "p3")
    conditions.partitions.append(frozenset({"p1"}))
    assert not conditions.reachable("p1", "p2")


def test_the_transport_loses_requests_at_the_loss_rate_and_counts_bytes() -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body * 2})

    network = SimNetwork(random.Random(1), LinkModel(latency_s=(0.01, 0.03), loss=0.25))
    network.apps["p1"] = echo  # type: ignore[assignment]
    outcomes: list[bool] = []

    async def main() -> float:
        start = trio.current_time()
        client = network.client("p0")
        for _ in range(400):
            try:
                async with client.stream("POST", "http://p1/x", content=b"abc") as response:
                    outcomes.append(await response.aread() == b"abcabc")
            except httpx.ConnectError:
                outcomes.append(False)
        return trio.current_time() - start

    elapsed = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    delivered = sum(outcomes)
    assert network.lost == 400 - delivered
    assert 0.18 < network.lost / 400 < 0.32
    assert network.bytes_total == delivered * 9
    assert network.bytes_by_peer == {"p0": delivered * 9, "p1": delivered * 9}
    # Each delivered request waited two one-way latencies, each lost one the maximum.
    assert 0.02 * delivered + 0.03 * network.lost <= elapsed <= 0.06 * delivered + 0.03 * 400


def test_bandwidth_adds_transfer_time() -> None:
    link = LinkModel(bandwidth_bps=8000)
    assert link.transfer_s(1000) == pytest.approx(1.0)
    assert LinkModel().transfer_s(10**9) == 0.0


def test_partitions_split_the_named_nodes_or_a_random_fraction() -> None:
    names = [f"p{i}" for i in range(10)]
    named, drawn = plan_partitions(
        [{"at_s": 1, "heal_s": 2, "nodes": [0, 3]}, {"at_s": 5, "fraction": 0.3}],
        names,
        random.Random(1),
    )
    assert named.side == {"p0", "p3"} and named.heal_s == 2
    assert len(drawn.side) == 3 and drawn.heal_s is None


def test_churn_means_follow_from_the_asleep_fraction() -> None:
    churn = Churn.from_table({"asleep_fraction": 0.5, "mean_asleep_s": 30})
    assert churn.mean_awake_s == 30
    churn = Churn.from_table({"asleep_fraction": 0.25, "mean_awake_s": 90})
    assert churn.mean_asleep_s == pytest.approx(30)
    assert not Churn.from_table({}).active


def test_the_workload_plan_follows_its_rates() -> None:
    workload = Workload(
        writers=10,
        edits_per_writer=100,
        records=20,
        conflict_rate=0.3,
        delete_rate=0.1,
        duration_s=50,
    )
    plan = workload.plan(20, random.Random(1))
    assert len(plan) == 1000 and len({e.writer for e in plan}) == 10
    kinds = [e.kind for e in plan]
    assert 0.25 < kinds.count("update") / 1000 < 0.35
    assert 0.06 < kinds.count("delete") / 1000 < 0.14
    assert all(0 <= e.at <= 50 for e in plan) and plan == sorted(plan, key=lambda e: e.at)


# -- topologies and scenario files ---------------------------------------------------------


@pytest.mark.parametrize(
    "spec, nodes, edges",
    [
        ({"kind": "complete", "n": 5}, 5, 10),
        ({"kind": "line", "n": 5}, 5, 4),
        ({"kind": "star", "n": 5}, 5, 4),
        ({"kind": "random_regular", "n": 6, "d": 3}, 6, 9),
        ({"kind": "grid", "rows": 3, "cols": 4}, 12, 17),
        ({"kind": "offices", "offices": 3, "size": 4, "bridges": 2}, 12, 3 * 6 + 3 * 2),
    ],
)
def test_topologies_have_the_edges_their_kind_promises(
    spec: dict[str, Any], nodes: int, edges: int
) -> None:
    graph = build_topology(spec, seed=1)
    assert graph.number_of_nodes() == nodes
    # Offices' random bridges may land on the same pair twice; at least one per pair.
    if spec["kind"] == "offices":
        bridges = [e for e in graph.edges(data=True) if e[2].get("bridge")]
        assert 3 <= len(bridges) <= 6
    else:
        assert graph.number_of_edges() == edges


def test_a_topology_from_an_edge_list_or_graphml_file(tmp_path: Path) -> None:
    (tmp_path / "edges.txt").write_text("# a triangle and a tail\na b\nb c\nc a\nc d\n")
    graph = build_topology({"kind": "file", "path": "edges.txt"}, seed=1, base=tmp_path)
    assert graph.number_of_nodes() == 4 and graph.number_of_edges() == 4
    (tmp_path / "g.graphml").write_text(
        '<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        '<key id="l" for="edge" attr.name="latency_ms" attr.type="double"/>'
        '<graph edgedefault="undirected"><node id="x"/><node id="y"/><node id="z"/>'
        '<edge source="x" target="y"><data key="l">250</data></edge>'
        '<edge source="y" target="z"/></graph></graphml>'
    )
    graph = build_topology({"kind": "file", "path": str(tmp_path / "g.graphml")}, seed=1)
    assert graph.edges[0, 1]["latency_ms"] == 250
    with pytest.raises(TopologyError, match="does not exist"):
        build_topology({"kind": "file", "path": "nope.txt"}, seed=1, base=tmp_path)


def test_an_unknown_topology_is_refused_by_name() -> None:
    with pytest.raises(TopologyError, match="unknown topology kind 'torus'"):
        build_topology({"kind": "torus", "n": 4}, seed=1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[topology]\nkind = 'ring'\nnn = 4\n", "unknown key 'nn'"),
        ("[network]\nloss = 1.5\n", "loss must be a fraction"),
        ("[network]\nlatency_ms = [5, 1]\n", r"latency_ms must be \[min, max\]"),
        ("[workload]\nwriters = 'three'\n", "writers has the wrong type"),
        ("[[network.partitions]]\nheal_s = 4\n", "needs at_s"),
        ("[gossip]\nmode = 'lockstep'\n", "mode must be one of"),
        ("[run]\nstorage = 'tape'\n", "storage must be one of auto, disk, memory"),
        ("[metrics]\nx = 1\n", "unknown key 'metrics'"),
        ("seed = [", "scenario.toml"),
    ],
)
def test_scenario_files_are_checked_before_anything_runs(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        Scenario.load(path)


def test_the_rounds_mode_checks_the_literature() -> None:
    model = Scenario(
        topology={"kind": "complete", "n": 100},
        gossip={"mode": "rounds", "protocol": "push-pull"},
        run={"seeds": 200},
    )
    report = simulate(model).report
    assert report["mode"] == "rounds" and report["converged"] is True
    assert report["theory"]["reference"] == 6.5 and report["theory"]["within_tolerance"]
    assert report["epidemic"]["fraction"][0] == 0.01 and report["epidemic"]["fraction"][-1] == 1


# -- the command ---------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("p2p-prophet")
    return subprocess.run(
        [str(script), "simulate", *args], capture_output=True, text=True, timeout=120
    )


def test_the_simulate_command_writes_report_json_and_plots(tmp_path: Path) -> None:
    path = tmp_path / "ring.toml"
    path.write_text(
        'seed = 3\n[topology]\nkind = "ring"\nn = 6\n'
        "[workload]\nwriters = 2\nedits_per_writer = 2\nduration_s = 5\n"
    )
    done = run_cli(str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert printed == written and written["converged"] is True and written["seed"] == 3
    for name in ("epidemic.png", "bytes_per_peer.png", "topology.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_simulate_command_fails_clearly_when_peers_do_not_converge(tmp_path: Path) -> None:
    path = tmp_path / "split.toml"
    path.write_text(
        "[topology]\nkind = 'line'\nn = 4\n[[network.partitions]]\nat_s = 0\nnodes = [0, 1]\n"
        "[workload]\nwriters = 4\nedits_per_writer = 1\nduration_s = 1\n"
        "[run]\nmax_simulated_s = 30\n"
    )
    done = run_cli(str(path))
    assert done.returncode == 1
    assert "did not converge" in done.stderr and "lacks" in done.stderr
    assert json.loads(done.stdout)["converged"] is False


# -- the ready scenarios -------------------------------------------------------------------

SIMULATIONS = Path(__file__).parent.parent / "simulations"
SMALL = ["office-lan", "ring-100", "partition-and-heal", "laptop-churn", "conflict-storm"]


def test_every_ready_scenario_file_loads() -> None:
    paths = sorted(SIMULATIONS.rglob("*.toml"))
    assert {p.stem for p in paths} >= {*SMALL, "small-world-1000", "push-pull-100", "rumor-k2"}
    for path in paths:
        Scenario.load(path)


@pytest.mark.parametrize("name", SMALL)
def test_the_small_ready_scenarios_converge(name: str) -> None:
    # One seed each here; bench/sim_scenarios.py runs 20 (figures in simulations/README.md).
    report = simulate(Scenario.load(SIMULATIONS / f"{name}.toml"), seed=11).report
    assert report["converged"] is True, report.get("differing_peers")


def test_a_handle_budget_parks_replicas_without_changing_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from p2p_prophet.sim import run as run_module
    from p2p_prophet.sim.handles import HandleBudget

    busy = scenario(
        workload={"writers": 4, "edits_per_writer": 3, "duration_s": 5, "conflict_rate": 0.3}
    )
    free = simulate(busy, seed=9).report
    budgets: list[HandleBudget] = []

    def tiny(peers: int) -> HandleBudget:
        budgets.append(HandleBudget(4))  # two replicas' worth for eight peers
        return budgets[-1]

    monkeypatch.setattr(run_module, "_handle_budget", tiny)
    parked = simulate(busy, seed=9).report
    assert without_wall_clock(parked) == without_wall_clock(free)
    assert budgets[0].opens > 16  # databases really were closed and reopened


def test_replicas_in_memory_run_exactly_as_on_disk_and_write_no_file(tmp_path: Path) -> None:
    on_disk = simulate(storm(run={"storage": "disk"}), seed=5, root=tmp_path / "disk").report
    in_memory = simulate(storm(run={"storage": "memory"}), seed=5, root=tmp_path / "memory")
    assert (on_disk["storage"], in_memory.report["storage"]) == ("disk", "memory")
    assert in_memory.converged and in_memory.report["conflicts"] > 0
    assert without_wall_clock(in_memory.report) == without_wall_clock(on_disk) | {
        "storage": "memory"
    }
    assert len(list((tmp_path / "disk").glob("p*/replica.db"))) == 6
    assert not (tmp_path / "memory").exists() or not any((tmp_path / "memory").iterdir())


def test_auto_storage_keeps_replicas_in_memory_when_their_files_would_not_fit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from p2p_prophet.sim import run as run_module

    twenty = scenario(topology={"kind": "ring", "n": 20})
    assert simulate(twenty, root=tmp_path / "roomy").report["storage"] == "disk"
    # 20 peers are 40 databases, 120 files, plus the spare 512: over a limit of 600.
    monkeypatch.setattr(run_module, "_open_file_limit", lambda: 600)
    report = simulate(twenty, root=tmp_path / "tight").report
    assert report["storage"] == "memory" and report["converged"] is True
    # Asked for disk under the same limit, a run parks databases instead.
    parked = simulate(scenario(topology={"kind": "ring", "n": 20}, run={"storage": "disk"}))
    assert parked.report["storage"] == "disk" and parked.converged
    assert without_wall_clock(parked.report) == without_wall_clock(report) | {"storage": "disk"}


def test_an_in_memory_replica_is_a_whole_replica_that_is_never_parked() -> None:
    from p2p_prophet.store import Replica

    replica = Replica.in_memory(Path("memory:a"))
    uuid = replica.create("ticket", {"summary": "kept"})
    assert replica.main.park() is False and not replica.main.parked
    assert replica.main.find_record("ticket", uuid) is not None
    assert replica.main.tickets() == {replica.uuid: 1}
    assert replica.resolutions.get_meta("db_uuid") == replica.db_uuid
    replica.close()


def test_a_parked_database_reopens_on_use_but_never_mid_transaction(tmp_path: Path) -> None:
    from p2p_prophet.store import Replica

    replica = Replica.init(tmp_path / "r")
    replica.create("ticket", {"summary": "x"})
    assert replica.main.park() and replica.main.parked
    assert replica.main.count_live() == 1 and not replica.main.parked
    with replica.main.transaction():
        assert replica.main.park() is False
    replica.close()


def test_a_topology_in_separate_parts_is_refused_before_it_runs(tmp_path: Path) -> None:
    (tmp_path / "two.txt").write_text("a b\nc d\n")
    apart = scenario(topology={"kind": "file", "path": str(tmp_path / "two.txt")})
    with pytest.raises(ScenarioError, match="falls into 2 separate parts"):
        simulate(apart)


def test_a_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    before = gc.get_threshold()
    assert simulate(scenario()).converged
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_simulated_peer_is_the_node_following_its_membership_and_publishing_status(
    tmp_path: Path,
) -> None:
    """The simulator runs :class:`Node` itself: three members' replicas (signed, so their
    nodes serve members only), one removes another, and the third's node follows the
    membership (it refuses the removed member from then on) and publishes its status."""
    ids = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(3)]
    founder = Replica.init(tmp_path / "p0", identity=ids[0])
    founder.clock.wall = lambda: EPOCH_MS  # stamped in the simulation's time, not ours
    add_member(founder, ids[0].certificate_pem, "p0")
    for i in (1, 2):
        add_member(founder, ids[i].certificate_pem, f"p{i}", added_by=ids[0].fingerprint)
    replicas = [founder] + [clone(founder, tmp_path / f"p{i}", identity=ids[i])[0] for i in (1, 2)]
    network = SimNetwork(random.Random(7))
    holdings = Holdings(3)
    peers = [
        SimPeer(f"p{i}", r, network, GossipConfig(), seed=i, holdings=holdings)
        for i, r in enumerate(replicas)
    ]
    for peer in peers:
        peer.neighbours = [other for other in peers if other is not peer]
    removed, watcher = ids[2].fingerprint, peers[1]

    async def until(condition: Callable[[], bool], within_s: float = 120.0) -> None:
        # Virtual time (MockClock): bounded, and the same every run.
        with trio.fail_after(within_s):
            while not condition():
                await trio.sleep(0.5)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for peer in peers:
                await nursery.start(peer.live)
            await until(
                lambda: (
                    watcher.node.last_status is not None
                    and {p["url"] for p in watcher.node.last_status["peers"]}
                    == {peers[0].url, peers[2].url}
                )
            )
            assert removed in watcher.node.trusted
            remove_member(peers[0].replica, removed)
            peers[0].node.edited()
            await until(lambda: removed not in watcher.node.trusted)
            peers[2].edit("ticket", {"summary": "from a removed member"})
            # Both ways: the removed member's calls are refused, and the watcher no
            # longer takes its node for a member's (its pinned TLS would not).
            tried = peers[2].exchanges
            await until(lambda: peers[2].exchanges >= tried + 2)
            gone = watcher.scheduler.peers.peers[peers[2].url]
            await until(lambda: gone.failures >= 2)
            nursery.cancel_scope.cancel()
        statuses = [p.node.last_status for p in peers]
        assert all(s is not None and s["tls"] for s in statuses)
        # Nothing of the removed member's came in; it still holds its own edit.
        assert list(watcher.replica.main.live_records("ticket")) == []
        assert len(list(peers[2].replica.main.live_records("ticket"))) == 1

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        for replica in replicas:
            replica.close()


def test_news_pushed_to_a_node_travels_on_as_a_rumor_not_at_the_next_round() -> None:
    """A line a - b - c, all holding the same.  An edit at a is pushed to b; b must
    tell c at once (a rumor), judging against its *new* digest: c still advertises b's
    old one, and a rumor judged against that finds nobody to tell and dies, leaving c to
    wait for an anti-entropy round (an hour here)."""
    network = SimNetwork(random.Random(3))
    db_uuid = "0f6f38a6-7c8e-4b4e-9d4e-0a1b2c3d4e5f"
    replicas = [Replica.in_memory(Path(f"memory:{n}"), db_uuid) for n in "abc"]
    slow_rounds = GossipConfig(interval=3600.0)
    peers = [
        SimPeer(n, r, network, slow_rounds, seed=i, holdings=Holdings(3))
        for i, (n, r) in enumerate(zip("abc", replicas, strict=True))
    ]
    a, b, c = peers
    a.neighbours, b.neighbours, c.neighbours = [b], [a, c], [b]
    arrived: list[float] = []

    async def main() -> None:
        for peer in peers:
            peer.ready()
        async with trio.open_nursery() as nursery:
            for peer in peers:
                await nursery.start(peer.live)
            start = trio.current_time()
            a.edit("ticket", {"summary": "news"})
            with trio.fail_after(60):  # virtual seconds; an anti-entropy round is 3600
                while c.ticket(a.replica.uuid) == 0:
                    await trio.sleep(0.1)
            arrived.append(trio.current_time() - start)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        for replica in replicas:
            replica.close()
    assert arrived and arrived[0] < 5
