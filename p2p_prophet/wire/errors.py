"""The one error the wire raises, with a code that says what kind of trouble it is."""

from __future__ import annotations

from p2p_prophet.errors import ErrorCode, Refused, code_of


class ProtocolError(Refused):
    """A peer (or our own reading of it) broke the protocol, or refused the exchange.

    ``code`` says why; ``str(err)`` says it for a person.  Decoding untrusted bytes raises
    nothing else.  A :class:`~p2p_prophet.errors.Refused`, so that a caller tells every
    refusal apart by its code, whoever found it.
    """


__all__ = ["ErrorCode", "ProtocolError", "code_of"]
