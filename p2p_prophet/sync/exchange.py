"""The exchange between two replicas as messages, sans-IO (docs/protocol.md).

These functions give each step of the exchange of the design brief its data: the hello
a node shows, the checks it makes of its peer's, the vectors (with witnesses) it sends,
the batches it streams, and the integration of a batch it receives.  They touch storage
and so block; a transport runs them on the replica's worker thread, one call per batch.
The network node (``net/``) and the simulator (``sim/``) are two such transports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import astuple

from p2p_prophet.store.database import Database, LogRow
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync.integrate import IntegrationError, IntegrationResult, integrate_decoded
from p2p_prophet.sync.plan import DEFAULT_BATCH, DEFAULT_BATCH_BYTES, plan
from p2p_prophet.sync.vector import heads_digest
from p2p_prophet.wire import Batch, Counts, ErrorCode, Hello, ProtocolError, Vectors, Witness


def hello(replica: Replica) -> Hello:
    """What this replica says first: who it is and the digests of its two vectors."""
    return Hello(
        db_uuid=replica.db_uuid,
        replica_uuid=replica.uuid,
        resolutions_uuid=replica.resolutions_uuid,
        main_digest=_digest(replica.main),
        resolutions_digest=_digest(replica.resolutions),
    )


def _digest(db: Database) -> bytes:
    return db.remembered("heads_digest", lambda: heads_digest(db.heads()))


def in_sync(mine: Hello, theirs: Hello) -> bool:
    """Equal digests both ways: the two hold the same changesets, nothing to send."""
    return (mine.main_digest, mine.resolutions_digest) == (
        theirs.main_digest,
        theirs.resolutions_digest,
    )


def check_peer(mine: Hello, theirs: Hello, *, force: bool = False) -> None:
    """Refuse to exchange with this replica itself, or with another database unless
    ``force``.  Raises :class:`ProtocolError` (SAME_REPLICA, WRONG_DATABASE)."""
    if theirs.replica_uuid == mine.replica_uuid:
        raise ProtocolError(
            ErrorCode.SAME_REPLICA, f"the peer is this replica itself ({mine.replica_uuid})"
        )
    if theirs.db_uuid != mine.db_uuid and not force:
        raise ProtocolError(
            ErrorCode.WRONG_DATABASE,
            f"the peer holds database {theirs.db_uuid}, this replica {mine.db_uuid}: "
            "different databases are never synced",
        )


def vectors(replica: Replica, peer: Hello | None) -> Vectors:
    """This replica's vectors, with witnesses about ``peer``'s own two logs."""
    witnesses = []
    if peer is not None:
        for db, origin in (
            (replica.main, peer.replica_uuid),
            (replica.resolutions, peer.resolutions_uuid),
        ):
            held = db.ticket(origin)
            if held:
                id_ = db.changeset_id(origin, held)
                assert id_ is not None  # the prefix invariant: held means logged
                witnesses.append(Witness(origin, held, id_))
    return Vectors(replica.main.tickets(), replica.resolutions.tickets(), tuple(witnesses))


def check_witnesses(replica: Replica, theirs: Vectors) -> None:
    """Check the peer's copies of this replica's own changesets against its logs.

    A peer holding more of them than this replica made, or holding another changeset
    under the same number, means this replica lost changesets it had shared (restored
    from an old backup) and renumbered new ones: peers would skip those as already seen
    and never converge.  Raises :class:`ProtocolError` (LOST_HISTORY).
    """
    own = {
        replica.uuid: replica.main,
        replica.resolutions.get_meta("replica_uuid"): replica.resolutions,
    }
    for w in theirs.witnesses:
        db: Database | None = own.get(w.origin)
        if db is None:
            continue
        made = db.ticket(w.origin)
        if w.seq > made or db.changeset_id(w.origin, w.seq) != w.id:
            raise ProtocolError(
                ErrorCode.LOST_HISTORY,
                f"replica {replica.uuid} has lost changesets it already shared and "
                f"renumbered new ones: its peer holds another #{w.seq} of its changesets "
                f"than it has (it has made {made}). Do not edit it; clone a fresh replica "
                "instead",
            )


def outgoing(
    replica: Replica,
    theirs: Vectors,
    batch_size: int = DEFAULT_BATCH,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> Iterator[tuple[bool, list[LogRow]]]:
    """What a replica with vectors ``theirs`` lacks, as ``(resolution, rows)`` batches:
    resolutions first (P4), then changesets in this replica's log order."""
    for rows in plan(replica.resolutions, theirs.resolutions, batch_size, batch_bytes):
        yield True, rows
    for rows in plan(replica.main, theirs.main, batch_size, batch_bytes):
        yield False, rows


def integrate_batch(replica: Replica, batch: Batch) -> IntegrationResult:
    """Integrate one received batch in one transaction (into the resolution database if
    it holds resolutions).  A batch that breaks the protocol (a gap, a nullification,
    and into a signed replica an unsigned or badly signed changeset or a broken chain)
    raises :class:`ProtocolError` (INVALID_CHANGESET) and writes nothing."""
    try:
        return integrate_decoded(replica, batch.changesets, resolutions=batch.resolution)
    except IntegrationError as exc:
        raise ProtocolError(ErrorCode.INVALID_CHANGESET, str(exc)) from None


def counts(result: IntegrationResult) -> Counts:
    return Counts(**vars(result))


def result_of(c: Counts) -> IntegrationResult:
    return IntegrationResult(*astuple(c))
