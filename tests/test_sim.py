"""The simulator: real replicas and gossip on virtual time over an in-memory transport."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from p2p_prophet.sim import Scenario, ScenarioError, build_topology, simulate

WALL = ("wall_s", "peak_rss_mb")


def scenario(**changes: object) -> Scenario:
    base: dict[str, object] = {
        "topology": {"kind": "ring", "n": 8},
        "workload": {"writers": 3, "edits_per_writer": 3, "duration_s": 10},
        "gossip": {"interval_s": 1.0},
    }
    base.update(changes)
    return Scenario(**base)  # type: ignore[arg-type]


def without_wall_clock(report: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in report.items() if k not in WALL}


def test_a_ring_of_peers_converges_and_counts_what_it_cost() -> None:
    report = simulate(scenario())
    assert report["converged"] is True and report["peers"] == 8
    assert report["changesets"] == 9
    assert 0 < report["convergence_s"] < 120  # type: ignore[operator]
    assert report["bytes_total"] > 0 and report["exchanges"] > 0  # type: ignore[operator]


def test_the_same_seed_gives_the_same_report_and_another_seed_another() -> None:
    first, again = simulate(scenario(), seed=7), simulate(scenario(), seed=7)
    assert without_wall_clock(first) == without_wall_clock(again)
    other = simulate(scenario(), seed=8)
    assert without_wall_clock(other) != without_wall_clock(first)


def test_peers_converge_through_heavy_message_loss() -> None:
    report = simulate(scenario(network={"loss": 0.3, "latency_ms": [1, 30]}))
    assert report["converged"] is True
    assert report["lost_requests"] > 0  # type: ignore[operator]


@pytest.mark.parametrize(
    "spec, edges",
    [
        ({"kind": "complete", "n": 5}, 10),
        ({"kind": "line", "n": 5}, 4),
        ({"kind": "star", "n": 5}, 4),
        ({"kind": "random_regular", "n": 6, "d": 3}, 9),
    ],
)
def test_topologies_have_the_edges_their_kind_promises(spec: dict[str, object], edges: int) -> None:
    graph = build_topology(spec, seed=1)
    assert graph.number_of_nodes() == spec["n"] and graph.number_of_edges() == edges


def test_an_unknown_topology_is_refused_by_name() -> None:
    with pytest.raises(ScenarioError, match="unknown topology kind 'torus'"):
        build_topology({"kind": "torus", "n": 4}, seed=1)


def test_the_simulate_command_writes_report_json(tmp_path: Path) -> None:
    path = tmp_path / "ring.toml"
    path.write_text(
        'seed = 3\n[topology]\nkind = "ring"\nn = 6\n'
        "[workload]\nwriters = 2\nedits_per_writer = 2\nduration_s = 5\n"
    )
    script = Path(sys.executable).with_name("p2p-prophet")
    done = subprocess.run(
        [str(script), "simulate", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    printed = json.loads(done.stdout)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert printed == written and written["converged"] is True and written["seed"] == 3
