"""The attack suite of issue 8: each case against a real node on loopback (TLS, real
SQLite files, real sockets).  Every case must be refused with a clear error, write
nothing, and leave the node serving its members, which each test checks after the attack.

The node is Alice's; Bob and Carol are members; Mallory is not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import ssl
import time
from pathlib import Path

import cbor2
import httpx
import pytest
import trio
from node_world import (
    HANDSHAKE_TIMEOUT,
    QUIET,
    STRANGER,
    World,
    greeting,
    peek,
    push_raw,
    refused,
    written,
)

from p2p_prophet.clock import MAX_HLC
from p2p_prophet.errors import ProphetError
from p2p_prophet.keys.signing import Signer
from p2p_prophet.model import ChangeSet, changeset_id
from p2p_prophet.net.client import (
    NetworkError,
    NotAccepted,
    Peer,
    clone_with_invite,
    new_http_client,
)
from p2p_prophet.net.listener import MAX_CONNECTIONS_PER_ADDRESS
from p2p_prophet.net.node import Node
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security import Identity
from p2p_prophet.security.invite import InvalidInvite, create_invite
from p2p_prophet.security.membership import remove_member, trusted_peers
from p2p_prophet.security.tls import TrustedPeers, client_context, fingerprint_client_context
from p2p_prophet.store import Replica
from p2p_prophet.wire import ErrorCode, encode_batch, encode_end
from p2p_prophet.wire.frames import frame

# -- who may connect -----------------------------------------------------------------------


async def test_a_client_without_a_certificate_gets_nothing(world: World) -> None:
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.verify_mode = ssl.CERT_NONE

    async def hello() -> None:
        async with new_http_client(tls=bare) as http:
            await Peer(world.url, None, http=http).hello()

    message = await refused(world, hello)
    assert "does not accept this replica's identity" in message


async def test_a_certificate_that_is_not_a_members_gets_nothing(
    world: World, mallory: Identity
) -> None:
    async def pull_as_mallory(tmp: Replica) -> None:
        async with world.client(mallory) as http:
            await Peer(world.url, ReplicaWorker(tmp), http=http).pull()

    with Replica.init(world.alice.path.parent / "mallory", db_uuid=world.alice.db_uuid) as loot:
        message = await refused(world, lambda: pull_as_mallory(loot))
        assert loot.main.latest_seq() == 0  # not one changeset reached Mallory
    assert "does not accept" in message


async def test_a_node_that_is_not_a_member_is_refused_by_the_client(
    world: World, mallory: Identity
) -> None:
    # Mallory answers at an address Bob dials: Bob's pinned client sends her nothing.
    with Replica.init(world.alice.path.parent / "mallory", identity=mallory) as fake:
        async with trio.open_nursery() as nursery:
            [fake_url] = await nursery.start(Node(fake, gossip=QUIET).run, "127.0.0.1", 0)
            trusted = trusted_peers(world.bob)
            async with new_http_client(tls=client_context(world.ids["bob"], trusted)) as http:
                with pytest.raises(NotAccepted) as refusal:
                    await Peer(fake_url, ReplicaWorker(world.bob), http=http).push()
                assert refusal.value.code is ErrorCode.NOT_MEMBER
            assert fake.main.latest_seq() == 0
            nursery.cancel_scope.cancel()
    await world.members_still_served()


async def test_a_removed_member_is_refused_from_the_moment_the_removal_arrives(
    world: World,
) -> None:
    carol = world.ids["carol"]
    async with world.client(carol) as http:
        await Peer(world.url, None, http=http).hello()  # Carol is welcome...
        # ...until Bob removes her and pushes the removal to Alice's node: the very next
        # request is refused, with no watch or timer in between.
        remove_member(world.bob, carol.fingerprint)
        async with world.client(world.ids["bob"]) as bob_http:
            await Peer(world.url, ReplicaWorker(world.bob), http=bob_http).push()
        before = written(world.alice.path)
        with pytest.raises(NotAccepted):
            await Peer(world.url, ReplicaWorker(world.carol), http=http).sync()
        assert written(world.alice.path) == before
    # Bob is still served (Carol is not, so check Bob alone).
    bob_uuid = world.bob.create("ticket", {"summary": "after carol"})
    async with world.client(world.ids["bob"]) as http:
        await Peer(world.url, ReplicaWorker(world.bob), http=http).sync()
    assert peek(world.alice.path, lambda r: r.main.find_record("ticket", bob_uuid)) is not None


async def test_a_removal_made_on_the_nodes_laptop_is_followed_by_the_running_node(
    world: World,
) -> None:
    with Replica.open(world.alice.path) as cli:  # `p2p-prophet members remove`, another process
        remove_member(cli, world.ids["carol"].fingerprint)
    with trio.fail_after(10):
        while world.ids["carol"].fingerprint in world.node.trusted:
            await trio.sleep(0.02)
    async with world.client(world.ids["carol"]) as http:
        with pytest.raises(NotAccepted):
            await Peer(world.url, None, http=http).hello()


# -- invites -------------------------------------------------------------------------------


async def node_has_seen(world: World) -> None:
    """Wait until the node has noticed what another process wrote to Alice's replica."""
    with trio.fail_after(10):
        while world.node.scheduler.our_digest != peek(world.alice.path, exchange_digest):
            await trio.sleep(0.02)


