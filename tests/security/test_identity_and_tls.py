"""Identities on disk, and pinned TLS 1.3 between them over real loopback sockets.

Alice serves, Bob dials, Mallory is a stranger (a valid identity no one trusts).  Every
TLS case runs OpenSSL for real through trio's SSLStream (and once through httpx); nothing
in ``ssl`` is mocked.  Each wait is bounded by ``trio.fail_after`` so a failure cannot hang.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import os
import ssl
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from cryptography import x509

from p2p_prophet.errors import IdentityError, ProphetError
from p2p_prophet.security import (
    Identity,
    NotTrusted,
    TrustedPeers,
    client_context,
    fingerprint,
    peer_fingerprint,
    server_context,
    verify,
)

TIMEOUT = 10
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


# -- identity ----------------------------------------------------------------------------


def test_a_new_identity_is_saved_and_loads_back_the_same(tmp_path: Path) -> None:
    created = Identity.load_or_create(tmp_path / "alice")
    loaded = Identity.load_or_create(tmp_path / "alice")
    assert loaded.fingerprint == created.fingerprint
    assert loaded.certificate_pem == created.certificate_pem
    assert loaded.key_pem() == created.key_pem()
    # Nothing else is left in the directory: no temporary files from the atomic writes.
    assert sorted(p.name for p in (tmp_path / "alice").iterdir()) == [
        "identity.crt",
        "identity.key",
    ]


@posix_only
def test_the_key_file_is_private_to_its_owner(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "identity.key").stat().st_mode) == 0o600


@posix_only
def test_a_key_file_others_can_read_is_refused_with_the_chmod_to_run(tmp_path: Path) -> None:
    created = Identity.load_or_create(tmp_path)
    key = tmp_path / "identity.key"
    key.chmod(0o640)
    with pytest.raises(IdentityError, match=f"chmod 600 {key}"):
        Identity.load_or_create(tmp_path)
    key.chmod(0o600)
    assert Identity.load_or_create(tmp_path) == created


def test_a_corrupt_certificate_is_refused_and_named(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path)
    cert = tmp_path / "identity.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    with pytest.raises(IdentityError, match=str(cert)):
        Identity.load_or_create(tmp_path)


def test_a_corrupt_key_is_refused_and_named(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path)
    key = tmp_path / "identity.key"
    key.write_text("not a key")
    with pytest.raises(IdentityError, match=str(key)):
        Identity.load_or_create(tmp_path)


def test_a_key_and_certificate_of_two_identities_are_refused(
    tmp_path: Path, mallory: Identity
) -> None:
    Identity.load_or_create(tmp_path)
    cert = tmp_path / "identity.crt"
    cert.write_text(mallory.certificate_pem)
    with pytest.raises(IdentityError, match="not a pair") as refused:
        Identity.load_or_create(tmp_path)
    assert str(cert) in str(refused.value)
    with pytest.raises(IdentityError, match="not a pair"):
        Identity(Identity.generate().key, mallory.certificate_pem)


@pytest.mark.parametrize("missing", ["identity.crt", "identity.key"])
def test_one_missing_file_is_an_error_not_a_new_identity(tmp_path: Path, missing: str) -> None:
    Identity.load_or_create(tmp_path)
    (tmp_path / missing).unlink()
    left = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(IdentityError, match=f"{tmp_path / missing} is missing"):
        Identity.load_or_create(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == left


def test_the_fingerprint_is_the_sha256_of_the_der_certificate(
    alice: Identity, bob: Identity
) -> None:
    der = ssl.PEM_cert_to_DER_cert(alice.certificate_pem)
    assert alice.fingerprint == hashlib.sha256(der).hexdigest()
    assert fingerprint(alice.certificate_pem) == alice.fingerprint
    assert len(alice.fingerprint) == 64 and set(alice.fingerprint) <= set("0123456789abcdef")
    assert alice.fingerprint != bob.fingerprint
    with pytest.raises(IdentityError):
        fingerprint("hello")


def test_the_certificate_is_self_signed_with_no_expiry_and_not_a_ca(alice: Identity) -> None:
    cert = x509.load_pem_x509_certificate(alice.certificate_pem.encode())
    assert cert.subject == cert.issuer
    no_expiry = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    assert cert.not_valid_after_utc == no_expiry
    a_day_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=23)
    assert cert.not_valid_before_utc < a_day_ago
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_a_signature_verifies_and_a_tampered_one_does_not(alice: Identity, bob: Identity) -> None:
    signature = alice.sign(b"changeset 42")
    assert verify(alice.certificate_pem, b"changeset 42", signature)
    assert not verify(alice.certificate_pem, b"changeset 43", signature)
    assert not verify(bob.certificate_pem, b"changeset 42", signature)
    assert not verify(alice.certificate_pem, b"changeset 42", bytes(64))
    assert not verify(alice.certificate_pem, b"changeset 42", b"short")


def test_identity_errors_are_prophet_errors() -> None:
    assert issubclass(IdentityError, ProphetError)
    assert issubclass(NotTrusted, ProphetError) and issubclass(NotTrusted, ssl.SSLError)


# -- TLS: a tiny echo server and client over loopback ------------------------------------


@dataclass(frozen=True)
class Seen:
    """What Alice's server saw of one connection."""

    error: BaseException | None  # why the connection failed (an SSLError); None if it did not
    received: bytes  # application bytes the server got from the client
    peer: str | None  # the client's fingerprint, if the server's handshake succeeded


