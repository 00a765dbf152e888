"""Replication, sans-IO: vectors, planning, integration, conflicts, resolutions, and the
exchange that runs them between two replicas (caller and callee).

Nothing here imports trio, httpx or zeroconf: path-to-path transfers, the network node
and the simulator all run these same functions (docs/replication.md).
"""

from p2p_prophet.conflict import Conflict, ConflictKind
from p2p_prophet.sync.exchange import Callee, Caller, Remote, SyncResult, TransferResult
from p2p_prophet.sync.integrate import (
    IntegrationError,
    IntegrationResult,
    integrate,
    integrate_resolutions,
)
from p2p_prophet.sync.local import LocalRemote, clone, push, sync_with, transfer
from p2p_prophet.sync.plan import lacking_changesets, plan
from p2p_prophet.sync.vector import Vector, count_lacking, lacking, vector_digest

__all__ = [
    "Callee",
    "Caller",
    "Conflict",
    "ConflictKind",
    "IntegrationError",
    "IntegrationResult",
    "LocalRemote",
    "Remote",
    "SyncResult",
    "TransferResult",
    "Vector",
    "clone",
    "count_lacking",
    "integrate",
    "integrate_resolutions",
    "lacking",
    "lacking_changesets",
    "plan",
    "push",
    "sync_with",
    "transfer",
    "vector_digest",
]
