"""Planning: the changesets a peer lacks, in my log order, in bounded batches.

Cost is O(what is sent), not O(log size): for each origin where my ticket is ahead of the
peer's, the lacking changesets are a contiguous run of origin sequence numbers, found through
the ``(origin, origin_seq)`` index.  By the prefix invariant an origin's changesets sit in my
log in origin_seq order, so each run is already sorted by local seq, and a k-way merge of
the runs yields exactly the lacking changesets in my log order.  Each run is read in chunks,
so memory is bounded by ``origins x chunk``, whatever the log's size.

Nullifications ("before" fix-ups) have no origin_seq, so no run ever contains one: they are
never sent.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from p2p_prophet.store.database import Database, LogRow
from p2p_prophet.sync.vector import Vector, lacking

DEFAULT_BATCH = 1000
DEFAULT_BATCH_BYTES = 4 << 20


def lacking_changesets(db: Database, peer: Vector, chunk: int = DEFAULT_BATCH) -> Iterator[LogRow]:
    """Every changeset in ``db`` that a replica with vector ``peer`` lacks, in log order."""
    runs = [
        db.origin_run(origin, after, chunk) for origin, after in lacking(db.tickets(), peer).items()
    ]
    return heapq.merge(*runs, key=lambda row: row.seq)


def plan(
    db: Database,
    peer: Vector,
    batch_size: int = DEFAULT_BATCH,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> Iterator[list[LogRow]]:
    """:func:`lacking_changesets` cut into batches of at most ``batch_size`` changesets
    and, unless one changeset alone is larger, at most ``batch_bytes`` of bodies and
    seals (what a receiver's batch limit counts)."""
    batch: list[LogRow] = []
    size = 0
    for row in lacking_changesets(db, peer, batch_size):
        row_size = len(row.body) + (0 if row.seal is None else len(row.seal))
        if batch and size + row_size > batch_bytes:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
        if len(batch) >= batch_size:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