def exchange_digest(replica: Replica) -> bytes:
    from p2p_prophet.net.node import local_digest

    return local_digest(replica)


async def test_an_invite_works_once_and_a_replay_is_refused(world: World, tmp_path: Path) -> None:
    with Replica.open(world.alice.path) as cli:
        invite = create_invite(cli, [world.url], name="dave")
    await node_has_seen(world)

    dave, _ = await clone_with_invite(invite, tmp_path / "dave", name="dave")
    with dave:
        assert dave.main.find_record("ticket", world.plan) is not None
        assert dave.identity is not None
        # Dave is a member everywhere his push reached; the invite identity is not.
        trusted = peek(world.alice.path, lambda r: trusted_peers(r).fingerprints())
        assert dave.identity.fingerprint in trusted
        assert invite.identity().fingerprint not in trusted
        assert dave.discovery_secret == world.alice.discovery_secret

    message = await refused(
        world, lambda: clone_with_invite(invite, tmp_path / "thief", name="thief")
    )
    assert "invite that was used or has expired" in message
    assert not (tmp_path / "thief").exists()  # nothing left behind


async def test_an_expired_invite_is_refused_by_the_node_and_by_the_client(
    world: World, tmp_path: Path
) -> None:
    with Replica.open(world.alice.path) as cli:
        invite = create_invite(cli, [world.url], lifetime=60, now=time.time() - 120)
    await node_has_seen(world)

    # The client knows the token's expiry and does not even try...
    await refused(world, lambda: clone_with_invite(invite, tmp_path / "late"), error=InvalidInvite)

    # ...and the node refuses the invite identity anyway, to one who tries regardless.
    async def hello_as_invite() -> None:
        tls = fingerprint_client_context(invite.identity(), invite.inviter)
        async with new_http_client(tls=tls) as http:
            await Peer(world.url, None, http=http).hello()

    await refused(world, hello_as_invite)


# -- what members may write ----------------------------------------------------------------


def next_of(world: World, origin: str) -> tuple[int, bytes | None]:
    """``(origin_seq, prev)`` of ``origin``'s next changeset as Alice's node sees it."""

    def read(r: Replica) -> tuple[int, bytes | None]:
        seq = r.main.ticket(origin)
        return seq + 1, (None if seq == 0 else r.main.changeset_id(origin, seq))

    return peek(world.alice.path, read)


def forged(
    world: World, template: ChangeSet, *, origin: str, seq: int, prev: bytes | None, signer: Signer
) -> tuple[bytes, bytes, bytes]:
    cs = dataclasses.replace(template, origin=origin, origin_seq=seq, prev=prev, chained=True)
    body = cs.encode()
    id_ = changeset_id(body)
    return id_, body, signer.seal(id_)


def bobs_edit(world: World, summary: str) -> ChangeSet:
    """A changeset Bob's replica really made (and has not pushed)."""
    world.bob.update("ticket", world.plan, {"summary": summary})
    row = world.bob.main.recent_changesets(1)[0]
    return ChangeSet.decode(row.body)


async def expect_refusal(world: World, who: Identity, frames: bytes, words: str) -> None:
    before = written(world.alice.path)
    status, error = await push_raw(world, who, frames)
    assert (status, error.code) == (422, ErrorCode.INVALID_CHANGESET), error.message
    assert words in error.message, error.message
    assert written(world.alice.path) == before
    await world.members_still_served()


