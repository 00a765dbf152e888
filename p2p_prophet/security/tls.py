"""TLS 1.3 between replicas, both ends pinned to a set of trusted identities (as Syncthing).

A replica authenticates a peer by one thing: the fingerprint of the certificate the peer
presents (see :mod:`p2p_prophet.keys.identity`) must be in its :class:`TrustedPeers`.
Host names, subject names and CAs play no part.  The contexts made here use Python's
:mod:`ssl` (OpenSSL) and nothing else; the checks happen in two places:

1. **OpenSSL, during the handshake.**  Both ends use ``CERT_REQUIRED`` (the server asks
   for a client certificate and refuses a client that sends none), and both verify the
   peer's certificate against the context's trust store, which holds every certificate
   ever added to the :class:`TrustedPeers` the context was made from.  OpenSSL checks the
   signature (proof that the peer holds the key: the TLS 1.3 CertificateVerify message),
   the validity dates and the extended key usage.  ``check_hostname`` is off: peers are
   dialled by IP address, and a name would say nothing about who answers.
   ``VERIFY_X509_PARTIAL_CHAIN`` lets OpenSSL accept a certificate because it is itself in
   the store, instead of searching the store for its issuer by subject name; our own
   certificates verify without it (they are self-signed and carry an
   AuthorityKeyIdentifier), but a certificate without one, among several trusted ones that
   share its subject, is otherwise refused as "self-signed certificate".  Since every
   certificate in the store is pinned by fingerprint in step 2, the flag widens nothing.

2. **Our :class:`ssl.SSLObject` (and :class:`ssl.SSLSocket`) subclass, as soon as
   OpenSSL's handshake has succeeded**, before a byte of application data is read or
   written: the peer's fingerprint must be in the :class:`TrustedPeers` *at that moment*,
   and on a client made with ``expect``, it must also equal ``expect``.  Otherwise
   ``do_handshake`` raises :class:`NotTrusted`.  Step 1 alone cannot enforce a removal: an
   OpenSSL store only ever grows, so a certificate removed from :class:`TrustedPeers` stays
   in the stores of contexts already made.  The subclass is installed as the context's
   ``sslobject_class`` (used by ``wrap_bio``, hence by ``trio.SSLStream``, by anyio and
   httpcore's TLS streams, and by asyncio) and ``sslsocket_class`` (``wrap_socket``).

What the refused end sees.  The refusing end's handshake fails: OpenSSL's
:class:`ssl.SSLError` (``PEER_DID_NOT_RETURN_A_CERTIFICATE``, or
:class:`ssl.SSLCertVerificationError` "self-signed certificate" for a certificate in no
store) or :class:`NotTrusted`.  In TLS 1.3 a client finishes its handshake before the
server has judged the client's certificate, so a refused client learns of it only on its
first read; and ``trio.SSLStream`` (like anyio) drops a failed connection without sending
the alert OpenSSL queued, so that read fails with an unexpected EOF
(``UNEXPECTED_EOF_WHILE_READING``), not with an alert.  A refusal by step 2 never has an
alert to send.  Either way no application data crosses: a server refuses before its
application reads a byte, and a client before it writes one.  (Over a blocking
:class:`ssl.SSLSocket` a client's last handshake flight is already on the wire when step 2
refuses the server, so that server completes its handshake and then reads an EOF.)
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol

from cryptography.hazmat.primitives import serialization

from p2p_prophet.errors import IdentityError, ProphetError
from p2p_prophet.keys.identity import Identity, der_fingerprint, load_certificate

_HEX = frozenset("0123456789abcdef")


class NotTrusted(ssl.SSLError, ProphetError):
    """The peer completed a TLS handshake, but its certificate is not one this end trusts.

    ``fingerprint`` is the peer's (``None`` if it presented no certificate).  An
    :class:`ssl.SSLError`, so that TLS stream wrappers treat it as the failed handshake it
    is (``trio.SSLStream`` turns it into :class:`trio.BrokenResourceError`).
    """

    def __init__(self, fingerprint: str | None, message: str) -> None:
        super().__init__(ssl.SSL_ERROR_SSL, message)
        self.fingerprint = fingerprint
        # The attributes OpenSSL's own errors carry, for code that logs them.
        self.library = "p2p_prophet"
        self.reason = "PEER_NOT_TRUSTED"


class _HasPeerCert(Protocol):
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...


def peer_fingerprint(conn: _HasPeerCert) -> str | None:
    """The fingerprint of the certificate the peer of ``conn`` presented; ``None`` if none.

    ``conn`` is anything with ``getpeercert(binary_form=True)``: an :class:`ssl.SSLObject`,
    an :class:`ssl.SSLSocket`, a ``trio.SSLStream``.  Call it after the handshake (before
    it, the stdlib objects raise :class:`ValueError`).
    """
    der = conn.getpeercert(binary_form=True)
    return None if der is None else der_fingerprint(der)


def _normalize_fingerprint(value: str) -> str:
    fp = value.strip().lower()
    if len(fp) != 64 or not set(fp) <= _HEX:
        raise IdentityError(
            f"{value!r} is not a replica fingerprint (64 hex digits, the SHA-256 of its"
            " certificate)"
        )
    return fp


def _canonical_pem(cert_pem: str | bytes) -> tuple[str, str]:
    """``(fingerprint, pem)`` of the first certificate in ``cert_pem``, re-encoded alone.

    Re-encoding means a PEM bundle can never slip extra certificates into a trust store.
    """
    cert = load_certificate(cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return der_fingerprint(der), cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


class TrustedPeers:
    """The certificates of the peers this replica trusts, keyed by fingerprint.

    Contexts made by :func:`server_context` and :func:`client_context` follow changes
    live: an added certificate is loaded at once into the trust store of every such
    context still alive, and a removed one is refused by their next handshake (step 2 in
    the module doc); connections already established are not affected.  Safe to use
    from several threads.
    """

    def __init__(self, certs: Iterable[str | bytes] = ()) -> None:
        """Trust ``certs`` (PEM); raises :class:`IdentityError` if one is not a certificate."""
        self._lock = threading.Lock()
        self._certs: dict[str, str] = dict(_canonical_pem(cert) for cert in certs)
        # Certificates in the stores that are not trusted (any more): see remember().
        self._known: dict[str, str] = {}
        self._contexts: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()

    def add(self, cert_pem: str | bytes) -> str:
        """Trust the (first) certificate in ``cert_pem``; returns its fingerprint.

        Adding one already trusted changes nothing.  Raises :class:`IdentityError` if
        ``cert_pem`` is not a PEM certificate.
        """
        fp, pem = _canonical_pem(cert_pem)
        with self._lock:
            if fp not in self._certs:
                self._certs[fp] = pem
                self._load_into_contexts(pem)
        return fp

    def remove(self, fingerprint: str) -> bool:
        """Stop trusting ``fingerprint``; returns whether it was trusted.

        Handshakes that complete from now on refuse it, also on contexts already made.
        """
        fp = fingerprint.strip().lower()
        with self._lock:
            return self._certs.pop(fp, None) is not None

    def replace(self, certs: Iterable[str | bytes]) -> None:
        """Trust exactly ``certs`` (PEM) from now on.

        All or nothing: if one is not a certificate, :class:`IdentityError` is raised and
        the trusted set is unchanged.
        """
        new = dict(_canonical_pem(cert) for cert in certs)
        with self._lock:
            added = [pem for fp, pem in new.items() if fp not in self._certs]
            self._certs = new
            if added:
                self._load_into_contexts("".join(added))

    def remember(self, certs: Iterable[str | bytes]) -> None:
        """Put ``certs`` (PEM) into the trust stores of the contexts without trusting them.

        Step 2 refuses them as ever; but a server context made with
        ``judged_per_request`` (which leaves step 2 to its application) then completes
        their handshakes, so that its application can tell them why they are refused (a
        removed member, a used invite) instead of closing without a word.
        """
        new = dict(_canonical_pem(cert) for cert in certs)
        with self._lock:
            added = [
                pem for fp, pem in new.items() if fp not in self._certs and fp not in self._known
            ]
            self._known.update(new)
            if added:
                self._load_into_contexts("".join(added))

    def __contains__(self, fingerprint: object) -> bool:
        if not isinstance(fingerprint, str):
            return False
        with self._lock:
            return fingerprint.lower() in self._certs

    def __len__(self) -> int:
        with self._lock:
            return len(self._certs)

    def fingerprints(self) -> frozenset[str]:
        """The fingerprints trusted now."""
        with self._lock:
            return frozenset(self._certs)

    def certificate(self, fingerprint: str) -> str:
        """The PEM certificate of ``fingerprint``; :class:`KeyError` if it is not trusted."""
        with self._lock:
            return self._certs[fingerprint.lower()]

    def _register(self, ctx: ssl.SSLContext) -> None:
        """Load the trusted certificates into ``ctx`` and keep it in step with later adds."""
        with self._lock:
            pems = {**self._known, **self._certs}
            if pems:
                ctx.load_verify_locations(cadata="".join(pems.values()))
            self._contexts.add(ctx)

    def _load_into_contexts(self, pem: str) -> None:
        # Called with the lock held, so a context registering concurrently gets the
        # certificate exactly once: either in its initial load or here.  Loading a
        # certificate a store already holds (trusted, removed, trusted again) is harmless.
        for ctx in list(self._contexts):
            ctx.load_verify_locations(cadata=pem)


def _check_peer(
    conn: ssl.SSLObject | ssl.SSLSocket, trusted: TrustedPeers | None, expect: str | None
) -> None:
    """Step 2 of the module doc: raise :class:`NotTrusted` unless the peer is trusted now."""
    fp = peer_fingerprint(conn)
    if fp is None:
        raise NotTrusted(None, "the peer presented no certificate")
    if expect is not None and fp != expect:
        raise NotTrusted(fp, f"the peer is {fp}, not the expected peer {expect}")
    if trusted is not None and fp not in trusted:
        raise NotTrusted(
            fp, f"the peer {fp} is not a trusted peer (its certificate is not in the trusted set)"
        )


def _pin(ctx: ssl.SSLContext, trusted: TrustedPeers | None, expect: str | None) -> None:
    """Make ``ctx`` run step 2 after every handshake of the connections it makes."""

    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            _check_peer(self, trusted, expect)

    class PinnedSSLSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            _check_peer(self, trusted, expect)

    ctx.sslobject_class = PinnedSSLObject
    ctx.sslsocket_class = PinnedSSLSocket


def _load_identity(ctx: ssl.SSLContext, identity: Identity) -> None:
    """Give ``ctx`` our certificate and key.

    Python's :mod:`ssl` reads a certificate chain only from a file.  The file is created
    (mode 0600, ``O_EXCL``) in a fresh private directory (:func:`tempfile.mkdtemp`, mode
    0700) and deleted, with the directory, as soon as OpenSSL has read it.  The key in it
    is encrypted under a random one-time password that exists only in this process's
    memory, so a file left behind by a crash or a kill at the wrong moment is useless.
    """
    password = secrets.token_hex(32).encode("ascii")
    key_pem = identity.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="p2p-prophet-tls-") as directory:
        path = Path(directory) / "identity.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(identity.certificate_pem.encode("ascii") + key_pem)
        ctx.load_cert_chain(path, password=password)


def _context(
    server_side: bool,
    identity: Identity,
    trusted: TrustedPeers,
    expect: str | None,
    *,
    pin: bool = True,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if not server_side:
        # Peers are dialled by address; who answers is settled by the fingerprint alone.
        ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    _load_identity(ctx, identity)
    trusted._register(ctx)
    _pin(ctx, trusted if pin else None, expect)
    return ctx


def server_context(
    identity: Identity, trusted: TrustedPeers, *, judged_per_request: bool = False
) -> ssl.SSLContext:
    """A TLS 1.3 server context that presents ``identity`` and accepts only ``trusted`` clients.

    The client must present a certificate; it passes only if it verifies against the
    certificates added to ``trusted`` and its fingerprint is in ``trusted`` when the
    handshake completes (both steps in the module doc).  Otherwise the handshake fails:
    OpenSSL's :class:`ssl.SSLError`, or :class:`NotTrusted`.  The server issues no TLS
    session tickets, so every connection is a full handshake that runs both steps.

    ``judged_per_request``: leave step 2 to the application, which must then check the
    peer's fingerprint against ``trusted`` before it answers each request (a node's
    :class:`~p2p_prophet.net.server.NodeApp` does, refusing with ``not-member``).  The
    handshake then refuses only certificates that were never trusted; one trusted once
    (a removed member, a used invite) completes it and is told, in words, that it is
    refused, where it would otherwise see its connection closed without a reason, which
    it cannot tell from a node stopping.
    """
    ctx = _context(True, identity, trusted, None, pin=not judged_per_request)
    ctx.num_tickets = 0
    return ctx


def client_context(
    identity: Identity, trusted: TrustedPeers, expect: str | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 client context that presents ``identity`` and accepts only ``trusted`` servers.

    The server passes only if its certificate verifies against the certificates added to
    ``trusted`` and its fingerprint is in ``trusted`` when the handshake completes, and,
    if ``expect`` is given, equals ``expect`` (dial a peer you know by fingerprint, and a
    different trusted peer answering at its address is refused).  Host names are never
    checked.  Raises :class:`IdentityError` if ``expect`` is not a fingerprint.
    """
    fp = None if expect is None else _normalize_fingerprint(expect)
    return _context(False, identity, trusted, fp)


def fingerprint_client_context(identity: Identity, expect: str) -> ssl.SSLContext:
    """A TLS 1.3 client context that presents ``identity`` and accepts exactly one server:
    the one whose certificate has the fingerprint ``expect``.

    For dialling a peer known only by its fingerprint, before its certificate is known
    (the inviter, when a new member clones with an invite token).  OpenSSL does not check
    the server's certificate chain here (there is no certificate to check it against);
    the handshake still proves that the server holds the key of the certificate it
    presents (TLS 1.3's CertificateVerify), and step 2 of the module doc refuses it
    unless that certificate's fingerprint is ``expect``: pinning a fingerprint is as
    strong as trusting the one certificate it names.  Raises :class:`IdentityError` if
    ``expect`` is not a fingerprint.
    """
    fp = _normalize_fingerprint(expect)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _load_identity(ctx, identity)
    _pin(ctx, None, fp)
    return ctx
