"""The client side of the exchange: pull, push and sync with a node at a URL (httpx).

Each operation starts with the node's HELLO: equal vector digests both ways mean there is
nothing to do, and one small request is all an idle sync costs.  Otherwise:

* pull: POST our HELLO and VECTORS to ``/prophet/exchange``; the node answers with its
  VECTORS and a transfer stream of what we lack, integrated batch by batch as each
  BATCH_END arrives.
* push: from the node's VECTORS, stream what it lacks to ``/prophet/push``.
* sync: both in one exchange -- pull, then push what the node lacks as computed from the
  VECTORS of the pull's answer; then pull the resolutions the node minted, if any.

Every batch is integrated in its own transaction on the replica's worker thread, so an
interrupted stream keeps the whole batches already integrated, and the next attempt --
the same operation run again from the tickets -- re-sends nothing.  Transient failures
(connection refused or reset, timeouts, a stream cut short, a node that is busy) are
retried a bounded number of times with exponential backoff and jitter; other refusals
are reported at once.  Everything raises :class:`ProphetError` subclasses with a message
a person can act on.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import httpx
import trio

from p2p_prophet import __version__
from p2p_prophet.clock import utc_minutes
from p2p_prophet.errors import ErrorCode, ProphetError, Refused
from p2p_prophet.keys.identity import Identity
from p2p_prophet.net.binding import EXCHANGE_PATH, HELLO_PATH, MEDIA_TYPE, PREFIX, PUSH_PATH
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security import membership
from p2p_prophet.security.invite import InvalidInvite, Invite
from p2p_prophet.security.tls import NotTrusted, fingerprint_client_context
from p2p_prophet.store import Replica
from p2p_prophet.store.replica import check_free
from p2p_prophet.sync import exchange
from p2p_prophet.sync.exchange import Caller, SyncResult, TransferResult
from p2p_prophet.sync.plan import DEFAULT_BATCH
from p2p_prophet.url import check_node_url
from p2p_prophet.wire import (
    DEFAULT_LIMITS,
    Batch,
    Error,
    Hello,
    Limits,
    PeerError,
    ProtocolError,
    Receipt,
    TransferReader,
    Vectors,
    encode,
    encode_batch,
    encode_end,
    read_messages,
)

T = TypeVar("T")


def _refusing_context() -> ssl.SSLContext:
    # A client without an identity has no business with https:// peers: a context that
    # trusts nothing makes every handshake fail, instead of httpx's default (the
    # system's web CAs), which would say nothing about membership.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


_NO_TLS = _refusing_context()


class HttpClient(Protocol):
    """What :class:`Peer` needs of an HTTP client: httpx's ``AsyncClient``, or the
    simulator's in-memory one."""

    def stream(
        self, method: str, url: str, *, content: Any = None, params: Any = None, headers: Any = None
    ) -> AbstractAsyncContextManager[httpx.Response]: ...

    async def aclose(self) -> None: ...


DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=60.0, pool=10.0)


class NetworkError(ProphetError):
    """The peer could not be reached, or the connection broke and retries ran out."""


