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
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import hypercorn.trio
import trio
from hypercorn.config import Config

from p2p_prophet.errors import ProphetError, StorageError
from p2p_prophet.net.binding import EXCHANGE_PATH, HELLO_PATH, MEDIA_TYPE, PUSH_PATH, STATUS
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.store.database import LogRow
from p2p_prophet.sync import exchange
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
    Receipt,
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
    sent: int = 0
    received: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    error: str | None = None
    finished: trio.Event = field(default_factory=trio.Event)


class NodeApp:
    """The ASGI application of one replica."""

    def __init__(
        self,
        worker: ReplicaWorker,
        *,
        limits: Limits = DEFAULT_LIMITS,
        batch_size: int = DEFAULT_BATCH,
        on_news: Callable[[], None] | None = None,
        after_integrate: Callable[[Any, Batch], None] | None = None,
    ) -> None:
        self.worker = worker
        self.limits = limits
        self.batch_size = batch_size
        self.on_news = on_news  # called when a push brought changesets we lacked
        # Called on the worker thread, with the replica and the batch, right after each
        # pushed batch is committed (before the next request is served): a node makes
        # its TLS trust follow a membership change here, with no window in between.
        self.after_integrate = after_integrate
        self.history: list[ExchangeLog] = []  # the last few requests, newest last

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
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
        record = ExchangeLog(path.rsplit("/", 1)[-1], f"{client[0]}:{client[1]}")
        self.history.append(record)
        del self.history[:-100]
        started = time.perf_counter()
        response_started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            await handler(scope, receive, tracked_send, record)
        except Exception as exc:
            # A bug, or storage failing outside a batch (reading tickets for a HELLO):
            # still a CBOR answer if the response has not begun, and always a log line.
            storage = isinstance(exc, (StorageError, sqlite3.Error))
            code = ErrorCode.UNAVAILABLE if storage else ErrorCode.INTERNAL
            record.error = f"{code}: {exc}"
            log.exception("%s from %s failed", path, record.peer)
            if not response_started:
                await _refuse(send, ProtocolError(code, f"the node failed: {exc}"))
        finally:
            _log(record, time.perf_counter() - started)
            record.finished.set()

    # -- endpoints -----------------------------------------------------------------------

    async def hello(self, scope: Scope, receive: Receive, send: Send, rec: ExchangeLog) -> None:
        mine = await self.worker.run(exchange.hello, self.worker.replica)
        rec.bytes_out = await _respond(send, 200, encode(mine))

    async def exchange(self, scope: Scope, receive: Receive, send: Send, rec: ExchangeLog) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        force = query.get("force") == ["1"]
        pull = query.get("pull") != ["0"]
        try:
            body = await _read_body(receive, self.limits.max_request_bytes)
            rec.bytes_in = len(body)
            theirs, their_vectors = _preamble(body, self.limits)
            mine = await self.worker.run(self._prepare, theirs, their_vectors, force)
        except ProtocolError as exc:
            rec.error = f"{exc.code}: {exc}"
            rec.bytes_out = await _refuse(send, exc)
            return
        replica = self.worker.replica
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
        batches = exchange.outgoing(replica, their_vectors, self.batch_size)
        pending = first
        async with trio.open_nursery() as nursery:
            # A caller that goes away stops the stream at once, not at its end.
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            try:
                while True:
                    step = await self.worker.run(_next_batch, batches)
                    if step is None:
                        break
                    resolution, rows = step
                    pending += encode_batch(
                        ((r.id, r.body, r.seal) for r in rows), resolution=resolution
                    )
                    rec.sent += len(rows)
                    await _send_chunk(send, pending, rec)
                    pending = b""
                pending += encode_end()
            except (StorageError, sqlite3.Error, ProtocolError) as exc:
                log.error("exchange with %s failed mid-stream: %s", rec.peer, exc)
                code = exc.code if isinstance(exc, ProtocolError) else ErrorCode.UNAVAILABLE
                rec.error = f"{code}: {exc}"
                pending += encode(Error(code, str(exc)))
            await _send_chunk(send, pending, rec, more=False)
            nursery.cancel_scope.cancel()

    def _prepare(self, theirs: Hello, their_vectors: Vectors, force: bool) -> Vectors:
        replica = self.worker.replica
        exchange.check_peer(exchange.hello(replica), theirs, force=force)
        exchange.check_witnesses(replica, their_vectors)
        return exchange.vectors(replica, theirs)

    async def push(self, scope: Scope, receive: Receive, send: Send, rec: ExchangeLog) -> None:
        replica = self.worker.replica
        reader = TransferReader(preamble=(Hello, Vectors), limits=self.limits)
        resolutions, changesets = IntegrationResult(), IntegrationResult()
        try:
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ProtocolError(ErrorCode.TRUNCATED, "the caller went away mid-push")
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                for event in reader.feed(chunk):
                    if isinstance(event, Hello):
                        mine = await self.worker.run(exchange.hello, replica)
                        if event.db_uuid != mine.db_uuid:
                            raise ProtocolError(
                                ErrorCode.WRONG_DATABASE,
                                f"this node holds database {mine.db_uuid}, the caller "
                                f"{event.db_uuid}: a node never takes changesets from "
                                "another database (to merge them, its owner pulls with --force)",
                            )
                        exchange.check_peer(mine, event)
                    elif isinstance(event, Vectors):
                        await self.worker.run(exchange.check_witnesses, replica, event)
                    elif isinstance(event, Batch):
                        done = await self.worker.run(
                            _integrate, replica, event, self.after_integrate
                        )
                        (resolutions if event.resolution else changesets).add(done)
                        rec.received += done.integrated
                        if done.integrated and self.on_news is not None:
                            self.on_news()
            rec.bytes_in = reader.bytes_received
            reader.close()
        except ProtocolError as exc:
            rec.bytes_in = reader.bytes_received
            rec.error = f"{exc.code}: {exc}"
            rec.bytes_out = await _refuse(send, exc)
            return
        receipt = Receipt(exchange.counts(resolutions), exchange.counts(changesets))
        rec.bytes_out = await _respond(send, 200, encode(receipt))


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


