"""Who may change the membership, and what an invite may do (docs/security.md).

Only members can connect to a node, but a connection alone says nothing about what its
caller may write.  Every batch pushed to a node over TLS is screened by
:func:`screen_push`, with the caller known by the fingerprint it presented:

1. **An invite is one join, nothing more.**  A caller whose identity is an invite (its
   member record carries an ``expires``) may pull, and may push exactly one thing: its
   join, to the node of the member who made the invite (every node trusts a pending
   invite, but one token must not make a member at each), before it expires.  A join is
   the changesets of one origin O that, together, create the member record of the
   identity whose key derives O (the newcomer's own new identity, not an invite: no
   ``expires``), naming the caller as the invite it used, and delete the caller's own
   invite record, and change nothing else.  Anything else it pushes is refused
   (``forbidden``).  Once the join is integrated the invite record is gone, so the token
   is refused from then on, by the node's check of each request and batch.
2. **Membership records change only by members.**  A changeset that touches a member
   record must be authored by a member: its origin (which its seal's key derives, checked
   at integration) must be the main origin of the key of a member of this database, or of
   a former member: a removal is not retroactive, so what a member wrote while it was
   one stays valid wherever it travels, and replicas that receive it before or after the
   removal agree on it.  Invites do not count as members here.  The one exception is a
   join relayed by a member: a changeset that creates the record of its own origin's
   identity and names, as the invite it used, an invite this database has or had (or,
   as joins made before records named their invite, an origin whose changesets in the
   batch create its own record and delete an invite's); that is how a newcomer's record
   reaches the nodes its inviter's did not.  The batch is read in order: a member or an
   invite created by an earlier changeset of it counts for the later ones.
3. Changesets that touch no member record are not screened: any member may write any
   record.

The rules read the pushed changesets and the receiver's membership, including removed
members (:func:`~p2p_prophet.security.membership.removed_members`), and nothing else.
Pulls are not screened: a node pulls from members only, and a person's own ``pull``
trusts what they chose to pull from.  What they leave open is written in
docs/security.md (What this leaves open).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from p2p_prophet.errors import ErrorCode, Refused
from p2p_prophet.keys.identity import load_certificate, raw_public_key
from p2p_prophet.keys.signing import origins_of
from p2p_prophet.model import ChangeSet, Op, Record, Value
from p2p_prophet.security.membership import (
    MEMBER_TYPE,
    Member,
    check_record,
    member_uuid,
    members,
    removed_members,
)
from p2p_prophet.store.replica import Replica

Incoming = tuple[ChangeSet, bytes, bytes | None]


class Forbidden(Refused):
    """A pushed batch holds changes its caller may not make (the module's rules);
    nothing of it was written.  A refusal with the code FORBIDDEN."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.FORBIDDEN, message)


@dataclass
class _Membership:
    """What the receiver knows of identities, for screening one batch."""

    by_fingerprint: dict[str, Member]
    member_origins: dict[str, Member]  # main origin -> member or former member (no invites)
    invite_uuids: set[str] = field(default_factory=set)  # record uuids of invites, ever


def _membership(replica: Replica) -> _Membership:
    everyone = [*members(replica), *removed_members(replica)]
    known = _Membership({m.fingerprint: m for m in everyone}, {})
    for member in everyone:
        if member.is_invite:
            known.invite_uuids.add(member_uuid(member.fingerprint))
        else:
            known.member_origins[origin_of(member)] = member
    return known


def origin_of(member: Member) -> str:
    """The main origin of ``member``'s key: the origin its changesets are signed under."""
    key = load_certificate(member.certificate_pem).public_key()
    return origins_of(raw_public_key(key))[0]  # type: ignore[arg-type]  # Ed25519 by Member's rules


def screen_push(
    replica: Replica,
    caller: str | None,
    changesets: Sequence[Incoming],
    *,
    resolution: bool,
    now: float | None = None,
) -> None:
    """Refuse a batch ``caller`` (a fingerprint) pushed, if the rules of the module doc
    forbid it.  The batch is read in order, so that a member or an invite that an
    earlier changeset of it creates counts for the later ones (a relayed chain of adds).
    Raises :class:`Forbidden` saying which changeset and why."""
    caller_member = None
    if caller is not None:
        found = [m for m in members(replica) if m.fingerprint == caller]
        caller_member = found[0] if found else None
    if caller_member is not None and caller_member.is_invite:
        _screen_invite(replica, caller_member, changesets, resolution=resolution, now=now)
        return
    if not any(_member_changes(cs) for cs, _, _ in changesets):
        return
    known = _membership(replica)
    joins = _joins(changesets, known)
    for cs, _, _ in changesets:
        if _member_changes(cs) and not (
            cs.origin in known.member_origins
            or cs.origin in joins
            or _invited_self_add(cs, known) is not None
        ):
            raise Forbidden(
                f"changeset {cs.origin}#{cs.origin_seq} (by {cs.creator}) changes the "
                "membership, but its author is not a member of this database: member "
                "records change only by members (docs/security.md); nothing of this batch "
                "was written"
            )
        _learn(cs, known)


def _screen_invite(
    replica: Replica,
    invite: Member,
    changesets: Sequence[Incoming],
    *,
    resolution: bool,
    now: float | None,
) -> None:
    what = f"the invite {invite.fingerprint[:16]}… ({invite.name or 'unnamed'})"
    refusal = Forbidden(
        f"this caller is {what}, which may pull and then push its join (a new member "
        "record for its new identity, and the invite's own removal) and nothing else; "
        "nothing of this batch was written"
    )
    identity = replica.identity
    if identity is None or invite.added_by != identity.fingerprint:
        # Every node trusts a pending invite, but only its inviter's takes the join: so
        # that one token cannot make one member here and another there.
        raise Forbidden(
            f"this caller is {what}, which joins through the node of the member who made "
            "it, not this one; nothing of this batch was written"
        )
    if invite.expired(time.time() if now is None else now):
        raise Forbidden(f"{what} has expired; nothing of this batch was written")
    if resolution or not changesets:
        raise refusal
    origins = {cs.origin for cs, _, _ in changesets}
    if len(origins) != 1:
        raise refusal
    known = _membership(replica)
    joined: str | None = None
    deleted = False
    for cs, _, _ in changesets:
        record = _invited_self_add(cs, known)
        for change in cs.changes:
            if change.type != MEMBER_TYPE:
                raise refusal
            if record is not None and change.uuid == member_uuid(record.fingerprint):
                if record.invite != invite.fingerprint or joined is not None:
                    raise refusal
                joined = record.fingerprint
            elif change.op is Op.DELETE and change.uuid == member_uuid(invite.fingerprint):
                deleted = True
            else:
                raise refusal
    if joined is None or not deleted:
        raise refusal


def _invited_self_add(cs: ChangeSet, known: _Membership) -> Member | None:
    """The member record ``cs`` creates if ``cs`` is the start of a join: it creates the
    record of the identity whose key derives its origin, names an invite this database
    has (or had) as the one it used, and changes no other member record but, perhaps,
    that invite's."""
    created = [
        change for change in cs.changes if change.type == MEMBER_TYPE and change.op is Op.CREATE
    ]
    if len(created) != 1:
        return None
    props = {p.name: p.new for p in created[0].props}
    checked = check_record(Record(MEMBER_TYPE, created[0].uuid, props))
    if not isinstance(checked, Member) or checked.is_invite or checked.invite is None:
        return None
    invite_uuid = member_uuid(checked.invite)
    if invite_uuid not in known.invite_uuids or origin_of(checked) != cs.origin:
        return None
    for change in cs.changes:
        if change.type == MEMBER_TYPE and change.uuid not in (created[0].uuid, invite_uuid):
            return None
    return checked


def _learn(cs: ChangeSet, known: _Membership) -> None:
    """Count the members and invites ``cs`` creates, for the changesets after it."""
    for change in cs.changes:
        if change.type != MEMBER_TYPE or change.op is not Op.CREATE:
            continue
        props = {p.name: p.new for p in change.props}
        checked = check_record(Record(MEMBER_TYPE, change.uuid, props))
        if not isinstance(checked, Member):
            continue
        if checked.is_invite:
            known.invite_uuids.add(change.uuid)
        else:
            known.member_origins[origin_of(checked)] = checked


def _member_changes(cs: ChangeSet) -> bool:
    return any(change.type == MEMBER_TYPE for change in cs.changes)


def _joins(changesets: Sequence[Incoming], known: _Membership) -> dict[str, str]:
    """The origins whose changesets in this batch make a join: origin -> the uuid of the
    invite record the join deletes.

    A join by origin O: O creates exactly one member record, for an identity that is not
    an invite and whose key derives O (its own), deletes exactly one member record, that
    of an invite this database has (or had), and changes no other member record.
    """
    creates: dict[str, list[tuple[str, dict[str, Value]]]] = {}
    deletes: dict[str, list[str]] = {}
    others: set[str] = set()
    for cs, _, _ in changesets:
        for change in cs.changes:
            if change.type != MEMBER_TYPE:
                continue
            if change.op is Op.CREATE:
                props = {p.name: p.new for p in change.props}
                creates.setdefault(cs.origin, []).append((change.uuid, props))
            elif change.op is Op.DELETE:
                deletes.setdefault(cs.origin, []).append(change.uuid)
            else:
                others.add(cs.origin)
    joins: dict[str, str] = {}
    for origin, made in creates.items():
        removed = deletes.get(origin, [])
        if origin in others or len(made) != 1 or len(removed) != 1:
            continue
        [(uuid, props)] = made
        [invite_uuid] = removed
        if invite_uuid not in known.invite_uuids or "expires" in props:
            continue
        if _self_add(uuid, props, origin):
            joins[origin] = invite_uuid
    return joins


def _self_add(uuid: str, props: dict[str, Value], origin: str) -> bool:
    """Whether a created member record is that of the identity whose key derives
    ``origin`` (a consistent record: its uuid and fingerprint match its certificate)."""
    checked = check_record(Record(MEMBER_TYPE, uuid, props))
    return isinstance(checked, Member) and origin_of(checked) == origin