class NotAccepted(Refused):
    """A TLS handshake failed on identity, or the node said ``not-member``: the peer is
    not a member (we refused it), or it does not take this replica as one (it refused
    us).  Never retried: trying again would be refused again.  Nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.NOT_MEMBER, message)


@dataclass(frozen=True)
class Progress:
    """Where a transfer stands, for a progress bar."""

    direction: str  # "pull" or "push"
    done: int  # changesets (and resolutions) sent or integrated so far
    total: int  # how many there are to move in all
    bytes: int  # bytes of transfer stream so far


_TRANSIENT_CODES = {ErrorCode.TRUNCATED, ErrorCode.UNAVAILABLE}
MAX_RETRY_AFTER = 30.0  # seconds: longer waits a node asks for are cut to this


class Peer:
    """A node at ``url``, as seen from the local replica behind ``worker`` (without one,
    only :meth:`hello` works).

    Use as an async context manager (it owns an ``httpx.AsyncClient`` unless given one).
    ``attempts`` bounds how often one operation is tried; the waits between tries grow
    from ``backoff`` seconds, doubling, with jitter.
    """

    def __init__(
        self,
        url: str,
        worker: ReplicaWorker | None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        attempts: int = 4,
        backoff: float = 0.25,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[Progress], None] | None = None,
        http: HttpClient | None = None,
        after_integrate: Callable[[Replica, Batch], None] | None = None,
    ) -> None:
        self.url = check_node_url(url)  # BadURL, before anything is tried
        # Run on the worker thread right after each pulled batch is committed (a node
        # makes its TLS trust follow membership changes there).
        self.after_integrate = after_integrate
        self._worker = worker
        self.limits = limits
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.batch_size = batch_size
        self.progress = progress
        self._owns_http = http is None
        self.http = http or new_http_client(timeout)
        self.retries = 0  # how many attempts failed and were retried, for reports

    async def __aenter__(self) -> Peer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    @property
    def worker(self) -> ReplicaWorker:
        if self._worker is None:
            raise ProphetError("this peer was opened without a replica")
        return self._worker

    @property
    def replica(self) -> Replica:
        return self.worker.replica

    # -- operations ------------------------------------------------------------------------

    async def hello(self) -> Hello:
        """The node's HELLO (retried like every operation)."""
        return await self._retrying(self._hello)

    async def pull(self, *, force: bool = False) -> TransferResult:
        """Integrate what the node has and this replica lacks (``force``: even from
        another database)."""
        return await exchange.pull(self, self.caller(force=force))

    async def push(self) -> TransferResult:
        """Give the node what this replica has and it lacks (what the node did with it)."""
        caller = self.caller()
        await self.push_from(caller)
        return caller.pushed

    async def sync(self) -> SyncResult:
        """Pull and push (:func:`p2p_prophet.sync.exchange.sync`); afterwards both hold
        the same changesets."""
        return await exchange.sync(self, self.caller())

    def caller(self, *, force: bool = False) -> Caller:
        """This replica's side of an operation with this node."""
        return Caller(self.replica, self.url, force=force, after_integrate=self.after_integrate)

    @property
    def where(self) -> str:
        return self.url

    async def pull_into(self, caller: Caller) -> None:
        """One pull (retried), into ``caller`` (:class:`~p2p_prophet.sync.Remote`)."""
        await self._retrying(lambda: self._pull(caller))

    async def push_from(self, caller: Caller) -> None:
        """One push (retried), from ``caller`` (:class:`~p2p_prophet.sync.Remote`)."""
        await self._retrying(lambda: self._push(caller))

    # -- one attempt of each ---------------------------------------------------------------

    async def _hello(self) -> Hello:
        try:
            return await fetch_hello(self.http, self.url, self.limits)
        except httpx.RemoteProtocolError as exc:
            # A plain node always answers a HELLO; a TLS node closes on a plain request.
            if self.url.startswith("http://") and "without sending a response" in str(exc):
                raise NetworkError(
                    f"{self.url} closed the connection without answering; a node of a "
                    "database with members speaks TLS only: if that is what runs there, use "
                    "https://" + self.url[len("http://") :]
                ) from None
            raise

    async def _greet(self, caller: Caller) -> bool:
        """The node's HELLO, checked; True if both hold the same changesets."""
        theirs = await self._hello()
        return await self.worker.run(caller.greet, theirs)

    async def _pull(self, caller: Caller) -> None:
        if await self._greet(caller):
            return
        mine, my_vectors = await self.worker.run(_opening, caller)
        params = {"force": "1"} if caller.force else {}
        async with self.http.stream(
            "POST",
            self.url + EXCHANGE_PATH,
            content=encode(mine) + encode(my_vectors),
            params=params,
            headers={"content-type": MEDIA_TYPE},
        ) as response:
            if response.status_code != 200:
                self._checked(
                    response, await _read_limited(response, self.limits.max_request_bytes)
                )
            self._check_media_type(response)
            reader = TransferReader(preamble=(Vectors,), limits=self.limits)
            total = done = 0
            async for chunk in response.aiter_raw():
                for event in reader.feed(chunk):
                    if isinstance(event, Vectors):
                        total = await self.worker.run(caller.take_vectors, event)
                    elif isinstance(event, Batch):
                        await self.worker.run(caller.integrate, event)
                        done += len(event.changesets)
                        self._report("pull", done, total, reader.bytes_received)
            reader.close()

    async def _push(self, caller: Caller) -> None:
        if caller.needs_greeting():
            if await self._greet(caller):
                return
            await self._vectors_only(caller)
        planned = await self.worker.run(caller.plan_push, self.batch_size)
        if planned is None:
            return
        total, batches = planned
        mine, my_vectors = await self.worker.run(_opening, caller)

        async def stream() -> AsyncIterator[bytes]:
            yield encode(mine) + encode(my_vectors)
            sent = done = 0
            while (step := await self.worker.run(next, batches, None)) is not None:
                resolution, rows = step
                chunk = encode_batch(((r.id, r.body, r.seal) for r in rows), resolution=resolution)
                sent += len(chunk)
                done += len(rows)
                yield chunk
                self._report("push", done, total, sent)
            yield encode_end()

        body = await request(self.http, "POST", self.url + PUSH_PATH, self.limits, content=stream())
        [receipt] = read_messages(body, (Receipt,), self.limits)
        assert isinstance(receipt, Receipt)
        caller.take_receipt(receipt)

    async def _vectors_only(self, caller: Caller) -> None:
        """Ask the node for its vectors alone (an exchange with ``pull=0``)."""
        mine, my_vectors = await self.worker.run(_opening, caller)
        body = await request(
            self.http,
            "POST",
            self.url + EXCHANGE_PATH,
            self.limits,
            content=encode(mine) + encode(my_vectors),
            params={"pull": "0"},
        )
        reader = TransferReader(preamble=(Vectors,), limits=self.limits)
        events = reader.feed(body)
        reader.close()
        vectors = events[0]
        assert isinstance(vectors, Vectors)
        await self.worker.run(caller.take_vectors, vectors)

    # -- helpers ---------------------------------------------------------------------------

    def _report(self, direction: str, done: int, total: int, size: int) -> None:
        if self.progress is not None:
            self.progress(Progress(direction, done, max(total, done), size))

    def _check_media_type(self, response: httpx.Response) -> None:
        check_media_type(self.url, response)

    def _checked(self, response: httpx.Response, body: bytes) -> bytes:
        return checked(self.url, response, body, self.limits)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for n in range(1, self.attempts + 1):
            try:
                return await attempt()
            except (httpx.TransportError, Refused) as exc:
                refusal = tls_refusal(self.url, exc) or not_tls(self.url, exc)
                if refusal is not None:
                    raise refusal from None
                if not _transient(exc):
                    raise self._explained(exc) from None
                if n == self.attempts:
                    raise self._explained(exc) from None
                self.retries += 1
                wait = self.backoff * 2 ** (n - 1) * random.uniform(0.5, 1.5)
                if isinstance(exc, Refused) and exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)  # a busy node said how long
                await trio.sleep(wait)
        raise AssertionError("unreachable")

    def _explained(self, exc: Exception) -> ProphetError:
        url = self.url
        tries = "tried once" if self.attempts == 1 else f"tried {self.attempts} times"
        if (
            isinstance(exc, Refused)
            and not isinstance(exc, ProtocolError)
            and exc.code is not ErrorCode.INVALID_CHANGESET
        ):
            return exc  # already explained, by the exchange or by checked()
        if closed_after_handshake(url, exc):
            # A node that refuses a certificate it never trusted closes without a word,
            # as does a node stopping in the middle: only retries tell them apart.
            return NotAccepted(
                f"{url} closed the connection right after the TLS handshake without "
                "answering: it does not accept this replica's identity (not a member of "
                f"its database), or it was stopping; {tries}"
            )
        if isinstance(exc, httpx.ConnectError):
            reason = _os_reason(exc)
            hint = " (is `p2p-prophet serve` running there?)" if "refused" in reason else ""
            return NetworkError(f"cannot connect to {url}: {reason}{hint}; {tries}")
        if isinstance(exc, httpx.TimeoutException):
            return NetworkError(f"{url} did not answer in time ({type(exc).__name__})")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)) or (
            isinstance(exc, ProtocolError) and exc.code is ErrorCode.TRUNCATED
        ):
            return NetworkError(
                f"{url} stopped in the middle of the exchange ({exc}); every whole batch "
                "received is kept, and the next pull or sync continues from there"
            )
        if isinstance(exc, PeerError) and exc.code is ErrorCode.NOT_MEMBER:
            return NotAccepted(f"{url} refused: {exc}")
        if isinstance(exc, PeerError):
            return Refused(exc.code, f"{url} refused: {exc}")
        if isinstance(exc, ProtocolError) and exc.code is ErrorCode.UNSUPPORTED_VERSION:
            return Refused(exc.code, f"{url} cannot be synced with: {exc}")
        if isinstance(exc, Refused):  # what the node sent breaks the protocol
            return NetworkError(f"{url} broke the protocol ({exc.code}): {exc}")
        return NetworkError(f"{url}: {type(exc).__name__}: {exc}")


