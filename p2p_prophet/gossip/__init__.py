"""Gossip scheduling, sans-IO: the peer table and the anti-entropy / rumor scheduler.

The network node (``net/``) and the simulator (``sim/``) each drive the same
:class:`Scheduler` with their own clock and transport.
"""

from p2p_prophet.gossip.peers import Peer, PeerState, PeerTable
from p2p_prophet.gossip.scheduler import Contact, GossipConfig, Outcome, Reason, Scheduler

__all__ = [
    "Contact",
    "GossipConfig",
    "Outcome",
    "Peer",
    "PeerState",
    "PeerTable",
    "Reason",
    "Scheduler",
]