class Server:
    """Serves ``ctx`` on a free loopback port, answering ``b"ping"`` with ``b"pong"``."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.port = 0
        self._send, self._seen = trio.open_memory_channel[Seen](math.inf)

    async def start(self, nursery: trio.Nursery) -> Server:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, self._handle, listeners)
        return self

    async def next(self) -> Seen:
        return await self._seen.receive()

    async def _handle(self, tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, self.ctx, server_side=True)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            received = b""
            # A broken stream delivers nothing more: prove it rather than assume it.
            with suppress(trio.BrokenResourceError):
                received = bytes(await stream.receive_some())
            await tcp.aclose()
            self._send.send_nowait(Seen(exc.__cause__, received, None))
            return
        peer = peer_fingerprint(stream)
        try:
            received = await receive_exactly(stream, 4)
        except trio.BrokenResourceError as exc:
            # The client refused us after its side of the handshake had gone out.
            self._send.send_nowait(Seen(exc.__cause__, b"", peer))
            await tcp.aclose()
            return
        await stream.send_all(b"pong")
        self._send.send_nowait(Seen(None, received, peer))
        with suppress(trio.BrokenResourceError):
            await stream.aclose()


async def receive_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def ping(port: int, ctx: ssl.SSLContext) -> bytes:
    """Bob's side: connect, send ``b"ping"``, return the answer (BrokenResourceError if refused)."""
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=ctx)
    try:
        await stream.send_all(b"ping")
        return await receive_exactly(stream, 4)
    finally:
        await stream.aclose()


@contextmanager
def bounded() -> Iterator[None]:
    with trio.fail_after(TIMEOUT):
        yield


async def assert_refused(server: Server, client_ctx: ssl.SSLContext) -> Seen:
    """The connection fails on both ends and no application byte reaches the server."""
    with pytest.raises(trio.BrokenResourceError):
        await ping(server.port, client_ctx)
    seen = await server.next()
    assert isinstance(seen.error, ssl.SSLError), seen
    assert seen.received == b"" and seen.peer is None
    return seen


def trusting(*identities: Identity) -> TrustedPeers:
    return TrustedPeers(i.certificate_pem for i in identities)


async def test_alice_and_bob_trust_each_other_and_talk_tls13(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    with bounded():
        server = await Server(server_context(alice, trusting(bob))).start(nursery)
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", server.port, ssl_context=client_context(bob, trusting(alice))
        )
        await stream.send_all(b"ping")
        assert await receive_exactly(stream, 4) == b"pong"
        assert stream.version() == "TLSv1.3"
        assert peer_fingerprint(stream) == alice.fingerprint
        await stream.aclose()
        assert await server.next() == Seen(None, b"ping", bob.fingerprint)


