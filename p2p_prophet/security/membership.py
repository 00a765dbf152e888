"""Who the members of a database are: records of the database itself (docs/security.md).

A member is a live record of type :data:`MEMBER_TYPE` (``"member"``), one per identity,
with four text properties and an optional expiry:

``certificate``
    the member's certificate, PEM (its public key travels with it);
``fingerprint``
    the certificate's fingerprint, 64 lowercase hex digits
    (:func:`~p2p_prophet.keys.identity.fingerprint`);
``name``
    free text for people, possibly empty;
``added_by``
    the fingerprint of the member who added it, or ``""`` for the founder;
``expires`` (optional, int)
    for the identity of an invite only: the unix time from which it is no longer trusted
    (:mod:`p2p_prophet.security.invite`);
``invite`` (optional, text)
    for a member who joined with an invite: the invite identity's fingerprint, so that
    the inviter sees who used the token (:func:`invites`).

The record's uuid is not random: it is :func:`member_uuid` of the fingerprint, a version 5
uuid in the fixed namespace :data:`MEMBER_NAMESPACE`.  Two members who add the same
identity concurrently, on replicas that have not synced yet, therefore create the *same*
record; when they sync, the two creates meet as concurrent writes to one record and merge
by the usual rules (a differing name is a property conflict, settled by the stamp order),
instead of leaving two records for one member that a later removal would have to find
and delete one by one.

Members sync, conflict and converge like every other record, so every replica comes to
agree on the membership without a server:

- **Removal is the record's delete, and it is final.**  A delete wins over concurrent
  edits (P5), so a concurrent rename cannot undo a removal.  A deleted record cannot be
  created again (the store keeps its tombstone, and refuses a create with its uuid), and
  since the uuid is derived from the fingerprint, a removed *identity* can never be a
  member again: :func:`add_member` refuses it, and an add made on a replica that had not
  yet heard of the removal is buried under the tombstone when the two meet.  This is
  deliberate: a removal is what you do when a laptop is lost, and its key must not be
  let back in by a replayed or concurrent add.  A removed person who rejoins does so with
  a new identity (a new key pair), which is a new member.
- **Only consistent records count.**  :func:`members` lists a live member record only if
  its ``certificate`` is an Ed25519 certificate whose fingerprint is the record's
  ``fingerprint`` and its uuid is :func:`member_uuid` of that fingerprint.  A record
  edited into anything else (another identity's certificate pasted into it, a record of
  type ``member`` made by hand with a random uuid) lets no one in; :func:`invalid_members`
  lists such records and why, so that a CLI can warn about them.
- **Authority is not checked here.**  Anyone who can write to a replica can write member
  records.  That only members write at all is enforced at the transport (only members
  can connect, so every relay is a member); signed changesets (docs/security.md) make
  each changeset's author its origin's own key, checked at integration, but do not
  consult the membership there.  ``added_by`` is provenance for people, not a proof.

Everything here is sans-IO: plain functions over a :class:`~p2p_prophet.store.Replica`.
A node turns the membership into the :class:`~p2p_prophet.security.tls.TrustedPeers` its
TLS contexts follow with :func:`trusted_peers`, and calls :func:`refresh` after each
integration.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2p_prophet.errors import IdentityError, InvalidValue, NotFound
from p2p_prophet.keys.identity import der_fingerprint, load_certificate
from p2p_prophet.model import Record, Value
from p2p_prophet.security.tls import TrustedPeers
from p2p_prophet.store.replica import Replica

MEMBER_TYPE = "member"

# The namespace of member record uuids (RFC 4122 version 5, over the fingerprint's 64 hex
# digits).  Drawn at random once, for this purpose only.  It must never change: every
# existing database names its member records by it, and a replica using another
# namespace would make a second record for every member it adds.
MEMBER_NAMESPACE = uuidlib.UUID("99dcb841-57b1-4e96-830b-0335d38759fc")

# A prefix this short still picks one of a few thousand members with near certainty,
# and is long enough that a typo is unlikely to name someone else.
MIN_PREFIX = 8

_HEX = frozenset("0123456789abcdef")
_FINGERPRINT_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Member:
    """A member as :func:`members` found it: a consistent, live member record.

    ``certificate_pem`` is the certificate re-encoded alone, so text appended to the
    stored PEM (another certificate of a bundle, say) never reaches a trust store.
    """

    fingerprint: str
    name: str
    certificate_pem: str = field(repr=False)
    added_by: str
    expires: int | None = None  # an invite's identity: unix time after which it is refused
    invite: str | None = None  # the invite this member joined with, if any

    @property
    def is_invite(self) -> bool:
        """Whether this is an invite's identity (it stands for no one yet)."""
        return self.expires is not None

    def expired(self, now: float) -> bool:
        """Whether this member is an invite whose time is up at ``now`` (unix time)."""
        return self.expires is not None and now >= self.expires


