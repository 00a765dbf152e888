"""Who a replica is and whom it talks to: Ed25519 identities and pinned TLS 1.3.

:mod:`~p2p_prophet.security.identity` makes, stores and loads a replica's key and
self-signed certificate, whose SHA-256 fingerprint is the replica's name among its peers;
:mod:`~p2p_prophet.security.tls` makes TLS contexts that accept only peers whose
fingerprints are in a :class:`TrustedPeers`.
"""

from p2p_prophet.security.identity import Identity, der_fingerprint, fingerprint, verify
from p2p_prophet.security.tls import (
    NotTrusted,
    TrustedPeers,
    client_context,
    peer_fingerprint,
    server_context,
)

__all__ = [
    "Identity",
    "NotTrusted",
    "TrustedPeers",
    "client_context",
    "der_fingerprint",
    "fingerprint",
    "peer_fingerprint",
    "server_context",
    "verify",
]
