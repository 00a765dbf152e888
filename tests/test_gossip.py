"""The gossip scheduler, driven by the real trio loop on trio's MockClock (virtual time):
intervals and jitter, rumor fan-out and loss of interest, digest skip, backoff and the
concurrency bound."""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_prophet.gossip import Contact, GossipConfig, Outcome, Reason, Scheduler
from p2p_prophet.net.gossip import GossipLoop

OURS = b"ours----"


@dataclass
class FakePeers:
    """Exchanges that take ``delay`` seconds and answer as scripted per peer:
    "old" (had everything), "news" (lacked something), "fail"."""

    behaviour: dict[str, str]
    delay: float = 0.01
    calls: list[tuple[float, str]] = field(default_factory=list)

    async def exchange(self, peer: str) -> Outcome:
        self.calls.append((trio.current_time(), peer))
        await trio.sleep(self.delay)
        how = self.behaviour[peer]
        if how == "fail":
            return Outcome(ok=False)
        return Outcome(ok=True, sent=1 if how == "news" else 0)


def make(
    config: GossipConfig, peers: dict[str, str], seed: int = 1, **kw: float
) -> tuple[Scheduler, FakePeers, GossipLoop]:
    scheduler = Scheduler(config, random.Random(seed), now=trio.current_time(), our_digest=OURS)
    for peer in peers:
        scheduler.peers.add(peer)
    fake = FakePeers(peers, **kw)
    return scheduler, fake, GossipLoop(scheduler, fake.exchange)


