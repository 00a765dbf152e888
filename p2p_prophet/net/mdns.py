"""mDNS/DNS-SD: advertise this node and discover the nodes of the same database.

The service type is Prophet's, ``_prophet._tcp.local.``; the instance name is
``<name> (<discovery key>)``; the TXT record (under 200 bytes) holds::

    v  protocol version          r  replica uuid
    k  discovery key             h  digest of the vectors and head ids (hex)

so that a peer can tell without connecting whether it is behind.  The TXT record is
updated when the digest changes (at most once a second: mDNS is a shared medium).

The database id is never advertised: the discovery key
(:mod:`p2p_prophet.security.discovery`) stands for it, and only the holders of the
database's discovery secret can tell which database it is.

python-zeroconf runs its own thread.  Its callbacks only hand events into trio through a
memory channel; resolving a service (a blocking call) runs on a trio worker thread.
Nothing here ever blocks the trio loop.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from p2p_prophet.errors import ProphetError
from p2p_prophet.wire import PROTOCOL_VERSION, SUPPORTED_VERSIONS

log = logging.getLogger("p2p_prophet.mdns")

SERVICE_TYPE = "_prophet._tcp.local."
MAX_LABEL = 63  # DNS label limit for the instance name
CLASH_ROOM = 4
TXT_UPDATE_MIN_INTERVAL = 1.0
RESOLVE_TIMEOUT_MS = 3000
MAX_IGNORED_NAMES = 256


@dataclass(frozen=True)
class Advert:
    """What a node advertises."""

    name: str
    discovery_key: str  # never the db_uuid: see p2p_prophet.security.discovery
    replica_uuid: str
    port: int
    addresses: Sequence[str]
    digest: bytes

    @property
    def instance(self) -> str:
        suffix = f" ({self.discovery_key})"
        # Room is left for the "-NN" zeroconf adds to a name that clashes.
        room = MAX_LABEL - len(suffix) - CLASH_ROOM
        name = self.name.replace(".", "-").encode()[:room].decode(errors="ignore")
        return f"{name}{suffix}.{SERVICE_TYPE}"

    def txt(self) -> dict[str, str]:
        return {
            "v": str(PROTOCOL_VERSION),
            "r": self.replica_uuid,
            "k": self.discovery_key,
            "h": self.digest.hex(),
        }

    def service_info(self, instance: str | None = None) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE,
            instance or self.instance,
            port=self.port,
            properties=self.txt(),
            parsed_addresses=list(self.addresses),
            # A host name of our own, so that several nodes on one machine do not fight
            # over the machine's name.
            server=f"p2p-prophet-{self.replica_uuid[:8]}.local.",
        )


@dataclass(frozen=True)
class Found:
    """A node of our database appeared or changed its digest."""

    instance: str
    url: str
    replica_uuid: str
    digest: bytes | None


@dataclass(frozen=True)
class Gone:
    """A node said goodbye or its records expired."""

    instance: str


def parse(
    info: ServiceInfo, discovery_key: str, own_replica: str, scheme: str = "http"
) -> Found | None:
    """A :class:`Found` for a service of our database (it advertises our
    ``discovery_key``) that is not us, else None.  Its URL has our own ``scheme``: the
    nodes of one database all serve TLS, or all plain HTTP (a plain database's key is
    not a signed one's, so the two never find each other)."""
    props = {
        k.decode(errors="replace"): (v or b"").decode(errors="replace")
        for k, v in (info.properties or {}).items()
    }
    try:
        version = int(props.get("v", ""))
    except ValueError:
        return None
    if version not in SUPPORTED_VERSIONS or props.get("k") != discovery_key:
        return None
    replica = props.get("r", "")
    if not replica or replica == own_replica:
        return None
    addresses = info.parsed_addresses(IPVersion.V4Only) or info.parsed_addresses()
    if not addresses or not info.port:
        return None
    host = addresses[0]
    where = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{where}:{info.port}"
    try:
        digest: bytes | None = bytes.fromhex(props.get("h", ""))
    except ValueError:
        digest = None
    return Found(info.name, url, replica, digest or None)


class Discovery:
    """Advertises ``advert`` and reports the nodes of its database until cancelled.

    ``on_found`` / ``on_gone`` are called on the trio loop.  ``interfaces``: the
    addresses to run mDNS on (default: every interface).  ``scheme``: of the URLs of the
    nodes found (``https`` for a node that serves TLS).
    """

    def __init__(
        self,
        advert: Advert,
        on_found: Callable[[Found], None],
        on_gone: Callable[[Gone], None],
        *,
        interfaces: Sequence[str] | None = None,
        scheme: str = "http",
    ) -> None:
        self.advert = advert
        self.scheme = scheme
        self.on_found = on_found
        self.on_gone = on_gone
        self.interfaces = interfaces
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._digest_sent = advert.digest
        self._last_update = -math.inf
        self.known: dict[str, Found] = {}
        # Services of other databases (or versions) already said to be ignored: one log
        # line each, and no more than MAX_IGNORED_NAMES remembered (a LAN may be noisy).
        self._ignored: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Deep enough for any LAN's burst of announcements; beyond it an event is lost
        # until that service announces itself again.
        send, receive = trio.open_memory_channel[tuple[str, str, ServiceStateChange]](4096)
        token = trio.lowlevel.current_trio_token()

        def deliver(event: tuple[str, str, ServiceStateChange]) -> None:
            # A burst beyond the channel, or shutting down.
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                send.send_nowait(event)

        def handler(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            # On zeroconf's thread: hand over to the trio loop, never block, never raise.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(deliver, (service_type, name, state_change))

        interfaces: Any = list(self.interfaces) if self.interfaces else None
        try:
            zc = await trio.to_thread.run_sync(
                lambda: Zeroconf(interfaces=interfaces) if interfaces else Zeroconf()
            )
        except (OSError, ValueError) as exc:
            where = ", ".join(self.interfaces or ["every interface"])
            raise ProphetError(
                f"cannot start mDNS on {where}: {exc} (--mdns-interface takes the address "
                "of an interface; --no-mdns turns discovery off)"
            ) from None
        self._zc = zc
        try:
            info = self.advert.service_info()
            # Two nodes of one database on one host (tests, a second replica) would share
            # a name: zeroconf then picks the next free one (and sets info.name to it).
            await trio.to_thread.run_sync(lambda: zc.register_service(info, allow_name_change=True))
            self._info = info
            browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[handler])
            task_status.started()
            try:
                async for service_type, name, change in receive:
                    await self._handle(zc, service_type, name, change)
            finally:
                browser.cancel()
        finally:
            with trio.CancelScope(shield=True):
                # The goodbye: peers drop us at once instead of waiting for expiry.
                await trio.to_thread.run_sync(self._close, zc)

    def _close(self, zc: Zeroconf) -> None:
        if self._info is not None:
            zc.unregister_service(self._info)
        zc.close()

    async def _handle(
        self, zc: Zeroconf, service_type: str, name: str, change: ServiceStateChange
    ) -> None:
        if change is ServiceStateChange.Removed:
            if self.known.pop(name, None) is not None:
                self.on_gone(Gone(name))
            return
        info = await trio.to_thread.run_sync(
            zc.get_service_info, service_type, name, RESOLVE_TIMEOUT_MS
        )
        if info is None:
            return
        found = parse(info, self.advert.discovery_key, self.advert.replica_uuid, self.scheme)
        if found is None:
            own = info.properties and info.properties.get(b"r") == self.advert.replica_uuid.encode()
            if not own and name not in self._ignored and len(self._ignored) < MAX_IGNORED_NAMES:
                self._ignored.add(name)
                log.info("ignoring %s: not a node of this database", name)
            return
        self.known[name] = found
        self.on_found(found)

    async def update_digest(self, digest: bytes) -> None:
        """Advertise a new digest (rate-limited; the latest one wins)."""
        if digest == self._digest_sent or self._zc is None or self._info is None:
            return
        wait = self._last_update + TXT_UPDATE_MIN_INTERVAL - trio.current_time()
        if wait > 0:
            await trio.sleep(wait)
        self._last_update = trio.current_time()
        self.advert = Advert(**{**self.advert.__dict__, "digest": digest})
        self._info = self.advert.service_info(self._info.name)
        self._digest_sent = digest
        await trio.to_thread.run_sync(self._zc.update_service, self._info)


def advertised_addresses(host: str, interfaces: Sequence[str] | None = None) -> list[str]:
    """The addresses to advertise for a server bound to ``host``: the mDNS interfaces'
    own addresses if given, else every address of this machine but loopback's for a
    server on every interface, else the address it is bound to."""
    if host in ("0.0.0.0", "", "::"):
        if interfaces:
            return list(interfaces)
        found = {a for a in _interface_addresses() if not a.startswith("127.")}
        return sorted(found) or ["127.0.0.1"]
    return [str(socket.getaddrinfo(host, None)[0][4][0])]


def _interface_addresses() -> list[str]:
    """This machine's IPv4 addresses, every interface."""
    import ifaddr  # zeroconf's own dependency, for enumerating interfaces

    return [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str)
    ]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.getaddrinfo(host, None)[0][4][0]).is_loopback
    except (OSError, ValueError):
        return False


__all__ = [
    "SERVICE_TYPE",
    "Advert",
    "Discovery",
    "Found",
    "Gone",
    "advertised_addresses",
    "is_loopback",
    "parse",
]