@dataclass(frozen=True, slots=True)
class InvalidMember:
    """A live record of type :data:`MEMBER_TYPE` that :func:`members` ignores, and why.

    ``fingerprint`` and ``name`` are the record's properties as written (``None`` if
    missing or not text): they are what it claims, not what it is.
    """

    uuid: str
    fingerprint: str | None
    name: str | None
    reason: str


def member_uuid(fingerprint: str) -> str:
    """The uuid of the member record of ``fingerprint`` (64 lowercase hex digits).

    Raises :class:`IdentityError` if ``fingerprint`` is not a fingerprint.
    """
    return str(uuidlib.uuid5(MEMBER_NAMESPACE, _checked_fingerprint(fingerprint, "fingerprint")))


def add_member(
    replica: Replica,
    certificate_pem: str | bytes,
    name: str = "",
    added_by: str = "",
    *,
    expires: int | None = None,
    invite: str | None = None,
) -> str:
    """Make the identity of ``certificate_pem`` a member; return its fingerprint.

    The record stores the (first) certificate of ``certificate_pem``, re-encoded alone.
    ``added_by`` is the fingerprint of the member adding it, ``""`` for the founder.
    ``expires`` (unix time) makes it a member only until then: the identity of an invite
    (:mod:`p2p_prophet.security.invite`), which :func:`trusted_peers` leaves out once
    expired; ``invite`` is the fingerprint of the invite a joining member used.

    If the identity is already a live member, no second record is made: the record's
    name becomes ``name`` if ``name`` is given (not empty) and differs, and a record that
    was edited into inconsistency gets this certificate and fingerprint back; its
    ``added_by`` is left as it was.  If nothing differs, nothing is written.

    Raises :class:`IdentityError` if ``certificate_pem`` is not a PEM certificate of an
    Ed25519 key or ``added_by`` is neither empty nor a fingerprint;
    :class:`~p2p_prophet.model.InvalidValue` if ``name`` is not valid text; and
    :class:`ProphetError` if the identity was a member and has been removed (removal is
    final, see the module doc).  Nothing is written in those cases.
    """
    fp, pem = _parse_certificate(certificate_pem)
    adder = _checked_fingerprint(added_by, "added_by") if added_by else ""
    ruuid = member_uuid(fp)
    with replica.edits() as batch:
        # Read inside the write transaction, so that no other process removes or adds
        # this member between the check and the write.
        row = replica.main.find_record(MEMBER_TYPE, ruuid)
        if row is None:
            props: dict[str, Value] = {
                "certificate": pem,
                "fingerprint": fp,
                "name": name,
                "added_by": adder,
            }
            if expires is not None:
                props["expires"] = int(expires)
            if invite is not None:
                props["invite"] = _checked_fingerprint(invite, "invite")
            batch.create(MEMBER_TYPE, props, ruuid)
            return fp
        if not row.live:
            raise InvalidValue(
                f"{fp} was a member and has been removed; a removed identity cannot be"
                " added again (removal is final for that key, so a lost laptop's key stays"
                " out). To rejoin, make a new identity and add that one"
            )
        current = {prop: stored.value for prop, stored in replica.main.props(row.rid).items()}
        wanted: dict[str, Value] = {}
        if current.get("certificate") != pem or current.get("fingerprint") != fp:
            wanted.update(certificate=pem, fingerprint=fp)
        if name and current.get("name") != name:
            wanted["name"] = name
        if wanted:
            batch.update(MEMBER_TYPE, ruuid, wanted)
    return fp


def remove_member(replica: Replica, fingerprint: str) -> None:
    """Remove the member named by ``fingerprint``: a full fingerprint or a prefix of it.

    The member's record is deleted; once the delete reaches a node, that node refuses the
    member (docs/security.md).  The prefix is resolved by :func:`resolve`, whose errors
    this raises.  Also raises :class:`ProphetError`, writing nothing, if the member is the
    last one: with no member left, no one could connect to anyone.  That check sees only
    this replica; two replicas that concurrently remove the last two members leave none
    once they sync, which no local check can prevent.
    """
    with replica.edits() as batch:
        target = resolve(replica, fingerprint)
        # An invite's identity does not count: it stands for no one yet, and expires.
        lasting = [m for m in members(replica) if m.expires is None]
        if all(m.fingerprint == target.fingerprint for m in lasting):
            raise InvalidValue(
                f"{_label(target)} is the last member of this database; removing it would"
                " lock everyone out. Add another member first"
            )
        batch.delete(MEMBER_TYPE, member_uuid(target.fingerprint))


