"""One SQLite file of a replica: connection, transactions, and row-level access.

:class:`Database` knows tables and rows, not conflict rules: it stores changesets, tickets,
records and stamped properties and hands them back.  Everything that decides *what* to
write (local edits, integration) lives above it and calls it inside one
:meth:`Database.transaction`.

Threading: a ``Database`` may be used from any one thread at a time (the network node runs
all storage work for a replica in a single worker thread).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from p2p_prophet.errors import DamagedReplica, NotAReplica, ReplicaNotFound, StorageError
from p2p_prophet.model import Record, Stamp, Value, canonical, decode_value, encode_value
from p2p_prophet.store.schema import FILLS_FROM_LOG, MIGRATIONS, SCHEMA_VERSION

# "PrPh": marks a SQLite file as ours, so a stray database is refused, not misread.
APPLICATION_ID = 0x50725068
BUSY_TIMEOUT_MS = 10_000

T = TypeVar("T")


class LogRow(NamedTuple):
    """A changeset as stored in the log, with its seal (None: unsigned)."""

    seq: int
    origin: str
    origin_seq: int | None
    kind: str
    id: bytes
    created: int
    body: bytes
    seal: bytes | None


# The columns of a LogRow, in its order (a database migrated to V3 has ``seal`` last
# anyway, but naming them keeps rows and tuples in step whatever a later migration adds).
_LOG_COLUMNS = "seq, origin, origin_seq, kind, id, created, body, seal"


@dataclass(frozen=True, slots=True)
class RecordRow:
    rid: int
    type: str
    uuid: str
    created: Stamp
    deleted: Stamp | None

    @property
    def live(self) -> bool:
        return self.deleted is None


class StoredProp(NamedTuple):
    value: Value
    stamp: Stamp


SQLITE_MAGIC = b"SQLite format 3\x00"
DAMAGED_FILE = "DAMAGED"  # in the replica directory: found damaged, writes refused


def _connect(path: Path, *, create: bool, read_only: bool = False) -> sqlite3.Connection:
    # Quoted, so that '#' or '?' in a directory name stay part of the path.
    mode = "ro" if read_only else "rwc" if create else "rw"
    uri = f"file:{urllib.parse.quote(str(path))}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        if read_only:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.Error as exc:
        if read_only:
            # A WAL database needs its shared-memory file, which a read-only directory
            # cannot hold: read it as immutable instead (a WAL file left by a process
            # that died is not read, and nothing can be written anyway).
            try:
                return sqlite3.connect(
                    uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error:
                pass
        raise NotAReplica(f"cannot open {path}: {exc}") from None


def _writable(path: Path) -> bool:
    """Whether ``path`` (a database file) and its directory can be written here: a
    read-only file system or missing permissions make a replica read-only."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the database file is damaged (not busy, full or read-only)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text


SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26


def damaged(path: Path, exc: BaseException) -> DamagedReplica:
    """The error for a replica database found damaged; also marks its directory, so
    that every later write is refused until `p2p-prophet check` finds it whole."""
    mark_damaged(path.parent, f"{path.name}: {exc}")
    return DamagedReplica(
        f"{path} is damaged ({exc}): run `p2p-prophet check` to see what is wrong; restore "
        "it from a backup, or clone a fresh replica from a peer (nothing was written)"
    )


def mark_damaged(directory: Path, what: str) -> None:
    """Leave the mark of damage in a replica directory (best effort: it may be read-only)."""
    with contextlib.suppress(OSError):
        (directory / DAMAGED_FILE).write_text(
            f"{datetime.now(UTC).isoformat(timespec='seconds')} {what}\n", encoding="utf-8"
        )


