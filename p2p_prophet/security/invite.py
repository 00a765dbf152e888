"""Invites: a one-time token that lets a new laptop join a database (docs/security.md).

``p2p-prophet invite`` on a member's replica makes a fresh, short-lived identity, the
*invite identity*, and adds it to the membership with an expiry (:func:`create_invite`).
The token printed for the newcomer carries everything the newcomer needs and nothing
the inviter must keep:

- the inviter node's URLs and its fingerprint (the newcomer pins it: no one else can
  answer in its place);
- the database id and the discovery secret (so the newcomer's node finds the others);
- the invite identity's 32-byte seed: the secret.  Its certificate is deterministic in
  the seed (:meth:`Identity.from_seed`), so only the seed travels;
- the expiry.

``p2p-prophet clone TOKEN PATH`` connects to the inviter *as the invite identity* over
pinned TLS, clones, makes the new replica's own identity, adds that as a member and
removes the invite identity, then pushes those two changes back, all signed by the new
replica (:func:`p2p_prophet.net.client.clone_with_invite`).  From the moment the
removal reaches a node, the token is refused there by the TLS handshake like any removed
member; removal is final, so it can never be used again.  An unused token is refused
from its expiry on (the invite identity's member record carries it, and expired invites
are left out of the trusted peers).  The inviter keeps nothing secret: its database
holds the invite identity's certificate only.  (Every member's node would accept the
invite identity until it is used, but the newcomer's client pins the inviter's
fingerprint, so the token names the inviter's node and joins through it alone.)

A stolen token works exactly once, for whoever uses it first; the rightful newcomer then
finds it refused and can tell the inviter, who removes the stranger (``members``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from p2p_prophet.errors import InvalidValue, ProphetError
from p2p_prophet.keys.identity import SEED_BYTES, Identity
from p2p_prophet.model import CBORError, canonical, strict_loads
from p2p_prophet.security.membership import add_member
from p2p_prophet.store import Replica
from p2p_prophet.url import BadURL, check_node_url

TOKEN_PREFIX = "p2pp-invite-2."
OLD_PREFIXES = ("p2pp-invite-1.",)  # tokens of earlier versions, refused by name
DEFAULT_LIFETIME = 24 * 3600  # seconds
MAX_TOKEN_CHARS = 4096
MAX_URLS = 16
CHECKSUM_BYTES = 8
_VERSION = 2


class InvalidInvite(ProphetError):
    """A token that is not an invite, is damaged, or has expired."""


@dataclass(frozen=True)
class Invite:
    """What an invite token says (see the module doc)."""

    urls: tuple[str, ...]
    inviter: str  # fingerprint, 64 hex digits
    db_uuid: str
    seed: bytes = field(repr=False)  # the invite identity's private key: the secret
    discovery_secret: bytes = field(repr=False)
    expires: int  # unix time

    def identity(self) -> Identity:
        """The invite identity, as the inviter added it to the membership."""
        return Identity.from_seed(self.seed)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    def encode(self) -> str:
        """The token: :data:`TOKEN_PREFIX` and base64url (unpadded) of canonical CBOR
        followed by its checksum (the first :data:`CHECKSUM_BYTES` of its SHA-256), so
        that a token altered anywhere, by a copy gone wrong or by hand, is refused as
        damaged instead of half-working (a changed discovery secret would leave the
        newcomer's node unable to find its peers, silently)."""
        body = canonical(
            [
                _VERSION,
                uuidlib.UUID(self.db_uuid).bytes,
                bytes.fromhex(self.inviter),
                self.seed,
                self.discovery_secret,
                self.expires,
                list(self.urls),
            ]
        )
        sealed = body + _checksum(body)
        return TOKEN_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Invite:
        """Read a token; :class:`InvalidInvite`, saying what is wrong, if it is not one.

        Expiry is not checked here (see :meth:`expired`): the inviter's node is the judge.
        """
        token = "".join(token.split())  # a token copied from a wrapped terminal line
        if token.startswith(OLD_PREFIXES):
            raise InvalidInvite(
                "this invite token was made by an older p2p-prophet (its tokens carry no "
                "checksum); ask for a new one"
            )
        if not token.startswith(TOKEN_PREFIX):
            raise InvalidInvite(
                f"this is not an invite token (it should start with {TOKEN_PREFIX!r}; "
                "make one with `p2p-prophet invite` on a member's laptop)"
            )
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidInvite(f"this invite token is too long ({len(token)} characters)")
        text = token[len(TOKEN_PREFIX) :]
        try:
            sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInvite(f"this invite token is damaged ({exc}); copy it again") from None
        body, checksum = sealed[:-CHECKSUM_BYTES], sealed[-CHECKSUM_BYTES:]
        if len(sealed) <= CHECKSUM_BYTES or not hmac.compare_digest(checksum, _checksum(body)):
            raise InvalidInvite(
                "this invite token is damaged (its checksum does not match); copy it again"
            )
        try:
            obj = strict_loads(body, max_depth=2)
        except (ValueError, CBORError) as exc:
            raise InvalidInvite(f"this invite token is damaged ({exc}); copy it again") from None
        return cls._from_obj(obj)

    @classmethod
    def _from_obj(cls, obj: Any) -> Invite:
        damaged = InvalidInvite("this invite token is damaged; copy it again")
        if not isinstance(obj, list) or not obj or obj[0] != _VERSION:
            version = obj[0] if isinstance(obj, list) and obj else None
            if isinstance(version, int) and version != _VERSION:
                raise InvalidInvite(
                    f"this invite token is of version {version}; this p2p-prophet reads "
                    f"version {_VERSION} (upgrade the older of the two)"
                )
            raise damaged
        if len(obj) != 7:
            raise damaged
        _, db, inviter, seed, secret, expires, urls = obj
        if not (
            isinstance(db, bytes)
            and len(db) == 16
            and isinstance(inviter, bytes)
            and len(inviter) == 32
            and isinstance(seed, bytes)
            and len(seed) == SEED_BYTES
            and isinstance(secret, bytes)
            and len(secret) <= 64
            and isinstance(expires, int)
            and not isinstance(expires, bool)
            and isinstance(urls, list)
            and 0 < len(urls) <= MAX_URLS
            and all(isinstance(u, str) and u.startswith("https://") for u in urls)
        ):
            raise damaged
        for url in urls:
            try:
                check_node_url(url)
            except BadURL as exc:
                raise InvalidInvite(f"this invite token names a bad address: {exc}") from None
        return cls(
            urls=tuple(urls),
            inviter=inviter.hex(),
            db_uuid=str(uuidlib.UUID(bytes=db)),
            seed=seed,
            discovery_secret=secret,
            expires=expires,
        )


def _checksum(body: bytes) -> bytes:
    return hashlib.sha256(b"p2p-prophet invite token\x00" + body).digest()[:CHECKSUM_BYTES]


def create_invite(
    replica: Replica,
    urls: list[str],
    *,
    name: str = "",
    lifetime: float = DEFAULT_LIFETIME,
    now: float | None = None,
) -> Invite:
    """Add a new invite identity to ``replica``'s membership, valid for ``lifetime``
    seconds, and return the invite for its token.

    ``urls`` are where the inviter's node answers (``https://``).  Raises
    :class:`ProphetError` if ``replica`` is not a member's replica (it has no identity:
    a database made with ``--insecure`` has no members to invite into), or if there is
    no URL.
    """
    identity = replica.identity
    if identity is None:
        raise InvalidValue(
            f"{replica.path} has no identity (made with `init --insecure`), so its "
            "database has no members to invite into; clone it by path or plain URL instead"
        )
    if not urls:
        raise InvalidValue("an invite needs the address of a node to join through")
    for url in urls:
        check_node_url(url)
        if not url.startswith("https://"):
            raise ProphetError(f"{url}: an invite joins through https:// only")
    when = time.time() if now is None else now
    expires = int(when + lifetime)
    invite = Invite(
        urls=tuple(urls),
        inviter=identity.fingerprint,
        db_uuid=replica.db_uuid,
        seed=secrets.token_bytes(SEED_BYTES),
        discovery_secret=replica.discovery_secret or b"",
        expires=expires,
    )
    add_member(
        replica,
        invite.identity().certificate_pem,
        name=f"invite for {name}" if name else "invite",
        added_by=identity.fingerprint,
        expires=expires,
    )
    return invite
