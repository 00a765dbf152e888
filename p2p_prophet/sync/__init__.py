"""Replication, sans-IO: vectors, planning, integration, conflicts, resolutions.

Nothing here imports trio, httpx or zeroconf: the CLI's path-to-path transfers, the
network node and the simulator all run these same functions (docs/replication.md).
"""

from p2p_prophet.sync.conflict import Conflict, ConflictKind
from p2p_prophet.sync.integrate import (
    IntegrationError,
    IntegrationResult,
    integrate,
    integrate_resolutions,
)
from p2p_prophet.sync.plan import lacking_changesets, plan
from p2p_prophet.sync.transfer import DatabaseMismatch, TransferResult, clone, transfer
from p2p_prophet.sync.vector import Vector, count_lacking, lacking, vector_digest

__all__ = [
    "Conflict",
    "ConflictKind",
    "DatabaseMismatch",
    "IntegrationError",
    "IntegrationResult",
    "TransferResult",
    "Vector",
    "clone",
    "count_lacking",
    "integrate",
    "integrate_resolutions",
    "lacking",
    "lacking_changesets",
    "plan",
    "transfer",
    "vector_digest",
]
