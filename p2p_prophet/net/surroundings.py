"""What a node talks through, given to it (hypercorn's style): the HTTP client and server,
discovery, and the addresses to advertise.

:class:`Lan` is the real one: httpx, hypercorn on TCP (``serve``), mDNS.  The simulator
gives each simulated node its own, over the in-memory network and virtual time, so that
the very same :class:`~p2p_prophet.net.node.Node` runs in both.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import trio

from p2p_prophet.net.client import HttpClient, new_http_client
from p2p_prophet.net.listener import ConnectionCounts, ConnectionLimits
from p2p_prophet.net.mdns import Advert, Discovery, Found, Gone, advertised_addresses
from p2p_prophet.net.server import NodeApp, serve


class Announcer(Protocol):
    """What a node needs of discovery: run (advertise and browse) until cancelled, and
    advertise a new digest (rate-limited; the latest wins)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Advertise and browse until cancelled; ``task_status.started()`` once on the air."""

    async def update_digest(self, digest: bytes) -> None:
        """Advertise ``digest`` from now on."""


class Surroundings(Protocol):
    """How a node reaches others and is reached (see the module docstring)."""

    def http_client(self, tls: ssl.SSLContext | None) -> AbstractAsyncContextManager[HttpClient]:
        """A client for dialing peers (``tls``: pinned to the membership)."""

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
        """Serve ``app`` until cancelled; ``task_status.started`` gets the URLs."""

    def announcer(
        self,
        advert: Advert,
        found: Callable[[Found], None],
        gone: Callable[[Gone], None],
        *,
        interfaces: Sequence[str] | None,
        scheme: str,
    ) -> Announcer:
        """Discovery of the nodes of our database, advertising ``advert``."""

    def addresses(self, host: str, interfaces: Sequence[str] | None) -> list[str]:
        """The addresses to advertise for a server bound to ``host``."""


class Lan:
    """The real surroundings: httpx, hypercorn on TCP, mDNS on the machine's interfaces."""

    def http_client(self, tls: ssl.SSLContext | None) -> AbstractAsyncContextManager[HttpClient]:
        client: Any = new_http_client(tls=tls)
        return client  # type: ignore[no-any-return]

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
        await serve(
            app,
            host,
            port,
            ssl_context=ssl_context,
            handshake_timeout=handshake_timeout,
            counts=counts,
            limits=limits,
            task_status=task_status,
        )

    def announcer(
        self,
        advert: Advert,
        found: Callable[[Found], None],
        gone: Callable[[Gone], None],
        *,
        interfaces: Sequence[str] | None,
        scheme: str,
    ) -> Announcer:
        return Discovery(advert, found, gone, interfaces=interfaces, scheme=scheme)

    def addresses(self, host: str, interfaces: Sequence[str] | None) -> list[str]:
        return advertised_addresses(host, interfaces)
