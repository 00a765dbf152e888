"""One replication scenario, three ways: path to path, and over real HTTP as a pull or a
push.  The HTTP transports serve each replica that must answer from a node on its own
thread (a trio loop with hypercorn on a free loopback port), and run the client in the
test's thread, so that scenario tests stay plain synchronous code.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import trio

from p2p_prophet.net import NodeApp, Peer, ReplicaWorker, serve
from p2p_prophet.net.client import clone as net_clone
from p2p_prophet.net.client import new_http_client
from p2p_prophet.store import Replica
from p2p_prophet.sync import TransferResult, clone, transfer


class PathTransport:
    name = "path"
    can_force = True

    def transfer(
        self, receiver: Replica, sender: Replica, *, force: bool = False
    ) -> TransferResult:
        return transfer(receiver, sender, force=force)

    def clone(self, source: Replica, path: Path) -> Replica:
        return clone(source, path)[0]

    def close(self) -> None:
        pass


class Node:
    """A node serving ``replica`` from a thread of its own, until :meth:`stop`."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.app = NodeApp(ReplicaWorker(replica))
        self.url = ""
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the node did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    [self.url] = await nursery.start(serve, self.app, "127.0.0.1", 0)
                    self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)


class HttpTransport:
    """``push=False``: the receiver pulls from a node serving the sender; ``push=True``:
    the sender pushes to a node serving the receiver."""

    def __init__(self, *, push: bool) -> None:
        self.push = push
        self.name = "http-push" if push else "http-pull"
        self.can_force = not push  # a node never takes another database's changesets
        self.nodes: dict[Replica, Node] = {}

    def node(self, replica: Replica) -> Node:
        if replica not in self.nodes:
            self.nodes[replica] = Node(replica)
        return self.nodes[replica]

    def transfer(
        self, receiver: Replica, sender: Replica, *, force: bool = False
    ) -> TransferResult:
        if self.push:
            assert not force
            url, client = self.node(receiver).url, sender
            return self._run(url, client, lambda peer: peer.push())
        url, client = self.node(sender).url, receiver
        return self._run(url, client, lambda peer: peer.pull(force=force))

    def clone(self, source: Replica, path: Path) -> Replica:
        url = self.node(source).url

        async def run() -> Replica:
            async with new_http_client() as http:
                return (await net_clone(url, path, http=http))[0]

        return trio.run(run)

    def _run(self, url: str, client: Replica, operation: Any) -> TransferResult:
        async def run() -> TransferResult:
            async with Peer(url, ReplicaWorker(client), attempts=1) as peer:
                result: TransferResult = await operation(peer)
                return result

        return trio.run(run)

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()


Transport = PathTransport | HttpTransport


def make_transport(name: str) -> Transport:
    if name == "path":
        return PathTransport()
    return HttpTransport(push=name == "http-push")
