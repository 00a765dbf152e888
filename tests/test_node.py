"""Nodes that sync by themselves: the gossip loop, the server and the replica watch of
`p2p-prophet serve`, several nodes on loopback, real sockets and real SQLite files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio
from conftest import ReplicaFactory

from p2p_prophet.gossip import GossipConfig
from p2p_prophet.net.node import Node
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone

T = TypeVar("T")
FAST = GossipConfig(interval=0.5, rumor_interval=0.05, fanout=2, k=2)


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``check()`` holds, looking every 20 ms; fail after ``timeout``."""
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


def peek(path: Path, read: Callable[[Replica], T]) -> T:
    """``read`` the replica at ``path`` through a connection of its own."""
    with Replica.open(path) as replica:
        return read(replica)


@asynccontextmanager
async def serving(*nodes: Node) -> AsyncIterator[list[str]]:
    """Run ``nodes`` on loopback (their URLs, in order); on leaving, stop them and wait
    for their storage threads.  Only then may the test close their replicas: closing a
    connection under a thread that is using it crashes the interpreter."""
    async with trio.open_nursery() as nursery:
        urls = [(await nursery.start(node.run, "127.0.0.1", 0))[0] for node in nodes]
        yield urls
        nursery.cancel_scope.cancel()


async def test_an_edit_on_one_node_reaches_the_others_by_itself(
    make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    alice = make_replica("alice")
    alice.create("ticket", {"summary": "seed"})
    replicas = {"alice": alice}
    for name in ("bob", "carol"):
        replicas[name] = clone(alice, tmp_path / name)[0]
    nodes = {name: Node(r, gossip=FAST, seed=i) for i, (name, r) in enumerate(replicas.items())}
    async with serving(*nodes.values()) as started:
        # Ports first, peers after: every node knows the other two by URL (no mDNS here).
        urls = dict(zip(nodes, started, strict=True))
        for name, node in nodes.items():
            for other, url in urls.items():
                if other != name:
                    node.add_peer(url)

        # Each node meets its peers at once (not at its first round): wait for that.
        def all_met() -> bool:
            return all(
                p.last_exchange is not None
                for node in nodes.values()
                for p in node.scheduler.peers.peers.values()
            )

        await eventually(all_met, timeout=5)

        # Another process edits Alice's replica (the CLI does exactly this).
        with Replica.open(alice.path) as cli:
            uuid = cli.create("ticket", {"summary": "written by the CLI"})

        # Read through connections of our own, as another process would: the nodes'
        # connections belong to their storage threads.
        def everyone_has_it() -> bool:
            return all(
                peek(
                    r.path, lambda o: any(rec.uuid == uuid for rec in o.main.live_records("ticket"))
                )
                for r in replicas.values()
            )

        await eventually(everyone_has_it)
        await eventually(
            lambda: len({peek(r.path, lambda o: o.main.digest()) for r in replicas.values()}) == 1
        )
        assert any(c.reason.value == "rumor" for _, c in nodes["alice"].loop.contacts)
    for name in ("bob", "carol"):
        replicas[name].close()


async def test_an_unreachable_peer_backs_off_and_the_rest_still_converge(
    make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    alice = make_replica("alice")
    bob = clone(alice, tmp_path / "bob")[0]
    nodes = [Node(alice, gossip=FAST, seed=1), Node(bob, gossip=FAST, seed=2)]
    async with serving(*nodes) as (a_url, b_url):
        with trio.socket.socket() as sock:  # a port nobody listens on
            await sock.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        nodes[0].add_peer(b_url)
        nodes[0].add_peer(dead)
        nodes[1].add_peer(a_url)
        with Replica.open(bob.path) as cli:
            uuid = cli.create("ticket", {"summary": "from bob"})
        await eventually(
            lambda: peek(
                alice.path, lambda o: any(r.uuid == uuid for r in o.main.live_records("ticket"))
            )
        )
        await eventually(lambda: nodes[0].scheduler.peers.peers[dead].failures >= 2)
        gone = nodes[0].scheduler.peers.peers[dead]
        assert gone.retry_at > trio.current_time()  # backing off, not hammered
    bob.close()
