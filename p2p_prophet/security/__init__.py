"""Whom a replica talks to and takes changes from: the membership, invites, pinned TLS 1.3,
discovery secrets, and who may change what (authority).

Above replication: it reads and writes member records through the store and screens
pushed batches.  The identities and seals it builds on are :mod:`p2p_prophet.keys`'s
(below the store); their names are re-exported here for convenience.
:mod:`~p2p_prophet.security.tls` makes TLS contexts that accept only peers whose
fingerprints are in a :class:`TrustedPeers`.
"""

from p2p_prophet.keys.identity import Identity, der_fingerprint, fingerprint, verify
from p2p_prophet.keys.signing import (
    SEAL_BYTES,
    SEAL_CONTEXT,
    Signer,
    origins_of,
    verify_seal,
)
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
