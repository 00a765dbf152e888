"""Who wrote what: a replica's Ed25519 identity, and the seals of its changesets.

:mod:`~p2p_prophet.keys.identity` makes, stores and loads a replica's key and
self-signed certificate, whose SHA-256 fingerprint is the replica's name among its peers;
:mod:`~p2p_prophet.keys.signing` derives a signed replica's origins from its key and
seals and verifies its changesets.  Below the store, which signs what it writes; who may
write (membership, invites, TLS) is :mod:`p2p_prophet.security`'s, above replication.
"""

from p2p_prophet.keys.identity import Identity, der_fingerprint, fingerprint, verify
from p2p_prophet.keys.signing import SEAL_BYTES, SEAL_CONTEXT, Signer, origins_of, verify_seal

__all__ = [
    "SEAL_BYTES",
    "SEAL_CONTEXT",
    "Identity",
    "Signer",
    "der_fingerprint",
    "fingerprint",
    "origins_of",
    "verify",
    "verify_seal",
]
