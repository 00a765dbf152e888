"""A node: the server, the gossip loop and a watch on the replica, in one nursery.

This is what ``p2p-prophet serve`` runs.  Peers come from ``--peer`` (and, with
discovery, from mDNS); the gossip scheduler decides when to sync with which; each
contact is one :meth:`Peer.sync`.  News -- changesets this node did not have a moment
ago -- makes the rumor hot: changesets integrated by a sync or a push, and edits made to
the replica by another process (the CLI), which the watch notices through SQLite's
``data_version``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio

from p2p_prophet.errors import InvalidValue, NotFound, ProphetError
from p2p_prophet.gossip import GossipConfig, Outcome, Scheduler
from p2p_prophet.net.bounds import DEFAULT_BOUNDS, ServerBounds
from p2p_prophet.net.client import HttpClient, Peer
from p2p_prophet.net.gossip import GossipLoop, outcome_of
from p2p_prophet.net.listener import ConnectionCounts, ConnectionLimits
from p2p_prophet.net.mdns import (
    TXT_UPDATE_MIN_INTERVAL,
    Advert,
    Found,
    Gone,
    is_loopback,
)
from p2p_prophet.net.server import HANDSHAKE_TIMEOUT, NodeApp
from p2p_prophet.net.supervisor import supervised
from p2p_prophet.net.surroundings import Announcer, Lan, Surroundings
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security import authority, membership
from p2p_prophet.security.tls import TrustedPeers, client_context, server_context
from p2p_prophet.store import Replica
from p2p_prophet.sync import exchange
from p2p_prophet.sync.forks import forks_found
from p2p_prophet.wire import Batch

log = logging.getLogger("p2p_prophet.node")

WATCH_INTERVAL = 0.1  # seconds between looks for edits made by other processes
TRUST_CHECK_INTERVAL = 5.0  # seconds between looks for expired invites
STATUS_FILE = "node-status.json"
STATUS_INTERVAL = 1.0  # seconds between rewrites of the status file


def local_digest(replica: Replica) -> bytes:
    """One digest of both vectors (and head ids): what a node advertises."""
    hello = exchange.hello(replica)
    return hello.main_digest + hello.resolutions_digest


class Node:
    """One replica's node.  ``run`` serves, gossips and watches until cancelled."""

    def __init__(
        self,
        replica: Replica,
        *,
        gossip: GossipConfig | None = None,
        peers: Iterable[str] = (),
        seed: int | None = None,
        mdns: bool = False,
        mdns_interfaces: Sequence[str] | None = None,
        name: str | None = None,
        tls: bool | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        bounds: ServerBounds = DEFAULT_BOUNDS,
        limits: ConnectionLimits | None = None,
        surroundings: Surroundings | None = None,
        worker: ReplicaWorker | None = None,
        write_status: bool = True,
        status_interval: float = STATUS_INTERVAL,
        watch_interval: float = WATCH_INTERVAL,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``tls``: serve and dial TLS pinned to the membership (the replica must have
        an identity), else plain HTTP (``--insecure``); by default, TLS exactly when the
        replica has an identity.  ``handshake_timeout`` and ``limits`` (on connections):
        see :func:`serve`; ``bounds``: see :class:`NodeApp`.

        What the node talks through is given to it: ``surroundings`` (default
        :class:`~p2p_prophet.net.surroundings.Lan`: TCP, httpx, mDNS) and ``worker``
        (default: a thread of the replica's own).  The status is published every
        ``status_interval`` seconds to the replica's ``node-status.json`` (with
        ``write_status`` false, kept in :attr:`last_status` only); the watch looks
        for other processes' edits every ``watch_interval`` seconds.  ``on_change`` is
        called after each exchange this node makes and each pushed batch it takes (the
        simulator records arrivals there).  The simulator builds its peers with all of
        these, so that the node's every line runs in simulation too."""
        if tls is None:
            tls = replica.identity is not None
        if tls and replica.identity is None:
            raise InvalidValue(
                f"{replica.path} has no identity (its database has no members), so it can "
                "only be served without TLS: `p2p-prophet serve --insecure`"
            )
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.limits = limits
        self.trusted = TrustedPeers()
        self._next_trust_check = 0.0
        self.mdns = mdns
        self.mdns_interfaces = mdns_interfaces
        self.name = name or socket.gethostname()
        self.discovery: Announcer | None = None
        self._digest_changed = trio.Event()
        self._discovered: dict[str, str] = {}  # mDNS instance -> URL
        self._replicas: dict[str, str] = {}  # URL -> replica uuid, as advertised
        self._given = {url.rstrip("/") for url in peers}
        self.surroundings: Surroundings = surroundings or Lan()
        self.worker = worker or ReplicaWorker(replica)
        self.status_file = replica.path / STATUS_FILE if write_status else None
        self.status_interval = status_interval
        self.watch_interval = watch_interval
        self.on_change = on_change
        self.last_status: dict[str, Any] | None = None
        self.exchanges = 0  # exchanges this node made
        self.received = 0  # changesets moved either way that the other side lacked
        self.skipped = 0  # changesets moved to a side that already held them
        self.scheduler = Scheduler(gossip or GossipConfig(), random.Random(seed))
        for url in peers:
            self.scheduler.add_peer(url.rstrip("/"))
        self.loop = GossipLoop(self.scheduler, self._exchange)
        self.app = NodeApp(
            self.worker,
            on_news=self._pushed,
            after_integrate=self._follow_membership,
            trusted=self.trusted if tls else None,
            screen=_screen if tls else None,
            bounds=bounds,
        )
        self._digest_stale = False
        self._digest_stale_now = trio.Event()  # set with _digest_stale: look at once
        self._versions = (0, 0)  # the replica's data versions the watch last saw
        self.urls: list[str] = []
        self.connections = ConnectionCounts()  # what the server holds, for status
        self._http: HttpClient | None = None
        self._clients: dict[str, Peer] = {}

    @property
    def replica(self) -> Replica:
        return self.worker.replica

    def add_peer(self, url: str, digest: bytes | None = None) -> None:
        self.scheduler.add_peer(url.rstrip("/"), digest)
        self.loop.poke()

    def remove_peer(self, url: str) -> None:
        self.scheduler.peers.remove(url.rstrip("/"))
        self._clients.pop(url.rstrip("/"), None)

    def _set_digest(self, digest: bytes) -> None:
        if digest != self.scheduler.our_digest:
            self.scheduler.our_digest = digest
            self._digest_changed.set()

    def found(self, found: Found) -> None:
        """Discovery found a node of our database (or a new digest of one)."""
        old = self._discovered.get(found.instance)
        if old != found.url:
            log.info("discovered %s (replica %s)", found.url, found.replica_uuid)
            if old is not None:
                self._forget(old)  # the same node at a new address
        self._discovered[found.instance] = found.url
        self._replicas[found.url] = found.replica_uuid
        self.add_peer(found.url, found.digest)

    def gone(self, gone: Gone) -> None:
        """Discovery saw a node leave."""
        url = self._discovered.pop(gone.instance, None)
        if url is not None:
            log.info("%s left", url)
            self._forget(url)

    def _forget(self, url: str) -> None:
        self._replicas.pop(url, None)
        if url not in self._given:  # a peer given by hand stays, whatever mDNS says
            self.remove_peer(url)

    async def _advertise(self, host: str, port: int) -> None:
        """Advertise this node and discover others until cancelled (or until mDNS
        fails, for :func:`supervised` to start it again)."""
        from p2p_prophet.security.discovery import discovery_key, replica_secret

        # The LAN sees a key only members can recognise, never the database id.
        secret = await self.worker.run(replica_secret, self.replica)
        advert = Advert(
            name=self.name,
            discovery_key=discovery_key(secret, self.replica.db_uuid),
            replica_uuid=self.replica.uuid,
            port=port,
            addresses=self.surroundings.addresses(host, self.mdns_interfaces),
            digest=self.scheduler.our_digest or b"",
        )
        discovery = self.surroundings.announcer(
            advert, self.found, self.gone, interfaces=self.mdns_interfaces, scheme=self.scheme
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(discovery.run)
                self.discovery = discovery
                log.info(
                    "advertising %r over mDNS (%s), looking for the nodes of database %s",
                    advert.name,
                    ", ".join(self.mdns_interfaces or ["every interface"]),
                    self.replica.db_uuid,  # a local log: the database id never goes on the LAN
                )
                nursery.start_soon(self._keep_digest_advertised, discovery)
        finally:
            self.discovery = None

    async def _keep_digest_advertised(self, discovery: Announcer) -> None:
        """Advertise the digest as it changes, at most once per
        :data:`TXT_UPDATE_MIN_INTERVAL`: after each wait, the digest of *now* (the
        latest wins; one changed while waiting is not advertised stale)."""
        while True:
            await self._digest_changed.wait()
            self._digest_changed = trio.Event()
            if self.scheduler.our_digest is not None:
                await discovery.update_digest(self.scheduler.our_digest)
            await trio.sleep(TXT_UPDATE_MIN_INTERVAL)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def _follow_membership(self, replica: Replica, batch: Batch) -> None:
        """On the worker thread, right after a batch is committed: if it touched member
        records, trust exactly the members now, before the next handshake is judged."""
        if self.tls and not batch.resolution and _touches_members(batch):
            membership.refresh(self.trusted, replica)

    async def _refresh_trust(self) -> None:
        """Follow the membership: trust exactly its members (and unexpired invites) now."""
        if self.tls:
            await self.worker.run(membership.refresh, self.trusted, self.replica)
            self._next_trust_check = trio.current_time() + TRUST_CHECK_INTERVAL

    async def _digest_changed_by_us(self) -> None:
        """Recompute our digest after something changed; a changed digest may be a
        changed membership, so the trusted peers follow at once."""
        digest = await self.worker.run(local_digest, self.replica)
        if digest != self.scheduler.our_digest:
            await self._refresh_trust()
        self._set_digest(digest)

    async def run(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # The versions first, then the digest: an edit another process commits in between
        # is then seen as one by the watch, never lost between the two.
        self._versions = await self.worker.run(_data_versions, self.replica)
        self.scheduler.our_digest = await self.worker.run(local_digest, self.replica)
        server_tls = client_tls = None
        if self.tls:
            identity = self.replica.identity
            assert identity is not None
            await self._refresh_trust()
            # Membership is judged per request by the app (NodeApp.check_member), so that
            # a removed member is told why, not just cut off.
            server_tls = server_context(identity, self.trusted, judged_per_request=True)
            client_tls = client_context(identity, self.trusted)
        http_client = self.surroundings.http_client(client_tls)
        async with http_client as http, trio.open_nursery() as nursery:
            self._http = http
            self.urls = await nursery.start(
                partial(
                    self.surroundings.serve,
                    self.app,
                    host,
                    port,
                    ssl_context=server_tls,
                    handshake_timeout=self.handshake_timeout,
                    counts=self.connections,
                    limits=self.limits,
                )
            )
            await nursery.start(self.loop.run)
            # Everything below runs for the node's whole life; what its environment
            # breaks (a full disk, no descriptors, a vanished interface) is logged and
            # started again, never fatal (supervisor.py).
            if self.mdns and is_loopback(host) and not self.mdns_interfaces:
                log.warning(
                    "mDNS is off: a node listening on %s cannot be reached from the LAN "
                    "(listen on 0.0.0.0 or a LAN address to be discovered)",
                    host,
                )
            elif self.mdns:
                bound_port = int(self.urls[0].rsplit(":", 1)[1])
                # Registering takes mDNS a second or two (probing for the name): the
                # server and the gossip with given peers do not wait for it.
                nursery.start_soon(supervised, "mDNS", partial(self._advertise, host, bound_port))
            nursery.start_soon(supervised, "the watch on the replica", self._watch)
            nursery.start_soon(supervised, "the status file", self._publish_status)
            task_status.started(self.urls)

    async def _exchange(self, url: str) -> Outcome:
        assert self._http is not None
        client = self._clients.get(url)
        if client is None:
            # The scheduler backs off a failing peer: one attempt per contact here.
            client = self._clients[url] = Peer(
                url,
                self.worker,
                http=self._http,
                attempts=1,
                after_integrate=self._follow_membership,
            )
        self.exchanges += 1
        try:
            result = await client.sync()
            await self._digest_changed_by_us()
        except (ProphetError, sqlite3.Error) as exc:
            log.warning("sync with %s failed: %s", url, exc)
            if self.on_change is not None:
                self.on_change()  # a failed exchange may still have kept whole batches
            return Outcome(ok=False)
        pulled, pushed = result.pulled.changesets, result.pushed.changesets
        self.received += pulled.integrated + pushed.integrated
        self.skipped += pulled.skipped + pushed.skipped
        outcome = outcome_of(result)
        if outcome.received and self.on_change is not None:
            self.on_change()
        return outcome

    def _pushed(self) -> None:
        self._mark_digest_stale()
        if self.on_change is not None:
            self.on_change()

    def edited(self) -> None:
        """This process edited the replica through the node's own connection (which the
        watch cannot see): its digest is recomputed at once, then the rumor is hot."""
        self._mark_digest_stale()

    def _mark_digest_stale(self) -> None:
        # The watch recomputes the digest, then makes the rumor hot: in that order, or
        # the rumor would be judged against the old digest, which the peers that were in
        # sync advertise, and die at once with nobody told.
        self._digest_stale = True
        self._digest_stale_now.set()

    def status(self) -> dict[str, Any]:
        """What this node knows, as `p2p-prophet peers` shows it."""
        now = trio.current_time()
        wall_offset = time.time() - now
        identity = self.replica.identity
        return {
            "pid": os.getpid(),
            "name": self.name,
            "urls": self.urls,
            "replica": self.replica.uuid,
            "database": self.replica.db_uuid,
            "tls": self.tls,
            "identity": identity.fingerprint if identity is not None else None,
            "mdns": self.mdns,
            "updated": _iso(time.time()),
            "connections": self.connections.as_dict(),
            "peers": [
                {
                    "url": p.id,
                    "replica": self._replicas.get(p.id),
                    "source": "given" if p.id in self._given else "discovered",
                    "state": p.state(now).value,
                    "failures": p.failures,
                    "last_exchange": _iso(
                        None if p.last_exchange is None else p.last_exchange + wall_offset
                    ),
                    "sent": p.sent,
                    "received": p.received,
                    "in_sync": p.digest is not None and p.digest == self.scheduler.our_digest,
                }
                for p in sorted(self.scheduler.peers.peers.values(), key=lambda p: p.id)
            ],
        }

    async def _publish_status(self) -> None:
        path = self.status_file
        try:
            while True:
                status = self.status()
                status["forks"] = await self.worker.run(forks_found, self.replica)
                self.last_status = status
                if path is not None:
                    text = json.dumps(self.last_status)
                    await trio.to_thread.run_sync(_write_atomically, path, text)
                await trio.sleep(self.status_interval)
        finally:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()

    async def _watch(self) -> None:
        """Notice edits other processes commit to the replica after ``self._versions``
        were read, and tell the loop (started again after a failure, it goes on from
        the versions it last saw).  Changes this process made (a push taken, an edit)
        are looked at once, so that the advertised digest follows them without delay."""
        replica = self.replica
        while True:
            with trio.move_on_after(self.watch_interval):
                await self._digest_stale_now.wait()
            self._digest_stale_now = trio.Event()
            now = await self.worker.run(_data_versions, replica)
            if now != self._versions or self._digest_stale:
                self._versions, self._digest_stale = now, False
                await self._digest_changed_by_us()
                self.loop.news()
            elif self.tls and trio.current_time() >= self._next_trust_check:
                await self._refresh_trust()  # invites expire with nothing written


def _screen(replica: Replica, caller: str | None, batch: Batch) -> None:
    """Who may push what to a TLS node (security/authority.py)."""
    authority.screen_push(replica, caller, batch.changesets, resolution=batch.resolution)


def _touches_members(batch: Batch) -> bool:
    return any(
        change.type == membership.MEMBER_TYPE
        for item in batch.changesets
        for change in item[0].changes
    )


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        staging.write_text(text, encoding="utf-8")
        staging.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            staging.unlink()  # a full disk must not keep a half-written file
        raise


def _data_versions(replica: Replica) -> tuple[int, int]:
    # data_version changes when *another* connection commits: exactly the edits this
    # node did not make itself (its own integrations are news through other paths).
    return replica.main.data_version(), replica.resolutions.data_version()


# -- status for `p2p-prophet peers` ------------------------------------------------------


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="seconds")


def read_status(replica: Path) -> dict[str, Any]:
    """What the node running on ``replica`` last wrote about itself and its peers.

    Raises :class:`ProphetError` if no node runs there (no file, or its process gone).
    """
    path = Path(replica) / STATUS_FILE
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        alive = True
        try:
            os.kill(int(status["pid"]), 0)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            pass  # another user's process: it exists
    except (OSError, ValueError, KeyError):
        alive = False
    if not alive:
        raise NotFound(f"no node is running on {replica} (start one with `p2p-prophet serve`)")
    return status
