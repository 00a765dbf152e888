"""A replica's identity: an Ed25519 key and the self-signed X.509 certificate that carries it.

A replica is known to its peers by the **fingerprint** of its certificate: the SHA-256 of
the DER encoding, written as 64 lowercase hex digits (as Syncthing's device IDs are, before
their base32 dress).  Peers pin that string; nothing else in the certificate is trusted.

The certificate profile, chosen so that OpenSSL accepts the certificate as a pinned trust
anchor of a chain of one (see :mod:`p2p_prophet.security.tls`):

- subject = issuer = ``CN=p2p-prophet replica`` for every replica: the name carries no
  meaning, the fingerprint does;
- a random serial number (:func:`cryptography.x509.random_serial_number`), so two
  certificates never share issuer and serial;
- valid from one day before creation (a peer whose clock is a little behind still accepts
  it) until 9999-12-31T23:59:59Z, RFC 5280's "no well-defined expiration date": a replica's
  identity lives as long as the replica, and revocation is removal from the peers' trust;
- BasicConstraints ``cA=FALSE`` (critical): a replica certifies no one else's key, so a
  trusted certificate can never act as a CA for a certificate it did not sign itself;
- SubjectKeyIdentifier and AuthorityKeyIdentifier (both the key's SHA-1 id): every replica
  has the same subject, and OpenSSL 3.0 looks up a certificate's issuer by subject name;
  without the AKID it may pick another trusted certificate and fail with "self-signed
  certificate";
- ExtendedKeyUsage serverAuth and clientAuth: every replica is both ends of a connection.

On disk (:meth:`Identity.load_or_create`) an identity is two files in one directory::

    identity.key    the private key, PKCS#8 PEM, unencrypted, mode 0600
    identity.crt    the certificate, PEM

Both are written atomically, the key never readable by anyone but its owner, and a key that
is readable by others, or a pair that does not match, is refused rather than repaired.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from p2p_prophet.errors import IdentityError

KEY_FILE = "identity.key"
CERT_FILE = "identity.crt"
COMMON_NAME = "p2p-prophet replica"

# RFC 5280 §4.1.2.5: GeneralizedTime 99991231235959Z means "no well-defined expiration".
NO_EXPIRY = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
CLOCK_SKEW = datetime.timedelta(days=1)
SEED_BYTES = 32
DETERMINISTIC_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
BOTH_ENDS = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def der_fingerprint(der: bytes) -> str:
    """The fingerprint of a DER-encoded certificate: SHA-256, 64 lowercase hex digits."""
    return hashlib.sha256(der).hexdigest()


def load_certificate(cert_pem: str | bytes, source: str = "the data") -> x509.Certificate:
    """The (first) certificate in ``cert_pem``; :class:`IdentityError` naming ``source`` if none."""
    data = cert_pem.encode("ascii", "replace") if isinstance(cert_pem, str) else cert_pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError(f"{source} is not a PEM X.509 certificate: {exc}") from None


def fingerprint(cert_pem: str | bytes) -> str:
    """The fingerprint of the (first) certificate in ``cert_pem``.

    Raises :class:`IdentityError` if ``cert_pem`` does not hold a PEM certificate.
    """
    return der_fingerprint(load_certificate(cert_pem).public_bytes(serialization.Encoding.DER))


def verify(cert_pem: str | bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the signature of ``data`` by the key of ``cert_pem``.

    A wrong or malformed signature gives ``False``, never an exception.  Raises
    :class:`IdentityError` only if ``cert_pem`` is not a PEM certificate of an Ed25519 key.
    """
    public_key = load_certificate(cert_pem).public_key()
    if not isinstance(public_key, Ed25519PublicKey):
        raise IdentityError("the certificate does not hold an Ed25519 key")
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _self_signed_certificate(
    key: Ed25519PrivateKey, *, deterministic: bool = False
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    public_key = key.public_key()
    if deterministic:
        # The same key always gives the same certificate (Ed25519 signatures are
        # deterministic too), so it need not travel: see Identity.from_seed.
        serial = int.from_bytes(hashlib.sha256(raw_public_key(public_key)).digest()[:19]) | 1
        not_before = DETERMINISTIC_NOT_BEFORE
    else:
        serial = x509.random_serial_number()
        not_before = datetime.datetime.now(datetime.UTC) - CLOCK_SKEW
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(NO_EXPIRY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        # Ed25519 signs the message itself; there is no separate hash algorithm.
        .sign(key, None)
    )


@dataclass(frozen=True, eq=False)
class Identity:
    """An Ed25519 private key and its self-signed certificate, known by :attr:`fingerprint`.

    Constructing one checks that the certificate is self-signed by ``key`` and raises
    :class:`IdentityError` otherwise, so an ``Identity`` always holds a matching pair.
    Two identities are equal when their fingerprints are.
    """

    key: Ed25519PrivateKey = field(repr=False)
    certificate_pem: str = field(repr=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        cert = load_certificate(self.certificate_pem, "the certificate")
        _check_pair(self.key, cert, "the private key", "the certificate")
        der = cert.public_bytes(serialization.Encoding.DER)
        object.__setattr__(self, "fingerprint", der_fingerprint(der))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @classmethod
    def generate(cls) -> Identity:
        """A new random key and a certificate for it (the profile is in the module doc)."""
        key = Ed25519PrivateKey.generate()
        pem = _self_signed_certificate(key).public_bytes(serialization.Encoding.PEM)
        return cls(key, pem.decode("ascii"))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity whose private key is the 32-byte Ed25519 ``seed``, with a
        certificate that depends on the key alone: the same seed gives the same identity,
        fingerprint included, on every machine.  For short-lived identities that travel
        as their seed (an invite token); raises :class:`IdentityError` if ``seed`` is not
        32 bytes."""
        if len(seed) != SEED_BYTES:
            raise IdentityError(f"an identity seed is {SEED_BYTES} bytes, not {len(seed)}")
        key = Ed25519PrivateKey.from_private_bytes(seed)
        pem = _self_signed_certificate(key, deterministic=True).public_bytes(
            serialization.Encoding.PEM
        )
        return cls(key, pem.decode("ascii"))

    def seed(self) -> bytes:
        """The private key's 32 raw bytes (a secret): :meth:`from_seed` gives it back."""
        return self.key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature (64 bytes) of ``data``; check it with :func:`verify`."""
        return self.key.sign(data)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM: a secret, handle it as one."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def load_or_create(cls, directory: Path) -> Identity:
        """The identity stored in ``directory``; a new one, saved there, if it holds none.

        If neither ``identity.key`` nor ``identity.crt`` exists, a new identity is written
        (creating ``directory``, mode 0700, if needed): each file goes to a temporary name
        in ``directory``, is fsync'd, then linked to its final name, which never replaces
        an existing file; the certificate is published first, so a crash in between leaves
        at worst a certificate without a key, never a key that was never certified.

        Raises :class:`IdentityError` (with the file named and what to do) if only one of
        the two files exists, if the key file is accessible by group or others, if either
        file does not parse, if the key is not Ed25519, or if the certificate is not
        self-signed by the key.  Nothing on disk is changed in those cases.
        """
        key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
        try:
            has_key, has_cert = key_path.exists(), cert_path.exists()
        except OSError as exc:
            raise IdentityError(f"cannot look for the identity in {directory}: {exc}") from None
        if has_key and has_cert:
            return cls.load(key_path, cert_path)
        if has_key:
            raise IdentityError(
                f"{cert_path} is missing but {key_path} exists; restore {CERT_FILE} from a"
                f" backup, or delete {key_path} to create a new identity (peers that trust"
                " the old one will then refuse this replica)"
            )
        if has_cert:
            raise IdentityError(
                f"{key_path} is missing but {cert_path} exists; restore {KEY_FILE} from a"
                f" backup, or delete {cert_path} to create a new identity (peers that trust"
                " the old one will then refuse this replica)"
            )
        identity = cls.generate()
        identity.save(directory)
        return identity

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> Identity:
        """The identity in ``key_path`` (an unencrypted PEM Ed25519 key, readable by its
        owner only) and ``cert_path`` (its certificate).  Raises :class:`IdentityError`
        if either is unreadable or unsafe, or they are not a pair."""
        try:
            mode = key_path.stat().st_mode
            # POSIX permission bits only; Windows protects files with ACLs instead.
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise IdentityError(
                    f"{key_path} holds a private key but is accessible by other users"
                    f" (mode {stat.S_IMODE(mode):04o}); run `chmod 600 {key_path}`"
                )
            key_data, cert_data = key_path.read_bytes(), cert_path.read_bytes()
        except OSError as exc:
            raise IdentityError(f"cannot read the identity: {exc}") from None
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # TypeError: the key is encrypted; ValueError: not a PEM key at all.
            raise IdentityError(
                f"{key_path} is not an unencrypted PEM private key ({exc}); restore it from"
                " a backup"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{key_path} holds a {type(key).__name__}, not an Ed25519 key")
        cert = load_certificate(cert_data, str(cert_path))
        _check_pair(key, cert, str(key_path), str(cert_path))
        return cls(key, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))

    def save(self, directory: Path) -> None:
        """Write the key (mode 0600) and certificate into ``directory`` (made, mode 0700,
        if needed), never replacing existing files.  Raises :class:`IdentityError`."""
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise IdentityError(f"cannot create {directory}: {exc}") from None
        _publish(directory, CERT_FILE, self.certificate_pem.encode("ascii"), 0o644)
        _publish(directory, KEY_FILE, self.key_pem(), 0o600)
        _fsync_directory(directory)


def _check_pair(
    key: Ed25519PrivateKey, cert: x509.Certificate, key_name: str, cert_name: str
) -> None:
    """Raise :class:`IdentityError` unless ``cert`` is ``key``'s own self-signed certificate."""
    cert_key = cert.public_key()
    if not isinstance(cert_key, Ed25519PublicKey) or raw_public_key(cert_key) != raw_public_key(
        key.public_key()
    ):
        raise IdentityError(
            f"{cert_name} is not the certificate of the key in {key_name}: they are not a"
            " pair (restore the right one from a backup)"
        )
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise IdentityError(f"{cert_name} is not a valid self-signed certificate: {exc}") from None


def _publish(directory: Path, name: str, data: bytes, mode: int) -> None:
    """Write ``directory/name`` atomically with ``mode`` from creation; never replace a file.

    The data goes to a fresh temporary name (created ``O_EXCL`` with ``mode``, so a key is
    never readable by others, even for an instant), is fsync'd, and is then hard-linked to
    ``name``: unlike a rename, a link fails if ``name`` already exists, so a concurrent
    creator's file is never overwritten.
    """
    final = directory / name
    temp = directory / f".{name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.link(temp, final)
    except FileExistsError:
        raise IdentityError(
            f"{final} appeared while this identity was being created (is another process"
            " creating it?); try again"
        ) from None
    except OSError as exc:
        raise IdentityError(f"cannot write {final}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # Makes the new names durable; Windows cannot open a directory, and needs no such step.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
