"""An invite is one join and nothing more; membership changes only by members (issue 15
§3), against Alice's node on loopback (tests/node_world.py).

The holder of a token connects with the invite identity.  Whatever it pushes beyond its
own join is refused and nothing of it written; the rightful newcomer can still join
afterwards; a second use is refused; the inviter sees who used the token.  A member
cannot change the membership under a key that is not a member's.  An altered token is
refused as damaged.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from node_world import World, peek, written

from p2p_prophet.errors import Refused
from p2p_prophet.net.client import (
    NotAccepted,
    Peer,
    clone_with_invite,
    new_http_client,
)
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security import Identity
from p2p_prophet.security.invite import (
    CHECKSUM_BYTES,
    TOKEN_PREFIX,
    InvalidInvite,
    Invite,
    create_invite,
)
from p2p_prophet.security.membership import (
    MEMBER_TYPE,
    add_member,
    invites,
    member_uuid,
    remove_member,
    trusted_peers,
)
from p2p_prophet.security.tls import fingerprint_client_context
from p2p_prophet.store import Replica
from p2p_prophet.sync import transfer
from p2p_prophet.wire import ErrorCode


async def invited(world: World, name: str = "dave") -> Invite:
    """An invite made on Alice's laptop, once her node has seen it."""
    with Replica.open(world.alice.path) as cli:
        invite = create_invite(cli, [world.url], name=name)
    guest = invite.identity().fingerprint
    with trio.fail_after(10):
        while guest not in world.node.trusted:
            await trio.sleep(0.02)
    return invite


async def as_thief(
    world: World,
    invite: Invite,
    path: Path,
    identity: Identity,
    mischief: Callable[[Replica], object],
) -> Refused:
    """Connect as the invite identity, clone into a replica signed by ``identity``, do
    ``mischief`` to it, push: the node's refusal."""
    tls = fingerprint_client_context(invite.identity(), invite.inviter)
    replica = Replica.init(path, db_uuid=invite.db_uuid, identity=identity)
    with replica:
        async with new_http_client(tls=tls) as http:
            peer = Peer(world.url, ReplicaWorker(replica), http=http, attempts=1)
            await peer.pull()
            mischief(replica)
            with pytest.raises(Refused) as refusal:
                await peer.push()
    return refusal.value


async def test_an_invite_holder_can_neither_add_identities_nor_keep_the_invite_alive(
    world: World, tmp_path: Path, mallory: Identity
) -> None:
    invite = await invited(world)
    guest = invite.identity()
    before = written(world.alice.path)

    # Signed by the invite's own key: two permanent identities, and no more expiry.
    def entrench(replica: Replica) -> None:
        for extra in (Identity.generate(), Identity.generate()):
            add_member(replica, extra.certificate_pem, "mine", added_by=guest.fingerprint)
        replica.update(MEMBER_TYPE, member_uuid(guest.fingerprint), {"expires": None})

    refusal = await as_thief(world, invite, tmp_path / "thief1", guest, entrench)
    assert refusal.code is ErrorCode.FORBIDDEN and "may pull and then push its join" in str(refusal)

    # Signed by a key of its own: itself, a second identity, and the invite gone.
    def join_twice(replica: Replica) -> None:
        add_member(replica, mallory.certificate_pem, "mallory", invite=guest.fingerprint)
        add_member(replica, Identity.generate().certificate_pem, "mallory's spare")
        remove_member(replica, guest.fingerprint)

    refusal = await as_thief(world, invite, tmp_path / "thief2", mallory, join_twice)
    assert refusal.code is ErrorCode.FORBIDDEN

    # Lock the members out: remove the inviter and Bob.
    def lock_out(replica: Replica) -> None:
        remove_member(replica, world.ids["bob"].fingerprint)
        with replica.edits() as batch:
            batch.delete(MEMBER_TYPE, member_uuid(world.ids["alice"].fingerprint))

    refusal = await as_thief(world, invite, tmp_path / "thief3", mallory, lock_out)
    assert refusal.code is ErrorCode.FORBIDDEN
    assert written(world.alice.path) == before
    await world.members_still_served()

    # The token is still good for what it is for: the rightful newcomer joins.
    dave, _ = await clone_with_invite(invite, tmp_path / "dave", name="dave")
    with dave:
        assert dave.identity is not None
        assert dave.identity.fingerprint in world.node.trusted
    assert guest.fingerprint not in world.node.trusted


