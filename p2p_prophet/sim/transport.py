"""The simulated network: HTTP between in-process peers, with no sockets.

Each request goes through httpx's ASGI transport straight into the target peer's
:class:`NodeApp`, so every CBOR frame is still encoded, sent as bytes, decoded and
validated exactly as over a real network, and its bytes are counted.  The network model
adds a latency drawn per request, drops requests with the loss rate (the caller sees a
failed connection, as with a vanished peer) and refuses links between peers that are
asleep or on two sides of a partition.  Time is trio's clock: under MockClock a
simulated hour takes as long as the CPU needs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import trio

from p2p_prophet.net.server import NodeApp


@dataclass
class LinkModel:
    latency_s: tuple[float, float] = (0.0, 0.0)  # one-way, drawn uniformly per request
    loss: float = 0.0  # probability that a request is lost


@dataclass
class SimNetwork:
    """Routes requests between peers by host name (``http://p<i>``)."""

    rng: random.Random
    model: LinkModel = field(default_factory=LinkModel)
    apps: dict[str, NodeApp] = field(default_factory=dict)
    reachable: Callable[[str, str], bool] = lambda a, b: True  # asleep, partitions
    bytes_sent: dict[str, int] = field(default_factory=dict)  # per peer, both directions
    requests: int = 0
    lost: int = 0

    def transport(self, source: str) -> SimTransport:
        return SimTransport(self, source)


class SimTransport(httpx.AsyncBaseTransport):
    def __init__(self, network: SimNetwork, source: str) -> None:
        self.network = network
        self.source = source

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        net = self.network
        target = request.url.host
        net.requests += 1
        low, high = net.model.latency_s
        if target not in net.apps or not net.reachable(self.source, target):
            await trio.sleep(high)
            raise httpx.ConnectError(f"{target} is unreachable", request=request)
        if net.model.loss and net.rng.random() < net.model.loss:
            net.lost += 1
            await trio.sleep(high)
            raise httpx.ConnectError(f"the request to {target} was lost", request=request)
        body = await request.aread()
        await trio.sleep(net.rng.uniform(low, high))
        # NodeApp is an ASGI app; httpx types the scope more narrowly than a dict.
        asgi = httpx.ASGITransport(app=net.apps[target])  # type: ignore[arg-type]
        response = await asgi.handle_async_request(request)
        content = await response.aread()
        await trio.sleep(net.rng.uniform(low, high))
        size = len(body) + len(content)
        for peer in (self.source, target):
            net.bytes_sent[peer] = net.bytes_sent.get(peer, 0) + size
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(content),
            request=request,
        )
