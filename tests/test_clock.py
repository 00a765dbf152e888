"""The hybrid logical clock: monotonic whatever the wall clock does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p_prophet.clock import MAX_HLC, ClockError, HybridClock, pack, to_datetime, unpack


class FakeWall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_follows_the_wall_clock_when_it_moves_forward() -> None:
    wall = FakeWall(1_000)
    clock = HybridClock(wall)
    assert unpack(clock.now()) == (1_000, 0)
    wall.ms = 1_005
    assert unpack(clock.now()) == (1_005, 0)


def test_counts_within_one_millisecond() -> None:
    clock = HybridClock(FakeWall(1_000))
    stamps = [clock.now() for _ in range(3)]
    assert [unpack(s) for s in stamps] == [(1_000, 0), (1_000, 1), (1_000, 2)]


def test_a_wall_clock_jumping_backwards_never_makes_stamps_go_back() -> None:
    wall = FakeWall(50_000)
    clock = HybridClock(wall)
    before = clock.now()
    wall.ms = 10_000  # NTP stepped the clock back 40 s
    after = [clock.now() for _ in range(5)]
    assert all(s > before for s in after)
    assert after == sorted(after)
    assert unpack(after[0]) == (50_000, 1)


def test_observing_a_stamp_from_the_future_moves_past_it() -> None:
    # Bob's laptop runs an hour ahead; an edit Alice makes after seeing Bob's must win.
    alice = HybridClock(FakeWall(1_000))
    bobs_stamp = pack(1_000 + 3_600_000, 9)
    alice.observe(bobs_stamp)
    assert alice.now() > bobs_stamp


def test_observing_an_old_stamp_changes_nothing() -> None:
    clock = HybridClock(FakeWall(5_000))
    last = clock.now()
    clock.observe(pack(10, 0))
    assert clock.last == last


def test_counter_overflow_carries_into_the_millisecond() -> None:
    clock = HybridClock(FakeWall(7), last=pack(7, 0xFFFF))
    assert unpack(clock.now()) == (8, 0)


def test_stamps_render_as_utc_times() -> None:
    assert to_datetime(pack(1_700_000_000_123, 5)).isoformat() == "2023-11-14T22:13:20.123000+00:00"


steps = st.lists(
    st.one_of(
        st.tuples(st.just("wall"), st.integers(0, 1 << 40)),
        st.tuples(st.just("observe"), st.integers(0, 1 << 56)),
        st.tuples(st.just("now"), st.just(0)),
    ),
    max_size=60,
)


@given(steps)
def test_monotonic_under_any_wall_clock_and_any_observed_stamps(
    script: list[tuple[str, int]],
) -> None:
    wall = FakeWall(0)
    clock = HybridClock(wall)
    issued: list[int] = []
    floor = 0  # every stamp must exceed everything issued or observed before it
    for action, value in script:
        if action == "wall":
            wall.ms = value
        elif action == "observe":
            clock.observe(value)
            floor = max(floor, value)
        else:
            stamp = clock.now()
            assert stamp > floor
            assert unpack(stamp)[0] >= wall.ms  # never behind the wall clock
            issued.append(stamp)
            floor = stamp
    assert issued == sorted(set(issued))


# -- bounds (clock.py, Bounds) ---------------------------------------------------------


def test_a_stamp_within_the_maximum_offset_is_not_too_far_ahead() -> None:
    clock = HybridClock(FakeWall(1_000_000), max_offset_ms=60_000)
    assert clock.too_far_ahead(pack(1_060_000)) == 0
    assert clock.too_far_ahead(pack(1_060_001)) == 1
    assert clock.too_far_ahead(pack(5)) == 0  # behind is always fine


def test_a_clock_at_the_end_of_its_range_refuses_to_issue_instead_of_overflowing() -> None:
    clock = HybridClock(FakeWall(1_000), last=MAX_HLC - 1)
    assert clock.now() == MAX_HLC  # the last stamp there is
    with pytest.raises(ClockError, match=r"end of its range.*p2p-prophet check"):
        clock.now()
    assert clock.last == MAX_HLC