async def run_for(loop: GossipLoop, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await loop.run()


def contacts(loop: GossipLoop, reason: Reason) -> list[tuple[float, Contact]]:
    return [(t, c) for t, c in loop.contacts if c.reason is reason]


async def test_anti_entropy_runs_every_interval_give_or_take_the_jitter(
    autojump_clock: trio.abc.Clock,
) -> None:
    _, _, loop = make(GossipConfig(interval=10, jitter=0.2), {"a": "old"})
    await run_for(loop, 1000)
    times = [t for t, _ in contacts(loop, Reason.ANTI_ENTROPY)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 90 <= len(times) <= 112
    assert all(8 - 1e-9 <= g <= 12 + 1e-9 for g in gaps)
    assert max(gaps) - min(gaps) > 2  # jittered, not a fixed beat
    assert 9.5 <= statistics.mean(gaps) <= 10.5


async def test_news_goes_to_fanout_peers_at_once(autojump_clock: trio.abc.Clock) -> None:
    peers = {f"p{i}": "news" for i in range(10)}
    _scheduler, _fake, loop = make(GossipConfig(interval=10_000, fanout=3), peers)
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        await trio.sleep(5)
        loop.news()
        await trio.sleep(0.001)
        told = [(t, c.peer) for t, c in contacts(loop, Reason.RUMOR)]
        assert len(told) == 3 and len({p for _, p in told}) == 3
        assert {t for t, _ in told} == {trio.current_time() - 0.001}
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("k", [1, 2, 4])
async def test_old_news_loses_interest_with_probability_one_over_k(
    autojump_clock: trio.abc.Clock, k: int
) -> None:
    """With fanout 1 and peers that always had it, the number of tellings before the
    node loses interest is geometric with p = 1/k: mean k."""
    counts = []
    for seed in range(200):
        peers = {f"p{i}": "old" for i in range(20)}
        config = GossipConfig(interval=10_000, fanout=1, k=k, rumor_interval=1)
        scheduler, _, loop = make(config, peers, seed=seed)
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            loop.news()
            await trio.sleep(500)
            assert not scheduler.rumor_hot
            counts.append(len(contacts(loop, Reason.RUMOR)))
            nursery.cancel_scope.cancel()
    if k == 1:
        assert set(counts) == {1}
    else:
        assert abs(statistics.mean(counts) - k) <= 0.15 * k


async def test_news_keeps_the_rumor_hot(autojump_clock: trio.abc.Clock) -> None:
    config = GossipConfig(interval=10_000, fanout=1, k=1, rumor_interval=1)
    scheduler, fake, loop = make(config, {"a": "news", "b": "news"})
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        loop.news()
        await trio.sleep(10.5)
        assert scheduler.rumor_hot  # every telling was news, so interest never fades
        assert len(contacts(loop, Reason.RUMOR)) == 11  # once a second
        fake.behaviour.update(a="old", b="old")
        await trio.sleep(5)
        assert not scheduler.rumor_hot  # k = 1: the first old news ends it
        nursery.cancel_scope.cancel()


async def test_peers_advertising_our_digest_are_skipped(autojump_clock: trio.abc.Clock) -> None:
    scheduler, fake, loop = make(GossipConfig(interval=1), {"a": "old", "b": "old", "c": "old"})
    scheduler.peers.add("a", OURS)
    scheduler.peers.add("b", OURS)
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        await trio.sleep(50)
        assert {p for _, p in fake.calls} == {"c"}
        scheduler.peers.add("b", b"theirs--")  # b advertises a change
        await trio.sleep(50)
        assert {p for _, p in fake.calls} == {"b", "c"}
        nursery.cancel_scope.cancel()


async def test_a_failing_peer_backs_off_exponentially_then_recovers(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = GossipConfig(interval=0.1, jitter=0, backoff_base=1, backoff_cap=8)
    scheduler, fake, loop = make(config, {"a": "fail"}, delay=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        await trio.sleep(60)
        times = [t for t, _ in fake.calls]
        gaps = [b - a for a, b in itertools.pairwise(times)][:6]
        for n, gap in enumerate(gaps):
            wait = min(8, 2**n)
            assert 0.5 * wait - 1e-9 <= gap <= 1.5 * wait + 0.1 + 1e-9, (n, gaps)
        assert scheduler.peers.peers["a"].failures == len(fake.calls)
        fake.behaviour["a"] = "old"
        await trio.sleep(15)
        assert scheduler.peers.peers["a"].failures == 0
        recent = [t for t, _ in fake.calls if t > trio.current_time() - 5]
        assert len(recent) >= 40  # back to every interval (0.1 s)
        nursery.cancel_scope.cancel()


async def test_no_more_than_max_concurrent_exchanges_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    peers = {f"p{i}": "news" for i in range(10)}
    config = GossipConfig(interval=0.5, fanout=10, max_concurrent=3, rumor_interval=0.1)
    _, fake, loop = make(config, peers, delay=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        loop.news()
        await trio.sleep(60)
        assert loop.max_in_flight == 3
        assert len(fake.calls) >= 30  # the bound throttles, it does not stall
        nursery.cancel_scope.cancel()


def test_the_same_seed_and_clock_make_the_same_choices() -> None:
    def run(seed: int) -> list[tuple[float, str, str]]:
        scheduler = Scheduler(GossipConfig(interval=1, fanout=2), random.Random(seed))
        for i in range(8):
            scheduler.peers.add(f"p{i}")
        out = []
        now = 0.0
        scheduler.news(now)
        while now < 30:
            for c in scheduler.contacts(now):
                out.append((now, c.peer, c.reason.value))
                scheduler.finished(c, Outcome(ok=True, sent=0), now)
            now = scheduler.next_wakeup(now)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


@given(
    seed=st.integers(0, 10_000),
    n_peers=st.integers(0, 12),
    fanout=st.integers(1, 6),
    max_concurrent=st.integers(1, 5),
    events=st.lists(
        st.tuples(st.sampled_from(["news", "finish", "fail", "tick"]), st.integers(0, 11)),
        max_size=60,
    ),
)
@settings(max_examples=300)
def test_asking_again_is_never_due_at_once(
    seed: int, n_peers: int, fanout: int, max_concurrent: int, events: list[tuple[str, int]]
) -> None:
    """After the scheduler has answered "whom now?", its next wake-up lies in the future:
    a driver that sleeps until then never spins, whatever happened before."""
    config = GossipConfig(interval=1, fanout=fanout, max_concurrent=max_concurrent)
    scheduler = Scheduler(config, random.Random(seed))
    for i in range(n_peers):
        scheduler.add_peer(f"p{i}", OURS if i % 3 == 0 else None)
    scheduler.our_digest = OURS
    now = 0.0
    open_contacts: list[Contact] = []
    for what, which in events:
        if what == "news":
            scheduler.news(now)
        elif what in ("finish", "fail") and open_contacts:
            contact = open_contacts.pop(which % len(open_contacts))
            scheduler.finished(contact, Outcome(ok=what == "finish", sent=which % 2), now)
        else:
            now += 0.3
        open_contacts.extend(scheduler.contacts(now))
        assert len(open_contacts) <= max_concurrent
        assert scheduler.next_wakeup(now) > now


async def test_the_first_round_waits_a_random_fraction_of_an_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Whatever the clock reads when the node starts (trio's real clock starts at a large
    random offset), the first anti-entropy round is not due at once."""
    autojump_clock.jump(190_000)
    scheduler = Scheduler(GossipConfig(interval=100), random.Random(3))  # built "at 0"
    scheduler.peers.add("a")
    fake = FakePeers({"a": "old"})
    loop = GossipLoop(scheduler, fake.exchange)
    started = trio.current_time()
    with trio.move_on_after(150):
        await loop.run()
    first = fake.calls[0][0] - started
    assert 0 < first <= 100


def test_news_while_a_rumor_is_hot_keeps_its_pace() -> None:
    scheduler = Scheduler(GossipConfig(interval=1000, rumor_interval=0.5), random.Random(1))
    for i in range(6):
        scheduler.peers.add(f"p{i}")
    scheduler.start(0)
    scheduler.news(0)
    told = scheduler.contacts(0)
    assert [c.reason for c in told] == [Reason.RUMOR, Reason.RUMOR]
    for c in told:
        scheduler.finished(c, Outcome(ok=True, sent=1), 0.01)
    scheduler.news(0.02)  # more news (say, the next batch of a push) while hot
    assert [c for c in scheduler.contacts(0.02) if c.reason is Reason.RUMOR] == []
    assert len(scheduler.contacts(0.5)) == 2  # at its pace


def test_a_new_peer_is_met_at_once_not_at_the_next_round() -> None:
    scheduler = Scheduler(GossipConfig(interval=1000), random.Random(1))
    scheduler.start(0)
    scheduler.add_peer("a")
    scheduler.add_peer("b", OURS)  # advertises what we hold: nothing to meet it for
    scheduler.our_digest = OURS
    assert scheduler.next_wakeup(0) < 0.01
    assert scheduler.contacts(0.001) == [Contact("a", Reason.ANTI_ENTROPY)]
    scheduler.add_peer("a")  # seen again (a TXT update): not new
    assert scheduler.contacts(0.002) == []
