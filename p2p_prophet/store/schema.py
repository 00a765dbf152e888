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

# Version 2: the state a gateway keeps for each foreign replica (P9), keyed by that
# foreign replica's own uuid and never mixed into ``tickets``.  Local to this replica:
# nothing here is ever sent to a peer.  The tables exist in both files of a replica (one
# schema for both); only ``replica.db``'s are used.  See p2p_prophet/store/foreign_state.py.
SCHEMA_V2 = """
CREATE TABLE foreign_replicas (
    uuid      TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,   -- 'taskwarrior' | 'fossil'
    location  TEXT NOT NULL    -- where it was last reached (a path)
) WITHOUT ROWID;

-- What the foreign replica has been given of this replica's log: origin -> origin_seq.
CREATE TABLE foreign_tickets (
    foreign_uuid TEXT    NOT NULL REFERENCES foreign_replicas (uuid),
    origin       TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 0),
    PRIMARY KEY (foreign_uuid, origin)
) WITHOUT ROWID;

-- One row per foreign item: which record it is, the version of it last synced (a hash
-- of its fields; when a push wrote that version, ``pushed`` says so: a later pull sees
-- the same version and knows the change was ours), and its fields as record
-- properties at that version (what a pull compares against to find real changes).
CREATE TABLE foreign_items (
    foreign_uuid TEXT    NOT NULL REFERENCES foreign_replicas (uuid),
    foreign_id   TEXT    NOT NULL,
    record_type  TEXT    NOT NULL,
    record_uuid  TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    seen         BLOB    NOT NULL,   -- canonical CBOR map of the properties
    pushed       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (foreign_uuid, foreign_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX foreign_items_by_record
    ON foreign_items (foreign_uuid, record_type, record_uuid);
"""

# Version 3: each changeset's seal (docs/security.md, Signed changesets): the 96 bytes of
# its origin's public key and signature over its id, as received or as made here; null
# for an unsigned changeset and for every nullification.  Kept so that a replica can
# forward signed changesets to signed peers, who check them again.
SCHEMA_V3 = """
ALTER TABLE changesets ADD COLUMN seal BLOB;
"""

# Version 4: which changesets wrote to each record (docs/storage.md, "record_changes"),
# from which the conflict list is kept as a function of the set of changesets held
# (p2p_prophet/conflict.py): one row per record a changeset wrote to, never for a
# nullification.  The conflicts met so far are dropped: store/history.py fills both
# tables from the log (``FILLS_FROM_LOG``), in the same transaction.
SCHEMA_V4 = """
CREATE TABLE record_changes (
    rid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (rid, seq)
) WITHOUT ROWID;
DELETE FROM conflicts;
"""

MIGRATIONS: tuple[str, ...] = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4)

# The migrations after which the writes and the conflict list are filled from the log.
FILLS_FROM_LOG = frozenset({3})

SCHEMA_VERSION = len(MIGRATIONS)
