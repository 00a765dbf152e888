"""A replica: a directory holding ``replica.db`` and ``resolutions.db``.

``replica.db`` holds the records and the changeset log; ``resolutions.db`` is the
resolution database, a replica of its own with its own uuid, log and merge tickets
(docs/storage.md).  Both share the replica's hybrid logical clock, whose last stamp is
persisted in ``replica.db`` so that it survives restarts and wall clocks that jump back.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from p2p_prophet.clock import HybridClock
from p2p_prophet.errors import NotAReplica, ProphetError, ReplicaNotFound
from p2p_prophet.model import MAX_CREATOR_LENGTH, ChangeSet, Value, check_text, check_uuid
from p2p_prophet.store.database import Database
from p2p_prophet.store.edit import EditBatch

MAIN_FILE = "replica.db"
RESOLUTIONS_FILE = "resolutions.db"


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

    def __init__(self, path: Path, main: Database, resolutions: Database) -> None:
        self.path = path
        self.main = main
        self.resolutions = resolutions
        self.uuid: str = main.get_meta("replica_uuid")
        self.db_uuid: str = main.get_meta("db_uuid")
        self.resolutions_uuid: str = resolutions.get_meta("replica_uuid")
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

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: Path,
        db_uuid: str | None = None,
        *,
        replica_uuids: tuple[str, str] | None = None,
    ) -> Replica:
        """Create a new replica at ``path`` (which must not exist, or be an empty dir).

        With ``db_uuid`` the replica joins that database (as a clone does); without, it
        starts a new database.  ``replica_uuids`` (main, resolutions) are fresh random
        ones unless given: the simulator gives seeded ones so that runs repeat.

        The directory is built under a temporary name and renamed into place, so an
        interrupted ``create`` never leaves a half-made replica.
        """
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ProphetError(f"{path} already exists and is not an empty directory")
        db_uuid, (replica_uuid, resolutions_uuid) = _new_ids(db_uuid, replica_uuids)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.creating-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for filename, role, ruuid in (
                (MAIN_FILE, "replica", replica_uuid),
                # The resolution database is a replica of its own, with its own uuid.
                (RESOLUTIONS_FILE, "resolutions", resolutions_uuid),
            ):
                _stamp(Database.open(staging / filename, create=True), role, db_uuid, ruuid).close()
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
        for db, role in ((main, "replica"), (resolutions, "resolutions")):
            if db.get_meta("role") != role:
                main.close()
                resolutions.close()
                raise NotAReplica(f"{db.path} is not a {role} database")
        if resolutions.get_meta("db_uuid") != main.get_meta("db_uuid"):
            main.close()
            resolutions.close()
            raise NotAReplica(f"{path} is damaged: its two databases belong to different ids")
        return cls(path, main, resolutions)

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
            # Another process may have edited or integrated since we opened: never issue
            # a stamp below one it used or saw.
            self.clock.observe(self.main.get_meta("hlc", 0))
            self.clock.observe(self.resolutions.get_meta("hlc", 0))
            batch = EditBatch(self.main, self.uuid, self.creator, self.clock)
            yield batch
            batch.flush()
            self.main.set_meta("hlc", self.clock.last)

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


def _stamp(db: Database, role: str, db_uuid: str, replica_uuid: str) -> Database:
    """Write a new database's identity: its role, the database it belongs to, its own
    uuid, and a clock that has issued nothing yet."""
    with db.transaction():
        db.set_meta("role", role)
        db.set_meta("db_uuid", db_uuid)
        db.set_meta("replica_uuid", replica_uuid)
        db.set_meta("hlc", 0)
    return db


def is_replica(path: Path) -> bool:
    return (Path(path) / MAIN_FILE).exists()


__all__ = ["NotAReplica", "Replica", "ReplicaNotFound", "default_creator", "is_replica"]