def _opening(caller: Caller) -> tuple[Hello, Vectors]:
    """What a request of the caller's begins with: its HELLO and its vectors."""
    return caller.hello(), caller.vectors()


async def fetch_hello(http: HttpClient, url: str, limits: Limits = DEFAULT_LIMITS) -> Hello:
    """GET the HELLO of the node at ``url`` (one attempt)."""
    body = await request(http, "GET", url.rstrip("/") + HELLO_PATH, limits)
    [theirs] = read_messages(body, (Hello,), limits)
    assert isinstance(theirs, Hello)
    return theirs


async def request(http: HttpClient, method: str, url: str, limits: Limits, **options: Any) -> bytes:
    """One request whose answer is read whole, but never more than the limit allows;
    returns the body of a 200 of ours, else raises what the node refused."""
    if "content" in options:
        options["headers"] = {"content-type": MEDIA_TYPE}
    async with http.stream(method, url, **options) as response:
        body = await _read_limited(response, limits.max_request_bytes)
    check_media_type(url, response)
    if len(body) > limits.max_request_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"an answer of more than {limits.max_request_bytes} bytes"
        )
    return checked(url, response, body, limits)


def check_media_type(url: str, response: httpx.Response) -> None:
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if media != MEDIA_TYPE:
        raise Refused(
            ErrorCode.MALFORMED,
            f"{url} is not a p2p-prophet node: it answered HTTP "
            f"{response.status_code} with {media or 'no content type'}",
        )


