"""A simulated peer: a real replica and the real :class:`~p2p_prophet.net.node.Node`,
given an in-memory network, virtual time and discovery among its topology neighbours.

Every line of the node runs: its server and client, its gossip loop, the watch for
other processes' edits, the status it publishes (kept in memory), the membership
follow-up.  A peer can go to sleep (a closed laptop): its node is cancelled, in-flight
exchanges are abandoned (the transport drops their responses) and the network refuses it
until it wakes, when its node starts again.  Its replica stays, and local edits still
happen (offline work).  Its wall clock is the virtual clock plus a per-peer skew, so HLC
stamps are deterministic and skewed clocks exercise the HLC (P8).

With ``advertise_digests`` a peer does what a node does over mDNS: the node publishes
its digest to its neighbours (the TXT record), at most once per
:data:`TXT_UPDATE_MIN_INTERVAL`, the latest digest winning; neighbours then skip it while
it advertises what they hold.
"""

from __future__ import annotations

import contextlib
import ssl
from bisect import bisect_left
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar, TypeVarTuple

import trio

from p2p_prophet.gossip import GossipConfig, Scheduler
from p2p_prophet.model import Value
from p2p_prophet.net.client import HttpClient
from p2p_prophet.net.listener import ConnectionCounts, ConnectionLimits
from p2p_prophet.net.mdns import Advert, Found, Gone
from p2p_prophet.net.node import Node, local_digest
from p2p_prophet.net.server import NodeApp
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.sim.transport import SimNetwork
from p2p_prophet.store import Replica

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

