"""Another replica opened here, as a remote: path-to-path pulls, pushes and syncs.

The exchange of :mod:`p2p_prophet.sync.exchange` without a network: the caller's side
runs on one replica, the callee's on the other, and the messages pass as Python values.
Bodies are decoded again on the receiving side, as from a peer: the sender's file is not
trusted more than its bytes.

A transfer interrupted at any point keeps every batch already integrated; the next one
starts from the tickets and sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from p2p_prophet.keys.identity import Identity
from p2p_prophet.model import ChangeSet
from p2p_prophet.store.database import LogRow
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync.exchange import Callee, Caller, SyncResult, TransferResult, pull, sync
from p2p_prophet.sync.integrate import IntegrationResult
from p2p_prophet.sync.plan import DEFAULT_BATCH
from p2p_prophet.wire import Batch

T = TypeVar("T")
Progress = Callable[[IntegrationResult], None]


class LocalRemote:
    """The replica ``other``, opened in this process, as a :class:`Remote`.

    Unlike a node, it takes changesets of another database when the caller forces it
    (both replicas are the user's own).  ``progress`` is called with the changesets
    integrated so far after each pulled batch.
    """

    def __init__(
        self, other: Replica, *, batch_size: int = DEFAULT_BATCH, progress: Progress | None = None
    ) -> None:
        self.other = other
        self.batch_size = batch_size
        self.progress = progress

    @property
    def where(self) -> str:
        return str(self.other.path)

    def _callee(self, caller: Caller) -> Callee:
        return Callee(self.other, names=(str(self.other.path), str(caller.replica.path)))

    async def pull_into(self, caller: Caller) -> None:
        callee = self._callee(caller)
        if caller.greet(callee.hello()):
            return
        my_vectors = caller.vectors()
        caller.take_vectors(callee.answer(caller.hello(), my_vectors, force=caller.force))
        for resolution, rows in callee.outgoing(my_vectors, self.batch_size):
            caller.integrate(_batch(resolution, rows))
            if self.progress is not None and not resolution:
                self.progress(caller.pulled.changesets)

    async def push_from(self, caller: Caller) -> None:
        callee = self._callee(caller)
        if caller.needs_greeting():
            if caller.greet(callee.hello()):
                return
            caller.take_vectors(callee.answer(caller.hello(), caller.vectors(), force=caller.force))
        planned = caller.plan_push(self.batch_size)
        if planned is None:
            return
        callee.take_hello(caller.hello(), force=caller.force)
        callee.take_vectors(caller.vectors())
        for resolution, rows in planned[1]:
            callee.integrate(_batch(resolution, rows))
        caller.take_receipt(callee.receipt())


def _batch(resolution: bool, rows: list[LogRow]) -> Batch:
    return Batch(resolution, tuple(_incoming(rows)))


def _incoming(rows: list[LogRow]) -> Iterator[tuple[ChangeSet, bytes, bytes | None]]:
    # Decoded again, as from a peer: the sender's file is not trusted more than its bytes.
    return ((ChangeSet.decode(row.body), row.body, row.seal) for row in rows)


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits on anything (a :class:`LocalRemote`'s) to its
    end, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("run_now: the coroutine waited on something; it needs an event loop")


def transfer(
    receiver: Replica,
    sender: Replica,
    *,
    force: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> TransferResult:
    """Give ``receiver`` everything ``sender`` has that it lacks, resolutions first (P4):
    ``receiver`` pulls from ``sender``.  Raises :class:`~p2p_prophet.errors.Refused`
    (WRONG_DATABASE unless ``force``, SAME_REPLICA, LOST_HISTORY, INVALID_CHANGESET)."""
    caller = Caller(receiver, str(sender.path), force=force)
    return run_now(pull(LocalRemote(sender, batch_size=batch_size, progress=progress), caller))


def push(giver: Replica, taker: Replica, *, force: bool = False) -> TransferResult:
    """Give ``taker`` what ``giver`` has that it lacks, as ``giver`` pushing to it (the
    counts are ``taker``'s).  Raises as :func:`transfer` does."""
    caller = Caller(giver, str(taker.path), force=force)
    run_now(LocalRemote(taker).push_from(caller))
    return caller.pushed


def sync_with(replica: Replica, other: Replica, *, force: bool = False) -> SyncResult:
    """Pull from ``other``, then push to it (:func:`p2p_prophet.sync.exchange.sync`)."""
    return run_now(sync(LocalRemote(other), Caller(replica, str(other.path), force=force)))


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
    batches it got; ``pull`` from the same source finishes the job.  Raises
    :class:`~p2p_prophet.errors.AlreadyExists` if ``path`` is not free
    (:meth:`Replica.init`).
    """
    secret = source.discovery_secret if identity is not None else None
    replica = Replica.init(path, db_uuid=source.db_uuid, identity=identity, discovery_secret=secret)
    try:
        return replica, transfer(replica, source, batch_size=batch_size, progress=progress)
    except BaseException:
        replica.close()
        raise
