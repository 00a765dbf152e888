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

**Bounds.**  A stamp is a SQLite INTEGER, so at most :data:`MAX_HLC` (2^63 - 1).  Since
``observe`` moves the clock past whatever it sees, one stamp far in the future (a broken
clock, or a member forging one) would drag every replica that integrates it along, up to
the end of the range, where no further stamp can be issued.  So a replica refuses to
integrate a stamp whose wall part is more than ``max_offset_ms`` ahead of its own wall
clock (:meth:`HybridClock.too_far_ahead`; default :data:`DEFAULT_MAX_OFFSET_MS`, one day,
room for laptops whose clocks drift or sit in the wrong time zone), the *maximum offset*
of the HLC paper.  The refusal is not final: once the wall clock has caught up to within
the offset, the same changeset is taken.  A replica that integrated such a stamp before
this bound existed still opens; if its clock has reached :data:`MAX_HLC`, :meth:`now`
raises :class:`ClockError` saying so instead of overflowing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from p2p_prophet.errors import ProphetError

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_HLC = (1 << 63) - 1  # the largest SQLite INTEGER
DEFAULT_MAX_OFFSET_MS = 24 * 3600 * 1000


class ClockError(ProphetError):
    """The clock cannot issue a stamp: it has reached the end of its range."""


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

    def __init__(
        self,
        wall: Callable[[], int] = wall_ms,
        last: int = 0,
        max_offset_ms: int = DEFAULT_MAX_OFFSET_MS,
    ) -> None:
        self.wall = wall
        self.last = last
        self.max_offset_ms = max_offset_ms

    def now(self) -> int:
        """A new stamp, larger than every stamp issued or observed before.

        Raises :class:`ClockError` if the clock has reached :data:`MAX_HLC` (it observed
        a stamp at the end of the range, see the module doc)."""
        stamp = max(self.last + 1, pack(self.wall()))
        if stamp > MAX_HLC:
            raise ClockError(
                "this replica's clock has reached the end of its range: it holds a stamp "
                f"from the year {_year(self.last)}, integrated before p2p-prophet refused "
                "stamps far ahead of the wall clock, and no later stamp can be issued. "
                "`p2p-prophet check` names the changeset; to go on editing, export the "
                "records into a new database (`export`, `init`, `import`)"
            )
        self.last = stamp
        return stamp

    def too_far_ahead(self, hlc: int) -> int:
        """How many milliseconds ``hlc``'s wall part is beyond this clock's wall time plus
        ``max_offset_ms``; 0 if it is within bounds."""
        return max(0, unpack(hlc)[0] - self.wall() - self.max_offset_ms)

    def observe(self, hlc: int) -> None:
        """Account for a stamp integrated from elsewhere."""
        if hlc > self.last:
            self.last = hlc


def _year(hlc: int) -> str:
    days = unpack(hlc)[0] // 86_400_000
    return f"{1970 + days * 400 // 146_097:,}"  # Gregorian years, near enough
