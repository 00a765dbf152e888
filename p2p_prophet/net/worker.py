"""The one worker thread through which a process touches a replica's storage.

SQLite work never runs on the trio loop: it would stall every other connection for the
length of a transaction.  It runs in worker threads, one call at a time per replica (a
limiter of 1), and in whole batches, since a thread hop costs about 150 µs.  A cancelled
caller still waits for its call to finish, so a transaction is always whole: committed
or rolled back, never abandoned half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import trio

from p2p_prophet.store import Replica

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class ReplicaWorker:
    """Runs blocking functions of a replica off the trio loop, one at a time."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` on a worker thread, after every earlier call has finished."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
