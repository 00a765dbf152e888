"""The errors p2p_prophet raises on purpose, and the few kinds they come in.

Every error a person can act on derives from :class:`ProphetError`; its message says what
went wrong and, where there is one, what to do.  The CLI prints the message and exits
non-zero; anything else is a bug and shows a traceback only with ``--debug``.

Code that must tell errors apart tells them by type (or by :attr:`Refused.code`), never by
their message.  The kinds:

===================  ==============================================================
:class:`NotFound`    what was named does not exist (a replica, a record)
:class:`AlreadyExists`  the place for something new is taken (a clone's destination)
:class:`InvalidValue`  a value given by a person or a file breaks the rules
:class:`StorageError`  storage refused a write; :class:`DamagedReplica` its files are
                     damaged
:class:`Refused`     an exchange was refused, by a peer or by this side; its
                     :class:`ErrorCode` says why, the same over every transport
===================  ==============================================================
"""

from __future__ import annotations

from enum import StrEnum


class ProphetError(Exception):
    """Base of every expected error; ``str(err)`` is the message for a person."""


class NotFound(ProphetError):
    """What was named (a replica, a record, a conflict) does not exist."""


class AlreadyExists(ProphetError):
    """The place for something new is taken (a clone's destination is not empty)."""


class InvalidValue(ProphetError):
    """A value breaks the rules: a property name or value, a setting, an argument."""


class MalformedChangeSet(ProphetError):
    """Bytes that should hold a changeset do not (bad CBOR, bad shape, not canonical)."""


class ReplicaNotFound(NotFound):
    """No replica at the given path."""


class NotAReplica(ProphetError):
    """The path holds something, but not a replica this version can open."""


class RecordNotFound(NotFound):
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


class ErrorCode(StrEnum):
    """Why an exchange was refused: sent in ERROR messages (docs/protocol.md lists them),
    and carried by :class:`Refused` whichever transport the exchange ran over."""

    MALFORMED = "malformed"  # not CBOR, or not the message the protocol expects here
    TOO_LARGE = "too-large"  # a frame, batch or request beyond the limits
    TRUNCATED = "truncated"  # the stream ended before its last batch end
    UNSUPPORTED_VERSION = "unsupported-version"
    WRONG_DATABASE = "wrong-database"  # the peer holds another database
    SAME_REPLICA = "same-replica"  # the peer is this replica itself
    LOST_HISTORY = "lost-history"  # a replica restored from an old backup
    INVALID_CHANGESET = "invalid-changeset"  # bad body, id mismatch, gap, nullification
    NOT_FOUND = "not-found"  # no such endpoint
    METHOD_NOT_ALLOWED = "method-not-allowed"
    UNAVAILABLE = "unavailable"  # the node cannot take this now (storage full, busy)
    NOT_MEMBER = "not-member"  # the caller's identity is not (or no longer) a member
    FORBIDDEN = "forbidden"  # the caller's identity may not make these changes
    TOO_SLOW = "too-slow"  # a batch took longer to arrive than the node waits
    INTERNAL = "internal"  # a bug on the side that says so
    UNKNOWN = "unknown"  # a code this version does not know (from a newer peer)


def code_of(text: str) -> ErrorCode:
    """The :class:`ErrorCode` named ``text`` (UNKNOWN for codes from a newer peer)."""
    try:
        return ErrorCode(text)
    except ValueError:
        return ErrorCode.UNKNOWN


class Refused(ProphetError):
    """An exchange was refused, by the peer or by this side: ``code`` says why, the same
    for a path, a node's URL or the simulator (another database is always
    :attr:`ErrorCode.WRONG_DATABASE`).  ``retry_after``: the seconds a busy node asked the
    caller to wait (its Retry-After), if any."""

    def __init__(self, code: ErrorCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after
