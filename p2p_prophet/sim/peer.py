"""A simulated peer: a real replica, the real node app and gossip, in-memory transport."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import httpx
import trio

from p2p_prophet.errors import ProphetError
from p2p_prophet.gossip import GossipConfig, Outcome, Scheduler
from p2p_prophet.net.client import Peer
from p2p_prophet.net.gossip import GossipLoop, outcome_of
from p2p_prophet.net.server import NodeApp
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.sim.transport import SimNetwork
from p2p_prophet.store import Replica

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


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
    ) -> None:
        self.name = name
        self.replica = replica
        self.network = network
        self.worker = InlineWorker(replica)
        self.scheduler = Scheduler(config, random.Random(seed))
        self.loop = GossipLoop(self.scheduler, self._exchange)
        self.app = NodeApp(self.worker, on_news=self.loop.news)
        network.apps[name] = self.app
        self.http = httpx.AsyncClient(transport=network.transport(name))
        self._clients: dict[str, Peer] = {}
        self.exchanges = 0
        self.received = 0
        self.skipped = 0  # changesets received that were already held (redundant)

    def add_neighbour(self, name: str) -> None:
        self.scheduler.add_peer(f"http://{name}")

    def edit(self, rtype: str, props: dict[str, object], uuid: str | None = None) -> str:
        """A local edit (a person at this laptop), which is news."""
        with self.replica.edits() as batch:
            if uuid is None:
                uuid = batch.create(rtype, props)  # type: ignore[arg-type]
            else:
                batch.update(rtype, uuid, props)  # type: ignore[arg-type]
        self.loop.news()
        return uuid

    async def _exchange(self, url: str) -> Outcome:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = Peer(url, self.worker, http=self.http, attempts=1)
        self.exchanges += 1
        try:
            result = await client.sync()
        except ProphetError:
            return Outcome(ok=False)
        self.received += result.pulled.changesets.integrated
        self.skipped += result.pulled.changesets.skipped
        return outcome_of(result)

    async def aclose(self) -> None:
        await self.http.aclose()
