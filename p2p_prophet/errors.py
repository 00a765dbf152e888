"""The errors p2p_prophet raises on purpose.

Every error a person can act on derives from :class:`ProphetError`; its message says what
went wrong and, where there is one, what to do.  The CLI prints the message and exits
non-zero; anything else is a bug and shows a traceback only with ``--debug``.
"""

from __future__ import annotations


class ProphetError(Exception):
    """Base of every expected error; ``str(err)`` is the message for a person."""


class MalformedChangeSet(ProphetError):
    """Bytes that should hold a changeset do not (bad CBOR, bad shape, not canonical)."""


class ReplicaNotFound(ProphetError):
    """No replica at the given path."""


class NotAReplica(ProphetError):
    """The path holds something, but not a replica this version can open."""


class RecordNotFound(ProphetError):
    """No live record with that type and uuid (or uuid prefix)."""


class StorageError(ProphetError):
    """SQLite refused a write (disk full, read-only, locked); nothing was committed."""


class IdentityError(ProphetError):
    """A replica's key or certificate is missing, unreadable, unsafe, or not a matching pair."""


class SealError(ProphetError):
    """A changeset's seal is malformed, made by a key that is not its origin's, or its
    signature does not verify (docs/security.md, Signed changesets)."""


class DamagedReplica(StorageError):
    """The replica's files are damaged (SQLite found them corrupt, or ``check`` found
    changesets that do not match their ids, chains or tickets); writes are refused."""
