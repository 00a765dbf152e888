"""A database with members and Alice's node serving it on loopback (TLS, real SQLite files,
real sockets): the world the attack suites run in.

Alice's node runs in the test's trio loop; Bob and Carol are members with replicas of
their own; the test's identities come from conftest.py.  A helper that reads a replica the
node serves opens a connection of its own (:func:`peek`), as another process would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from p2p_prophet.gossip import GossipConfig
from p2p_prophet.net.client import NotAccepted, Peer, new_http_client
from p2p_prophet.net.node import Node
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security import Identity
from p2p_prophet.security.membership import add_member
from p2p_prophet.security.tls import TrustedPeers, client_context
from p2p_prophet.store import Replica
from p2p_prophet.sync import exchange, transfer
from p2p_prophet.wire import PeerError, encode, read_messages
from p2p_prophet.wire.messages import Error

T = TypeVar("T")
QUIET = GossipConfig(interval=3600, rumor_interval=3600, fanout=1, k=1)  # no gossip of its own
HANDSHAKE_TIMEOUT = 1.0  # the node's, for the slow-loris case
STRANGER = "127.0.0.2"  # where strangers connect from (members: 127.0.0.1)


def found(path: Path, identity: Identity, name: str) -> Replica:
    """A new signed database at ``path`` whose first member is ``identity``."""
    return Replica.init(
        path,
        identity=identity,
        prepare=lambda new: add_member(new, identity.certificate_pem, name),
    )


def join(source: Replica, path: Path, identity: Identity, name: str) -> Replica:
    """``identity`` becomes a member (added on ``source``) with a clone at ``path``."""
    assert source.identity is not None
    add_member(source, identity.certificate_pem, name, added_by=source.identity.fingerprint)
    replica = Replica.init(
        path,
        db_uuid=source.db_uuid,
        identity=identity,
        discovery_secret=source.discovery_secret,
    )
    transfer(replica, source)
    return replica


def peek(path: Path, read: Callable[[Replica], T]) -> T:
    """``read`` the replica at ``path`` through a connection of its own (the node's
    connections belong to its storage thread)."""
    with Replica.open(path) as replica:
        return read(replica)


def written(path: Path) -> tuple[Any, ...]:
    """Everything an attack must not change: state, log length, both vectors."""
    return peek(
        path,
        lambda r: (r.main.digest(), r.main.latest_seq(), r.main.tickets(), r.resolutions.tickets()),
    )


@dataclasses.dataclass
class World:
    alice: Replica
    bob: Replica
    carol: Replica
    node: Node
    url: str
    ids: dict[str, Identity]
    plan: str  # the uuid of a ticket everyone holds

    def client(self, who: Identity, trusted: TrustedPeers | None = None) -> httpx.AsyncClient:
        """An HTTP client presenting ``who``, trusting Alice (or ``trusted``)."""
        trust = trusted or TrustedPeers([self.ids["alice"].certificate_pem])
        return new_http_client(tls=client_context(who, trust))

    async def members_still_served(self) -> None:
        """Bob writes and syncs: the node takes it and answers; then Carol pulls it."""
        uuid = self.bob.create("ticket", {"summary": f"still served {time.monotonic()}"})
        async with self.client(self.ids["bob"]) as http:
            result = await Peer(self.url, ReplicaWorker(self.bob), http=http).sync()
        assert result.pushed.changesets.integrated >= 1  # (with any honest edits not yet pushed)
        assert peek(self.alice.path, lambda r: r.main.find_record("ticket", uuid)) is not None
        async with self.client(self.ids["carol"]) as http:
            pulled = await Peer(self.url, ReplicaWorker(self.carol), http=http).pull()
        assert pulled.changesets.integrated >= 1
        assert self.carol.main.find_record("ticket", uuid) is not None


@asynccontextmanager
async def world_of(
    tmp_path: Path, ids: dict[str, Identity], alice_path: Path | None = None, **node_options: Any
) -> AsyncIterator[World]:
    """The world, Alice's replica at ``alice_path`` (default: in ``tmp_path``), her node
    made with ``node_options``."""
    alice = found(alice_path or tmp_path / "alice", ids["alice"], "alice")
    plan = alice.create("ticket", {"summary": "the secret plan"})
    bob = join(alice, tmp_path / "bob", ids["bob"], "bob")
    carol = join(alice, tmp_path / "carol", ids["carol"], "carol")
    transfer(bob, alice)  # Bob learns that Carol is a member too
    node = Node(alice, gossip=QUIET, handshake_timeout=HANDSHAKE_TIMEOUT, **node_options)
    try:
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(node.run, "127.0.0.1", 0)
            assert url.startswith("https://")
            yield World(alice, bob, carol, node, url, ids, plan)
            nursery.cancel_scope.cancel()
    finally:
        for replica in (alice, bob, carol):
            replica.close()


async def refused(
    world: World, attempt: Callable[[], Any], error: type[Exception] = NotAccepted
) -> str:
    """Run ``attempt``; it must raise ``error``, write nothing, and leave members served.
    Returns the error's message."""
    before = written(world.alice.path)
    with pytest.raises(error) as caught:
        await attempt()
    message = str(caught.value)
    assert message
    assert written(world.alice.path) == before
    await world.members_still_served()
    return message


async def push_raw(world: World, who: Identity, frames: bytes) -> tuple[int, Error]:
    """POST a hand-made push body as ``who``; the node's status and ERROR."""
    async with world.client(who) as http:
        response = await http.post(
            world.url + "/prophet/push",
            content=frames,
            headers={"content-type": "application/cbor-seq"},
        )
    with pytest.raises(PeerError) as refusal:
        read_messages(response.content, (Error,))
    return response.status_code, Error(refusal.value.code, str(refusal.value))


def greeting(world: World, sender: Replica) -> bytes:
    return encode(exchange.hello(sender)) + encode(exchange.vectors(sender))
