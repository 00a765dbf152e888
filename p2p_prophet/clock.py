"""Hybrid logical clock (Kulkarni et al. 2014), packed into one 64-bit integer.

A stamp's ``hlc`` is ``wall_ms << 16 | counter``.  Packing keeps the comparison a single
integer compare and makes the HLC rules two lines:

* ``now()`` returns ``max(last + 1, wall_ms << 16)``: it follows the wall clock when the
  wall clock moves forward and counts up from the last stamp when it does not (a wall clock
  that jumps backwards, or many stamps in one millisecond), so stamps only ever increase.
* ``observe(hlc)`` moves ``last`` past a stamp seen from elsewhere, so every stamp issued
  afterwards is larger (P8: an edit made after seeing another always wins over it, whatever
  the wall clocks say).

A counter that overflows 16 bits simply carries into the millisecond part; the clock then
runs a little ahead of the wall, which HLC allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1


def wall_ms() -> int:
    """The system's wall clock in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def pack(ms: int, counter: int = 0) -> int:
    return (ms << COUNTER_BITS) | counter


def unpack(hlc: int) -> tuple[int, int]:
    """Return ``(wall_ms, counter)``."""
    return hlc >> COUNTER_BITS, hlc & COUNTER_MASK


def utc_minutes(unix: float) -> str:
    """A unix time as ISO 8601 UTC to the minute, for people (an invite's expiry)."""
    return datetime.fromtimestamp(unix, tz=UTC).isoformat(timespec="minutes")


def to_datetime(hlc: int) -> datetime:
    """The wall-clock part of a stamp as an aware UTC datetime."""
    return datetime.fromtimestamp(unpack(hlc)[0] / 1000, tz=UTC)


class HybridClock:
    """Issues strictly increasing stamps that move past every stamp observed.

    ``wall`` returns milliseconds; tests pass a fake one, and the simulator replaces it
    with each peer's virtual (and possibly skewed) clock.  ``last`` is the largest stamp
    issued or observed; a replica persists it so the clock survives restarts.
    """

    def __init__(self, wall: Callable[[], int] = wall_ms, last: int = 0) -> None:
        self.wall = wall
        self.last = last

    def now(self) -> int:
        """A new stamp, larger than every stamp issued or observed before."""
        self.last = max(self.last + 1, pack(self.wall()))
        return self.last

    def observe(self, hlc: int) -> None:
        """Account for a stamp integrated from elsewhere."""
        if hlc > self.last:
            self.last = hlc