def members(replica: Replica) -> list[Member]:
    """The members of ``replica``'s database, by fingerprint.

    Only consistent live member records count (the rules are in the module doc); the
    others are listed by :func:`invalid_members`.
    """
    valid, _ = _survey(replica)
    return valid


def invalid_members(replica: Replica) -> list[InvalidMember]:
    """The live member records :func:`members` ignores, by uuid, each with the reason."""
    _, invalid = _survey(replica)
    return invalid


def resolve(replica: Replica, prefix: str) -> Member:
    """The one member whose fingerprint starts with ``prefix`` (case and surrounding
    spaces ignored).

    Raises :class:`ProphetError`, with what to do, if ``prefix`` is not hex, is shorter
    than :data:`MIN_PREFIX` digits, matches several members (they are listed), or matches
    none (the message then says if the identity was removed, or if only member records
    that are not valid match).
    """
    wanted = prefix.strip().lower()
    if not wanted or not set(wanted) <= _HEX or len(wanted) > _FINGERPRINT_LENGTH:
        raise InvalidValue(
            f"{prefix!r} is not a fingerprint or the start of one (hex digits, at most"
            f" {_FINGERPRINT_LENGTH})"
        )
    if len(wanted) < MIN_PREFIX:
        raise InvalidValue(
            f"{prefix!r} is too short to name a member; give at least {MIN_PREFIX} hex digits"
            " of its fingerprint"
        )
    valid, invalid = _survey(replica)
    found = [m for m in valid if m.fingerprint.startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if found:
        listing = "; ".join(_label(m) for m in found)
        raise InvalidValue(
            f"{wanted} starts the fingerprints of {len(found)} members ({listing}); give more"
            " digits"
        )
    if len(wanted) == _FINGERPRINT_LENGTH:
        row = replica.main.find_record(MEMBER_TYPE, member_uuid(wanted))
        if row is not None and not row.live:
            raise NotFound(f"{wanted} is no longer a member: it was removed")
    claimed = [r for r in invalid if r.fingerprint is not None and r.fingerprint.startswith(wanted)]
    if claimed:
        listing = "; ".join(f"record {r.uuid}: {r.reason}" for r in claimed)
        raise NotFound(
            f"no member's fingerprint starts with {wanted}; only member records that are not"
            f" valid, and so let no one in, claim it ({listing})"
        )
    known = "no members" if not valid else "members: " + "; ".join(_label(m) for m in valid)
    raise NotFound(f"no member's fingerprint starts with {wanted} (this database has {known})")


def removed_members(replica: Replica) -> list[Member]:
    """The identities that were members (invites included) and have been removed, as
    their records last said, by fingerprint; records that were never consistent, or
    whose properties never arrived, are left out."""
    found = [
        checked
        for record in replica.main.removed_records(MEMBER_TYPE)
        if isinstance(checked := check_record(record), Member)
    ]
    return sorted(found, key=lambda m: m.fingerprint)


@dataclass(frozen=True, slots=True)
class InviteState:
    """An invite as the membership tells of it: ``state`` is ``"pending"``,
    ``"expired"`` (never used), ``"used"`` (``used_by`` joined with it) or
    ``"withdrawn"`` (removed by a member, or used by a version that did not record by
    whom)."""

    fingerprint: str
    name: str
    expires: int
    added_by: str
    state: str
    used_by: Member | None = None


def invites(replica: Replica, now: float | None = None) -> list[InviteState]:
    """Every invite of this database, pending, expired or used, newest expiry first."""
    at = time.time() if now is None else now
    joined: dict[str, Member] = {}
    for member in (*members(replica), *removed_members(replica)):
        if member.invite is not None and not member.is_invite:
            joined.setdefault(member.invite, member)
    found = []
    for member in members(replica):
        if member.is_invite:
            assert member.expires is not None
            state = "expired" if member.expired(at) else "pending"
            found.append(
                InviteState(member.fingerprint, member.name, member.expires, member.added_by, state)
            )
    for member in removed_members(replica):
        if member.is_invite:
            assert member.expires is not None
            user = joined.get(member.fingerprint)
            found.append(
                InviteState(
                    member.fingerprint,
                    member.name,
                    member.expires,
                    member.added_by,
                    "used" if user is not None else "withdrawn",
                    user,
                )
            )
    return sorted(found, key=lambda i: (-i.expires, i.fingerprint))


def trusted_peers(replica: Replica, now: float | None = None) -> TrustedPeers:
    """A :class:`TrustedPeers` holding the certificates of ``replica``'s members now
    (``now``: unix time, default the clock's), expired invites left out."""
    return TrustedPeers(_trusted_certificates(replica, now))


def refresh(trusted: TrustedPeers, replica: Replica, now: float | None = None) -> None:
    """Make ``trusted`` hold exactly the certificates of ``replica``'s members now,
    expired invites left out, and remember the others (removed members, expired invites:
    :meth:`TrustedPeers.remember`), so that a node can tell them why it refuses them.

    Removed members are refused from the next handshake on, by contexts already made too
    (see :meth:`TrustedPeers.replace`); connections already open are not cut.
    """
    at = time.time() if now is None else now
    trusted.replace(_trusted_certificates(replica, at))
    trusted.remember(
        [m.certificate_pem for m in removed_members(replica)]
        + [m.certificate_pem for m in members(replica) if m.expired(at)]
    )


def _trusted_certificates(replica: Replica, now: float | None) -> list[str]:
    at = time.time() if now is None else now
    return [m.certificate_pem for m in members(replica) if not m.expired(at)]


# -- checking records ----------------------------------------------------------------------


def _survey(replica: Replica) -> tuple[list[Member], list[InvalidMember]]:
    """Every live member record, sorted into members (by fingerprint) and the rest (by
    uuid)."""
    valid: list[Member] = []
    invalid: list[InvalidMember] = []
    for record in replica.main.live_records(MEMBER_TYPE):
        checked = check_record(record)
        if isinstance(checked, Member):
            valid.append(checked)
        else:
            invalid.append(checked)
    valid.sort(key=lambda m: m.fingerprint)
    return valid, invalid


def check_record(record: Record) -> Member | InvalidMember:
    """``record`` (of type :data:`MEMBER_TYPE`) as a :class:`Member` if it is a consistent
    member record (the module doc's rules), else as an :class:`InvalidMember` saying why."""
    props = record.props
    fp, name, cert = props.get("fingerprint"), props.get("name"), props.get("certificate")
    claimed = fp if isinstance(fp, str) else None

    def invalid(reason: str) -> InvalidMember:
        return InvalidMember(record.uuid, claimed, name if isinstance(name, str) else None, reason)

    if claimed is None or not _is_fingerprint(claimed):
        return invalid("its fingerprint is missing or not 64 lowercase hex digits")
    if record.uuid != member_uuid(claimed):
        return invalid(f"its uuid is not the one derived from its fingerprint ({claimed})")
    if not isinstance(cert, str):
        return invalid("it holds no certificate")
    try:
        actual, pem = _parse_certificate(cert)
    except IdentityError as exc:
        return invalid(f"its certificate is not usable: {exc}")
    if actual != claimed:
        return invalid(f"its certificate is that of {actual}, not of {claimed}")
    # A name or added_by that is not text grants nothing, so it does not void the record.
    added_by = props.get("added_by")
    expires = props.get("expires")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        # An expiry that cannot be read must not make an invite last for ever.
        return invalid(f"its expiry {expires!r} is not a unix time")
    invite = props.get("invite")
    return Member(
        fingerprint=claimed,
        name=name if isinstance(name, str) else "",
        certificate_pem=pem,
        added_by=added_by if isinstance(added_by, str) else "",
        expires=expires,
        invite=invite if isinstance(invite, str) and _is_fingerprint(invite) else None,
    )


def _parse_certificate(certificate_pem: str | bytes) -> tuple[str, str]:
    """``(fingerprint, pem)`` of the first certificate in ``certificate_pem``, re-encoded
    alone; :class:`IdentityError` unless it is a PEM certificate of an Ed25519 key (the
    only kind of key an identity has, and the only one that can sign changesets)."""
    cert = load_certificate(certificate_pem, "the member's certificate")
    if not isinstance(cert.public_key(), Ed25519PublicKey):
        raise IdentityError("the member's certificate does not hold an Ed25519 key")
    der = cert.public_bytes(serialization.Encoding.DER)
    return der_fingerprint(der), cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _is_fingerprint(value: str) -> bool:
    return len(value) == _FINGERPRINT_LENGTH and set(value) <= _HEX


def _checked_fingerprint(value: str, what: str) -> str:
    fp = value.strip().lower()
    if not _is_fingerprint(fp):
        raise IdentityError(
            f"{what} {value!r} is not a replica fingerprint (64 hex digits, the SHA-256 of its"
            " certificate)"
        )
    return fp


def _label(member: Member) -> str:
    return f"{member.fingerprint} ({member.name})" if member.name else member.fingerprint
