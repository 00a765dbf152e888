"""The node's HTTP server: an ASGI app over the exchange, served by hypercorn's trio worker.

Endpoints (docs/protocol.md):

* ``GET /prophet/hello`` -- this node's HELLO.
* ``POST /prophet/exchange`` -- the caller's HELLO and VECTORS in; this node's VECTORS and a
  transfer stream of what the caller lacks out (``?pull=0``: the vectors only;
  ``?force=1``: the caller consents to take another database's changesets).
* ``POST /prophet/push`` -- the caller's HELLO, VECTORS and a transfer stream in; a RECEIPT
  out.  A node never takes changesets from another database.

Refusals are HTTP 4xx (5xx for the node's own trouble) with one ERROR message as the body;
a failure in the middle of a response stream ends it with an ERROR message.  Storage work
goes through the replica's :class:`ReplicaWorker`, one call per batch; the stream is sent
one batch per chunk, and each send waits for the socket (back-pressure).
"""

from __future__ import annotations

import logging
import resource
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from p2p_prophet.errors import ProphetError, Refused, StorageError
from p2p_prophet.net.binding import EXCHANGE_PATH, HELLO_PATH, MEDIA_TYPE, PUSH_PATH, STATUS
from p2p_prophet.net.bounds import DEFAULT_BOUNDS, ByteBudget, Exchanges, ServerBounds
from p2p_prophet.net.listener import (
    ConnectionCounts,
    ConnectionLimits,
    GuardedListener,
    accept_loop,
    limits_for,
    transport_of,
)
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security.tls import TrustedPeers, peer_fingerprint
from p2p_prophet.store.database import LogRow
from p2p_prophet.sync import exchange
from p2p_prophet.sync.exchange import Callee, Screen
from p2p_prophet.sync.integrate import IntegrationResult
from p2p_prophet.sync.plan import DEFAULT_BATCH
from p2p_prophet.wire import (
    DEFAULT_LIMITS,
    Batch,
    Error,
    ErrorCode,
    Hello,
    Limits,
    ProtocolError,
    TransferReader,
    Vectors,
    encode,
    encode_batch,
    encode_end,
    read_messages,
)

log = logging.getLogger("p2p_prophet.net")

HANDSHAKE_TIMEOUT = 10.0  # seconds a client has to finish its TLS handshake
READ_TIMEOUT = 60.0  # seconds a client may go silent in the middle of a request
# Deep enough that a burst of connections is taken off the kernel's queue (and reset if
# over the caps) instead of overflowing it: an overflowing queue drops handshakes
# silently, leaving the other end believing it is connected.
LISTEN_BACKLOG = 1024
PEER_SCOPE_KEY = "p2p_prophet.peer"  # the TLS peer's fingerprint, in each request's scope

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]


@dataclass
class ExchangeLog:
    """What one request did, for the node's log (and tests).  ``finished`` is set once
    the request is over and everything it integrated is committed."""

    endpoint: str
    peer: str
    caller: str | None = None  # the TLS peer's fingerprint
    sent: int = 0
    received: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    error: str | None = None
    finished: trio.Event = field(default_factory=trio.Event)