async def test_the_inviter_sees_that_the_token_was_used_and_by_whom(
    world: World, tmp_path: Path
) -> None:
    invite = await invited(world, "dave")
    pending = await invited(world, "erin")
    dave, _ = await clone_with_invite(invite, tmp_path / "dave", name="dave")
    with dave:
        assert dave.identity is not None
        joined = dave.identity.fingerprint
    states = {i.name: i for i in peek(world.alice.path, invites)}
    assert states["invite for dave"].state == "used"
    used_by = states["invite for dave"].used_by
    assert used_by is not None and (used_by.fingerprint, used_by.name) == (joined, "dave")
    assert states["invite for erin"].state == "pending"
    assert states["invite for erin"].fingerprint == pending.identity().fingerprint


async def test_two_uses_of_one_token_at_once_make_one_member(world: World, tmp_path: Path) -> None:
    invite = await invited(world)
    outcomes: list[str] = []

    async def use(name: str) -> None:
        try:
            replica, _ = await clone_with_invite(invite, tmp_path / name, name=name)
            replica.close()
            outcomes.append("joined")
        except (NotAccepted, Refused) as exc:
            outcomes.append(f"refused: {exc}")
            assert not (tmp_path / name).exists()  # nothing left behind

    async with trio.open_nursery() as nursery:
        nursery.start_soon(use, "first")
        nursery.start_soon(use, "second")
    assert sorted(o.split(":")[0] for o in outcomes) == ["joined", "refused"], outcomes
    members = peek(world.alice.path, lambda r: trusted_peers(r).fingerprints())
    assert len(members) == 4  # Alice, Bob, Carol and one newcomer
    await world.members_still_served()


async def test_a_member_cannot_change_the_membership_under_a_key_that_is_no_members(
    world: World, tmp_path: Path, mallory: Identity
) -> None:
    # Bob relays changesets of a throwaway key of his: it adds itself as a member.
    throwaway = Replica.init(tmp_path / "throwaway", db_uuid=world.alice.db_uuid, identity=mallory)
    with throwaway:
        transfer(throwaway, world.bob)
        add_member(
            throwaway, mallory.certificate_pem, "nobody", added_by=world.ids["bob"].fingerprint
        )
        transfer(world.bob, throwaway)
    before = written(world.alice.path)
    async with world.client(world.ids["bob"]) as http:
        with pytest.raises(Refused, match="member records change only by members") as refusal:
            await Peer(world.url, ReplicaWorker(world.bob), http=http, attempts=1).push()
    assert refusal.value.code is ErrorCode.FORBIDDEN
    assert written(world.alice.path) == before
    assert mallory.fingerprint not in world.node.trusted


async def test_members_add_and_remove_members_and_relay_each_others_changes(
    world: World, dave: Identity
) -> None:
    # Bob adds Dave; Carol pulls it from Bob (by path) and pushes it on to the node.
    add_member(world.bob, dave.certificate_pem, "dave", added_by=world.ids["bob"].fingerprint)
    transfer(world.carol, world.bob)
    async with world.client(world.ids["carol"]) as http:
        await Peer(world.url, ReplicaWorker(world.carol), http=http).push()
    assert dave.fingerprint in world.node.trusted
    remove_member(world.carol, dave.fingerprint)
    async with world.client(world.ids["carol"]) as http:
        await Peer(world.url, ReplicaWorker(world.carol), http=http).push()
    assert dave.fingerprint not in world.node.trusted


# -- the token -----------------------------------------------------------------------------


def test_a_token_altered_anywhere_is_refused_as_damaged(alice: Identity, tmp_path: Path) -> None:
    replica = Replica.init(tmp_path / "alice", identity=alice)
    with replica:
        token = create_invite(replica, ["https://127.0.0.1:7420"], name="dave").encode()
    assert Invite.decode(token).urls == ("https://127.0.0.1:7420",)
    raw = bytearray(base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :] + "=="))
    invite = Invite.decode(token)
    # The discovery secret, altered in place: a token that would half-work.
    at = bytes(raw).index(invite.discovery_secret)
    for where in (at, 0, len(raw) - CHECKSUM_BYTES - 1, len(raw) - 1):
        damaged = bytearray(raw)
        damaged[where] ^= 0x01
        text = TOKEN_PREFIX + base64.urlsafe_b64encode(bytes(damaged)).decode().rstrip("=")
        with pytest.raises(InvalidInvite, match="damaged"):
            Invite.decode(text)
    # A token of the version before checksums says so.
    with pytest.raises(InvalidInvite, match="older p2p-prophet"):
        Invite.decode("p2pp-invite-1." + token[len(TOKEN_PREFIX) :])
    assert dataclasses.replace(invite).encode() == token