class Database:
    """A replica database file (schema in :mod:`p2p_prophet.store.schema`)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only: bool = False) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._depth = 0
        self.in_memory = False
        self.read_only = read_only  # opened read-only: its file or directory is not writable
        # What `remembered` computed, by name: (the change mark it was computed at, value).
        self._memo: dict[str, tuple[tuple[int, int], Any]] = {}
        # Called on every use; the simulator's handle budget parks the least recently
        # used of thousands of replicas (see park).
        self.on_use: Callable[[Database], None] | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, reopened first if the database was parked."""
        conn = self._conn
        if conn is None:
            conn = self._conn = _connect(self.path, create=False, read_only=self.read_only)
            self._memo.clear()  # a new connection counts its changes from zero
            try:
                self._configure(create=False)
            except BaseException:
                conn.close()
                self._conn = None
                raise
        if self.on_use is not None:
            self.on_use(self)
        return conn

    def park(self) -> bool:
        """Close the connection to free its file handles (the next use reopens it);
        False, doing nothing, while a transaction is open."""
        conn = self._conn
        if conn is None:
            return True
        if self._depth or conn.in_transaction or self.in_memory:
            return False
        conn.close()
        self._conn = None
        return True

    @property
    def parked(self) -> bool:
        return self._conn is None

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> Database:
        """Open (or with ``create``, create) a replica database file.

        Raises :class:`ReplicaNotFound` if it does not exist and ``create`` is false,
        :class:`NotAReplica` if the file is not one of ours or is from a newer version.
        Older schemas are migrated forward.
        """
        if not create and not path.exists():
            raise ReplicaNotFound(f"no replica database at {path}")
        read_only = not create and not _writable(path)
        conn = _connect(path, create=create, read_only=read_only)
        db = cls(conn, path, read_only=read_only)
        try:
            db._configure(create)
        except BaseException:
            conn.close()
            raise
        return db

    @classmethod
    def memory(cls, label: Path) -> Database:
        """A new, empty replica database held in this process's memory, for the
        simulator: the same schema and SQL as a file, but no file handles, so tens of
        thousands fit in one process.  It is gone when closed, so it is never parked;
        ``label`` names it in messages."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db = cls(conn, label)
        db.in_memory = True
        try:
            db._configure(create=True)
        except BaseException:
            conn.close()
            raise
        return db

    def _configure(self, create: bool) -> None:
        c = self.conn
        try:
            c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if _starts_like_sqlite(self.path):
                raise damaged(self.path, exc) from None
            raise NotAReplica(f"{self.path} is not a p2p_prophet database ({exc})") from None
        if create and version == 0 and app_id == 0:
            c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        elif app_id != APPLICATION_ID:
            raise NotAReplica(f"{self.path} is a SQLite database, but not a p2p_prophet one")
        if version > SCHEMA_VERSION:
            raise NotAReplica(
                f"{self.path} has schema version {version}, newer than this p2p_prophet "
                f"understands ({SCHEMA_VERSION}); upgrade p2p_prophet to open it"
            )
        # WAL lets readers (a CLI `show` while a node serves) proceed during writes.
        # synchronous=FULL makes every commit durable before it returns, even across a
        # power cut.  NORMAL would be safe for our own consistency (changesets and their
        # tickets roll back together) but not for our peers': a replica could lose
        # changesets it had already sent, then reuse their origin_seq numbers for new
        # ones, which the peers would skip as already seen.  The price is one fsync per
        # commit: unbatched edits ran 40-80% slower than with NORMAL on our 2-core test
        # machine (bench/local_edits.py), batched edits and pulls unchanged.
        # (An in-memory database keeps its journal in memory whatever is asked.)
        if self.read_only:
            if version < SCHEMA_VERSION:
                raise NotAReplica(
                    f"{self.path} has schema version {version} and must be upgraded to "
                    f"{SCHEMA_VERSION} before this p2p_prophet reads it, but it is read-only here"
                )
            return  # its journal mode is in the file already; nothing here may write
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        for target in range(version, SCHEMA_VERSION):
            self._migrate(target)

    def _migrate(self, from_version: int) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(MIGRATIONS[from_version]):
                self.conn.execute(statement)
            if from_version in FILLS_FROM_LOG:
                from p2p_prophet.store.history import fill_from_log

                fill_from_log(self)
            self.conn.execute(f"PRAGMA user_version = {from_version + 1}")
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise StorageError(
                f"cannot migrate {self.path} to schema {from_version + 1}: {exc}"
            ) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested calls join the outermost one.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a read-then-write inside
        cannot fail half-way on a lock held by another process.  Any exception rolls the
        whole transaction back; SQLite errors are re-raised as :class:`StorageError`
        with a message a person can act on (e.g. a full disk).
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.check_writable()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from None
        self._depth = 1
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(self.path, exc) from None
            raise
        finally:
            self._depth = 0

    def check_writable(self) -> None:
        """Raise :class:`StorageError` if this database may not be written: it is
        read-only here, or its replica was found damaged (:data:`DAMAGED_FILE`)."""
        if self.in_memory:
            return
        if self.read_only:
            raise StorageError(
                f"{self.path}: the replica is read-only here (its file or directory cannot "
                "be written); reading works, writing does not (nothing was written)"
            )
        marker = self.path.parent / DAMAGED_FILE
        if marker.exists():
            what = "see the DAMAGED file"
            with contextlib.suppress(OSError, UnicodeDecodeError):
                what = marker.read_text(encoding="utf-8").strip()[:300]
            raise DamagedReplica(
                f"{self.path.parent} was found damaged ({what}); writes are refused until "
                "`p2p-prophet check` finds it whole (nothing was written)"
            )

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def remembered(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, or what it returned last time under ``name`` if the database
        has not changed since.

        A gossiping node states its digests on every exchange and almost always finds
        them unchanged.  A change is a row this connection wrote (``total_changes``,
        which also counts rows of a transaction later rolled back: a recompute, never a
        stale answer) or a commit by another connection, such as a CLI edit while the
        node serves (``PRAGMA data_version``).  ``compute`` must depend only on the
        database's rows.
        """
        conn = self.conn
        # No other connection can reach a database in memory.
        others = 0 if self.in_memory else conn.execute("PRAGMA data_version").fetchone()[0]
        mark = (conn.total_changes, others)
        kept = self._memo.get(name)
        if kept is not None and kept[0] == mark:
            return kept[1]  # type: ignore[no-any-return]
        value = compute()
        self._memo[name] = (mark, value)
        return value

    # -- meta --------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- the changeset log -------------------------------------------------------------

    def latest_seq(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM changesets").fetchone()[0])

    def insert_changesets(self, rows: Iterable[LogRow]) -> None:
        self.conn.executemany(
            f"INSERT INTO changesets ({_LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )

    def changesets_after(self, seq: int, limit: int) -> list[LogRow]:
        """Up to ``limit`` changesets with local seq greater than ``seq``, in log order."""
        rows = self.conn.execute(
            f"SELECT {_LOG_COLUMNS} FROM changesets WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [LogRow(*r) for r in rows]

    def recent_changesets(self, limit: int) -> list[LogRow]:
        """The newest ``limit`` changesets, newest first."""
        rows = self.conn.execute(
            f"SELECT {_LOG_COLUMNS} FROM changesets ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        return [LogRow(*r) for r in rows]

    def origin_run(self, origin: str, after: int, chunk: int) -> Iterator[LogRow]:
        """``origin``'s changesets with origin_seq above ``after``, in origin_seq order,
        read ``chunk`` rows at a time through the (origin, origin_seq) index."""
        while True:
            rows = self.conn.execute(
                f"SELECT {_LOG_COLUMNS} FROM changesets WHERE origin = ? AND origin_seq > ? "
                "ORDER BY origin_seq LIMIT ?",
                (origin, after, chunk),
            ).fetchall()
            yield from (LogRow(*r) for r in rows)
            if len(rows) < chunk:
                return
            after = rows[-1][2]

    def changeset_id(self, origin: str, origin_seq: int) -> bytes | None:
        """The id of ``origin``'s changeset number ``origin_seq`` here, if held (one
        lookup in the unique ``(origin, origin_seq)`` index)."""
        row = self.conn.execute(
            "SELECT id FROM changesets WHERE origin = ? AND origin_seq = ?", (origin, origin_seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def max_created(self) -> int:
        """The largest HLC stamp in the log (0 if empty)."""
        return int(
            self.conn.execute("SELECT coalesce(max(created), 0) FROM changesets").fetchone()[0]
        )

    # -- merge tickets -----------------------------------------------------------------

    def tickets(self) -> dict[str, int]:
        """The merge-ticket vector: origin -> highest origin_seq integrated."""
        return dict(self.conn.execute("SELECT origin, seq FROM tickets").fetchall())

    def heads(self) -> dict[str, tuple[int, bytes]]:
        """For each origin: its ticket and the id of the changeset at that ticket."""
        # CROSS JOIN keeps tickets as the outer loop: one index lookup per origin, where
        # SQLite's own choice scanned the whole (origin, origin_seq) index.
        rows = self.conn.execute(
            "SELECT t.origin, t.seq, c.id FROM tickets t CROSS JOIN changesets c "
            "ON c.origin = t.origin AND c.origin_seq = t.seq WHERE t.seq > 0"
        ).fetchall()
        return {origin: (seq, bytes(id_)) for origin, seq, id_ in rows}

    def ticket(self, origin: str) -> int:
        row = self.conn.execute("SELECT seq FROM tickets WHERE origin = ?", (origin,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_tickets(self, tickets: Mapping[str, int]) -> None:
        self.conn.executemany(
            "INSERT INTO tickets (origin, seq) VALUES (?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq",
            tickets.items(),
        )

    # -- records and properties --------------------------------------------------------

    def next_rid(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(rid), 0) + 1 FROM records").fetchone()[0])

    def find_record(self, rtype: str, ruuid: str) -> RecordRow | None:
        row = self.conn.execute(
            "SELECT rid, type, uuid, created_hlc, created_origin, deleted_hlc, deleted_origin "
            "FROM records WHERE type = ? AND uuid = ?",
            (rtype, ruuid),
        ).fetchone()
        return None if row is None else _record_row(row)

    def uuids_with_prefix(self, rtype: str, prefix: str, limit: int = 2) -> list[str]:
        """Live record uuids of ``rtype`` starting with ``prefix`` (for short ids)."""
        # A range scan on the (type, uuid) index; uuids are lowercase hex and '-'.
        rows = self.conn.execute(
            "SELECT uuid FROM records WHERE type = ? AND uuid >= ? AND uuid < ? "
            "AND deleted_hlc IS NULL ORDER BY uuid LIMIT ?",
            (rtype, prefix, prefix + "\U0010ffff", limit),
        ).fetchall()
        return [r[0] for r in rows]

    def insert_records(self, rows: Iterable[tuple[int, str, str, int, str]]) -> None:
        """Rows of ``(rid, type, uuid, created_hlc, created_origin)``."""
        self.conn.executemany(
            "INSERT INTO records (rid, type, uuid, created_hlc, created_origin) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )

    def mark_deleted(self, rid: int, stamp: Stamp) -> None:
        self.conn.execute(
            "UPDATE records SET deleted_hlc = ?, deleted_origin = ? WHERE rid = ?",
            (stamp.hlc, stamp.origin, rid),
        )

    def props(self, rid: int) -> dict[str, StoredProp]:
        """Every property of a record that has a stamp, including deleted (null) ones."""
        rows = self.conn.execute(
            "SELECT name, value, hlc, origin FROM props WHERE rid = ?", (rid,)
        ).fetchall()
        return {
            name: StoredProp(None if blob is None else decode_value(blob), Stamp(hlc, origin))
            for name, blob, hlc, origin in rows
        }

    def write_props(self, rows: Iterable[tuple[int, str, Value, Stamp]]) -> None:
        """Insert or overwrite properties: rows of ``(rid, name, value, stamp)``.

        The caller has already decided that each write wins (stamp order, P6).
        """
        self.conn.executemany(
            "INSERT INTO props (rid, name, value, hlc, origin) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (rid, name) DO UPDATE SET "
            "value = excluded.value, hlc = excluded.hlc, origin = excluded.origin",
            (
                (rid, name, None if value is None else encode_value(value), s.hlc, s.origin)
                for rid, name, value, s in rows
            ),
        )

    def insert_new_props(self, rows: Iterable[tuple[int, str, bytes | None, int, str]]) -> None:
        """Insert properties of records created in this transaction: rows of
        ``(rid, name, encoded value or None, hlc, origin)`` (the bulk path of creates)."""
        self.conn.executemany(
            "INSERT INTO props (rid, name, value, hlc, origin) VALUES (?, ?, ?, ?, ?)", rows
        )

    def live_records(
        self, rtype: str | None = None, where: Mapping[str, Value] | None = None
    ) -> Iterator[Record]:
        """Live records in ``(type, uuid)`` order, optionally of one type and with
        properties strictly equal to ``where``'s values (a null value: property absent)."""
        sql = ["SELECT rid, type, uuid FROM records WHERE deleted_hlc IS NULL"]
        args: list[Any] = []
        if rtype is not None:
            sql.append("AND type = ?")
            args.append(rtype)
        for name, value in (where or {}).items():
            if value is None:
                sql.append(
                    "AND NOT EXISTS (SELECT 1 FROM props p WHERE p.rid = records.rid "
                    "AND p.name = ? AND p.value IS NOT NULL)"
                )
                args.append(name)
            else:
                sql.append(
                    "AND EXISTS (SELECT 1 FROM props p WHERE p.rid = records.rid "
                    "AND p.name = ? AND p.value = ?)"
                )
                args.extend((name, encode_value(value)))
        sql.append("ORDER BY type, uuid")
        # A separate cursor per record keeps memory flat for large replicas.
        for rid, t, u in self.conn.execute(" ".join(sql), args):
            yield Record(t, u, self._live_props(rid))

    def removed_records(self, rtype: str) -> Iterator[Record]:
        """Deleted records of one type, in uuid order, with the properties they last had
        (a tombstone keeps them; a record deleted before its creation arrived has none)."""
        rows = self.conn.execute(
            "SELECT rid, type, uuid FROM records WHERE deleted_hlc IS NOT NULL AND type = ? "
            "ORDER BY uuid",
            (rtype,),
        )
        for rid, t, u in rows:
            yield Record(t, u, self._live_props(rid))

    def _live_props(self, rid: int) -> dict[str, Value]:
        rows = self.conn.execute(
            "SELECT name, value FROM props WHERE rid = ? AND value IS NOT NULL ORDER BY name",
            (rid,),
        )
        return {name: decode_value(blob) for name, blob in rows}

    def count_live(self) -> int:
        return int(
            self.conn.execute("SELECT count(*) FROM records WHERE deleted_hlc IS NULL").fetchone()[
                0
            ]
        )

    # -- the writes held, and the conflicts listed from them (store/history.py) -----------

    def insert_record_changes(self, rows: Iterable[tuple[int, int]]) -> None:
        """Record that changeset ``seq`` wrote to record ``rid``: ``(rid, seq)`` rows,
        inside a transaction."""
        self.conn.executemany("INSERT OR IGNORE INTO record_changes (rid, seq) VALUES (?, ?)", rows)

    def changes_of(self, rid: int) -> list[tuple[int, bytes]]:
        """``(seq, body)`` of every changeset that wrote to record ``rid``, in log order."""
        return [
            (seq, bytes(body))
            for seq, body in self.conn.execute(
                "SELECT c.seq, c.body FROM record_changes r CROSS JOIN changesets c "
                "ON c.seq = r.seq WHERE r.rid = ? ORDER BY r.seq",
                (rid,),
            )
        ]

    def writes_at(self, seqs: Collection[int]) -> set[int]:
        """The records written by the changesets logged as ``seqs`` (a scan of
        ``record_changes``: for the rare drop of changesets, store/history.py)."""
        found: set[int] = set()
        for chunk in _chunks(sorted(seqs)):
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT DISTINCT rid FROM record_changes WHERE seq IN ({marks})", chunk
                )
            )
        return found

    def drop_log_rows(self, seqs: Collection[int]) -> None:
        """Delete the changesets logged as ``seqs`` and what they wrote to, inside a
        transaction (the caller rebuilds the records they wrote)."""
        for chunk in _chunks(sorted(seqs)):
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"DELETE FROM record_changes WHERE seq IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM changesets WHERE seq IN ({marks})", chunk)

    def rebuild_record(
        self,
        rid: int,
        props: Mapping[str, tuple[bytes | None, Stamp]],
        created: Stamp | None,
        deleted: Stamp | None,
    ) -> None:
        """Make record ``rid`` exactly ``props`` (encoded values and their stamps),
        created and deleted as given; with ``created`` None, remove the record."""
        self.conn.execute("DELETE FROM props WHERE rid = ?", (rid,))
        if created is None:
            self.conn.execute(
                "DELETE FROM conflicts WHERE (type, uuid) IN "
                "(SELECT type, uuid FROM records WHERE rid = ?)",
                (rid,),
            )
            self.conn.execute("DELETE FROM records WHERE rid = ?", (rid,))
            return
        self.conn.executemany(
            "INSERT INTO props (rid, name, value, hlc, origin) VALUES (?, ?, ?, ?, ?)",
            ((rid, name, value, s.hlc, s.origin) for name, (value, s) in props.items()),
        )
        self.conn.execute(
            "UPDATE records SET created_hlc = ?, created_origin = ?, deleted_hlc = ?, "
            "deleted_origin = ? WHERE rid = ?",
            (
                created.hlc,
                created.origin,
                None if deleted is None else deleted.hlc,
                None if deleted is None else deleted.origin,
                rid,
            ),
        )

    def record_key(self, rid: int) -> tuple[str, str] | None:
        row = self.conn.execute("SELECT type, uuid FROM records WHERE rid = ?", (rid,)).fetchone()
        return None if row is None else (row[0], row[1])

    def set_ticket(self, origin: str, seq: int) -> None:
        """Set one ticket (down, after changesets were dropped); 0 removes it, since a
        vector never holds a zero ticket."""
        if seq > 0:
            self.set_tickets({origin: seq})
        else:
            self.conn.execute("DELETE FROM tickets WHERE origin = ?", (origin,))

    def replace_conflicts(
        self, rtype: str, ruuid: str, rows: Iterable[tuple[str, str, str, int, bytes]]
    ) -> set[str]:
        """Make ``(fingerprint, type, uuid, seq, body)`` rows the conflicts listed for
        one record, inside a transaction; return the fingerprints listed before."""
        before = {
            r[0]
            for r in self.conn.execute(
                "SELECT fingerprint FROM conflicts WHERE type = ? AND uuid = ?", (rtype, ruuid)
            )
        }
        self.conn.execute("DELETE FROM conflicts WHERE type = ? AND uuid = ?", (rtype, ruuid))
        self.conn.executemany(
            "INSERT INTO conflicts (fingerprint, type, uuid, seq, body) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return before

    def conflicts(self) -> list[tuple[str, str, str, int, bytes]]:
        """Every conflict listed: ``(fingerprint, type, uuid, seq, body)``."""
        return self.conn.execute(
            "SELECT fingerprint, type, uuid, seq, body FROM conflicts ORDER BY fingerprint"
        ).fetchall()

    def conflicts_with_prefix(self, prefix: str, limit: int = 2) -> list[tuple[str, str, str]]:
        """``(fingerprint, type, uuid)`` of at most ``limit`` conflicts whose fingerprint
        starts with ``prefix`` (lowercase hex)."""
        return self.conn.execute(
            "SELECT DISTINCT fingerprint, type, uuid FROM conflicts WHERE fingerprint >= ? "
            "AND fingerprint < ? LIMIT ?",
            (prefix, prefix + "g", limit),
        ).fetchall()

    def conflicts_of(self, rtype: str, ruuid: str) -> list[tuple[str, bytes]]:
        """``(fingerprint, body)`` of each conflict met on one record."""
        return self.conn.execute(
            "SELECT DISTINCT fingerprint, body FROM conflicts WHERE type = ? AND uuid = ?",
            (rtype, ruuid),
        ).fetchall()

    def conflict_fingerprints(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT fingerprint FROM conflicts")}

    def resolution_ids(self) -> set[bytes]:
        """The ids of the resolution changesets in the log."""
        return {
            r[0] for r in self.conn.execute("SELECT id FROM changesets WHERE kind = 'resolution'")
        }

    def data_version(self) -> int:
        """SQLite's ``data_version``: it changes when *another* connection commits."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def digest(self) -> str:
        """SHA-256 (hex) of the state: P1's convergence check.

        The hashed bytes are the CBOR sequence of ``[type, uuid, [[name, value], ...]]``
        for every live record in ``(type, uuid)`` order, properties by name, absent
        (null) properties left out.  Stamps, logs and tickets are not state and are not
        hashed, so two replicas holding the same records have the same digest.
        """
        h = hashlib.sha256()
        for record in self.live_records():
            h.update(canonical([record.type, record.uuid, sorted(record.props.items())]))
        return h.hexdigest()


def _chunks(items: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of ``script``, one by one (so that they run in the caller's
    transaction, which ``executescript`` would commit first)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


def _record_row(row: tuple[Any, ...]) -> RecordRow:
    rid, t, u, ch, co, dh, do = row
    return RecordRow(rid, t, u, Stamp(ch, co), None if dh is None else Stamp(dh, do))


def _starts_like_sqlite(path: Path) -> bool:
    """Whether ``path`` begins with SQLite's header: a SQLite file, even if damaged."""
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _storage_error(path: Path, exc: sqlite3.Error) -> StorageError:
    if is_corruption(exc):
        return damaged(path, exc)
    text = str(exc)
    if "disk is full" in text or (isinstance(exc, sqlite3.OperationalError) and "full" in text):
        hint = "the disk is full; free some space and try again"
    elif "readonly" in text or "read-only" in text:
        hint = "the replica is read-only here; check the file permissions"
    elif "locked" in text or "busy" in text:
        hint = "another process holds the replica's write lock; try again when it is done"
    else:
        hint = text
    return StorageError(f"{path}: {hint} (nothing was written)")