def checked(url: str, response: httpx.Response, body: bytes, limits: Limits) -> bytes:
    """``body`` if the response is a 200 of ours; else the refusal it carries, raised as
    :class:`Refused`."""
    check_media_type(url, response)
    if response.status_code == 200:
        return body
    url = url.split(PREFIX + "/", 1)[0]  # the node, not the endpoint, in messages
    try:
        read_messages(body, (Error,), limits)
    except PeerError as exc:
        if exc.code is ErrorCode.NOT_MEMBER:
            raise NotAccepted(f"{url} refused: {exc}") from None
        raise Refused(exc.code, f"{url} refused: {exc}", _retry_after(response.headers)) from None
    except ProtocolError:
        pass
    raise Refused(ErrorCode.UNKNOWN, f"{url} answered HTTP {response.status_code} without a reason")


def _retry_after(headers: httpx.Headers) -> float | None:
    """A Retry-After header's seconds (its date form is not used by nodes), at most
    :data:`MAX_RETRY_AFTER`; None if there is none or it is not a number."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(headers.get("retry-after", ""))))
    except ValueError:
        return None


def _os_reason(exc: BaseException) -> str:
    """The operating system's words for why a connection failed ("connection refused"),
    dug out of httpx's and trio's wrappers; else the exception's own message."""
    for current in _chain(exc):
        if isinstance(current, socket.gaierror):
            return f"cannot resolve the host name ({current.strerror})"
        # An SSLError's errno is OpenSSL's, not the operating system's.
        if isinstance(current, ssl.SSLError):
            continue
        if isinstance(current, OSError) and current.errno is not None and current.errno > 0:
            return os.strerror(current.errno).lower()
    return str(exc) or type(exc).__name__


