"""The simulator: many in-process peers on virtual time, real replicas and gossip, an
in-memory transport that still encodes every frame (docs/simulation.md)."""

from p2p_prophet.sim.run import Outcome, simulate
from p2p_prophet.sim.scenario import Scenario, ScenarioError
from p2p_prophet.sim.topology import TopologyError, build_topology

__all__ = ["Outcome", "Scenario", "ScenarioError", "TopologyError", "build_topology", "simulate"]