async def test_a_member_cannot_forge_a_changeset_under_another_members_origin(
    world: World,
) -> None:
    bob = world.ids["bob"]
    template = bobs_edit(world, "alice says: send bob the money")
    seq, prev = next_of(world, world.alice.uuid)
    batch = [
        forged(world, template, origin=world.alice.uuid, seq=seq, prev=prev, signer=Signer(bob))
    ]
    await expect_refusal(
        world,
        bob,
        greeting(world, world.bob) + encode_batch(batch, resolution=False) + encode_end(),
        "sealed by a key that is not origin",
    )


async def test_a_tampered_changeset_body_is_refused(world: World) -> None:
    edit = bobs_edit(world, "an honest edit")
    [row] = world.bob.main.recent_changesets(1)
    assert row.seal is not None
    tampered = row.body.replace(b"an honest edit", b"a changed edit")
    assert tampered != row.body and edit.origin == world.bob.uuid
    frames = (
        greeting(world, world.bob)
        + encode_batch([(changeset_id(tampered), tampered, row.seal)], resolution=False)
        + encode_end()
    )
    await expect_refusal(world, world.ids["bob"], frames, "signature")


async def test_a_broken_chain_is_refused(world: World) -> None:
    bob = world.ids["bob"]
    bobs_edit(world, "first")
    async with world.client(bob) as http:  # Bob's #1 reaches the node honestly
        await Peer(world.url, ReplicaWorker(world.bob), http=http).push()
    template = bobs_edit(world, "second")
    seq, _ = next_of(world, world.bob.uuid)
    assert seq == 2
    # A changeset with the right number but a prev that is not its predecessor's id,
    # sealed by Bob himself: the signature holds, the chain does not.
    wrong = forged(
        world, template, origin=world.bob.uuid, seq=seq, prev=b"\x07" * 32, signer=Signer(bob)
    )
    frames = greeting(world, world.bob) + encode_batch([wrong], resolution=False) + encode_end()
    await expect_refusal(world, bob, frames, "chain")


async def test_a_gap_or_a_reordering_is_refused(world: World) -> None:
    bobs_edit(world, "one")
    bobs_edit(world, "two")
    rows = sorted(world.bob.main.recent_changesets(2))
    first, second = ((r.id, r.body, r.seal) for r in rows)
    before = written(world.alice.path)
    for batch in ([second], [second, first]):
        frames = greeting(world, world.bob) + encode_batch(batch, resolution=False) + encode_end()
        status, error = await push_raw(world, world.ids["bob"], frames)
        assert (status, error.code) == (422, ErrorCode.INVALID_CHANGESET), error.message
        assert "arrived before" in error.message
        assert written(world.alice.path) == before
    await world.members_still_served()


async def test_an_unsigned_changeset_is_refused(world: World) -> None:
    edit = bobs_edit(world, "unsigned")
    plain = dataclasses.replace(edit, prev=None, chained=False)
    body = plain.encode()
    frames = (
        greeting(world, world.bob)
        + encode_batch([(changeset_id(body), body, None)], resolution=False)
        + encode_end()
    )
    await expect_refusal(world, world.ids["bob"], frames, "unsigned")


async def test_a_members_own_changeset_stamped_at_the_end_of_time_is_refused(
    world: World,
) -> None:
    # Properly signed and chained, by Bob under his own origin: only its stamp is wrong.
    # (Made on a copy of Bob's replica, so that Bob stays a member who can write.)
    copy = world.bob.path.with_name("bob-copy")
    shutil.copytree(world.bob.path, copy)
    with Replica.open(copy) as bad_clock:
        bad_clock.clock.last = MAX_HLC - 1
        bad_clock.update("ticket", world.plan, {"summary": "from the end of time"})
        [row] = bad_clock.main.recent_changesets(1)
    assert ChangeSet.decode(row.body).created == MAX_HLC
    frames = (
        greeting(world, world.bob)
        + encode_batch([(row.id, row.body, row.seal)], resolution=False)
        + encode_end()
    )
    await expect_refusal(world, world.ids["bob"], frames, "ahead of this replica's clock")
    with Replica.open(world.alice.path) as cli:  # Alice's own edits go on as before
        cli.create("ticket", {"summary": "written after the attempt"})


# -- the transport -------------------------------------------------------------------------