def tls_refusal(url: str, exc: BaseException) -> NotAccepted | None:
    """What ``exc``, raised while talking to ``url``, says about identities, if it is a
    TLS refusal (see :mod:`p2p_prophet.security.tls` for what each side sees)."""
    if not url.startswith("https://"):
        return None
    for cause in _chain(exc):
        if isinstance(cause, NotTrusted):
            who = f" answered as {cause.fingerprint}, which" if cause.fingerprint else ""
            return NotAccepted(
                f"{url}{who} is not a member of this database, or not the node expected "
                "there; nothing was sent to it"
            )
        if isinstance(cause, ssl.SSLCertVerificationError):
            return NotAccepted(
                f"{url} presented a certificate that is not a member's "
                f"({cause.verify_message}); nothing was sent to it"
            )
    return None


def closed_after_handshake(url: str, exc: BaseException) -> bool:
    """Whether ``exc`` is a TLS connection to ``url`` closed, without a word, after the
    handshake: what a TLS 1.3 client sees when the server refused its certificate (the
    server judges it after the client has finished), and also when the node stopped.
    Retried as transient; explained if every attempt ends so."""
    if not url.startswith("https://"):
        return False
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLEOFError) or (
            isinstance(cause, ssl.SSLError) and cause.reason == "UNEXPECTED_EOF_WHILE_READING"
        ):
            return True
        if isinstance(cause, httpx.RemoteProtocolError) and "without sending a response" in str(
            cause
        ):
            return True
    return False


def not_tls(url: str, exc: BaseException) -> NetworkError | None:
    """A :class:`NetworkError` if ``exc`` says that what answers at ``url`` does not speak
    TLS at all (a plain HTTP server, another protocol): not worth retrying."""
    if not url.startswith("https://"):
        return None
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLError) and cause.reason in _NOT_TLS_REASONS:
            return NetworkError(
                f"{url} does not speak TLS ({cause.reason.lower().replace('_', ' ')}): it is "
                "not a p2p-prophet node of a database with members (a node of one made with "
                "--insecure answers at http://); nothing was sent to it"
            )
    return None


# OpenSSL's reasons when the other end answers a ClientHello with something that is not TLS.
_NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
    "HTTPS_PROXY_REQUEST",
    "UNSUPPORTED_PROTOCOL",
}


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps: causes, contexts and exception groups."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


def _transient(exc: Exception) -> bool:
    if isinstance(exc, Refused) and not isinstance(exc, ProtocolError):
        return exc.code is ErrorCode.UNAVAILABLE
    if isinstance(exc, Refused):
        return exc.code in _TRANSIENT_CODES
    return isinstance(exc, httpx.TransportError)


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body)


