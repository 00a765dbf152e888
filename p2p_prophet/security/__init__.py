"""Who a replica is and whom it talks to: Ed25519 identities and pinned TLS 1.3.

:mod:`~p2p_prophet.security.identity` makes, stores and loads a replica's key and
self-signed certificate, whose SHA-256 fingerprint is the replica's name among its peers;
:mod:`~p2p_prophet.security.tls` makes TLS contexts that accept only peers whose
fingerprints are in a :class:`TrustedPeers`; :mod:`~p2p_prophet.security.signing` derives
a signed replica's origins from its key and seals and verifies its changesets.
"""

from p2p_prophet.security.identity import Identity, der_fingerprint, fingerprint, verify
from p2p_prophet.security.membership import (
    MEMBER_NAMESPACE,
    MEMBER_TYPE,
    InvalidMember,
    Member,
    add_member,
    invalid_members,
    member_uuid,
    members,
    refresh,
    remove_member,
    resolve,
    trusted_peers,
)
from p2p_prophet.security.signing import (
    SEAL_BYTES,
    SEAL_CONTEXT,
    Signer,
    origins_of,
    verify_seal,
)
from p2p_prophet.security.tls import (
    NotTrusted,
    TrustedPeers,
    client_context,
    peer_fingerprint,
    server_context,
)

__all__ = [
    "MEMBER_NAMESPACE",
    "MEMBER_TYPE",
    "SEAL_BYTES",
    "SEAL_CONTEXT",
    "Identity",
    "InvalidMember",
    "Member",
    "NotTrusted",
    "Signer",
    "TrustedPeers",
    "add_member",
    "client_context",
    "der_fingerprint",
    "fingerprint",
    "invalid_members",
    "member_uuid",
    "members",
    "origins_of",
    "peer_fingerprint",
    "refresh",
    "remove_member",
    "resolve",
    "server_context",
    "trusted_peers",
    "verify",
    "verify_seal",
]
