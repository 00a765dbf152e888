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
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio

from p2p_prophet.errors import ProphetError
from p2p_prophet.gossip import GossipConfig, Outcome, Scheduler
from p2p_prophet.net.client import Peer, new_http_client
from p2p_prophet.net.gossip import GossipLoop, outcome_of
from p2p_prophet.net.mdns import (
    Advert,
    Discovery,
    Found,
    Gone,
    advertised_addresses,
    is_loopback,
)
from p2p_prophet.net.server import NodeApp, serve
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.store import Replica
from p2p_prophet.sync import exchange

log = logging.getLogger("p2p_prophet.node")

WATCH_INTERVAL = 0.1  # seconds between looks for edits made by other processes
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
    ) -> None:
        self.mdns = mdns
        self.mdns_interfaces = mdns_interfaces
        self.name = name or socket.gethostname()
        self.discovery: Discovery | None = None
        self._digest_changed = trio.Event()
        self._discovered: dict[str, str] = {}  # mDNS instance -> URL
        self._replicas: dict[str, str] = {}  # URL -> replica uuid, as advertised
        self._given = {url.rstrip("/") for url in peers}
        self.worker = ReplicaWorker(replica)
        self.scheduler = Scheduler(gossip or GossipConfig(), random.Random(seed))
        for url in peers:
            self.scheduler.add_peer(url.rstrip("/"))
        self.loop = GossipLoop(self.scheduler, self._exchange)
        self.app = NodeApp(self.worker, on_news=self._pushed)
        self._digest_stale = False
        self.urls: list[str] = []
        self._http: httpx.AsyncClient | None = None
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

    def _found(self, found: Found) -> None:
        old = self._discovered.get(found.instance)
        if old != found.url:
            log.info("discovered %s (replica %s)", found.url, found.replica_uuid)
            if old is not None:
                self._forget(old)  # the same node at a new address
        self._discovered[found.instance] = found.url
        self._replicas[found.url] = found.replica_uuid
        self.add_peer(found.url, found.digest)

    def _gone(self, gone: Gone) -> None:
        url = self._discovered.pop(gone.instance, None)
        if url is not None:
            log.info("%s left", url)
            self._forget(url)

    def _forget(self, url: str) -> None:
        self._replicas.pop(url, None)
        if url not in self._given:  # a peer given by hand stays, whatever mDNS says
            self.remove_peer(url)

    async def _advertise(self, host: str, port: int, nursery: trio.Nursery) -> None:
        advert = Advert(
            name=self.name,
            db_uuid=self.replica.db_uuid,
            replica_uuid=self.replica.uuid,
            port=port,
            addresses=advertised_addresses(host, self.mdns_interfaces),
            digest=self.scheduler.our_digest or b"",
        )
        discovery = Discovery(advert, self._found, self._gone, interfaces=self.mdns_interfaces)
        await nursery.start(discovery.run)
        self.discovery = discovery
        log.info(
            "advertising %r over mDNS (%s), looking for the nodes of database %s",
            advert.name,
            ", ".join(self.mdns_interfaces or ["every interface"]),
            advert.db_uuid,
        )
        nursery.start_soon(self._keep_digest_advertised, discovery)

    async def _keep_digest_advertised(self, discovery: Discovery) -> None:
        while True:
            await self._digest_changed.wait()
            self._digest_changed = trio.Event()
            if self.scheduler.our_digest is not None:
                await discovery.update_digest(self.scheduler.our_digest)

    async def run(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.scheduler.our_digest = await self.worker.run(local_digest, self.replica)
        async with new_http_client() as http, trio.open_nursery() as nursery:
            self._http = http
            self.urls = await nursery.start(serve, self.app, host, port)
            await nursery.start(self.loop.run)
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
                nursery.start_soon(self._advertise, host, bound_port, nursery)
            nursery.start_soon(self._watch)
            nursery.start_soon(self._publish_status)
            task_status.started(self.urls)

    async def _exchange(self, url: str) -> Outcome:
        assert self._http is not None
        client = self._clients.get(url)
        if client is None:
            # The scheduler backs off a failing peer: one attempt per contact here.
            client = self._clients[url] = Peer(url, self.worker, http=self._http, attempts=1)
        try:
            result = await client.sync()
            self._set_digest(await self.worker.run(local_digest, self.replica))
        except (ProphetError, sqlite3.Error) as exc:
            log.warning("sync with %s failed: %s", url, exc)
            return Outcome(ok=False)
        return outcome_of(result)

    def _pushed(self) -> None:
        self._digest_stale = True
        self.loop.news()

    def status(self) -> dict[str, Any]:
        """What this node knows, as `p2p-prophet peers` shows it."""
        now = trio.current_time()
        wall_offset = time.time() - now
        return {
            "pid": os.getpid(),
            "name": self.name,
            "urls": self.urls,
            "replica": self.replica.uuid,
            "database": self.replica.db_uuid,
            "mdns": self.mdns,
            "updated": _iso(time.time()),
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
        path = self.replica.path / STATUS_FILE
        try:
            while True:
                await trio.to_thread.run_sync(_write_atomically, path, json.dumps(self.status()))
                await trio.sleep(STATUS_INTERVAL)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    async def _watch(self) -> None:
        """Notice edits other processes commit to the replica, and tell the loop."""
        replica = self.replica
        versions = await self.worker.run(_data_versions, replica)
        while True:
            await trio.sleep(WATCH_INTERVAL)
            try:
                now = await self.worker.run(_data_versions, replica)
                edited = now != versions
                if edited or self._digest_stale:
                    versions, self._digest_stale = now, False
                    self._set_digest(await self.worker.run(local_digest, replica))
            except (ProphetError, sqlite3.Error) as exc:
                # A locked or failing disk must not stop the node; look again next tick.
                log.warning("cannot read the replica: %s", exc)
                continue
            if edited:
                self.loop.news()


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)


def _data_versions(replica: Replica) -> tuple[int, int]:
    # data_version changes when *another* connection commits: exactly the edits this
    # node did not make itself (its own integrations are news through other paths).
    return (
        replica.main.conn.execute("PRAGMA data_version").fetchone()[0],
        replica.resolutions.conn.execute("PRAGMA data_version").fetchone()[0],
    )


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
        raise ProphetError(f"no node is running on {replica} (start one with `p2p-prophet serve`)")
    return status