def new_http_client(
    timeout: httpx.Timeout = DEFAULT_TIMEOUT, *, tls: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    """An httpx client for talking to nodes: no proxies from the environment (a LAN peer
    is never reached through one), few headers (an idle sync stays small).

    ``tls`` is the context ``https://`` peers are checked with
    (:func:`p2p_prophet.security.tls.client_context`: pinned to the membership); without
    it, an ``https://`` peer is refused before anything is sent.  Redirects are never
    followed, so a peer given as ``https://`` is never reached over plain HTTP.
    """
    client = httpx.AsyncClient(
        timeout=timeout,
        trust_env=False,
        follow_redirects=False,
        verify=tls if tls is not None else _NO_TLS,
        headers={"user-agent": f"p2p-prophet/{__version__}", "accept": MEDIA_TYPE},
    )
    del client.headers["accept-encoding"]
    return client


async def clone(
    url: str, path: Path, *, http: httpx.AsyncClient, **options: Any
) -> tuple[Replica, TransferResult]:
    """Create a replica of the node's database at ``path`` and pull everything into it.

    Interrupted, the new replica keeps the whole batches it got; ``pull`` from the same
    URL finishes the job.  ``options`` are :class:`Peer`'s.
    """
    check_free(path)
    theirs = await Peer(url, None, http=http, **options).hello()
    replica = await trio.to_thread.run_sync(lambda: Replica.init(path, db_uuid=theirs.db_uuid))
    try:
        return replica, await Peer(url, ReplicaWorker(replica), http=http, **options).pull()
    except BaseException:
        replica.close()
        raise


async def clone_with_invite(
    invite: Invite, path: Path, *, name: str = "", **options: Any
) -> tuple[Replica, TransferResult]:
    """Join the database ``invite`` names: clone it at ``path`` from the inviter's node,
    as a new member (the steps are in :mod:`p2p_prophet.security.invite`).

    The connection presents the invite identity and accepts only the inviter's
    fingerprint.  The new replica gets an identity of its own, adds it to the membership
    (``name`` is its name there) and removes the invite identity, and pushes both changes
    back: from then on the token is refused everywhere, and the new replica is a member.
    If anything fails, nothing is left at ``path`` and the token, not yet used up, can be
    tried again (a failure after the inviter took the push leaves the token used: then
    ask for a new one).  Raises :class:`InvalidInvite` for an expired token,
    :class:`NotAccepted` if the inviter refuses it (used, expired or withdrawn),
    :class:`NetworkError` if no address of the inviter answers.
    """
    if invite.expired():
        raise InvalidInvite(
            f"this invite expired at {utc_minutes(invite.expires)}; ask for a new one "
            "(`p2p-prophet invite` on a member's laptop)"
        )
    check_free(path)
    guest = invite.identity()
    tls = fingerprint_client_context(guest, invite.inviter)
    async with new_http_client(tls=tls) as http:
        url, theirs = await _first_answer(http, invite.urls, **options)
        if theirs.db_uuid != invite.db_uuid:
            raise Refused(
                ErrorCode.WRONG_DATABASE,
                f"{url} holds database {theirs.db_uuid}, not {invite.db_uuid} as the invite "
                "says; nothing was cloned",
            )
        me = Identity.generate()
        replica = await trio.to_thread.run_sync(
            lambda: Replica.init(
                path,
                db_uuid=invite.db_uuid,
                identity=me,
                discovery_secret=invite.discovery_secret or None,
            )
        )
        try:
            worker = ReplicaWorker(replica)
            peer = Peer(url, worker, http=http, **options)
            result = await peer.pull()

            def become_member() -> None:
                membership.add_member(
                    replica,
                    me.certificate_pem,
                    name=name,
                    added_by=invite.inviter,
                    invite=guest.fingerprint,  # so that the inviter sees who used it
                )
                membership.remove_member(replica, guest.fingerprint)

            await worker.run(become_member)
            await peer.push()
            return replica, result
        except BaseException:
            replica.close()
            await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))
            raise


async def _first_answer(http: HttpClient, urls: Iterable[str], **options: Any) -> tuple[str, Hello]:
    """The first of ``urls`` whose node answers a HELLO, with that HELLO."""
    failures: list[str] = []
    for url in urls:
        try:
            return url, await Peer(url, None, http=http, **options).hello()
        except NotAccepted:
            raise
        except NetworkError as exc:
            failures.append(str(exc))
    raise NetworkError("no address of the inviter answered: " + "; ".join(failures))


__all__ = [
    "NetworkError",
    "NotAccepted",
    "Peer",
    "Progress",
    "SyncResult",
    "clone",
    "clone_with_invite",
    "fetch_hello",
    "new_http_client",
]