async def test_a_client_without_a_certificate_is_refused(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    with bounded():
        server = await Server(server_context(alice, trusting(bob))).start(nursery)
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(cadata=alice.certificate_pem)
        seen = await assert_refused(server, anonymous)
        assert isinstance(seen.error, ssl.SSLError)
        assert seen.error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


async def test_a_client_no_one_trusts_is_refused(
    nursery: trio.Nursery, alice: Identity, bob: Identity, mallory: Identity
) -> None:
    with bounded():
        server = await Server(server_context(alice, trusting(bob))).start(nursery)
        seen = await assert_refused(server, client_context(mallory, trusting(alice)))
        # OpenSSL itself refuses it: its certificate is in no trust store of Alice's.
        assert isinstance(seen.error, ssl.SSLCertVerificationError)


async def test_bob_refuses_a_server_he_does_not_trust(
    nursery: trio.Nursery, alice: Identity, bob: Identity, mallory: Identity
) -> None:
    with bounded():
        server = await Server(server_context(alice, trusting(bob))).start(nursery)
        await assert_refused(server, client_context(bob, trusting(mallory)))


async def test_bob_refuses_a_trusted_server_that_is_not_the_one_he_expects(
    nursery: trio.Nursery, alice: Identity, bob: Identity, mallory: Identity
) -> None:
    with bounded():
        server = await Server(server_context(alice, trusting(bob))).start(nursery)
        ctx = client_context(bob, trusting(alice, mallory), expect=mallory.fingerprint)
        with pytest.raises(trio.BrokenResourceError) as refused:
            await ping(server.port, ctx)
        assert isinstance(refused.value.__cause__, NotTrusted)
        assert refused.value.__cause__.fingerprint == alice.fingerprint
        seen = await server.next()
        assert isinstance(seen.error, ssl.SSLError) and seen.received == b""
        # Expecting the one he reaches works with the very same trust.
        expecting_alice = client_context(bob, trusting(alice, mallory), expect=alice.fingerprint)
        assert await ping(server.port, expecting_alice) == b"pong"


async def test_a_client_trusted_after_the_context_was_made_is_accepted(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    with bounded():
        trusted = TrustedPeers()
        server = await Server(server_context(alice, trusted)).start(nursery)
        bob_ctx = client_context(bob, trusting(alice))
        await assert_refused(server, bob_ctx)

        assert trusted.add(bob.certificate_pem) == bob.fingerprint
        assert await ping(server.port, bob_ctx) == b"pong"
        assert await server.next() == Seen(None, b"ping", bob.fingerprint)


async def test_a_removed_client_is_refused_from_then_on_by_the_same_context(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    with bounded():
        trusted = trusting(bob)
        server = await Server(server_context(alice, trusted)).start(nursery)
        bob_ctx = client_context(bob, trusting(alice))
        assert await ping(server.port, bob_ctx) == b"pong"
        assert (await server.next()).peer == bob.fingerprint

        assert trusted.remove(bob.fingerprint)
        assert bob.fingerprint not in trusted
        seen = await assert_refused(server, bob_ctx)
        # OpenSSL still accepts Bob (a store cannot forget him); the pinning check does not.
        assert isinstance(seen.error, NotTrusted)
        assert seen.error.fingerprint == bob.fingerprint
        assert bob.fingerprint in str(seen.error)

        trusted.add(bob.certificate_pem)  # and trusted again, he is let in again
        assert await ping(server.port, bob_ctx) == b"pong"


async def test_a_server_removed_from_bobs_trust_is_refused_by_his_same_context(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    with bounded():
        server = await Server(server_context(alice, trusting(bob))).start(nursery)
        bobs_trust = trusting(alice)
        bob_ctx = client_context(bob, bobs_trust)
        assert await ping(server.port, bob_ctx) == b"pong"
        await server.next()

        bobs_trust.replace([])
        with pytest.raises(trio.BrokenResourceError) as refused:
            await ping(server.port, bob_ctx)
        assert isinstance(refused.value.__cause__, NotTrusted)
        seen = await server.next()
        assert isinstance(seen.error, ssl.SSLError) and seen.received == b""


def test_trusted_peers_holds_certificates_by_fingerprint(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    trusted = trusting(alice)
    trusted.add(alice.certificate_pem)  # twice is once
    assert trusted.fingerprints() == {alice.fingerprint} and len(trusted) == 1
    assert alice.fingerprint.upper() in trusted
    trusted.replace([bob.certificate_pem, mallory.certificate_pem])
    assert trusted.fingerprints() == {bob.fingerprint, mallory.fingerprint}
    with pytest.raises(IdentityError):
        trusted.replace([alice.certificate_pem, "garbage"])
    assert trusted.fingerprints() == {bob.fingerprint, mallory.fingerprint}
    assert not trusted.remove(alice.fingerprint)
    with pytest.raises(IdentityError):
        client_context(bob, trusted, expect="not-a-fingerprint")


# -- other users of the contexts ----------------------------------------------------------


async def test_a_blocking_client_socket_is_pinned_too(
    nursery: trio.Nursery, alice: Identity, bob: Identity, mallory: Identity
) -> None:
    import socket

    def blocking_ping(ctx: ssl.SSLContext, port: int) -> bytes:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"ping")
            return tls.recv(4)

    with bounded():
        server = await Server(server_context(alice, trusting(bob))).start(nursery)
        ctx = client_context(bob, trusting(alice))
        assert await trio.to_thread.run_sync(blocking_ping, ctx, server.port) == b"pong"
        await server.next()
        wrong = client_context(bob, trusting(alice, mallory), expect=mallory.fingerprint)
        with pytest.raises(NotTrusted):
            await trio.to_thread.run_sync(blocking_ping, wrong, server.port)
        # A socket sends the client's last handshake flight before the check can refuse,
        # so Alice completes her handshake; she then reads an EOF, and no byte.
        seen = await server.next()
        assert seen.peer == bob.fingerprint
        assert isinstance(seen.error, ssl.SSLEOFError) and seen.received == b""


async def test_httpx_uses_the_pinned_client_context(
    nursery: trio.Nursery, alice: Identity, bob: Identity, mallory: Identity
) -> None:
    ctx = server_context(alice, trusting(bob))

    async def http_handler(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, ctx, server_side=True)
        with suppress(trio.BrokenResourceError):
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                request += chunk
            body = (peer_fingerprint(stream) or "").encode()
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await stream.aclose()

    with bounded():
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, http_handler, listeners)
        url = f"https://127.0.0.1:{port}/"

        async with httpx.AsyncClient(verify=client_context(bob, trusting(alice))) as http:
            response = await http.get(url)
        assert response.status_code == 200 and response.text == bob.fingerprint

        ctx_expecting_mallory = client_context(
            bob, trusting(alice, mallory), expect=mallory.fingerprint
        )
        async with httpx.AsyncClient(verify=ctx_expecting_mallory) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(url)
