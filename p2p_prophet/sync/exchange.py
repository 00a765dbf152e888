"""The exchange between two replicas, sans-IO: the caller's side and the callee's.

Every step of the exchange of the design brief lives here, once: the HELLO each side
shows, the checks each makes of the other's, the vectors (with witnesses) they trade,
the batches planned from them, the integration of each batch received, the receipt of a
push, and the ``sync`` composition (pull, push, pull again what the peer minted).
:class:`Caller` is the side that starts an operation, :class:`Callee` the side that
answers; neither does I/O beyond the replica's store.

A *remote* (:class:`Remote`) carries the messages between them: another replica opened
here (:mod:`p2p_prophet.sync.local`), a node over HTTP (:class:`p2p_prophet.net.Peer`,
whose server runs a :class:`Callee` per request), or the simulator's in-memory network
(which runs that same client and server).  Every method that touches storage blocks; a
trio transport runs it on the replica's worker thread, one call per batch.

Every refusal, whichever side finds it, is a :class:`~p2p_prophet.errors.Refused` whose
code says why (WRONG_DATABASE, SAME_REPLICA, LOST_HISTORY, INVALID_CHANGESET, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import astuple, dataclass, field
from typing import Protocol

from p2p_prophet.errors import ErrorCode, Refused
from p2p_prophet.store.database import Database, LogRow
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync import forks as forks_
from p2p_prophet.sync.forks import Fork
from p2p_prophet.sync.integrate import IntegrationError, IntegrationResult, integrate_decoded
from p2p_prophet.sync.plan import DEFAULT_BATCH, DEFAULT_BATCH_BYTES, plan
from p2p_prophet.sync.restore import Recovered, Recovery, Restored, restored_message
from p2p_prophet.sync.vector import count_lacking, heads_digest
from p2p_prophet.wire import Batch, Counts, Hello, Receipt, Vectors

log = logging.getLogger(__name__)

AfterIntegrate = Callable[[Replica, Batch], None]
Screen = Callable[[Replica, "str | None", Batch], None]


@dataclass
class TransferResult:
    """What one direction of an exchange did: resolution database and records."""

    resolutions: IntegrationResult = field(default_factory=IntegrationResult)
    changesets: IntegrationResult = field(default_factory=IntegrationResult)
    # Forked origins found (sync/forks.py): nothing of them moved.
    forks: list[Fork] = field(default_factory=list)
    # What a recovery from a restore did (sync/restore.py), for people.
    recovered: list[str] = field(default_factory=list)

    def add(self, other: TransferResult) -> None:
        self.resolutions.add(other.resolutions)
        self.changesets.add(other.changesets)
        self.note_forks(other.forks)

    def note_forks(self, found: Iterable[Fork]) -> None:
        self.forks.extend(f for f in found if f not in self.forks)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "resolutions": vars(self.resolutions),
            "changesets": vars(self.changesets),
        }
        if self.forks:
            out["forks"] = [str(f) for f in self.forks]
        if self.recovered:
            out["recovered"] = self.recovered
        return out


@dataclass
class SyncResult:
    """What a sync did each way."""

    pulled: TransferResult = field(default_factory=TransferResult)
    pushed: TransferResult = field(default_factory=TransferResult)


# -- the steps -----------------------------------------------------------------------------


def hello(replica: Replica) -> Hello:
    """What a replica says first: who it is and the digests of its two vectors."""
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


def check_peer(mine: Hello, theirs: Hello, *, force: bool = False, where: str = "the peer") -> None:
    """Refuse to exchange with this replica itself, or with another database unless
    ``force``.  Raises :class:`Refused` (SAME_REPLICA, WRONG_DATABASE); ``where`` names
    the peer in the message."""
    if theirs.replica_uuid == mine.replica_uuid:
        raise Refused(
            ErrorCode.SAME_REPLICA, f"{where} is this replica itself ({mine.replica_uuid})"
        )
    if theirs.db_uuid != mine.db_uuid and not force:
        raise Refused(
            ErrorCode.WRONG_DATABASE,
            f"{where} holds database {theirs.db_uuid}, this replica {mine.db_uuid}: "
            "different databases are never synced. To merge them into one anyway, pull "
            "with --force (their records then live in both; a node takes changesets of "
            "its own database only)",
        )


def vectors(replica: Replica, witnesses: Iterable[Fork] = ()) -> Vectors:
    """This replica's vectors and heads, with witnesses at the places of ``witnesses``
    (forks found on the peer's heads, for the peer to see too; sync/forks.py)."""
    # Tickets and heads from one read of each database, so that they agree even while
    # another process commits (a ticket paired with a later head would look forked).
    main, resolutions = forks_.held(replica.main), forks_.held(replica.resolutions)
    return Vectors(
        {origin: seq for origin, (seq, _) in main.items()},
        {origin: seq for origin, (seq, _) in resolutions.items()},
        forks_.heads_of(main, resolutions),
        forks_.witnesses(replica, witnesses),
    )


def compare(
    replica: Replica,
    theirs: Vectors,
    *,
    who: str = "this replica",
    where: str = "its peer",
    recover: bool = False,
) -> tuple[Fork, ...]:
    """The forks of other origins between this replica and the peer whose vectors are
    ``theirs`` (``who`` and ``where`` name the two in messages).

    A fork of this replica's *own* origin (the peer holds more of its changesets than it
    made, or another changeset under one of its numbers) means it lost changesets it had
    shared (restored from an old backup) and renumbered new ones: peers would skip those
    as already seen and never converge.  Raises :class:`~p2p_prophet.sync.restore.
    Restored` if ``recover`` and the replica is not signed (the caller then recovers),
    else :class:`Refused` (LOST_HISTORY).
    """
    found = forks_.compare(replica, theirs)
    if found.own:
        fork = found.own[0]
        db = replica.resolutions if fork.resolutions else replica.main
        made = db.ticket(fork.origin)
        message = restored_message(who, where, fork, made, replica.signed)
        if recover and not replica.signed:
            raise Restored(message, found.own, theirs)
        raise Refused(ErrorCode.LOST_HISTORY, message)
    return found.forks


def outgoing(
    replica: Replica,
    theirs: Vectors,
    batch_size: int = DEFAULT_BATCH,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    forks: Iterable[Fork] = (),
) -> Iterator[tuple[bool, list[LogRow]]]:
    """What a replica with vectors ``theirs`` lacks, as ``(resolution, rows)`` batches:
    resolutions first (P4), then changesets in this replica's log order; nothing of an
    origin forked between the two (``forks``)."""
    theirs = forks_.excluding(theirs, replica, forks)
    for rows in plan(replica.resolutions, theirs.resolutions, batch_size, batch_bytes):
        yield True, rows
    for rows in plan(replica.main, theirs.main, batch_size, batch_bytes):
        yield False, rows


def _tickets(replica: Replica) -> Vectors:
    """This replica's vectors alone (to count what a peer lacks)."""
    return Vectors(replica.main.tickets(), replica.resolutions.tickets())


def lacking(mine: Vectors, theirs: Vectors) -> int:
    """How many changesets (and resolutions) the side with ``theirs`` lacks of ``mine``."""
    return count_lacking(mine.main, theirs.main) + count_lacking(
        mine.resolutions, theirs.resolutions
    )


def integrate_batch(replica: Replica, batch: Batch) -> IntegrationResult:
    """Integrate one received batch in one transaction (into the resolution database if
    it holds resolutions).  A batch that breaks the protocol (a gap, a nullification,
    and into a signed replica an unsigned or badly signed changeset or a broken chain)
    raises :class:`Refused` (INVALID_CHANGESET) and writes nothing."""
    try:
        return integrate_decoded(replica, batch.changesets, resolutions=batch.resolution)
    except IntegrationError as exc:
        raise Refused(ErrorCode.INVALID_CHANGESET, str(exc)) from None


def counts(result: IntegrationResult) -> Counts:
    return Counts(**vars(result))


def result_of(c: Counts) -> IntegrationResult:
    return IntegrationResult(*astuple(c))


# -- the two sides -------------------------------------------------------------------------


class Caller:
    """This replica's side of one operation (a pull, a push, or a sync) that it starts
    with the peer ``where`` names (a URL or a path, for messages).

    It remembers what the peer said, so that a sync's push plans from the vectors its
    pull received, and it adds up what moved (:attr:`pulled`, :attr:`pushed`).
    ``force``: take changesets of another database.  ``after_integrate`` runs right
    after each pulled batch is committed (a node makes its TLS trust follow membership
    changes there).
    """

    def __init__(
        self,
        replica: Replica,
        where: str,
        *,
        force: bool = False,
        after_integrate: AfterIntegrate | None = None,
    ) -> None:
        self.replica = replica
        self.where = where
        self.force = force
        self.after_integrate = after_integrate
        self.peer: Hello | None = None  # the peer's last HELLO
        self.their_vectors: Vectors | None = None  # the peer's last vectors, not yet used
        self.settled = False  # the last greeting found both holding the same changesets
        self.pulled = TransferResult()
        self.pushed = TransferResult()
        # Forked origins found with this peer (sync/forks.py), and those found on its
        # heads that it has not been shown yet (witnesses in the next VECTORS).
        self.forks: tuple[Fork, ...] = ()
        self.untold: tuple[Fork, ...] = ()
        self.tell_only = False  # a push that only shows the peer the forks found
        # While this replica recovers from a restore (sync/restore.py), and what that did.
        self.recovery: Recovery | None = None
        self.recovered: list[Recovered] = []

    def hello(self) -> Hello:
        return hello(self.replica)

    def greet(self, theirs: Hello) -> bool:
        """Check the peer's HELLO; True if both hold the same changesets (nothing to
        do).  Raises :class:`Refused` (SAME_REPLICA, WRONG_DATABASE unless ``force``)."""
        mine = self.hello()
        check_peer(mine, theirs, force=self.force, where=self.where)
        self.peer = theirs
        self.settled = in_sync(mine, theirs)
        if self.settled:  # equal heads: no fork between the two
            forks_.remember(self.replica, theirs.replica_uuid, self.where, ())
        return self.settled

    def vectors(self) -> Vectors:
        """This replica's vectors and heads, with witnesses of the forks it found that
        the peer has not been shown (while it recovers, the vectors that ask the peer
        for its lost history)."""
        if self.recovery is not None:
            return self.recovery.vectors()
        return vectors(self.replica, self.untold)

    def take_vectors(self, theirs: Vectors) -> int:
        """Check and keep the peer's vectors; returns how many changesets this replica
        lacks of the peer's (none of a forked origin: those move neither way).  Raises
        :class:`Refused` (LOST_HISTORY), :class:`Restored` (this replica recovers)."""
        if self.recovery is not None:
            return 0
        who = f"this replica ({self.replica.path})"
        self.forks = compare(self.replica, theirs, who=who, where=self.where, recover=True)
        # What the peer's witnesses showed, it knows; what its heads showed, it may not.
        shown = {(w.origin, w.seq) for w in theirs.witnesses}
        self.untold = tuple(f for f in self.forks if (f.origin, f.seq) not in shown)
        for result in (self.pulled, self.pushed):
            result.note_forks(self.forks)
        if self.peer is not None:
            forks_.remember(self.replica, self.peer.replica_uuid, self.where, self.forks)
        for fork in self.forks:
            log.warning("%s", forks_.explain(fork, self.where))
        self.their_vectors = forks_.excluding(theirs, self.replica, self.forks)
        return lacking(self.their_vectors, _tickets(self.replica))

    def integrate(self, batch: Batch) -> IntegrationResult:
        """Integrate one pulled batch (see :func:`integrate_batch`); while recovering,
        keep it for the recovery."""
        if self.recovery is not None:
            self.recovery.take(batch)
            return IntegrationResult()
        result = integrate_batch(self.replica, batch)
        (self.pulled.resolutions if batch.resolution else self.pulled.changesets).add(result)
        if self.after_integrate is not None and result.integrated:
            self.after_integrate(self.replica, batch)
        return result

    def needs_greeting(self) -> bool:
        """Whether a push must greet the peer and ask for its vectors first: not right
        after a pull, which kept them (or found both holding the same)."""
        return not self.settled and self.their_vectors is None

    def plan_push(
        self, batch_size: int = DEFAULT_BATCH
    ) -> tuple[int, Iterator[tuple[bool, list[LogRow]]]] | None:
        """What the peer lacks, from its kept vectors: how many changesets, and their
        batches; None if it lacks nothing and has been shown every fork found (else a
        push of nothing carries the witnesses).  With :attr:`tell_only`, nothing but the
        witnesses.  The vectors are used up, so that a push tried again greets the peer
        again."""
        theirs, self.their_vectors = self.their_vectors, None
        settled, self.settled = self.settled, False
        if settled or theirs is None:
            return None
        total = 0 if self.tell_only else lacking(_tickets(self.replica), theirs)
        if total == 0:
            return (0, iter(())) if self.untold else None
        return total, outgoing(self.replica, theirs, batch_size)

    def take_receipt(self, receipt: Receipt) -> None:
        """Add what the peer says it did with a push (which showed it the forks found)."""
        self.pushed.resolutions.add(result_of(receipt.resolutions))
        self.pushed.changesets.add(result_of(receipt.changesets))
        self.untold = ()


class Callee:
    """This replica's side of one request another replica makes of it.

    ``names``: this replica and the caller as messages name them.
    ``caller``: who calls (a TLS fingerprint, or None), as given to ``screen``, which is
    called with the replica, the caller and each pushed batch before it is integrated
    and raises :class:`Refused` to refuse it (a node screens who may change the
    membership).  ``after_integrate`` runs after each pushed batch is committed.
    """

    def __init__(
        self,
        replica: Replica,
        *,
        caller: str | None = None,
        screen: Screen | None = None,
        after_integrate: AfterIntegrate | None = None,
        names: tuple[str, str] = ("this node's replica", "the caller"),
    ) -> None:
        self.replica = replica
        self.caller = caller
        self.names = names  # this replica and the caller, as messages name them
        self.screen = screen
        self.after_integrate = after_integrate
        self.peer: Hello | None = None
        self.received = TransferResult()
        self.forks: tuple[Fork, ...] = ()  # forked origins found with the caller

    def hello(self) -> Hello:
        return hello(self.replica)

    def answer(self, theirs: Hello, their_vectors: Vectors, force: bool = False) -> Vectors:
        """The caller's HELLO and vectors checked, this replica's vectors to answer them,
        with witnesses of the forks found on the caller's heads (after which
        :meth:`outgoing` plans what the caller lacks).  Raises :class:`Refused`
        (SAME_REPLICA, WRONG_DATABASE unless ``force``, LOST_HISTORY)."""
        check_peer(self.hello(), theirs, force=force, where=self.names[1])
        self.peer = theirs
        self.take_vectors(their_vectors)
        return vectors(self.replica, self.forks)

    def outgoing(
        self, theirs: Vectors, batch_size: int = DEFAULT_BATCH
    ) -> Iterator[tuple[bool, list[LogRow]]]:
        """What the caller lacks, nothing of a forked origin."""
        return outgoing(self.replica, theirs, batch_size, forks=self.forks)

    def take_hello(self, theirs: Hello, *, force: bool = False) -> None:
        """Check a pusher's HELLO.  Raises :class:`Refused` (SAME_REPLICA, and
        WRONG_DATABASE unless ``force``: a node never takes another database's)."""
        mine = self.hello()
        if theirs.db_uuid != mine.db_uuid and not force:
            raise Refused(
                ErrorCode.WRONG_DATABASE,
                f"this replica holds database {mine.db_uuid}, the caller "
                f"{theirs.db_uuid}: a node never takes changesets from another database "
                "(to merge them, its owner pulls with --force)",
            )
        check_peer(mine, theirs, force=force, where=self.names[1])
        self.peer = theirs

    def take_vectors(self, theirs: Vectors) -> None:
        """Compare a caller's heads and witnesses with this replica's logs, and keep and
        say the forks found.  Raises :class:`Refused` (LOST_HISTORY)."""
        self.forks = compare(self.replica, theirs, who=self.names[0], where=self.names[1])
        if self.peer is not None:
            forks_.remember(self.replica, self.peer.replica_uuid, self.names[1], self.forks)
        self.received.note_forks(self.forks)
        for fork in self.forks:
            log.warning("%s", forks_.explain(fork, self.names[1]))

    def integrate(self, batch: Batch) -> IntegrationResult:
        """Screen and integrate one pushed batch (see :func:`integrate_batch`)."""
        if self.screen is not None:
            self.screen(self.replica, self.caller, batch)
        result = integrate_batch(self.replica, batch)
        (self.received.resolutions if batch.resolution else self.received.changesets).add(result)
        if self.after_integrate is not None and result.integrated:
            self.after_integrate(self.replica, batch)
        return result

    def receipt(self) -> Receipt:
        """What this side did with a push, for the caller."""
        return Receipt(counts(self.received.resolutions), counts(self.received.changesets))


# -- the composition -----------------------------------------------------------------------


class Remote(Protocol):
    """Another replica, as a caller reaches it: it carries the :class:`Caller`'s messages
    to the other side's :class:`Callee` and back.  ``where`` names it for people."""

    @property
    def where(self) -> str: ...

    async def pull_into(self, caller: Caller) -> None:
        """Integrate into the caller's replica what the remote has and it lacks."""

    async def push_from(self, caller: Caller) -> None:
        """Give the remote what the caller's replica has and it lacks (from the vectors
        the caller kept, if its pull just got them)."""


async def _pull_into(remote: Remote, caller: Caller) -> None:
    """``remote.pull_into(caller)``; if it finds that the caller was restored from a
    backup, the caller recovers (sync/restore.py) and the pull starts again."""
    try:
        await remote.pull_into(caller)
    except Restored as restored:
        if caller.force:
            raise
        caller.recovery = Recovery(caller.replica, restored.forks, restored.theirs)
        try:
            await remote.pull_into(caller)
            done = caller.recovery.finish()
        finally:
            caller.recovery = None
        caller.recovered.extend(done)
        caller.pulled.recovered.extend(str(r) for r in done)
        for r in done:
            log.warning("%s", r)
        caller.settled, caller.their_vectors = False, None
        await remote.pull_into(caller)


async def pull(remote: Remote, caller: Caller) -> TransferResult:
    """Pull from ``remote``; if that found forks the remote could not see, show them to
    it (a push of nothing but the caller's vectors), so that both sides say so."""
    await _pull_into(remote, caller)
    if caller.untold and not caller.force:
        caller.tell_only = True
        try:
            await remote.push_from(caller)
        finally:
            caller.tell_only = False
    return caller.pulled


async def sync(remote: Remote, caller: Caller) -> SyncResult:
    """Pull from ``remote``, then push to it; afterwards both hold the same changesets.

    The push plans from the vectors the pull received (no second round trip); if the
    remote answered conflicts while taking our changesets, its answers are pulled back
    too, so that both sides end with the very same changesets.
    """
    await _pull_into(remote, caller)
    if caller.settled:  # both held the same already: one HELLO was the whole sync
        caller.settled = False
        return SyncResult(caller.pulled, caller.pushed)
    await remote.push_from(caller)
    if caller.pushed.changesets.resolutions_minted:
        await remote.pull_into(caller)
    return SyncResult(caller.pulled, caller.pushed)
