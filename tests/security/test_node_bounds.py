"""What members can make a node hold, and how long: issue 15's cases against a real node.

Each case runs against Alice's node on loopback (tests/node_world.py): members who hold
requests open, push more than the node buffers, trickle bytes, or keep using a
connection after their removal.  Each must be refused with a clear error, write nothing
it should not, and leave the node serving its members.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio
from node_world import World, greeting, peek, world_of, written

from p2p_prophet.errors import Refused
from p2p_prophet.net.bounds import ServerBounds
from p2p_prophet.net.client import (
    NotAccepted,
    Peer,
    clone_with_invite,
    new_http_client,
)
from p2p_prophet.net.listener import ConnectionLimits
from p2p_prophet.net.server import ExchangeLog
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security import Identity
from p2p_prophet.security.membership import add_member, remove_member
from p2p_prophet.security.tls import TrustedPeers, client_context, fingerprint_client_context
from p2p_prophet.store import Replica
from p2p_prophet.sync import transfer
from p2p_prophet.wire import ErrorCode, PeerError, encode, encode_batch, read_messages
from p2p_prophet.wire.messages import BatchEnd, Error, encode_changeset

MiB = 1 << 20


def unsent(world: World, member: Replica, make: Callable[[Replica], object]) -> list[bytes]:
    """Frames of changesets ``make`` writes on a copy of ``member``'s replica (valid,
    signed by the member, and lacking at Alice's node), one frame each."""
    copies = len(list(member.path.parent.iterdir()))
    copy = member.path.with_name(f"{member.path.name}-copy-{copies}")
    shutil.copytree(member.path, copy)
    with Replica.open(copy) as scratch:
        start = scratch.main.latest_seq()
        make(scratch)
        rows = scratch.main.changesets_after(start, 10_000)
    return [encode_changeset(r.id, r.body, r.seal, resolution=False) for r in rows]


def big_edits(mib: int) -> Callable[[Replica], object]:
    def make(replica: Replica) -> None:
        with replica.edits() as batch:
            for i in range(mib):
                batch.create("ticket", {"blob": f"{i:08d}" + "x" * (MiB - 64)})

    return make


class HeldPush:
    """A push by ``who`` whose body is fed by the test: :meth:`send` puts bytes on the
    wire, :meth:`finish` ends the body; :attr:`answer` is the node's (status, body)."""

    def __init__(self, world: World, who: Identity) -> None:
        self.world, self.who = world, who
        self._send, self._receive = trio.open_memory_channel[bytes | None](100)
        self.answer: tuple[int, bytes, httpx.Headers] | None = None
        self.done = trio.Event()

    async def _body(self) -> AsyncIterator[bytes]:
        async for chunk in self._receive:
            if chunk is None:
                return
            yield chunk

    async def run(self) -> None:
        try:
            async with self.world.client(self.who) as http:
                response = await http.post(
                    self.world.url + "/prophet/push",
                    content=self._body(),
                    headers={"content-type": "application/cbor-seq"},
                    timeout=60,
                )
                self.answer = (response.status_code, response.content, response.headers)
        except httpx.HTTPError:
            # The node answered and closed while we were still sending: its answer is lost
            # on our side; ask the node's own record instead (see refusal()).
            self.answer = None
        finally:
            self.done.set()

    async def send(self, data: bytes) -> None:
        await self._send.send(data)

    async def finish(self) -> None:
        await self._send.send(None)


def error_of(body: bytes) -> Error:
    with pytest.raises(PeerError) as refusal:
        read_messages(body, (Error,))
    return Error(refusal.value.code, str(refusal.value))


async def node_record(world: World, endpoint: str, index: int = -1) -> ExchangeLog:
    """The node's record of its ``index``-th ``endpoint`` request, once it is over."""
    with trio.fail_after(30):
        while len(records := [r for r in world.node.app.history if r.endpoint == endpoint]) < (
            -index if index < 0 else index + 1
        ):
            await trio.sleep(0.01)
        await records[index].finished.wait()
    return records[index]


# -- removal reaches open requests and connections ----------------------------------------


