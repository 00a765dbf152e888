"""Accepting connections within bounds: how many at once, how many per address.

A node is a daemon on a LAN with strangers on it, and each connection it accepts costs a
file descriptor until it closes.  Without a bound, a stranger who opens idle connections
faster than the TLS handshake timeout closes them runs the process out of descriptors,
and then everything that opens a file fails: the status file, SQLite, mDNS.  So:

- at start, the soft limit on open files is raised to the hard limit
  (:func:`raise_open_file_limit`), as servers do;
- :class:`GuardedListener` holds at most ``ConnectionLimits.total`` connections, at most
  ``per_address`` from one address, and at most ``waiting`` that have not yet made their
  first request (a TLS handshake not finished, or no request sent: everything a stranger
  can do).  A connection over the total or per-address cap is accepted and reset at once
  (SO_LINGER 0): it costs its sender a round trip and the node nothing that lasts, and it
  never waits in the kernel's backlog where it would delay a member.  A new connection
  beyond the waiting cap evicts a waiting one instead: the oldest of the address that
  holds the most, so that a crowd of idle connections pushes out its own, and a member's
  handshake, however slow its link, is pushed out only by a crowd from its own address
  (the idea of OpenSSH's MaxStartups, deterministic);
- a connection whose peer does not take a chunk the node sends within
  :data:`WRITE_TIMEOUT` is dropped (hypercorn's own sending has no timeout);
- :func:`accept_loop` keeps accepting through "too many open files" and the like, waiting
  with a doubling delay and saying so once per episode, instead of failing.

The defaults (:func:`limits_for`) keep the connections well below the descriptor limit,
with room left for the replica's SQLite files, mDNS, outgoing gossip and the status
file (docs/network.md, Bounds).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import socket
import struct
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

log = logging.getLogger("p2p_prophet.net")

# Descriptors kept free of connections for everything else a node opens: two SQLite
# databases with their WAL and shared-memory files, mDNS sockets, outgoing gossip
# connections, the status file, a thread pool's pipes, and room to spare.
RESERVED_DESCRIPTORS = 64
MAX_CONNECTIONS = 512
MAX_CONNECTIONS_PER_ADDRESS = 16
MAX_WAITING = 64
WRITE_TIMEOUT = 60.0  # seconds a peer has to take one chunk the node sends

# Accept errors that mean "out of a resource for now", not "this listener is broken".
CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
CAPACITY_BACKOFF = (0.05, 5.0)  # first and longest wait, seconds
REFUSAL_LOG_INTERVAL = 10.0  # seconds between log lines about refused connections


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections a node holds at once (module doc)."""

    total: int = MAX_CONNECTIONS
    per_address: int = MAX_CONNECTIONS_PER_ADDRESS
    waiting: int = MAX_WAITING
    write_timeout: float = WRITE_TIMEOUT  # seconds a peer has to take one chunk sent

    def __post_init__(self) -> None:
        if min(self.total, self.per_address, self.waiting) < 1:
            raise ValueError("connection limits must be at least 1")


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (as far as the
    kernel allows); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = 1 << 20  # "unlimited" is refused as a soft limit; this is plenty
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def limits_for(open_files: int) -> ConnectionLimits:
    """The connection limits for a process that may open ``open_files`` descriptors:
    the defaults, or fewer so that :data:`RESERVED_DESCRIPTORS` stay free."""
    total = max(1, min(MAX_CONNECTIONS, open_files - RESERVED_DESCRIPTORS))
    return ConnectionLimits(
        total=total,
        per_address=min(MAX_CONNECTIONS_PER_ADDRESS, total),
        waiting=min(MAX_WAITING, total),
    )


