"""The SQLite schema of a replica database, versioned with ``PRAGMA user_version``.

Both files of a replica (``replica.db`` and ``resolutions.db``) use this schema: the
resolution database is a replica of its own (its records are resolutions keyed by conflict
fingerprint), so it has the same log, tickets and state tables.

``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``.  Migrations only ever
move forward and each runs in one transaction, so a crash mid-migration leaves the old
version intact.  A database whose version is newer than ``len(MIGRATIONS)`` was written by
a newer p2p_prophet and is refused rather than misread.

Invariants the rest of the code relies on (docs/storage.md explains them):

* ``changesets.seq`` is the local sequence number: 1, 2, 3… with no gaps, in the order
  changesets became durable here.
* For every origin ``o`` with ``tickets.seq = k``, the rows with ``origin = o`` and a
  non-null ``origin_seq`` are exactly ``origin_seq`` 1..k (P2).  The ticket is written in
  the same transaction as the changesets it covers.
* ``props.value`` is the canonical CBOR of the value, or NULL for a deleted property whose
  stamp must still be remembered (so an older write cannot resurrect it).
* A record is live while ``deleted_hlc`` is NULL.
"""

from __future__ import annotations

SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value            -- no declared type: no affinity, values come back as stored
) WITHOUT ROWID;

CREATE TABLE changesets (
    seq        INTEGER PRIMARY KEY,
    origin     TEXT    NOT NULL,
    origin_seq INTEGER,
    kind       TEXT    NOT NULL CHECK (kind IN ('edit', 'nullification', 'resolution')),
    id         BLOB    NOT NULL,
    created    INTEGER NOT NULL,
    body       BLOB    NOT NULL,
    CHECK ((kind = 'nullification') = (origin_seq IS NULL))
);
-- "origin X's changesets above ticket k" and "have I seen (X, n)?" are index lookups.
CREATE UNIQUE INDEX changesets_by_origin
    ON changesets (origin, origin_seq) WHERE origin_seq IS NOT NULL;

CREATE TABLE records (
    rid            INTEGER PRIMARY KEY,
    type           TEXT    NOT NULL,
    uuid           TEXT    NOT NULL,
    created_hlc    INTEGER NOT NULL,
    created_origin TEXT    NOT NULL,
    deleted_hlc    INTEGER,
    deleted_origin TEXT,
    UNIQUE (type, uuid)
);

CREATE TABLE props (
    rid    INTEGER NOT NULL REFERENCES records (rid),
    name   TEXT    NOT NULL,
    value  BLOB,
    hlc    INTEGER NOT NULL,
    origin TEXT    NOT NULL,
    PRIMARY KEY (rid, name)
) WITHOUT ROWID;

CREATE TABLE tickets (
    origin TEXT    PRIMARY KEY,
    seq    INTEGER NOT NULL CHECK (seq >= 0)
) WITHOUT ROWID;

CREATE TABLE conflicts (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    uuid        TEXT    NOT NULL,
    seq         INTEGER NOT NULL REFERENCES changesets (seq),
    body        BLOB    NOT NULL
);
CREATE INDEX conflicts_by_fingerprint ON conflicts (fingerprint);
CREATE INDEX conflicts_by_record ON conflicts (type, uuid);
"""

MIGRATIONS: tuple[str, ...] = (SCHEMA_V1,)

SCHEMA_VERSION = len(MIGRATIONS)
