"""The simulator: many in-process peers on virtual time, real replicas and gossip, an
in-memory transport that still encodes every frame (docs/simulation.md)."""

from p2p_prophet.sim.run import Scenario, ScenarioError, build_topology, simulate

__all__ = ["Scenario", "ScenarioError", "build_topology", "simulate"]