@dataclass
class ConnectionCounts:
    """What one server's listeners hold now, and what they turned away, since start
    (shared by its listeners: the caps hold across all of them)."""

    open: int = 0
    waiting: int = 0  # of the open ones, those that have not made a request yet
    refused: int = 0  # reset on arrival, over the total or per-address cap
    evicted: int = 0  # waiting ones reset to make room for a newer one
    by_address: Counter[str] = field(default_factory=Counter)
    # The waiting connections, by address, each address's oldest first.
    waiters: dict[str, OrderedDict[int, GuardedStream]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "open": self.open,
            "waiting": self.waiting,
            "refused": self.refused,
            "evicted": self.evicted,
        }


class GuardedStream(trio.abc.HalfCloseableStream):
    """An accepted connection, counted until it is closed.

    It delegates to a :class:`trio.SocketStream`, and has its ``socket`` (hypercorn reads
    the peer's address there).  Its handler runs in :attr:`cancel_scope`, which eviction
    cancels; :meth:`mark_active` says the connection has made its first request.
    """

    def __init__(self, inner: trio.SocketStream, address: str, listener: GuardedListener) -> None:
        self.write_timeout = listener.limits.write_timeout
        self._inner = inner
        self.address = address
        self._listener: GuardedListener | None = listener
        self.socket = inner.socket
        self.cancel_scope = trio.CancelScope()
        self.waiting = True
        self.peer_gone = False  # the peer closed its end
        self.requests_in_flight = 0

    def mark_active(self) -> None:
        if self.waiting and self._listener is not None:
            self._listener._activated(self)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # hypercorn sends under a shielded cancel scope with no timeout of its own, so a
        # peer that stops reading would hold the connection (and what the request holds)
        # for ever, and stall the node's shutdown: the deadline is ours.
        with trio.move_on_after(self.write_timeout):
            await self._inner.send_all(data)
            return
        self.reset_on_close()
        await trio.aclose_forcefully(self._inner)
        raise trio.BrokenResourceError(f"the peer took more than {self.write_timeout:g} s to read")

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._inner.receive_some(max_bytes)
        if not data:
            self.peer_gone = True
            self._close_if_done()
        return data

    def request_started(self) -> None:
        self.mark_active()
        self.requests_in_flight += 1

    def request_ended(self) -> None:
        self.requests_in_flight -= 1
        self._close_if_done()

    def _close_if_done(self) -> None:
        # The peer is gone (hypercorn reads its end as a disconnect too), but hypercorn
        # keeps the connection for its keep-alive timeout (5 s) before closing it: with
        # a burst of short connections from one address, the per-address cap would be
        # reached by connections nobody uses.  Close it as soon as no request of it is
        # still being answered (the app sees the disconnect and winds that one up).
        if self.peer_gone and not self.requests_in_flight:
            self.cancel_scope.cancel()

    def reset_on_close(self) -> None:
        """Make closing send a reset (RST) instead of an orderly close."""
        with contextlib.suppress(OSError):
            self._inner.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._listener is not None:
                self._listener._closed(self)
                self._listener = None