def _integrate(
    replica: Any, batch: Batch, after: Callable[[Any, Batch], None] | None
) -> IntegrationResult:
    """Integrate on the worker thread; a node that cannot store says so as a protocol
    refusal (503), which the caller retries."""
    try:
        result = exchange.integrate_batch(replica, batch)
        if after is not None and result.integrated:
            after(replica, batch)
        return result
    except StorageError as exc:
        raise ProtocolError(
            ErrorCode.UNAVAILABLE, f"this node cannot store changesets: {exc}"
        ) from None


def _preamble(body: bytes, limits: Limits) -> tuple[Hello, Vectors]:
    hello, vectors = read_messages(body, (Hello, Vectors), limits)
    assert isinstance(hello, Hello) and isinstance(vectors, Vectors)
    return hello, vectors


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProtocolError(ErrorCode.TRUNCATED, "the caller went away mid-request")
        body += message.get("body", b"")
        if len(body) > limit:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"a request of more than {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


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


async def _refuse(send: Send, exc: ProtocolError, extra_headers: Headers = ()) -> int:
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


class _TLSConfig(Config):
    """hypercorn's configuration, serving TLS with a context of ours.

    hypercorn builds its own SSL context from certificate files; ours comes from
    :mod:`p2p_prophet.security.tls` (TLS 1.3, client certificates pinned to the
    membership), so the two hooks that decide "TLS or not" and "which context" are
    overridden here and nothing else is.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__()
        self._ssl_context = ssl_context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._ssl_context


async def serve(
    app: NodeApp,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (port 0: any free port) until cancelled or until
    ``shutdown_trigger`` returns.  ``task_status.started`` gets the bound URLs
    (``https://`` ones with ``ssl_context``, else ``http://``).

    With ``ssl_context`` (:func:`p2p_prophet.security.tls.server_context`) every
    connection is TLS and nothing else: a plain HTTP request is a failed handshake.  Each
    connection then carries one request only (hypercorn closes it after the response),
    so that every request passes a handshake, and with it the check of the client's
    fingerprint against the membership *now*: a member removed while it held a
    keep-alive connection is refused from its next request on.  A client has
    ``handshake_timeout`` seconds to finish its TLS handshake and may go ``read_timeout``
    seconds without sending a byte in the middle of a request; slower clients are
    dropped, so that idle connections (a slow-loris attack) cannot pile up.
    """
    config = Config() if ssl_context is None else _TLSConfig(ssl_context)
    if ssl_context is not None:
        config.keep_alive_max_requests = 1
    config.ssl_handshake_timeout = handshake_timeout
    config.read_timeout = read_timeout  # type: ignore[assignment]  # typed int, used as float
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.include_date_header = False
    config.graceful_timeout = 5.0
    try:
        await hypercorn.trio.serve(
            app,  # type: ignore[arg-type]  # hypercorn's ASGI types are stricter than dicts
            config,
            shutdown_trigger=shutdown_trigger,
            task_status=task_status,
        )
    except (OSError, BaseExceptionGroup) as exc:
        # Binding happens inside hypercorn's nursery, so "address in use" arrives wrapped.
        failed = exc if isinstance(exc, OSError) else exc.split(OSError)[0]
        if failed is None:
            raise
        while isinstance(failed, BaseExceptionGroup):
            failed = failed.exceptions[0]
        reason = failed.strerror or str(failed)
        raise ProphetError(f"cannot listen on {host}:{port}: {reason.lower()}") from None
