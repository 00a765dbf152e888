"""The one error the wire raises, with a code that says what kind of trouble it is."""

from __future__ import annotations

from enum import StrEnum

from p2p_prophet.errors import ProphetError


class ErrorCode(StrEnum):
    """Machine-readable reasons, sent in ERROR messages (docs/protocol.md lists them)."""

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


class ProtocolError(ProphetError):
    """A peer (or our own reading of it) broke the protocol, or refused the exchange.

    ``code`` says why; ``str(err)`` says it for a person.  Decoding untrusted bytes raises
    nothing else.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def code_of(text: str) -> ErrorCode:
    """The :class:`ErrorCode` named ``text`` (UNKNOWN for codes from a newer peer)."""
    try:
        return ErrorCode(text)
    except ValueError:
        return ErrorCode.UNKNOWN