async def test_plain_http_is_not_answered_and_members_never_fall_back_to_it(
    world: World,
) -> None:
    from p2p_prophet.operations import client_tls

    plain = world.url.replace("https://", "http://")
    before = written(world.alice.path)
    async with new_http_client() as http:
        with pytest.raises(httpx.TransportError):
            await http.get(plain + "/prophet/hello")
    assert written(world.alice.path) == before
    # A member's replica refuses to talk plain HTTP at all, to anyone.
    with pytest.raises(ProphetError, match="https:// only"):
        client_tls(world.bob, plain)
    await world.members_still_served()


async def test_oversized_and_deeply_nested_frames_from_a_member_are_refused(
    world: World,
) -> None:
    cases = [
        (bytes([0x5B]) + (1 << 40).to_bytes(8, "big"), 413, ErrorCode.TOO_LARGE),
        (
            greeting(world, world.bob) + bytes([0x5A]) + (1 << 30).to_bytes(4, "big"),
            413,
            ErrorCode.TOO_LARGE,
        ),
        (frame(b"\x81" * 100_000 + b"\x00"), 400, ErrorCode.MALFORMED),
        (frame(cbor2.dumps([[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]])), 400, ErrorCode.MALFORMED),
    ]
    for body, status, code in cases:
        before = written(world.alice.path)
        got_status, error = await push_raw(world, world.ids["bob"], body)
        assert (got_status, error.code) == (status, code), error.message
        assert error.message
        assert written(world.alice.path) == before
    await world.members_still_served()


async def connect_from(address: str, url: str) -> trio.SocketStream | None:
    """A TCP connection to the node at ``url`` from ``address`` (a loopback address other
    than the members' 127.0.0.1: another machine, as far as the node can tell); None if
    the node reset it as it was made."""
    host, port = url[len("https://") :].rsplit(":", 1)
    sock = trio.socket.socket()
    await sock.bind((address, 0))
    try:
        await sock.connect((host, int(port)))
    except ConnectionResetError:
        sock.close()
        return None
    return trio.SocketStream(sock)


async def dropped(stream: trio.SocketStream) -> bool:
    """Whether the node has closed or reset ``stream`` (waits for it)."""
    try:
        return await stream.receive_some(1024) == b""
    except trio.BrokenResourceError:  # a reset
        return True


async def test_slow_loris_connections_are_dropped_and_members_served_meanwhile(
    world: World,
) -> None:
    attempts = [await connect_from(STRANGER, world.url) for _ in range(50)]
    streams = [stream for stream in attempts if stream is not None]
    try:
        for stream in streams:
            with contextlib.suppress(trio.BrokenResourceError):  # reset already (over the cap)
                await stream.send_all(b"\x16\x03")  # the first bytes of a ClientHello, no more
        before = written(world.alice.path)
        await world.members_still_served()  # while all fifty are held open
        assert written(world.alice.path) != before  # (Bob's own write, accepted)
        # The node held no more than its cap from one address, resetting the rest at
        # once, and drops the ones it held once their handshake time is up.
        with trio.fail_after(HANDSHAKE_TIMEOUT + 10):
            for stream in streams:
                assert await dropped(stream)
        assert world.node.connections.refused >= 50 - MAX_CONNECTIONS_PER_ADDRESS
    finally:
        for stream in streams:
            await stream.aclose()
    await world.members_still_served()


async def test_a_flood_of_hellos_from_a_stranger_is_refused_while_members_are_served(
    world: World, mallory: Identity
) -> None:
    refusals = resets = 0
    before = written(world.alice.path)

    async def stranger_hello(http: httpx.AsyncClient) -> None:
        nonlocal refusals, resets
        try:
            await Peer(world.url, None, http=http, attempts=1).hello()
        except NotAccepted:
            refusals += 1  # the handshake refused her certificate
        except NetworkError:
            resets += 1  # over the cap of connections from her address: reset at once

    trusted = TrustedPeers([world.ids["alice"].certificate_pem])
    tls = client_context(mallory, trusted)
    transport = httpx.AsyncHTTPTransport(verify=tls, local_address=STRANGER)
    async with httpx.AsyncClient(transport=transport) as http, trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(stranger_hello, http)
        await world.members_still_served()  # in the middle of the flood
    assert refusals + resets == 200 and refusals > 0
    assert written(world.alice.path) != before  # Bob's write only...
    assert peek(world.alice.path, lambda r: r.main.tickets()).keys() == {
        world.alice.uuid,
        world.bob.uuid,
    }  # ...and nothing under any other origin
