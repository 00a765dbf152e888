"""Signed changesets: origins derived from keys, and seals (docs/security.md).

A *signed* replica's two origins (its ``replica_uuid`` and its resolution database's) are
not random: they are derived from its identity's Ed25519 public key by :func:`origins_of`,
version 5 uuids of the key's hex in two fixed namespaces.  So an origin names its key, and
whoever checks a changeset needs no directory of keys to know whose signature it must
carry: the seal brings the key, and the key must derive the origin.

A *seal* is 96 bytes::

    public key (32 bytes, raw Ed25519) || signature (64 bytes)

where the signature is over ``SEAL_CONTEXT + changeset_id`` (the 32-byte SHA-256 id of
the changeset's canonical body, :func:`p2p_prophet.model.changeset_id`).  The context
string keeps a seal from meaning anything else the same key might ever sign.  A chained
changeset's id covers the id of its origin's previous changeset (``prev``), so one seal
vouches for every changeset of that origin before it, back to one already trusted.

Everything here is sans-IO and pure: :class:`Signer` seals with a replica's key,
:func:`verify_seal` checks a seal and raises :class:`~p2p_prophet.errors.SealError`.
"""

from __future__ import annotations

import uuid as uuidlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2p_prophet.errors import SealError
from p2p_prophet.keys.identity import Identity, raw_public_key

SEAL_CONTEXT = b"p2p-prophet changeset seal v1\x00"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEAL_BYTES = PUBLIC_KEY_BYTES + SIGNATURE_BYTES

# The namespaces of signed replicas' origins (RFC 4122 version 5, over the public key's
# 64 hex digits): one for the main log, one for the resolution database's.  Drawn at
# random once, for this purpose only.  They must never change: every signed replica's
# uuids are derived from them, and a receiver using others would refuse every seal.
MAIN_ORIGIN_NAMESPACE = uuidlib.UUID("8f857cb9-1ab7-465c-bf0c-c5da2dd38411")
RESOLUTIONS_ORIGIN_NAMESPACE = uuidlib.UUID("d501809b-7077-402a-a64a-bd3aca3998a8")

# Caches, per raw public key, of what verification derives from it.  A batch checks one
# seal per origin, and a database has few origins; the bound only
# stops a stream of seals with made-up keys from growing them without end.
_CACHE_LIMIT = 1024
_keys: dict[bytes, Ed25519PublicKey] = {}
_origins: dict[bytes, tuple[str, str]] = {}


def origins_of(public_key_raw: bytes) -> tuple[str, str]:
    """The (main, resolutions) origins of the replica whose raw Ed25519 public key this is."""
    origins = _origins.get(public_key_raw)
    if origins is None:
        name = public_key_raw.hex()
        origins = (
            str(uuidlib.uuid5(MAIN_ORIGIN_NAMESPACE, name)),
            str(uuidlib.uuid5(RESOLUTIONS_ORIGIN_NAMESPACE, name)),
        )
        if len(_origins) >= _CACHE_LIMIT:
            _origins.clear()
        _origins[public_key_raw] = origins
    return origins


class Signer:
    """Seals changeset ids with a replica's identity (its Ed25519 private key)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.public_key: bytes = raw_public_key(identity.key.public_key())
        self.origins: tuple[str, str] = origins_of(self.public_key)

    def seal(self, changeset_id: bytes) -> bytes:
        """The 96-byte seal of the changeset with this id: public key, then signature."""
        return self.public_key + self.identity.key.sign(SEAL_CONTEXT + changeset_id)


def verify_seal(seal: bytes, changeset_id: bytes, origin: str, resolutions: bool) -> None:
    """Check that ``seal`` is ``origin``'s signature of the changeset with this id.

    ``resolutions`` says which of the key's two origins ``origin`` must be: the
    resolution database's, or the main log's.  Raises :class:`SealError`, naming the
    origin, if the seal is not :data:`SEAL_BYTES` long, if its key does not derive
    ``origin`` (a changeset signed by someone else under that origin), or if the
    signature does not verify (the changeset, or its seal, was altered).
    """
    if len(seal) != SEAL_BYTES:
        raise SealError(
            f"the seal of a changeset of origin {origin} is {len(seal)} bytes, not {SEAL_BYTES}"
        )
    raw = seal[:PUBLIC_KEY_BYTES]
    if origins_of(raw)[1 if resolutions else 0] != origin:
        raise SealError(
            f"the changeset is sealed by a key that is not origin {origin}'s own: a changeset"
            " under that origin signed by another key"
        )
    key = _keys.get(raw)
    if key is None:
        try:
            key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise SealError(f"the seal of origin {origin} holds no Ed25519 public key") from None
        if len(_keys) >= _CACHE_LIMIT:
            _keys.clear()
        _keys[raw] = key
    try:
        key.verify(seal[PUBLIC_KEY_BYTES:], SEAL_CONTEXT + changeset_id)
    except InvalidSignature:
        raise SealError(
            f"its signature does not verify against origin {origin}'s key: the changeset"
            " or its seal was altered"
        ) from None