async def test_a_member_removed_while_holding_a_push_open_is_refused_at_its_next_batch(
    world: World, dave: Identity
) -> None:
    carol = world.ids["carol"]
    # What Carol means to slip in: a new identity of her own, added by her.
    comeback = unsent(
        world,
        world.carol,
        lambda r: add_member(r, dave.certificate_pem, "carol again", added_by=carol.fingerprint),
    )
    push = HeldPush(world, carol)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(push.run)
        await push.send(greeting(world, world.carol))
        await push.send(encode(BatchEnd(0)))  # keeping the request alive, as a batch end
        # Bob removes Carol and pushes the removal to the node, while her push is open.
        remove_member(world.bob, carol.fingerprint)
        async with world.client(world.ids["bob"]) as http:
            await Peer(world.url, ReplicaWorker(world.bob), http=http).push()
        assert carol.fingerprint not in world.node.trusted
        before = written(world.alice.path)
        for chunk in comeback:
            await push.send(chunk)
        await push.send(encode(BatchEnd(len(comeback), last=True)))
        await push.finish()
        record = await node_record(world, "push", -2)  # Carol's (Bob's came after it)
    assert record.error is not None and record.error.startswith(ErrorCode.NOT_MEMBER)
    if push.answer is not None:
        status, body, _ = push.answer
        assert status == 403 and error_of(body).code is ErrorCode.NOT_MEMBER
    assert written(world.alice.path) == before
    assert dave.fingerprint not in world.node.trusted


async def test_an_http2_connection_serves_no_request_after_a_removal(world: World) -> None:
    carol = world.ids["carol"]
    tls = client_context(carol, TrustedPeers([world.ids["alice"].certificate_pem]))
    # HTTP/2 with prior knowledge: several requests over one connection, one handshake.
    async with httpx.AsyncClient(verify=tls, http1=False, http2=True) as http:
        first = await http.get(world.url + "/prophet/hello")
        assert (first.status_code, first.http_version) == (200, "HTTP/2")
        with Replica.open(world.alice.path) as cli:  # `members remove` on Alice's laptop
            remove_member(cli, carol.fingerprint)
        with trio.fail_after(10):  # the node's watch notices the other process's edit
            while carol.fingerprint in world.node.trusted:
                await trio.sleep(0.02)
        try:
            second = await http.get(world.url + "/prophet/hello")
        except httpx.RemoteProtocolError:
            pass  # the node closed the connection (one request per connection): refused too
        else:
            assert (second.status_code, second.http_version) == (403, "HTTP/2")
            assert error_of(second.content).code is ErrorCode.NOT_MEMBER
    async with world.client(carol) as http:
        with pytest.raises(NotAccepted):
            await Peer(world.url, None, http=http).hello()


# -- places, memory and time ----------------------------------------------------------------


async def test_a_callers_third_exchange_at_once_is_told_to_come_back_later(world: World) -> None:
    bob = world.ids["bob"]
    held = [HeldPush(world, bob) for _ in range(2)]
    async with trio.open_nursery() as nursery:
        for push in held:
            nursery.start_soon(push.run)
            await push.send(greeting(world, world.bob))
        with trio.fail_after(10):
            while world.node.app.exchanges.by_caller[bob.fingerprint] < 2:
                await trio.sleep(0.01)
        async with world.client(bob) as http:
            third = await http.post(
                world.url + "/prophet/push",
                content=greeting(world, world.bob) + encode(BatchEnd(0, last=True)),
                headers={"content-type": "application/cbor-seq"},
            )
        assert third.status_code == 503
        assert third.headers["retry-after"] == str(world.node.app.bounds.retry_after)
        assert "busy" in error_of(third.content).message
        async with world.client(world.ids["carol"]) as http:  # Carol's places are her own
            await Peer(world.url, ReplicaWorker(world.carol), http=http).pull()
        for push in held:
            await push.send(encode(BatchEnd(0, last=True)))
            await push.finish()
    assert all(p.answer is not None and p.answer[0] == 200 for p in held)
    await world.members_still_served()


