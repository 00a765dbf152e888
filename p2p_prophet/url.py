"""A node's URL, checked once, up front, with one clear line when it is wrong.

A node is named by ``http://`` or ``https://``, a host (an IPv4 address, a bracketed IPv6
address, or a host name) and a port (:data:`DEFAULT_PORT` if none is given: the port
``serve`` listens on by default).  Nothing else may be in it: no user, path, query or
fragment.  Every place that takes a URL from a person (the CLI's arguments, ``--peer``,
``config.toml``, ``invite --url``, an invite token) checks it here, so that a typo is
said to be one instead of being tried as a connection and reported as "refused".
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from p2p_prophet.errors import ProphetError

DEFAULT_PORT = 7420
SCHEMES = ("http", "https")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_DOTTED = re.compile(r"[0-9.]+\Z")


class BadURL(ProphetError):
    """A URL that cannot name a node; the message says what is wrong with it."""


@dataclass(frozen=True)
class NodeURL:
    """A checked node URL."""

    scheme: str
    host: str  # an address (IPv6 without brackets) or a lowercase host name
    port: int

    def __str__(self) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{where}:{self.port}"


def parse_node_url(text: str) -> NodeURL:
    """The node URL ``text`` names; raises :class:`BadURL` saying why it cannot."""
    text = text.strip()
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise BadURL(f"{text!r} is not a URL: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise BadURL(
            f"{text!r} is not a node's URL: it must start with http:// or https:// and name "
            f"a host (like https://192.168.1.20:{DEFAULT_PORT})"
        )
    if parts.username is not None or parts.password is not None:
        raise BadURL(f"{text!r}: a node's URL holds no user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BadURL(f"{text!r}: a node's URL is its scheme, host and port, nothing after them")
    try:
        port = parts.port
    except ValueError:
        raise BadURL(f"{text!r}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise BadURL(f"{text!r}: the port must be a number from 1 to 65535")
    host = (parts.hostname or "").lower()
    return NodeURL(parts.scheme, _checked_host(text, host, parts.netloc), port or DEFAULT_PORT)


def check_node_url(text: str) -> str:
    """``text`` as a checked, normalized node URL (``scheme://host:port``); raises
    :class:`BadURL`."""
    return str(parse_node_url(text))


def _checked_host(text: str, host: str, netloc: str) -> str:
    if not host:
        raise BadURL(f"{text!r}: no host")
    if netloc.startswith("[") or ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise BadURL(f"{text!r}: {host!r} is not an IPv6 address") from None
    if _DOTTED.match(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise BadURL(f"{text!r}: {host!r} is not an IPv4 address") from None
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise BadURL(f"{text!r}: {host!r} is not a host name")
    return name
