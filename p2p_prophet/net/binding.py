"""What the HTTP binding of the protocol shares between server and client.

Paths, the media type, and the HTTP status for each :class:`ErrorCode` (docs/protocol.md).
"""

from __future__ import annotations

from p2p_prophet.wire import ErrorCode

MEDIA_TYPE = "application/cbor-seq"  # RFC 8742
PREFIX = "/prophet"
HELLO_PATH = f"{PREFIX}/hello"
EXCHANGE_PATH = f"{PREFIX}/exchange"
PUSH_PATH = f"{PREFIX}/push"

STATUS = {
    ErrorCode.MALFORMED: 400,
    ErrorCode.TRUNCATED: 400,
    ErrorCode.UNSUPPORTED_VERSION: 400,
    ErrorCode.NOT_MEMBER: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.WRONG_DATABASE: 409,
    ErrorCode.SAME_REPLICA: 409,
    ErrorCode.LOST_HISTORY: 409,
    ErrorCode.TOO_SLOW: 408,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.INVALID_CHANGESET: 422,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNKNOWN: 500,
}