async def test_pushed_batches_held_in_memory_stay_within_the_nodes_budget(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    ids = {"alice": alice, "bob": bob, "carol": carol}
    bounds = ServerBounds(buffer_budget=12 * MiB)
    async with world_of(tmp_path, ids, bounds=bounds) as world:
        budget = world.node.app.budget
        # Two unfinished batches of 5 MiB: 10 of the node's 12 MiB.
        holders = [(bob, world.bob), (carol, world.carol)]
        held = [HeldPush(world, who) for who, _ in holders]
        async with trio.open_nursery() as nursery:
            for push, (_, replica) in zip(held, holders, strict=True):
                frames = unsent(world, replica, big_edits(5))
                nursery.start_soon(push.run)
                await push.send(greeting(world, replica) + b"".join(frames))
            with trio.fail_after(30):
                while budget.held < 2 * 5 * MiB:
                    await trio.sleep(0.01)
            # A third would pass the budget: refused at once, and told when to come back.
            before = written(world.alice.path)
            extra = HeldPush(world, bob)
            nursery.start_soon(extra.run)
            frames = unsent(world, world.bob, big_edits(5))
            await extra.send(greeting(world, world.bob) + b"".join(frames))
            record = await node_record(world, "push", 2)  # the third push
            assert record.error is not None and record.error.startswith(ErrorCode.UNAVAILABLE)
            assert "busy" in record.error and budget.held <= budget.limit
            if extra.answer is not None:
                assert extra.answer[0] == 503 and "retry-after" in extra.answer[2]
            assert written(world.alice.path) == before
            await world.members_still_served()  # small batches still fit
            nursery.cancel_scope.cancel()
        with trio.fail_after(10):
            while budget.held:  # every request gave back what it held, however it ended
                await trio.sleep(0.01)


async def test_a_batch_larger_than_one_changeset_can_be_is_refused(world: World) -> None:
    frames = unsent(world, world.bob, big_edits(9))
    before = written(world.alice.path)
    push = HeldPush(world, world.ids["bob"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(push.run)
        await push.send(greeting(world, world.bob) + b"".join(frames))
        await push.finish()
        record = await node_record(world, "push")
    assert record.error is not None and record.error.startswith(ErrorCode.TOO_LARGE)
    assert written(world.alice.path) == before
    await world.members_still_served()


async def refused_as_too_slow(
    world: World, push: HeldPush, feed: Callable[[], Awaitable[None]]
) -> None:
    """Run ``push`` fed by ``feed`` until the node ends it: it must refuse it as too slow,
    within moments of its (short) deadline."""
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(push.run)
        nursery.start_soon(feed)
        record = await node_record(world, "push")
        nursery.cancel_scope.cancel()
    assert record.error is not None and record.error.startswith(ErrorCode.TOO_SLOW)
    assert trio.current_time() - started < 10


async def test_a_batch_trickled_in_slower_than_the_deadline_is_refused(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    ids = {"alice": alice, "bob": bob, "carol": carol}
    async with world_of(tmp_path, ids, bounds=ServerBounds(batch_deadline=1.0)) as world:
        [frame] = unsent(world, world.bob, lambda r: r.create("ticket", {"summary": "slow"}))
        push = HeldPush(world, bob)

        async def trickle() -> None:
            await push.send(greeting(world, world.bob))
            for byte in frame:  # a byte at a time, each well within the read timeout
                await push.send(bytes([byte]))
                await trio.sleep(0.05)

        await refused_as_too_slow(world, push, trickle)
        assert peek(world.alice.path, lambda r: r.main.ticket(world.bob.uuid)) == 0
        await world.members_still_served()


async def test_a_push_of_changesets_the_node_holds_earns_no_more_time(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    ids = {"alice": alice, "bob": bob, "carol": carol}
    async with world_of(tmp_path, ids, bounds=ServerBounds(batch_deadline=1.0)) as world:
        # Bob's founding-era changeset the node holds already, sent again and again.
        [held] = [
            r for r in world.bob.main.changesets_after(0, 10) if r.origin == world.alice.uuid
        ][:1]
        again = encode_batch([(held.id, held.body, held.seal)], resolution=False)
        push = HeldPush(world, bob)

        async def stall() -> None:
            await push.send(greeting(world, world.bob))
            while True:
                await push.send(again)  # whole batches, each well within the deadline
                await trio.sleep(0.2)

        await refused_as_too_slow(world, push, stall)
        await world.members_still_served()


async def test_a_pull_whose_caller_stops_reading_is_dropped_and_gives_back_its_place(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> None:
    ids = {"alice": alice, "bob": bob, "carol": carol}
    limits = ConnectionLimits(write_timeout=1.0)
    async with world_of(tmp_path, ids, limits=limits) as world:
        with Replica.open(world.alice.path) as cli:  # 24 MiB Bob lacks: more than buffers hold
            big_edits(24)(cli)
        app = world.node.app
        async with world.client(bob) as http:
            request = greeting(world, world.bob)
            async with http.stream(
                "POST",
                world.url + "/prophet/exchange",
                content=request,
                headers={"content-type": "application/cbor-seq"},
            ) as response:
                assert response.status_code == 200
                record = await node_record(world, "exchange")  # and read no further
        assert record.sent < 24  # it did not get to send it all
        with trio.fail_after(10):
            while app.exchanges.running or app.budget.held:
                await trio.sleep(0.01)
        await world.members_still_served()


async def test_an_invite_joins_only_through_the_node_of_its_inviter(
    world: World, tmp_path: Path
) -> None:
    from node_world import QUIET

    from p2p_prophet.net.node import Node
    from p2p_prophet.security.invite import create_invite

    with Replica.open(world.alice.path) as cli:
        invite = create_invite(cli, [world.url], name="dave")
    transfer(world.bob, world.alice)  # Bob's node trusts the pending invite too
    async with trio.open_nursery() as nursery:
        [bob_url] = await nursery.start(Node(world.bob, gossip=QUIET).run, "127.0.0.1", 0)
        guest = invite.identity()
        tls = fingerprint_client_context(guest, world.ids["bob"].fingerprint)
        with Replica.init(
            tmp_path / "elsewhere", db_uuid=invite.db_uuid, identity=Identity.generate()
        ) as joiner:
            assert joiner.identity is not None
            async with new_http_client(tls=tls) as http:
                peer = Peer(bob_url, ReplicaWorker(joiner), http=http, attempts=1)
                await peer.pull()  # reading is what any pending invite may do anywhere
                add_member(
                    joiner, joiner.identity.certificate_pem, "dave", invite=guest.fingerprint
                )
                remove_member(joiner, guest.fingerprint)
                with pytest.raises(
                    Refused, match="joins through the node of the member who made it"
                ) as refusal:
                    await peer.push()
        assert refusal.value.code is ErrorCode.FORBIDDEN
        nursery.cancel_scope.cancel()
    dave, _ = await clone_with_invite(invite, tmp_path / "dave", name="dave")  # at Alice's
    dave.close()


async def test_members_relay_chains_of_additions_in_one_batch(
    world: World, tmp_path: Path, dave: Identity
) -> None:
    from p2p_prophet.security.invite import create_invite

    bob = world.ids["bob"]
    # Bob invites Dave, who joins through Bob's replica (by path); Dave adds Erin. Bob
    # then pushes all of it to Alice's node: the invite, the join and Erin, one batch.
    invite = create_invite(world.bob, ["https://127.0.0.1:7420"], name="dave")
    guest = invite.identity()
    erin = Identity.generate()
    with Replica.init(tmp_path / "dave", db_uuid=world.alice.db_uuid, identity=dave) as joiner:
        transfer(joiner, world.bob)
        add_member(
            joiner, dave.certificate_pem, "dave", added_by=bob.fingerprint, invite=guest.fingerprint
        )
        remove_member(joiner, guest.fingerprint)
        add_member(joiner, erin.certificate_pem, "erin", added_by=dave.fingerprint)
        transfer(world.bob, joiner)
    async with world.client(bob) as http:
        pushed = await Peer(world.url, ReplicaWorker(world.bob), http=http).push()
    assert pushed.changesets.integrated == 4
    assert {dave.fingerprint, erin.fingerprint} <= set(world.node.trusted.fingerprints())
    assert guest.fingerprint not in world.node.trusted
