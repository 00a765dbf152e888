"""What one node takes on for its callers at once: exchanges, buffered bytes, time.

The connection caps (:mod:`p2p_prophet.net.listener`) bound descriptors; these bound
what the requests on those connections make the node hold (docs/network.md, Bounds):

- **exchanges**: at most ``max_exchanges`` pushes and pulls are served at once, and at
  most ``max_exchanges_per_caller`` for one caller (one identity over TLS, one address
  over plain HTTP), so that no member can take every place.  A HELLO is not counted: it
  costs a digest lookup.  Beyond either, the node answers 503 ``unavailable`` with
  ``Retry-After``, which clients wait out and retry;
- **buffered bytes**: a pushed batch is held in memory until its BATCH_END arrives.  Its
  size is capped per batch by the wire limits (``Limits.max_batch_bytes``), and all the
  requests in flight together may hold at most ``buffer_budget`` bytes of frames and
  changesets not yet integrated; a push that would exceed it is answered 503 at once
  (the whole batches it delivered are kept);
- **time**: a push must deliver a batch that brings the node something new within
  ``batch_deadline`` seconds of its start and of each such batch before (and an
  exchange's request must arrive whole within it), so that a caller trickling a byte now
  and then, or sending what the node already holds, cannot hold a place for ever.  What
  the node sends must be taken within 60 s a chunk (``WRITE_TIMEOUT`` in
  :mod:`p2p_prophet.net.listener`).

Everything here is bookkeeping, called from the trio loop only.  An outgoing stream
(a pull) counts the batch it is sending against the same budget, waiting for room rather
than refusing: what it sends is the node's own data, and its caller already waits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import trio

MAX_EXCHANGES = 8
MAX_EXCHANGES_PER_CALLER = 2
BUFFER_BUDGET = 16 << 20
BATCH_DEADLINE = 120.0
RETRY_AFTER = 2  # seconds a busy node asks its callers to wait


@dataclass(frozen=True)
class ServerBounds:
    """The bounds of one node's server (module doc); the defaults are the node's."""

    max_exchanges: int = MAX_EXCHANGES
    max_exchanges_per_caller: int = MAX_EXCHANGES_PER_CALLER
    buffer_budget: int = BUFFER_BUDGET
    batch_deadline: float = BATCH_DEADLINE
    retry_after: int = RETRY_AFTER


DEFAULT_BOUNDS = ServerBounds()


@dataclass
class Exchanges:
    """The exchanges in flight, in all and by caller."""

    bounds: ServerBounds
    running: int = 0
    by_caller: Counter[str] = field(default_factory=Counter)

    def try_start(self, caller: str) -> bool:
        """Take a place for ``caller``; False (taking nothing) if the node is full."""
        if self.running >= self.bounds.max_exchanges:
            return False
        if self.by_caller[caller] >= self.bounds.max_exchanges_per_caller:
            return False
        self.running += 1
        self.by_caller[caller] += 1
        return True

    def finish(self, caller: str) -> None:
        self.running -= 1
        self.by_caller[caller] -= 1
        if self.by_caller[caller] <= 0:
            del self.by_caller[caller]


class ByteBudget:
    """Bytes that requests in flight may hold, all together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._freed = trio.Event()

    def try_take(self, n: int) -> bool:
        """Take ``n`` more bytes; False (taking nothing) if that would pass the limit."""
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    async def take(self, n: int) -> int:
        """Take ``n`` bytes (at most the whole limit), waiting until they are free;
        returns how many were taken (to give back)."""
        n = min(n, self.limit)
        while not self.try_take(n):
            await self._freed.wait()
        return n

    def give_back(self, n: int) -> None:
        if n:
            self.held -= n
            self._freed.set()
            self._freed = trio.Event()
