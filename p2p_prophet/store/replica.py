"""A replica: a directory holding ``replica.db`` and ``resolutions.db``.

``replica.db`` holds the records and the changeset log; ``resolutions.db`` is the
resolution database, a replica of its own with its own uuid, log and merge tickets
(docs/storage.md).  Both share the replica's hybrid logical clock, whose last stamp is
persisted in ``replica.db`` so that it survives restarts and wall clocks that jump back.

A *signed* replica (made with an identity, docs/security.md) also holds
``identity.key`` and ``identity.crt``; its two uuids are derived from the key
(:func:`~p2p_prophet.keys.signing.origins_of`), it chains and seals every changeset of
its own, and integration accepts only chained, sealed changesets into it.  Both files'
``meta`` say ``signed = 1``, so a signed replica whose key has gone missing is refused
rather than silently opened as a plain one.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import uuid as uuidlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from p2p_prophet.clock import HybridClock
from p2p_prophet.errors import (
    AlreadyExists,
    DamagedReplica,
    IdentityError,
    InvalidValue,
    NotAReplica,
    ReplicaNotFound,
)
from p2p_prophet.keys.identity import CERT_FILE, KEY_FILE, Identity
from p2p_prophet.keys.signing import Signer
from p2p_prophet.model import MAX_CREATOR_LENGTH, ChangeSet, Value, check_text, check_uuid
from p2p_prophet.store.database import Database
from p2p_prophet.store.edit import EditBatch

MAIN_FILE = "replica.db"
RESOLUTIONS_FILE = "resolutions.db"
DISCOVERY_SECRET_BYTES = 32
MIN_DISCOVERY_SECRET_BYTES = 16


def default_creator() -> str:
    """Who is editing: ``$P2P_PROPHET_CREATOR``, else ``user@host``."""
    explicit = os.environ.get("P2P_PROPHET_CREATOR")
    if explicit:
        return check_text(explicit, "$P2P_PROPHET_CREATOR", MAX_CREATOR_LENGTH)
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers; any label will do
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Replica:
    """An open replica.  Use :meth:`init` or :meth:`open`, and close it when done."""

    def __init__(
        self, path: Path, main: Database, resolutions: Database, identity: Identity | None = None
    ) -> None:
        self.path = path
        self.main = main
        self.resolutions = resolutions
        self.uuid: str = main.get_meta("replica_uuid")
        self.db_uuid: str = main.get_meta("db_uuid")
        self.resolutions_uuid: str = resolutions.get_meta("replica_uuid")
        # A signed replica's identity and the signer its own changesets are sealed with;
        # both None for a plain replica.
        self.identity: Identity | None = identity
        self.signer: Signer | None = None if identity is None else Signer(identity)
        self._creator: str | None = None
        self.clock = HybridClock(
            last=max(
                main.get_meta("hlc", 0),
                main.max_created(),
                resolutions.get_meta("hlc", 0),
                resolutions.max_created(),
            )
        )

    @property
    def creator(self) -> str:
        """Who this replica's new changesets name as creator; checked when first used,
        so that a bad ``$P2P_PROPHET_CREATOR`` stops writes but not reads."""
        if self._creator is None:
            self._creator = default_creator()
        return self._creator

    @creator.setter
    def creator(self, value: str) -> None:
        self._creator = check_text(value, "creator", MAX_CREATOR_LENGTH)

    @property
    def signed(self) -> bool:
        """Whether this replica signs its changesets and accepts only signed ones."""
        return self.signer is not None

    @property
    def discovery_secret(self) -> bytes | None:
        """A signed replica's discovery secret (docs/security.md, Discovery); None for a
        plain one.  Raises :class:`ProphetError` if the stored value is not bytes: a key
        made from anything else would silently cut this replica's node off from its
        database."""
        secret = self.main.get_meta("discovery_secret")
        if secret is None:
            return None
        if not isinstance(secret, bytes | bytearray | memoryview):
            raise DamagedReplica(
                f"the replica's discovery_secret is a {type(secret).__name__}, not bytes "
                "(the replica is damaged)"
            )
        return bytes(secret)

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: Path,
        db_uuid: str | None = None,
        *,
        replica_uuids: tuple[str, str] | None = None,
        identity: Identity | None = None,
        discovery_secret: bytes | None = None,
        prepare: Callable[[Replica], None] | None = None,
    ) -> Replica:
        """Create a new replica at ``path`` (which must not exist, or be an empty dir).

        With ``db_uuid`` the replica joins that database (as a clone does); without, it
        starts a new database.  ``replica_uuids`` (main, resolutions) are fresh random
        ones unless given: the simulator gives seeded ones so that runs repeat.

        With ``identity`` the replica is *signed*: its uuids are
        :func:`~p2p_prophet.keys.signing.origins_of` the identity's public key (so
        ``replica_uuids`` must not be given), the identity's two files are written into
        it, both databases' ``meta`` say ``signed = 1``, and ``replica.db``'s ``meta``
        holds ``discovery_secret``: the given one (at least 16 bytes, as an invite hands
        it over) or 32 new random bytes.  A plain replica has no discovery secret.

        ``prepare``, if given, is called with the new replica, opened, before it appears
        at ``path`` (for example to write the founder's member record); if it raises, the
        replica is not created.

        The directory is built under a temporary name and renamed into place, so an
        interrupted ``create`` never leaves a half-made replica.
        """
        path = Path(path)
        check_free(path)
        # Meta entries beyond the identity every database gets: (replica.db, resolutions.db).
        main_meta: dict[str, Any] = {}
        resolutions_meta: dict[str, Any] = {}
        if identity is not None:
            if replica_uuids is not None:
                raise InvalidValue(
                    "a signed replica's uuids are derived from its identity; "
                    "give an identity or replica uuids, not both"
                )
            replica_uuids = Signer(identity).origins
            if discovery_secret is None:
                discovery_secret = os.urandom(DISCOVERY_SECRET_BYTES)
            elif (
                not isinstance(discovery_secret, bytes)
                or len(discovery_secret) < MIN_DISCOVERY_SECRET_BYTES
            ):
                raise InvalidValue(
                    f"a discovery secret is at least {MIN_DISCOVERY_SECRET_BYTES} bytes"
                )
            main_meta = {"signed": 1, "discovery_secret": discovery_secret}
            resolutions_meta = {"signed": 1}
        elif discovery_secret is not None:
            raise InvalidValue("a discovery secret belongs to a signed replica: give its identity")
        db_uuid, (replica_uuid, resolutions_uuid) = _new_ids(db_uuid, replica_uuids)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.creating-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for filename, role, ruuid, meta in (
                (MAIN_FILE, "replica", replica_uuid, main_meta),
                # The resolution database is a replica of its own, with its own uuid.
                (RESOLUTIONS_FILE, "resolutions", resolutions_uuid, resolutions_meta),
            ):
                db = Database.open(staging / filename, create=True)
                _stamp(db, role, db_uuid, ruuid, meta).close()
            if identity is not None:
                # In the staging directory, so the replica appears with its key or not at all.
                identity.save(staging)
            if prepare is not None:
                with cls.open(staging) as staged:
                    prepare(staged)
            if path.exists():
                path.rmdir()
            staging.rename(path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls.open(path)

    @classmethod
    def in_memory(
        cls,
        label: Path,
        db_uuid: str | None = None,
        *,
        replica_uuids: tuple[str, str] | None = None,
    ) -> Replica:
        """A new replica held in this process's memory, as :meth:`init` makes one on
        disk (the simulator's many peers, see :meth:`Database.memory`); gone once
        closed.  ``label`` stands for its path in messages."""
        db_uuid, (replica_uuid, resolutions_uuid) = _new_ids(db_uuid, replica_uuids)
        main = _stamp(Database.memory(label / MAIN_FILE), "replica", db_uuid, replica_uuid)
        try:
            resolutions = _stamp(
                Database.memory(label / RESOLUTIONS_FILE), "resolutions", db_uuid, resolutions_uuid
            )
        except BaseException:
            main.close()
            raise
        return cls(label, main, resolutions)

    @classmethod
    def open(cls, path: Path) -> Replica:
        """Open the replica at ``path``.

        Raises :class:`ReplicaNotFound` if there is none, :class:`NotAReplica` if the
        directory holds something else or a damaged replica.
        """
        path = Path(path)
        if not path.exists():
            raise ReplicaNotFound(
                f"no replica at {path}; create one with `p2p-prophet init` "
                "or `p2p-prophet clone SOURCE PATH`"
            )
        if not (path / MAIN_FILE).exists():
            raise NotAReplica(f"{path} is not a p2p_prophet replica (no {MAIN_FILE})")
        main = Database.open(path / MAIN_FILE)
        try:
            resolutions = Database.open(path / RESOLUTIONS_FILE)
        except ReplicaNotFound:
            main.close()
            raise NotAReplica(f"{path} is damaged: {RESOLUTIONS_FILE} is missing") from None
        except BaseException:
            main.close()
            raise
        try:
            for db, role in ((main, "replica"), (resolutions, "resolutions")):
                if db.get_meta("role") != role:
                    raise NotAReplica(f"{db.path} is not a {role} database")
            if resolutions.get_meta("db_uuid") != main.get_meta("db_uuid"):
                raise NotAReplica(f"{path} is damaged: its two databases belong to different ids")
            signed = main.get_meta("signed", 0) == 1
            if (resolutions.get_meta("signed", 0) == 1) != signed:
                raise NotAReplica(
                    f"{path} is damaged: one of its two databases is signed, the other not"
                )
            identity = None
            if signed:
                identity = _load_identity(
                    path, (main.get_meta("replica_uuid"), resolutions.get_meta("replica_uuid"))
                )
        except BaseException:
            main.close()
            resolutions.close()
            raise
        return cls(path, main, resolutions, identity)

    def close(self) -> None:
        self.main.close()
        self.resolutions.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- local edits -------------------------------------------------------------------

    @contextmanager
    def edits(self) -> Iterator[EditBatch]:
        """A batch of local edits committed as one SQLite transaction.

        Each edit in the batch is still its own changeset; the batch only shares the
        commit.  If the block raises, nothing of the batch is written.
        """
        with self.main.transaction():
            self.observe_persisted_clock()
            batch = EditBatch(self.main, self.uuid, self.creator, self.clock, self.signer)
            yield batch
            batch.flush()
            self.main.set_meta("hlc", self.clock.last)

    def observe_persisted_clock(self) -> None:
        """Move the clock past the stamps other processes sharing this replica issued or
        saw (P8).  Every writer calls it first thing inside its write transaction: the
        write lock it holds is the one those processes issue their stamps under, so no
        stamp of this replica's origins can be issued twice or go backwards, however
        many processes (CLI commands, a node, a gateway) share the replica."""
        self.clock.observe(self.main.get_meta("hlc", 0))
        self.clock.observe(self.resolutions.get_meta("hlc", 0))

    def create(self, rtype: str, props: Mapping[str, Value], uuid: str | None = None) -> str:
        """Create one record in its own transaction; return its uuid."""
        with self.edits() as batch:
            return batch.create(rtype, props, uuid)

    def update(self, rtype: str, uuid: str, props: Mapping[str, Value]) -> ChangeSet | None:
        """Update one record in its own transaction (None: nothing changed)."""
        with self.edits() as batch:
            return batch.update(rtype, uuid, props)

    def delete(self, rtype: str, uuid: str) -> ChangeSet:
        """Delete one record in its own transaction."""
        with self.edits() as batch:
            return batch.delete(rtype, uuid)


def _new_ids(
    db_uuid: str | None, replica_uuids: tuple[str, str] | None
) -> tuple[str, tuple[str, str]]:
    """A new replica's database id (given, or a new database) and its two own ids."""
    db_uuid = check_uuid(db_uuid) if db_uuid else str(uuidlib.uuid4())
    if replica_uuids:
        return db_uuid, (check_uuid(replica_uuids[0]), check_uuid(replica_uuids[1]))
    return db_uuid, (str(uuidlib.uuid4()), str(uuidlib.uuid4()))


def _stamp(
    db: Database,
    role: str,
    db_uuid: str,
    replica_uuid: str,
    extra: Mapping[str, Any] | None = None,
) -> Database:
    """Write a new database's identity: its role, the database it belongs to, its own
    uuid, a clock that has issued nothing yet, and ``extra`` meta entries."""
    with db.transaction():
        db.set_meta("role", role)
        db.set_meta("db_uuid", db_uuid)
        db.set_meta("replica_uuid", replica_uuid)
        db.set_meta("hlc", 0)
        for key, value in (extra or {}).items():
            db.set_meta(key, value)
    return db


def _load_identity(path: Path, uuids: tuple[str, str]) -> Identity:
    """A signed replica's identity, which must derive its two uuids.

    Never creates one: a signed replica without its key cannot sign, and a new key would
    derive other origins.  Raises :class:`IdentityError` naming the missing file, or the
    key file that belongs to another replica.
    """
    key_path, cert_path = path / KEY_FILE, path / CERT_FILE
    for file, what in ((key_path, "private key"), (cert_path, "certificate")):
        if not file.exists():
            raise IdentityError(
                f"{file} is missing: {path} is a signed replica and needs its {what} to"
                f" write and to check changesets; restore {file.name} from a backup"
            )
    identity = Identity.load(key_path, cert_path)
    derived = Signer(identity).origins
    if derived != uuids:
        raise IdentityError(
            f"{key_path} does not belong to this replica: that key makes replica"
            f" {derived[0]}, this one is {uuids[0]}; restore this replica's own {KEY_FILE}"
            f" and {CERT_FILE}"
        )
    return identity


def is_replica(path: Path) -> bool:
    return (Path(path) / MAIN_FILE).exists()


__all__ = ["NotAReplica", "Replica", "ReplicaNotFound", "default_creator", "is_replica"]


def check_free(path: Path) -> None:
    """Raise :class:`~p2p_prophet.errors.AlreadyExists` unless ``path`` can take a new
    replica: it is absent, or an empty directory."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise AlreadyExists(f"{path} already exists and is not an empty directory")
