"""Moving changesets between two replicas both opened here (path to path).

This is the exchange of docs/replication.md without a network: resolutions first, then
changesets, each as planned from the receiver's merge tickets and integrated batch by
batch.  The network node runs the same planning and integration over HTTP.

A transfer interrupted at any point keeps every batch already integrated; the next one
starts from the tickets and sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from p2p_prophet.errors import ProphetError
from p2p_prophet.model import ChangeSet
from p2p_prophet.security.identity import Identity
from p2p_prophet.store.database import Database, LogRow
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync.integrate import Incoming, IntegrationResult, integrate_decoded
from p2p_prophet.sync.plan import DEFAULT_BATCH, plan


class DatabaseMismatch(ProphetError):
    """The other replica belongs to another database."""


Progress = Callable[[IntegrationResult], None]


@dataclass
class TransferResult:
    """What one direction of a transfer did: resolution database and records."""

    resolutions: IntegrationResult = field(default_factory=IntegrationResult)
    changesets: IntegrationResult = field(default_factory=IntegrationResult)

    def to_json(self) -> dict[str, dict[str, int]]:
        return {"resolutions": vars(self.resolutions), "changesets": vars(self.changesets)}


def check_compatible(receiver: Replica, sender: Replica, *, force: bool) -> None:
    """Refuse to mix databases unless ``force``; refuse a replica syncing with itself."""
    if receiver.uuid == sender.uuid:
        raise ProphetError(f"{sender.path} is this replica itself ({receiver.uuid})")
    for a, b in ((receiver, sender), (sender, receiver)):
        for a_db, b_db in ((a.main, b.main), (a.resolutions, b.resolutions)):
            if not same_history(a_db, b_db, b_db.get_meta("replica_uuid")):
                # b lost changesets it had already shared (restored from an old backup?)
                # and numbered new ones from its shorter log: peers would skip those
                # as already seen and never converge.
                raise ProphetError(
                    f"{b.path} has lost changesets it already shared and renumbered "
                    f"new ones: {a.path} holds other changesets under the same numbers. "
                    "Do not edit it; clone a fresh replica instead"
                )
    if receiver.db_uuid != sender.db_uuid and not force:
        raise DatabaseMismatch(
            f"{sender.path} holds database {sender.db_uuid}, not {receiver.db_uuid}; "
            "these are different databases. To merge them into one anyway, repeat "
            "with --force (their records then live in both)"
        )


def same_history(holder: Database, origin_db: Database, origin: str) -> bool:
    """Does ``holder``'s copy of ``origin``'s changesets agree with ``origin_db``'s own?

    ``holder`` must not hold more of them than the origin has made, and the last one both
    hold must have the same id on both sides (one index lookup each).
    """
    held, made = holder.ticket(origin), origin_db.ticket(origin)
    if held > made:
        return False
    if held == 0:
        return True
    return holder.changeset_id(origin, held) == origin_db.changeset_id(origin, held)


def transfer(
    receiver: Replica,
    sender: Replica,
    *,
    force: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> TransferResult:
    """Give ``receiver`` everything ``sender`` has that it lacks, resolutions first (P4)."""
    check_compatible(receiver, sender, force=force)
    result = TransferResult()
    for batch in plan(sender.resolutions, receiver.resolutions.tickets(), batch_size):
        done = integrate_decoded(receiver, _incoming(batch), resolutions=True)
        result.resolutions.add(done)
    for batch in plan(sender.main, receiver.main.tickets(), batch_size):
        done = integrate_decoded(receiver, _incoming(batch))
        result.changesets.add(done)
        if progress is not None:
            progress(result.changesets)
    return result


def _incoming(rows: list[LogRow]) -> Iterator[Incoming]:
    # Decoded again, as from a peer: the sender's file is not trusted more than its bytes.
    return ((ChangeSet.decode(row.body), row.body, row.seal) for row in rows)


def clone(
    source: Replica,
    path: Path,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    identity: Identity | None = None,
) -> tuple[Replica, TransferResult]:
    """Create a replica of ``source``'s database at ``path`` and pull everything into it.

    With ``identity`` the new replica is signed (:meth:`Replica.init`), and so takes
    only changesets whose signatures verify; it inherits ``source``'s discovery secret
    if ``source`` has one.  If the pull is interrupted the new replica keeps the whole
    batches it got; ``pull`` from the same source finishes the job.
    """
    secret = source.discovery_secret if identity is not None else None
    replica = Replica.init(path, db_uuid=source.db_uuid, identity=identity, discovery_secret=secret)
    try:
        return replica, transfer(replica, source, batch_size=batch_size, progress=progress)
    except BaseException:
        replica.close()
        raise
