"""A simulated peer: a real replica, the real node app and gossip, in-memory transport.

A peer can go to sleep (a closed laptop): its gossip loop is cancelled, in-flight
exchanges are abandoned (the transport drops their responses) and the network refuses it
until it wakes.  Its replica stays, and local edits still happen (offline work).  Its
wall clock is the virtual clock plus a per-peer skew, so HLC stamps are deterministic and
skewed clocks exercise the HLC (P8).

With ``advertise_digests`` a peer does what a node does over mDNS: it keeps its
scheduler's own digest current and publishes it to its neighbours (the TXT record), at
most once per :data:`TXT_UPDATE_MIN_INTERVAL`, the latest digest winning; neighbours then
skip it while it advertises what they hold.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import trio

from p2p_prophet.errors import ProphetError
from p2p_prophet.gossip import GossipConfig, Outcome, Scheduler
from p2p_prophet.model import Value
from p2p_prophet.net.client import Peer
from p2p_prophet.net.gossip import GossipLoop, outcome_of
from p2p_prophet.net.mdns import TXT_UPDATE_MIN_INTERVAL
from p2p_prophet.net.node import local_digest
from p2p_prophet.net.server import NodeApp
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.sim.transport import SimNetwork
from p2p_prophet.store import Replica

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

EPOCH_MS = 1_790_000_000_000  # virtual time 0 on the peers' wall clocks (late 2026)


class Holdings:
    """What every peer holds, kept up to date as tickets rise, so that "has everyone
    got everything?" costs nothing to ask, even with 10,000 peers.

    ``missing`` is the sum over peers and origins of how far a peer's ticket is below
    the highest ticket anyone has for that origin: zero exactly when every peer holds
    every changeset anyone holds.
    """

    def __init__(self, peers: int) -> None:
        self.peers = peers
        self.best: dict[str, int] = {}
        self.missing = 0

    def rose(self, origin: str, old: int, new: int) -> None:
        best = self.best.get(origin, 0)
        if new > best:
            self.missing += (new - best) * self.peers
            self.best[origin] = new
        self.missing -= new - old

    @property
    def held_fraction(self) -> float:
        total = sum(self.best.values()) * self.peers
        return 1.0 if total == 0 else 1 - self.missing / total


class InlineWorker(ReplicaWorker):
    """Storage on the trio thread itself: in virtual time, a thread hop would let the
    clock jump while the work is still running."""

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args)


class SimPeer:
    def __init__(
        self,
        name: str,
        replica: Replica,
        network: SimNetwork,
        config: GossipConfig,
        seed: int,
        holdings: Holdings,
        clock_skew_s: float = 0.0,
        advertise_digests: bool = True,
    ) -> None:
        self.name = name
        self.holdings = holdings
        self.replica = replica
        self.network = network
        self.clock_skew_s = clock_skew_s
        replica.clock.wall = self._wall_ms
        self.worker = InlineWorker(replica)
        self.scheduler = Scheduler(config, random.Random(seed))
        self.loop = GossipLoop(self.scheduler, self._exchange)
        self.app = NodeApp(self.worker, on_news=self._news)
        network.apps[name] = self.app
        self.http = network.client(name)
        self.neighbours: list[SimPeer] = []
        self._clients: dict[str, Peer] = {}
        self.created: list[str] = []  # records this peer created (delete candidates)
        self._awake_scope: trio.CancelScope | None = None
        self.exchanges = 0
        self.received = 0  # changesets moved (pulled or pushed) that the other side lacked
        self.skipped = 0  # changesets moved to a peer that already held them (redundant)
        # origin -> [(virtual time, ticket)], each time this peer's ticket for it rose
        self.arrivals: dict[str, list[tuple[float, int]]] = {}
        self._tickets: dict[str, int] = {}
        self.advertise_digests = advertise_digests
        self._digest_changed = trio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.name}"

    @property
    def asleep(self) -> bool:
        return self.name in self.network.conditions.asleep

    def _wall_ms(self) -> int:
        return EPOCH_MS + int((trio.current_time() + self.clock_skew_s) * 1000)

    # -- life ------------------------------------------------------------------------------

    async def live(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Gossip until cancelled or put to sleep."""
        with trio.CancelScope() as scope:
            self._awake_scope = scope
            await self.loop.run(task_status=task_status)

    def sleep(self) -> None:
        """Close the laptop: off the network, gossip stopped; neighbours see it go (the
        mDNS goodbye) and forget it."""
        self.network.conditions.asleep.add(self.name)
        if self._awake_scope is not None:
            self._awake_scope.cancel()
        for other in self.neighbours:
            other.scheduler.peers.remove(self.url)

    def wake(self, nursery: trio.Nursery) -> None:
        """Open the laptop: back on the network; it finds its awake neighbours and they
        find it (mDNS), and each side meets the other at once."""
        self.network.conditions.asleep.discard(self.name)
        for other in self.neighbours:
            if other.asleep:
                self.scheduler.peers.remove(other.url)
            else:
                self.scheduler.add_peer(other.url, other.scheduler.our_digest)
                other.scheduler.add_peer(self.url, self.scheduler.our_digest)
                other.loop.poke()
        nursery.start_soon(self.live)

    # -- edits -----------------------------------------------------------------------------

    def edit(self, rtype: str, props: dict[str, Value], uuid: str | None = None) -> str:
        """A local edit (a person at this laptop), which is news: a create, or an update
        of ``uuid``."""
        with self.replica.edits() as batch:
            if uuid is None:
                uuid = batch.create(rtype, props)
            else:
                batch.update(rtype, uuid, props)
        self._news()
        return uuid

    def delete(self, rtype: str, uuid: str) -> bool:
        """Delete a record this peer holds live; False if it does not."""
        row = self.replica.main.find_record(rtype, uuid)
        if row is None or not row.live:
            return False
        self.replica.delete(rtype, uuid)
        self._news()
        return True

    # -- what it holds ---------------------------------------------------------------------

    def observe(self) -> None:
        """Note what this peer holds now: the tickets that rose since last time (at the
        current virtual time) and, when it advertises one, its digest."""
        now = trio.current_time()
        for origin, seq in self.replica.main.tickets().items():
            old = self._tickets.get(origin, 0)
            if seq > old:
                self._tickets[origin] = seq
                self.holdings.rose(origin, old, seq)
                self.arrivals.setdefault(origin, []).append((now, seq))
        if self.advertise_digests:
            digest = local_digest(self.replica)
            if digest != self.scheduler.our_digest:
                self.scheduler.our_digest = digest
                self._digest_changed.set()

    def ticket(self, origin: str) -> int:
        """This peer's merge ticket for ``origin``, as last observed."""
        return self._tickets.get(origin, 0)

    async def advertise(self) -> None:
        """Publish the digest to the neighbours as it changes, rate-limited like the
        node's TXT updates (run for the whole simulation)."""
        while True:
            await self._digest_changed.wait()
            self._digest_changed = trio.Event()
            if not self.asleep and self.scheduler.our_digest is not None:
                for other in self.neighbours:
                    if self.url in other.scheduler.peers:
                        other.scheduler.peers.add(self.url, self.scheduler.our_digest)
            await trio.sleep(TXT_UPDATE_MIN_INTERVAL)

    def held_since(self, origin: str, seq: int) -> float | None:
        """The virtual time this peer first held ``origin``'s changeset ``seq``."""
        steps = self.arrivals.get(origin, [])
        i = bisect_left(steps, seq, key=lambda step: step[1])
        return steps[i][0] if i < len(steps) else None

    def _news(self) -> None:
        self.observe()
        self.loop.news()

    async def _exchange(self, url: str) -> Outcome:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = Peer(url, self.worker, http=self.http, attempts=1)
        self.exchanges += 1
        try:
            result = await client.sync()
        except ProphetError:
            # A failed exchange may still have kept whole batches it pulled.
            self.observe()
            return Outcome(ok=False)
        self.received += result.pulled.changesets.integrated + result.pushed.changesets.integrated
        self.skipped += result.pulled.changesets.skipped + result.pushed.changesets.skipped
        outcome = outcome_of(result)
        if outcome.received:
            self.observe()
        return outcome

    async def aclose(self) -> None:
        await self.http.aclose()