class NodeApp:
    """The ASGI application of one replica.

    ``trusted``: the members a TLS node serves (None: a plain node, which serves anyone).
    The caller's fingerprint (from the connection, :data:`PEER_SCOPE_KEY`) must be in it
    when each request begins, before each pushed batch is integrated and before each
    batch of a pull is sent: a member removed while it holds a connection or a request
    open is refused from its next request or batch on (``not-member``, 403), HTTP/2
    included.  ``bounds``: how many exchanges, buffered bytes and seconds the node gives
    its callers (:mod:`p2p_prophet.net.bounds`).
    """

    def __init__(
        self,
        worker: ReplicaWorker,
        *,
        limits: Limits = DEFAULT_LIMITS,
        batch_size: int = DEFAULT_BATCH,
        on_news: Callable[[], None] | None = None,
        after_integrate: Callable[[Any, Batch], None] | None = None,
        trusted: TrustedPeers | None = None,
        screen: Screen | None = None,
        bounds: ServerBounds = DEFAULT_BOUNDS,
    ) -> None:
        self.worker = worker
        self.limits = limits
        self.batch_size = batch_size
        self.on_news = on_news  # called when a push brought changesets we lacked
        # Called on the worker thread, with the replica and the batch, right after each
        # pushed batch is committed (before the next request is served): a node makes
        # its TLS trust follow a membership change here, with no window in between.
        self.after_integrate = after_integrate
        self.trusted = trusted
        # Called on the worker thread with the replica, the caller's fingerprint and
        # each pushed batch, before it is integrated: raises Refused to refuse it
        # (a TLS node screens who may change the membership, security/authority.py).
        self.screen = screen
        self.bounds = bounds
        self.exchanges = Exchanges(bounds)
        self.budget = ByteBudget(bounds.buffer_budget)
        self.history: list[ExchangeLog] = []  # the last few requests, newest last

    def check_member(self, caller: str | None) -> None:
        """Raise NOT_MEMBER unless this node serves anyone or ``caller`` is a member now."""
        if self.trusted is not None and (caller is None or caller not in self.trusted):
            raise ProtocolError(
                ErrorCode.NOT_MEMBER,
                "this node no longer takes your replica's identity: it is not a member of "
                "the database (removed, or an invite that was used or has expired)",
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        caller: str | None = scope.get(PEER_SCOPE_KEY)
        if self.trusted is not None and (caller is None or caller not in self.trusted):
            # Before anything else, even a 404: a non-member learns nothing of the node.
            try:
                self.check_member(caller)
            except ProtocolError as exc:
                client = scope.get("client") or ("?", 0)
                who = f"{caller[:16]}… at " if caller else ""
                log.info("refused %s%s:%s: not a member now", who, client[0], client[1])
                await _refuse(send, exc)
            return
        routes = {
            HELLO_PATH: ("GET", self.hello),
            EXCHANGE_PATH: ("POST", self.exchange),
            PUSH_PATH: ("POST", self.push),
        }
        if path not in routes:
            await _refuse(send, ProtocolError(ErrorCode.NOT_FOUND, f"no endpoint {path}"))
            return
        allowed, handler = routes[path]
        if method != allowed:
            await _refuse(
                send,
                ProtocolError(ErrorCode.METHOD_NOT_ALLOWED, f"{path} takes {allowed} only"),
                extra_headers=[(b"allow", allowed.encode())],
            )
            return
        client = scope.get("client") or ("?", 0)
        record = ExchangeLog(path.rsplit("/", 1)[-1], f"{client[0]}:{client[1]}", caller)
        self.history.append(record)
        del self.history[:-100]
        started = time.perf_counter()
        response_started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            self.check_member(caller)
            if path == HELLO_PATH:
                await handler(scope, receive, tracked_send, record)
            else:
                await self._counted(
                    caller or str(client[0]), handler, scope, receive, tracked_send, record
                )
        except Refused as exc:
            record.error = f"{exc.code}: {exc}"
            if not response_started:
                record.bytes_out = await self._refuse(send, exc)
        except Exception as exc:
            # A bug, or storage failing outside a batch (reading tickets for a HELLO):
            # still a CBOR answer if the response has not begun, and always a log line.
            storage = isinstance(exc, (StorageError, sqlite3.Error))
            code = ErrorCode.UNAVAILABLE if storage else ErrorCode.INTERNAL
            record.error = f"{code}: {exc}"
            log.exception("%s from %s failed", path, record.peer)
            if not response_started:
                await self._refuse(send, ProtocolError(code, f"the node failed: {exc}"))
        finally:
            _log(record, time.perf_counter() - started)
            record.finished.set()

    async def _counted(
        self,
        key: str,
        handler: Callable[[Scope, Receive, Send, ExchangeLog], Awaitable[None]],
        scope: Scope,
        receive: Receive,
        send: Send,
        record: ExchangeLog,
    ) -> None:
        """Run an exchange or a push within the node's place for it (bounds.py)."""
        if not self.exchanges.try_start(key):
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                f"this node is busy ({self.exchanges.running} exchanges in progress); "
                f"try again in {self.bounds.retry_after} s",
            )
        try:
            await handler(scope, receive, send, record)
        finally:
            self.exchanges.finish(key)

    async def _refuse(self, send: Send, exc: Refused, extra_headers: Headers = ()) -> int:
        if exc.code is ErrorCode.UNAVAILABLE:
            extra_headers = [
                *extra_headers,
                (b"retry-after", str(self.bounds.retry_after).encode()),
            ]
        return await _refuse(send, exc, extra_headers)

    # -- endpoints -----------------------------------------------------------------------

    async def hello(self, scope: Scope, receive: Receive, send: Send, rec: ExchangeLog) -> None:
        mine = await self.worker.run(exchange.hello, self.worker.replica)
        rec.bytes_out = await _respond(send, 200, encode(mine))

    async def exchange(self, scope: Scope, receive: Receive, send: Send, rec: ExchangeLog) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        force = query.get("force") == ["1"]
        pull = query.get("pull") != ["0"]
        body = await self._read_body(receive)
        rec.bytes_in = len(body)
        theirs, their_vectors = _preamble(body, self.limits)
        del body
        callee = Callee(self.worker.replica, caller=rec.caller)
        mine = await self.worker.run(callee.answer, theirs, their_vectors, force)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", MEDIA_TYPE.encode())],
            }
        )
        first = encode(mine)
        if not pull:
            rec.bytes_out = len(first) + len(end := encode_end())
            await send({"type": "http.response.body", "body": first + end})
            return
        batches = callee.outgoing(their_vectors, self.batch_size)
        pending = first
        async with trio.open_nursery() as nursery:
            # A caller that goes away stops the stream at once, not at its end.
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            try:
                while True:
                    self.check_member(rec.caller)
                    step = await self.worker.run(_next_batch, batches)
                    if step is None:
                        break
                    resolution, rows = step
                    del step
                    # The rows and their encoding are held until sent: counted.
                    held = await self.budget.take(2 * sum(len(r.body) for r in rows))
                    try:
                        pending += encode_batch(
                            ((r.id, r.body, r.seal) for r in rows), resolution=resolution
                        )
                        rec.sent += len(rows)
                        del rows
                        await _send_chunk(send, pending, rec)
                        pending = b""
                    finally:
                        self.budget.give_back(held)
                pending += encode_end()
            except (StorageError, sqlite3.Error, Refused) as exc:
                log.error("exchange with %s failed mid-stream: %s", rec.peer, exc)
                code = exc.code if isinstance(exc, Refused) else ErrorCode.UNAVAILABLE
                rec.error = f"{code}: {exc}"
                pending += encode(Error(code, str(exc)))
            await _send_chunk(send, pending, rec, more=False)
            nursery.cancel_scope.cancel()

    async def push(self, scope: Scope, receive: Receive, send: Send, rec: ExchangeLog) -> None:
        callee = Callee(
            self.worker.replica,
            caller=rec.caller,
            screen=self.screen,
            after_integrate=self.after_integrate,
        )
        reader = TransferReader(preamble=(Hello, Vectors), limits=self.limits)
        held = 0  # bytes of the budget this request holds
        batch_due = trio.current_time() + self.bounds.batch_deadline
        try:
            more = True
            while more:
                message = await self._receive_by(receive, batch_due)
                if message["type"] == "http.disconnect":
                    raise ProtocolError(ErrorCode.TRUNCATED, "the caller went away mid-push")
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                held = self._hold(held, reader.buffered + len(chunk))
                for event in reader.feed(chunk):
                    if isinstance(event, Hello):
                        await self.worker.run(callee.take_hello, event)
                    elif isinstance(event, Vectors):
                        await self.worker.run(callee.take_vectors, event)
                    elif isinstance(event, Batch):
                        done = await self.worker.run(self._integrate, callee, event)
                        rec.received += done.integrated
                        if done.integrated:
                            if self.on_news is not None:
                                self.on_news()
                            # Only progress earns more time: batches of changesets the
                            # node already holds (or empty ones) do not keep a place.
                            batch_due = trio.current_time() + self.bounds.batch_deadline
                held = self._hold(held, reader.buffered)
            rec.bytes_in = reader.bytes_received
            reader.close()
        finally:
            rec.bytes_in = reader.bytes_received
            self.budget.give_back(held)
        rec.bytes_out = await _respond(send, 200, encode(callee.receipt()))

    def _hold(self, held: int, needed: int) -> int:
        """Make this request's share of the budget ``needed`` bytes (given ``held``);
        UNAVAILABLE if the budget has no room for it."""
        if needed > held:
            if not self.budget.try_take(needed - held):
                raise ProtocolError(
                    ErrorCode.UNAVAILABLE,
                    f"this node is busy ({self.budget.held >> 20} MiB of pushed changesets "
                    f"in memory, the most it holds); try again in {self.bounds.retry_after} s",
                )
        elif needed < held:
            self.budget.give_back(held - needed)
        return needed

    async def _receive_by(self, receive: Receive, due: float) -> dict[str, Any]:
        """The next ASGI message, if it comes before ``due``; else TOO_SLOW."""
        with trio.move_on_at(due):
            return await receive()
        raise ProtocolError(
            ErrorCode.TOO_SLOW,
            f"a batch took more than {self.bounds.batch_deadline:g} s to arrive whole",
        )

    async def _read_body(self, receive: Receive) -> bytes:
        """A request body read whole: at most ``max_request_bytes``, within the batch
        deadline, counted against the budget while it is read."""
        limit = self.limits.max_request_bytes
        due = trio.current_time() + self.bounds.batch_deadline
        body = bytearray()
        held = 0
        try:
            while True:
                message = await self._receive_by(receive, due)
                if message["type"] == "http.disconnect":
                    raise ProtocolError(ErrorCode.TRUNCATED, "the caller went away mid-request")
                body += message.get("body", b"")
                if len(body) > limit:
                    raise ProtocolError(
                        ErrorCode.TOO_LARGE, f"a request of more than {limit} bytes"
                    )
                held = self._hold(held, len(body))
                if not message.get("more_body", False):
                    return bytes(body)
        finally:
            self.budget.give_back(held)

    def _integrate(self, callee: Callee, batch: Batch) -> IntegrationResult:
        """Integrate a pushed batch, on the worker thread (where the membership changes
        too, so that the check and the integration see the same membership)."""
        self.check_member(callee.caller)
        try:
            return callee.integrate(batch)
        except StorageError as exc:
            # A node that cannot store says so as a refusal (503), which callers retry.
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, f"this node cannot store changesets: {exc}"
            ) from None


