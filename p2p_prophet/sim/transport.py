"""The simulated network: HTTP between in-process peers, with no sockets.

Each request goes straight into the target peer's :class:`NodeApp` (ASGI), so every
CBOR frame is still encoded, sent as bytes, decoded and validated exactly as over a real
network, and its bytes are counted.

The link model, per link (a default, and overrides for particular links):

* latency: a one-way delay drawn uniformly from ``latency_s`` for the request and again
  for the response;
* loss: a request is lost with probability ``loss``; the caller sees a failed
  connection, as with a vanished peer, after one maximum latency;
* bandwidth: ``bandwidth_bps`` (0 = unlimited) adds ``bytes * 8 / bandwidth`` to each
  direction.  Each request gets the whole link: there is no contention between
  requests sharing a link (a deliberate simplification, see docs/simulation.md).

:class:`Conditions` decides who can reach whom at this instant (sleeping laptops,
partitions).  A target that becomes unreachable while it handles a request loses the
response: the caller sees the connection drop, though the target may have integrated
what it was sent, as with a real peer vanishing mid-stream.  Time is trio's clock: under
MockClock a simulated hour takes as long as the CPU needs.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from p2p_prophet.net.server import PEER_SCOPE_KEY, NodeApp
from p2p_prophet.security.tls import NotTrusted, TrustedPeers


@dataclass(frozen=True)
class LinkModel:
    latency_s: tuple[float, float] = (0.0, 0.0)  # one-way, drawn uniformly per direction
    loss: float = 0.0  # probability that a request is lost
    bandwidth_bps: float = 0.0  # bits per second each way; 0 is unlimited

    def transfer_s(self, size: int) -> float:
        return size * 8 / self.bandwidth_bps if self.bandwidth_bps else 0.0


@dataclass
class Conditions:
    """Who can reach whom now.  ``asleep``: peers off the network (a closed laptop).
    ``partitions``: the active splits, each the set of peers on one side; two peers talk
    only if, for every active split, they are on the same side."""

    asleep: set[str] = field(default_factory=set)
    partitions: list[frozenset[str]] = field(default_factory=list)

    def reachable(self, a: str, b: str) -> bool:
        if a in self.asleep or b in self.asleep:
            return False
        return all((a in side) == (b in side) for side in self.partitions)


@dataclass
class SimNetwork:
    """Routes requests between peers by host name (``http://p<i>``) and counts them."""

    rng: random.Random
    default: LinkModel = field(default_factory=LinkModel)
    links: dict[frozenset[str], LinkModel] = field(default_factory=dict)
    apps: dict[str, NodeApp] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)  # members' nodes' identities
    conditions: Conditions = field(default_factory=Conditions)
    bytes_by_peer: dict[str, int] = field(default_factory=dict)  # sent + received
    requests_by_peer: dict[str, int] = field(default_factory=dict)  # made + served
    bytes_total: int = 0
    requests: int = 0
    lost: int = 0
    unreachable: int = 0

    def link(self, a: str, b: str) -> LinkModel:
        return self.links.get(frozenset((a, b)), self.default)

    def client(
        self,
        source: str,
        fingerprint: str | None = None,
        trusted: Callable[[], TrustedPeers] | None = None,
    ) -> SimHttp:
        """The HTTP client of peer ``source``.  For a members' node, ``fingerprint`` is
        the identity it presents (its client certificate, as servers see it) and
        ``trusted`` the members it accepts as servers now (its pinned TLS context): a
        target whose identity is not among them is refused before anything is sent."""
        return SimHttp(self, source, fingerprint, trusted)

    def _count(self, source: str, target: str, size: int) -> None:
        self.bytes_total += size
        for peer in (source, target):
            self.bytes_by_peer[peer] = self.bytes_by_peer.get(peer, 0) + size
            self.requests_by_peer[peer] = self.requests_by_peer.get(peer, 0) + 1


class SimHttp:
    """The HTTP client of one simulated peer: hands each request to the target's ASGI
    app in-process, under the link model.

    It speaks just enough HTTP for :class:`~p2p_prophet.net.client.Peer` (method, path,
    query, content type, status, body) and skips the rest of a real client's machinery
    (cookies, redirects, connection pools), which would cost more than the exchange
    itself and tells a gossip study nothing.  The bodies are the real CBOR streams,
    byte for byte.
    """

    def __init__(
        self,
        network: SimNetwork,
        source: str,
        fingerprint: str | None = None,
        trusted: Callable[[], TrustedPeers] | None = None,
    ) -> None:
        self.network = network
        self.source = source
        self.fingerprint = fingerprint
        self.trusted = trusted

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, content: Any = None, params: Any = None, headers: Any = None
    ) -> AsyncIterator[httpx.Response]:
        request = httpx.Request(method, url, params=params)
        body = b""
        if isinstance(content, bytes):
            body = content
        elif content is not None:
            body = b"".join([chunk async for chunk in content])
        status, response_headers, answer = await self._send(request, body, headers or {})
        yield httpx.Response(
            status, headers=response_headers, stream=httpx.ByteStream(answer), request=request
        )

    async def aclose(self) -> None:
        pass

    async def _send(
        self, request: httpx.Request, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        net = self.network
        source, target = self.source, request.url.host
        net.requests += 1
        link = net.link(source, target)
        low, high = link.latency_s
        if target not in net.apps or not net.conditions.reachable(source, target):
            net.unreachable += 1
            await trio.sleep(high)
            raise httpx.ConnectError(f"{target} is unreachable", request=request)
        if link.loss and net.rng.random() < link.loss:
            net.lost += 1
            await trio.sleep(high)
            raise httpx.ConnectError(f"the request to {target} was lost", request=request)
        if self.trusted is not None:
            theirs = net.fingerprints.get(target)
            if theirs is None or theirs not in self.trusted():
                # What the pinned TLS context does at the handshake.
                await trio.sleep(high)
                refusal = NotTrusted(theirs, f"{target} is not a member")
                raise httpx.ConnectError(f"{target}: {refusal}", request=request) from refusal
        await trio.sleep(net.rng.uniform(low, high) + link.transfer_s(len(body)))
        status, response_headers, answer = await _call_asgi(
            net.apps[target], request, body, headers, source, self.fingerprint
        )
        await trio.sleep(net.rng.uniform(low, high) + link.transfer_s(len(answer)))
        net._count(source, target, len(body) + len(answer))
        if not net.conditions.reachable(source, target):
            raise httpx.ReadError(f"{target} went away mid-response", request=request)
        return status, response_headers, answer


async def _call_asgi(
    app: NodeApp,
    request: httpx.Request,
    body: bytes,
    headers: dict[str, str],
    client: str,
    fingerprint: str | None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One HTTP/1.1 request through an ASGI app: the whole body in, the whole answer out;
    the caller's identity in the scope, as a TLS connection gives it to the app."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.url.path,
        "raw_path": request.url.raw_path,
        "query_string": request.url.query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 0),
        "server": (request.url.host, 80),
        PEER_SCOPE_KEY: fingerprint,
    }
    delivered = False
    status = 500
    response_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await trio.sleep_forever()  # no disconnect while the app still answers
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, response_headers
        await trio.lowlevel.checkpoint()
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, response_headers, b"".join(chunks)
