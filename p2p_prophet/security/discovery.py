"""The discovery key: what mDNS advertises in place of the database id.

Everyone on a LAN can read every mDNS advertisement.  If a node advertised its
``db_uuid``, a tracker on a café's network would learn which database each laptop
carries and which laptops share one, and could follow a database from network to
network by its id.  So a node advertises instead::

    discovery_key = hex(HMAC-SHA-256(key=secret, msg=UTF-8(db_uuid))[:16])

32 lowercase hex digits, where ``secret`` is the database's **discovery secret**: 32
random bytes that every member holds (made with the database, handed to a new member
with its invite) and that never leave the members' replicas.  Members compute the same
key and recognise each other's advertisements by it.  An outsider sees a random-looking
value: without the secret it can neither tell which database that is, nor link it to a
``db_uuid`` it learnt elsewhere, nor make an advertisement that members would take for
their database's.

What the key does not hide: it is the same for every node of a database and does not
change over time, so an observer can still see that two laptops carry the *same*
database, and recognise it again later (see docs/security.md, Discovery).

A replica without a discovery secret (a plain, ``--insecure`` database, or one made
before secrets existed) uses :data:`PLAIN_SECRET`, a fixed constant that is **not
secret**: anyone who knows such a database's id can compute its key.  Its key still does
not show the id in the clear, but it hides it from no one who guesses or knows it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from p2p_prophet.store import Replica

SECRET_META = "discovery_secret"  # the meta key in the replica's main database
SECRET_BYTES = 32
KEY_BYTES = 16  # of the HMAC, so 32 hex digits

PLAIN_SECRET = b"p2p-prophet plain database"
"""The discovery secret of a replica that has none.  Public, in this source: it hides a
plain database's id from no one who knows it (such databases are the ``--insecure``
ones)."""


def discovery_key(secret: bytes, db_uuid: str) -> str:
    """The key that nodes of ``db_uuid`` holding ``secret`` advertise: HMAC-SHA-256 keyed
    by ``secret`` over the UTF-8 ``db_uuid`` (canonical, lowercase, as replicas store it),
    truncated to 16 bytes, as 32 lowercase hex digits.

    Deterministic, so that every member computes the same key without talking to anyone;
    keyed, so that no one without the secret can compute it from the id or recover the
    id from it.  16 bytes are ample for recognising one's own database among a LAN's
    advertisements, and keep the TXT record small.
    """
    mac = hmac.new(secret, db_uuid.encode("utf-8"), hashlib.sha256).digest()
    return mac[:KEY_BYTES].hex()


def new_secret() -> bytes:
    """A new discovery secret: 32 random bytes from the OS's CSPRNG."""
    return secrets.token_bytes(SECRET_BYTES)


def replica_secret(replica: Replica) -> bytes:
    """``replica``'s discovery secret: the bytes stored as meta ``discovery_secret`` in
    its main database, or :data:`PLAIN_SECRET` (not secret) if it holds none.

    Raises :class:`ProphetError` if the stored value is not bytes: advertising a key
    made from anything else would silently cut this node off from its database.
    """
    secret = replica.discovery_secret
    return PLAIN_SECRET if secret is None else secret


__all__ = [
    "PLAIN_SECRET",
    "SECRET_META",
    "discovery_key",
    "new_secret",
    "replica_secret",
]