class GuardedListener(trio.abc.Listener[GuardedStream]):
    """A listener that holds at most ``limits`` connections (module doc)."""

    def __init__(
        self,
        inner: trio.SocketListener,
        limits: ConnectionLimits,
        counts: ConnectionCounts | None = None,
    ) -> None:
        self._inner = inner
        self.limits = limits
        self.counts = ConnectionCounts() if counts is None else counts
        self._last_log = -float("inf")
        self._turned_away = 0  # since the last log line

    @property
    def socket(self) -> trio.socket.SocketType:
        return self._inner.socket

    async def accept(self) -> GuardedStream:
        while True:
            stream = await self._inner.accept()
            try:
                address = str(stream.socket.getpeername()[0])
            except OSError:  # gone already
                await trio.aclose_forcefully(stream)
                continue
            counts = self.counts
            if counts.open >= self.limits.total or (
                counts.by_address[address] >= self.limits.per_address
            ):
                await self._refuse(stream, address)
                continue
            if counts.waiting >= self.limits.waiting:
                self._evict()
            guarded = GuardedStream(stream, address, self)
            counts.open += 1
            counts.waiting += 1
            counts.by_address[address] += 1
            counts.waiters.setdefault(address, OrderedDict())[id(guarded)] = guarded
            return guarded

    def _activated(self, stream: GuardedStream) -> None:
        stream.waiting = False
        waiters = self.counts.waiters.get(stream.address)
        if waiters is not None and waiters.pop(id(stream), None) is not None:
            self.counts.waiting -= 1
            if not waiters:
                del self.counts.waiters[stream.address]

    def _closed(self, stream: GuardedStream) -> None:
        self._activated(stream)
        counts = self.counts
        counts.open -= 1
        counts.by_address[stream.address] -= 1
        if counts.by_address[stream.address] <= 0:
            del counts.by_address[stream.address]

    def _evict(self) -> None:
        """Reset the oldest waiting connection of the address that has the most: a
        crowd of idle connections pushes out its own, not a member's slow handshake."""
        address = max(self.counts.waiters, key=lambda a: len(self.counts.waiters[a]))
        _, oldest = next(iter(self.counts.waiters[address].items()))
        self._activated(oldest)  # no longer waiting: it is going
        self.counts.evicted += 1
        oldest.reset_on_close()
        oldest.cancel_scope.cancel()  # its handler closes it, and its place is freed
        self._note(
            f"evicted a connection from {address}, which held the most of the %d that sent "
            "no request",
            self.limits.waiting,
        )

    async def _refuse(self, stream: trio.SocketStream, address: str) -> None:
        with contextlib.suppress(OSError):
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.aclose_forcefully(stream)
        self.counts.refused += 1
        if self.counts.open >= self.limits.total:
            self._note("refused a connection: all %d connections in use", self.limits.total)
        else:
            self._note(
                f"refused a connection from {address}: %d connections from it already",
                self.limits.per_address,
            )

    def _note(self, message: str, *args: object) -> None:
        """Log a connection turned away, at most one line per REFUSAL_LOG_INTERVAL."""
        self._turned_away += 1
        now = trio.current_time()
        if now - self._last_log >= REFUSAL_LOG_INTERVAL:
            log.warning(
                message + " (%d turned away since the last such line; %d refused, %d "
                "evicted since start)",
                *args,
                self._turned_away,
                self.counts.refused,
                self.counts.evicted,
            )
            self._last_log = now
            self._turned_away = 0

    async def aclose(self) -> None:
        await self._inner.aclose()


def transport_of(stream: trio.abc.Stream) -> GuardedStream | None:
    """The :class:`GuardedStream` under ``stream`` (itself, or under its TLS)."""
    while True:
        if isinstance(stream, GuardedStream):
            return stream
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return None
        stream = inner


async def accept_loop(
    listener: trio.abc.Listener[trio.abc.Stream],
    handler: Callable[[trio.abc.Stream], Awaitable[object]],
    nursery: trio.Nursery,
) -> None:
    """Accept connections from ``listener`` for ever, each handled by ``handler`` in
    ``nursery`` (the stream is closed when the handler returns, however it ends, and at
    once if the listener evicts it).

    Running out of descriptors or memory for a moment (EMFILE, ENFILE, ENOMEM, ENOBUFS)
    is waited out with a doubling delay, logged once per episode.  Other errors are
    raised: they mean the listening socket itself is broken.
    """
    delay = CAPACITY_BACKOFF[0]
    troubled = False
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in CAPACITY_ERRNOS:
                raise
            if not troubled:
                log.warning("cannot accept connections: %s; waiting until it passes", exc.strerror)
                troubled = True
            await trio.sleep(delay)
            delay = min(delay * 2, CAPACITY_BACKOFF[1])
            continue
        if troubled:
            log.info("accepting connections again")
            troubled, delay = False, CAPACITY_BACKOFF[0]
        nursery.start_soon(_handle, stream, handler)


async def _handle(
    stream: trio.abc.Stream, handler: Callable[[trio.abc.Stream], Awaitable[object]]
) -> None:
    guarded = transport_of(stream)
    scope = guarded.cancel_scope if guarded is not None else trio.CancelScope()
    try:
        with scope:
            await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)
