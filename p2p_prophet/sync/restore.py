"""A replica restored from a backup: how it takes its lost history back and keeps what it
wrote since (docs/storage.md, "Restoring from a backup").

A restored replica numbers its next changesets with numbers it had already used and
shared.  At its first exchange, as the caller, with a peer that holds its lost
changesets (the peer's heads show more of its own origin than it made, or another
changeset under one of its numbers), it recovers, with no command:

1. it asks the peer for every changeset of its forked origin (a pull whose vectors claim
   the peer's tickets for everything else, and nothing of that origin), and finds, by
   comparing ids, the first number where the two histories part: ``from_seq``;
2. in one transaction it moves to a **fresh origin** (a new uuid for that database),
   drops its own changesets from ``from_seq`` on (the ones it made after the restore;
   their writes leave the state, store/history.py ``drop``), takes the peer's (its lost
   history; the fix-ups that mints are numbered under the fresh origin), and re-issues
   there, in their order, every edit it dropped: the same changes, by the same creator,
   each write keeping its time (:func:`~p2p_prophet.sync.integrate.keeping_time`),
   after a first changeset that records the **supersession** (a record of type
   :data:`SUPERSEDED_TYPE`: the origin, ``from_seq`` and the ids of the dropped
   changesets);
3. the pull it was doing goes on as usual.

Every other replica that integrates the supersession drops the changesets it names, if
it holds them (a replica that took the post-restore changesets before the recovery), so
that it can take the lost history too.  The re-issued writes keep their time: they win
or lose against every other write as the dropped ones did (nothing written is lost; a
write both made is a conflict, listed and answered like any).

A *signed* replica's origin is its key, and a fresh origin would be a new member: it is
not moved automatically; the exchange refuses with ``lost-history`` and says what to do.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import dataclass, field

from p2p_prophet.errors import ErrorCode, Refused
from p2p_prophet.model import (
    Change,
    ChangeSet,
    Kind,
    Op,
    PropChange,
    Value,
    changeset_id,
)
from p2p_prophet.store import history
from p2p_prophet.store.database import Database
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync.forks import FORMER_ORIGINS, Fork, former_origins
from p2p_prophet.sync.integrate import (
    SUPERSEDED_TYPE,
    Incoming,
    integrate_decoded,
    keeping_time,
    superseded_ids,
)
from p2p_prophet.wire import Batch, Vectors


class Restored(Refused):
    """This replica lost changesets it had shared (restored from a backup); the caller
    of the exchange recovers (:class:`Recovery`) and goes on."""

    def __init__(self, message: str, forks: tuple[Fork, ...], theirs: Vectors) -> None:
        super().__init__(ErrorCode.LOST_HISTORY, message)
        self.forks = forks
        self.theirs = theirs


@dataclass
class Recovered:
    """What a recovery did, per database whose origin had forked."""

    origin: str  # the origin this replica had
    fresh: str  # the origin it has now (the same if it had written nothing since)
    from_seq: int  # the first number where its history and the peer's part
    taken: int  # changesets of its lost history taken back
    reissued: int  # changesets it had written since, re-issued under ``fresh``
    resolutions: bool = False

    def __str__(self) -> str:
        which = "resolution database" if self.resolutions else "replica"
        moved = (
            f"; the {self.reissued} changesets written since are re-issued as {self.fresh}"
            if self.reissued
            else ""
        )
        return (
            f"this {which} was restored from a backup: it took back {self.taken} lost "
            f"changesets of its origin {self.origin} from #{self.from_seq}{moved}"
        )


@dataclass
class _Fork:
    fork: Fork
    db: Database
    made: int  # this replica's ticket for its own origin
    from_seq: int | None = None  # where the peer's history parts from this one's
    theirs: list[Incoming] = field(default_factory=list)
    # The peer's history holds a changeset this replica already re-issued: not taken.
    cancelled: bool = False


class Recovery:
    """Recovering from ``forks`` of this replica's own origins, with the peer whose
    vectors are ``theirs``: :meth:`vectors` to ask it, :meth:`take` each batch it sends,
    then :meth:`finish`."""

    def __init__(self, replica: Replica, forks: tuple[Fork, ...], theirs: Vectors) -> None:
        self.replica = replica
        self.theirs = theirs
        self.gone = superseded_ids(replica.main) | superseded_ids(replica.resolutions)
        self.forks = {
            (f.resolutions, f.origin): _Fork(f, db, db.ticket(f.origin))
            for f in forks
            for db in [replica.resolutions if f.resolutions else replica.main]
        }

    def vectors(self) -> Vectors:
        """The peer's own vectors and heads, less the forked origins: so that it sends
        every changeset of those, and nothing else."""
        main, resolutions = dict(self.theirs.main), dict(self.theirs.resolutions)
        for resolutions_db, origin in self.forks:
            (resolutions if resolutions_db else main).pop(origin, None)
        ids = self.theirs.head_ids()
        heads = b"".join(ids[0][o] for o in sorted(main)) + b"".join(
            ids[1][o] for o in sorted(resolutions)
        )
        return Vectors(main, resolutions, heads)

    def take(self, batch: Batch) -> None:
        """Keep, of a batch of the peer's, its changesets of a forked origin from the
        first that differs from this replica's."""
        for cs, body, seal in batch.changesets:
            fork = self.forks.get((batch.resolution, cs.origin))
            if fork is None or cs.origin_seq is None:
                continue
            if fork.from_seq is None:
                if cs.origin_seq <= fork.made and fork.db.changeset_id(
                    cs.origin, cs.origin_seq
                ) == changeset_id(body):
                    continue  # the same changeset on both sides
                fork.from_seq = cs.origin_seq
            if changeset_id(body) in self.gone:
                fork.cancelled = True
            fork.theirs.append((cs, body, seal))

    def finish(self) -> list[Recovered]:
        """Drop this replica's changesets after the parting, take the peer's, move to a
        fresh origin and re-issue what was dropped there (module doc), each database in
        one transaction.  Returns what was done."""
        return [
            self._finish(fork)
            for fork in sorted(self.forks.values(), key=lambda f: not f.fork.resolutions)
            if not fork.cancelled
        ]

    def _finish(self, fork: _Fork) -> Recovered:
        db, origin = fork.db, fork.fork.origin
        resolutions = fork.fork.resolutions
        from_seq = fork.from_seq if fork.from_seq is not None else fork.made + 1
        with db.transaction():
            mine = list(db.origin_run(origin, from_seq - 1, 1000))
            dropped = [ChangeSet.decode(row.body) for row in mine]
            fresh = current = db.get_meta("replica_uuid")
            if (dropped or fork.theirs) and origin == current:
                # Its own origin now names the lost history: number anew elsewhere,
                # before taking it back (the fix-ups that takes are numbered too).
                fresh = str(uuidlib.uuid4())
                db.set_meta("replica_uuid", fresh)
                db.set_meta(FORMER_ORIGINS, json.dumps([*former_origins(db), origin]))
            history.drop(db, [row.seq for row in mine])
            db.set_ticket(origin, from_seq - 1)
            if fork.theirs:
                integrate_decoded(self.replica, fork.theirs, resolutions=resolutions)
            if dropped:
                ids = [row.id for row in mine]
                self._reissue(db, fresh, origin, from_seq, ids, dropped)
        # Only once committed: a rollback leaves this replica as it was.
        if resolutions:
            self.replica.resolutions_uuid = fresh
        else:
            self.replica.uuid = fresh
        return Recovered(origin, fresh, from_seq, len(fork.theirs), len(dropped), resolutions)

    def _reissue(
        self,
        db: Database,
        fresh: str,
        origin: str,
        from_seq: int,
        ids: list[bytes],
        dropped: list[ChangeSet],
    ) -> None:
        """Write the supersession, then each dropped edit again, under ``fresh``: one
        by one, integrated like changesets from elsewhere (so that a clash with the lost
        history is a conflict, with its fix-ups, which take numbers of ``fresh`` too).
        Dropped resolutions are not re-issued: fix-ups are minted again where needed.

        Each re-issued edit keeps its time (:func:`keeping_time`): its writes win or
        lose against every other write exactly as the dropped ones did, so a write
        another replica made after seeing one of them still wins over it."""
        resolutions = db is self.replica.resolutions
        notice = Change(
            SUPERSEDED_TYPE,
            str(uuidlib.uuid4()),
            Op.CREATE,
            tuple(
                PropChange(name, None, value)
                for name, value in sorted(supersession(origin, from_seq, ids).items())
            ),
        )
        edits = [(self.replica.creator, (notice,))] + [
            (cs.creator, keeping_time(cs, fresh)) for cs in dropped if cs.kind is Kind.EDIT
        ]
        for creator, changes in edits:
            cs = ChangeSet(
                origin=fresh,
                origin_seq=db.ticket(fresh) + 1,
                creator=creator,
                created=self.replica.clock.now(),
                kind=Kind.EDIT,
                changes=changes,
            )
            integrate_decoded(self.replica, [(cs, cs.encode(), None)], resolutions=resolutions)


def supersession(origin: str, from_seq: int, ids: list[bytes]) -> dict[str, Value]:
    """The properties of a supersession record (read back by
    :func:`p2p_prophet.sync.integrate.superseded`)."""
    return {
        "origin": origin,
        "from_seq": from_seq,
        "ids": ",".join(id_.hex() for id_ in ids),
    }


def restored_message(who: str, where: str, fork: Fork, made: int, signed: bool) -> str:
    """The refusal a restored replica's peer gets, or a signed replica itself."""
    if signed:
        what = (
            "A signed replica's origin is its key, so it is not moved by itself: clone a "
            "fresh replica from a member (`p2p-prophet clone`), then re-enter what this "
            "one wrote since the backup (`p2p-prophet log` shows it)"
        )
    else:
        what = (
            "It recovers by itself at its next pull or sync from a replica that holds "
            "them (docs/storage.md, Restoring from a backup)"
        )
    return (
        f"{who} has lost changesets it already shared and renumbered new ones: {where} "
        f"holds another #{fork.seq} of its changesets than it has (it has made {made}). " + what
    )