EPOCH_MS = 1_790_000_000_000  # virtual time 0 on the peers' wall clocks (late 2026)
SIM_PORT = 80


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
    """One simulated laptop: a real :class:`~p2p_prophet.net.node.Node` over its replica,
    given the in-memory network, virtual time and storage on the trio thread
    (:class:`SimSurroundings`, :class:`InlineWorker`).  The node's status is kept in
    memory (every ``status_interval_s``), not written to a file; its watch looks every
    ``watch_interval_s``."""

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
        status_interval_s: float = 10.0,
        watch_interval_s: float = 1.0,
    ) -> None:
        self.name = name
        self.holdings = holdings
        self.replica = replica
        self.network = network
        self.clock_skew_s = clock_skew_s
        self.advertise_digests = advertise_digests
        replica.clock.wall = self._wall_ms
        self.neighbours: list[SimPeer] = []
        self.node = Node(
            replica,
            gossip=config,
            seed=seed,
            mdns=True,  # the simulated LAN's discovery: neighbours, sleep and wake
            name=name,
            tls=replica.identity is not None,  # a signed replica's node: members only
            surroundings=SimSurroundings(self),
            worker=InlineWorker(replica),
            write_status=False,
            status_interval=status_interval_s,
            # No other process edits a simulated replica: the watch only picks up the
            # digest after pushes, and looking ten times a second would cost more than
            # the gossip itself at a thousand peers.
            watch_interval=watch_interval_s,
            on_change=self.observe,
        )
        self.created: list[str] = []  # records this peer created (delete candidates)
        self._awake_scope: trio.CancelScope | None = None
        # origin -> [(virtual time, ticket)], each time this peer's ticket for it rose
        self.arrivals: dict[str, list[tuple[float, int]]] = {}
        self._tickets: dict[str, int] = {}

    @property
    def url(self) -> str:
        scheme = "https" if self.replica.identity is not None else "http"
        return f"{scheme}://{self.name}:{SIM_PORT}"

    @property
    def scheduler(self) -> Scheduler:
        return self.node.scheduler

    @property
    def exchanges(self) -> int:
        return self.node.exchanges

    @property
    def received(self) -> int:
        """Changesets moved (pulled or pushed) that the other side lacked."""
        return self.node.received

    @property
    def skipped(self) -> int:
        """Changesets moved to a peer that already held them (redundant)."""
        return self.node.skipped

    @property
    def asleep(self) -> bool:
        return self.name in self.network.conditions.asleep

    def _wall_ms(self) -> int:
        return EPOCH_MS + int((trio.current_time() + self.clock_skew_s) * 1000)

    # -- life ------------------------------------------------------------------------------

    async def live(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled or put to sleep."""
        with trio.CancelScope() as scope:
            self._awake_scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(self.node.run, "0.0.0.0", SIM_PORT)
                task_status.started()

    def sleep(self) -> None:
        """Close the laptop: off the network, the node stopped; neighbours see it go (the
        mDNS goodbye) and forget it."""
        self.network.conditions.asleep.add(self.name)
        if self._awake_scope is not None:
            self._awake_scope.cancel()

    def wake(self, nursery: trio.Nursery) -> None:
        """Open the laptop: back on the network, the node started again; it finds its
        awake neighbours and they find it (mDNS), and each side meets the other at once."""
        self.network.conditions.asleep.discard(self.name)
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
        current virtual time)."""
        now = trio.current_time()
        for origin, seq in self.replica.main.tickets().items():
            old = self._tickets.get(origin, 0)
            if seq > old:
                self._tickets[origin] = seq
                self.holdings.rose(origin, old, seq)
                self.arrivals.setdefault(origin, []).append((now, seq))

    def ready(self) -> None:
        """Before the run: note what this peer holds, and have its node advertise the
        digest of it from the first instant, as laptops that were on before the run
        began would (neighbours holding the same then skip each other)."""
        self.observe()
        self.node.scheduler.our_digest = local_digest(self.replica)

    def ticket(self, origin: str) -> int:
        """This peer's merge ticket for ``origin``, as last observed."""
        return self._tickets.get(origin, 0)

    def held_since(self, origin: str, seq: int) -> float | None:
        """The virtual time this peer first held ``origin``'s changeset ``seq``."""
        steps = self.arrivals.get(origin, [])
        i = bisect_left(steps, seq, key=lambda step: step[1])
        return steps[i][0] if i < len(steps) else None

    def _news(self) -> None:
        self.observe()
        self.node.edited()


class SimSurroundings:
    """A simulated node's surroundings (:class:`~p2p_prophet.net.surroundings.Surroundings`):
    its HTTP client and server on the in-memory network, and discovery among its
    neighbours in the topology."""

    def __init__(self, peer: SimPeer) -> None:
        self.peer = peer
        identity = peer.replica.identity
        if identity is None:
            self.http = peer.network.client(peer.name)
        else:
            peer.network.fingerprints[peer.name] = identity.fingerprint
            self.http = peer.network.client(
                peer.name, identity.fingerprint, trusted=lambda: peer.node.trusted
            )

    def http_client(self, tls: ssl.SSLContext | None) -> AbstractAsyncContextManager[HttpClient]:
        return contextlib.nullcontext(self.http)

    async def serve(
        self,
        app: NodeApp,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        counts: ConnectionCounts,
        limits: ConnectionLimits | None,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.peer.network.apps[self.peer.name] = app
        task_status.started([self.peer.url])
        await trio.sleep_forever()

    def announcer(
        self,
        advert: Advert,
        found: Callable[[Found], None],
        gone: Callable[[Gone], None],
        *,
        interfaces: Sequence[str] | None,
        scheme: str,
    ) -> SimAnnouncer:
        return SimAnnouncer(self.peer)

    def addresses(self, host: str, interfaces: Sequence[str] | None) -> list[str]:
        return []


class SimAnnouncer:
    """mDNS among neighbours: on the air, a node finds its awake neighbours and they find
    it; its goodbye makes them forget it; its digest reaches those that know it, at most
    once per :data:`TXT_UPDATE_MIN_INTERVAL` (unless the scenario turns digests off)."""

    def __init__(self, peer: SimPeer) -> None:
        self.peer = peer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            for other in self.peer.neighbours:
                if not other.asleep:
                    self.peer.node.found(_advert_of(other))
                    other.node.found(_advert_of(self.peer))
            task_status.started()
            await trio.sleep_forever()
        finally:
            if self.peer.asleep:  # a closed laptop says goodbye; the end of a run does not
                for other in self.peer.neighbours:
                    other.node.gone(Gone(self.peer.name))

    async def update_digest(self, digest: bytes) -> None:
        # The node spaces its updates by mDNS's rate (Node._keep_digest_advertised).
        if not self.peer.advertise_digests or self.peer.asleep:
            return
        for other in self.peer.neighbours:
            if self.peer.url in other.scheduler.peers:
                other.scheduler.peers.add(self.peer.url, digest)


def _advert_of(peer: SimPeer) -> Found:
    """What ``peer``'s neighbours see of it on the simulated LAN."""
    digest = peer.node.scheduler.our_digest if peer.advertise_digests else None
    return Found(peer.name, peer.url, peer.replica.uuid, digest)
