"""The network node: the HTTP server and client of the exchange (trio, hypercorn, httpx).

A thin adapter: every rule lives in ``sync/`` and ``wire/``; this package moves their
bytes over HTTP and their storage calls onto the replica's worker thread.
"""

from p2p_prophet.net.client import NetworkError, NotAccepted, Peer, Progress, SyncResult, clone
from p2p_prophet.net.server import NodeApp, serve
from p2p_prophet.net.worker import ReplicaWorker

__all__ = [
    "NetworkError",
    "NodeApp",
    "NotAccepted",
    "Peer",
    "Progress",
    "ReplicaWorker",
    "SyncResult",
    "clone",
    "serve",
]