# -- helpers -------------------------------------------------------------------------------


def _log(record: ExchangeLog, seconds: float) -> None:
    if record.endpoint == "hello":
        return
    log.info(
        "%s with %s: sent %d, received %d changesets, %d/%d bytes out/in, %.0f ms%s",
        record.endpoint,
        record.peer,
        record.sent,
        record.received,
        record.bytes_out,
        record.bytes_in,
        seconds * 1000,
        f" -- {record.error}" if record.error else "",
    )


def _next_batch(batches: Iterator[tuple[bool, list[LogRow]]]) -> tuple[bool, list[LogRow]] | None:
    return next(batches, None)


def _preamble(body: bytes, limits: Limits) -> tuple[Hello, Vectors]:
    hello, vectors = read_messages(body, (Hello, Vectors), limits)
    assert isinstance(hello, Hello) and isinstance(vectors, Vectors)
    return hello, vectors


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _send_chunk(send: Send, data: bytes, rec: ExchangeLog, *, more: bool = True) -> None:
    rec.bytes_out += len(data)
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def _respond(send: Send, status: int, body: bytes, extra_headers: Headers = ()) -> int:
    headers = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return len(body)


async def _refuse(send: Send, exc: Refused, extra_headers: Headers = ()) -> int:
    body = encode(Error(exc.code, str(exc)))
    return await _respond(send, STATUS[exc.code], body, extra_headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _config(
    ssl_context: ssl.SSLContext | None, handshake_timeout: float, read_timeout: float
) -> Config:
    config = Config()
    if ssl_context is not None:
        config.keep_alive_max_requests = 1
    config.ssl_handshake_timeout = handshake_timeout
    config.read_timeout = read_timeout  # type: ignore[assignment]  # typed int, used as float
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.include_date_header = False
    return config


class _PerConnection:
    """The app as one connection sees it: each request's scope carries the fingerprint
    of the TLS peer under ``"p2p_prophet.peer"`` (None over plain HTTP)."""

    def __init__(self, app: NodeApp, stream: trio.abc.Stream) -> None:
        self.app = app
        self.stream = stream
        self._peer: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = transport_of(self.stream) if scope["type"] == "http" else None
        if guarded is None:
            await self.app(scope, receive, send)
            return
        guarded.request_started()  # past the handshake, with a request: not a waiter
        try:
            if self._peer is None and isinstance(self.stream, trio.SSLStream):
                self._peer = peer_fingerprint(self.stream)
            await self.app({**scope, PEER_SCOPE_KEY: self._peer}, receive, send)
        finally:
            guarded.request_ended()


async def serve(
    app: NodeApp,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    limits: ConnectionLimits | None = None,
    counts: ConnectionCounts | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (port 0: any free port) until cancelled.
    ``task_status.started`` gets the bound URLs (``https://`` ones with ``ssl_context``,
    else ``http://``).  Raises :class:`ProphetError` if it cannot listen there.

    With ``ssl_context`` (:func:`p2p_prophet.security.tls.server_context`) every
    connection is TLS and nothing else: a plain HTTP request is a failed handshake.  Each
    HTTP/1.1 connection then carries one request only (it is closed after the response),
    so that every request passes a handshake, and with it the check of the client's
    fingerprint against the membership *now*; the app checks it again at each request
    and each batch (:class:`NodeApp`), which also covers HTTP/2 connections.  A client has
    ``handshake_timeout`` seconds to finish its TLS handshake and may go ``read_timeout``
    seconds without sending a byte in the middle of a request; slower clients are
    dropped.  At most ``limits`` connections are held at once (by default
    :func:`~p2p_prophet.net.listener.limits_for` this process's open-file limit); the
    excess is reset as it arrives (:mod:`p2p_prophet.net.listener`); ``counts``, if
    given, is kept up to date with the connections held and reset.

    hypercorn's HTTP machinery serves each connection; the accepting is ours, since
    hypercorn's own loop has no connection limits (docs/network.md, Bounds).
    """
    config = _config(ssl_context, handshake_timeout, read_timeout)
    config.set_statsd_logger_class(StatsdLogger)
    if limits is None:
        limits = limits_for(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    try:
        sockets = await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ProphetError(f"cannot listen on {host}:{port}: {reason.lower()}") from None
    if counts is None:
        counts = ConnectionCounts()
    listeners: list[trio.abc.Listener[Any]] = []
    urls = []
    for sock in sockets:
        guarded = GuardedListener(sock, limits, counts)
        listeners.append(
            guarded
            if ssl_context is None
            else trio.SSLListener(guarded, ssl_context, https_compatible=True)
        )
        address, bound_port = sock.socket.getsockname()[:2]
        where = f"[{address}]" if ":" in address else address
        urls.append(f"{'https' if ssl_context else 'http'}://{where}:{bound_port}")
    context = WorkerContext(None)

    async def connection(stream: trio.abc.Stream) -> None:
        server = TCPServer(
            ASGIWrapper(_PerConnection(app, stream)),  # type: ignore[arg-type]
            config,
            context,
            ConnectionState({}),
            stream,  # type: ignore[arg-type]
        )
        await server

    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(accept_loop, listener, connection, nursery)
            task_status.started(urls)
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await trio.aclose_forcefully(listener)
