"""Forked origins: two changesets under one origin and number, and how an exchange finds them.

An origin numbers its changesets 1, 2, 3...; a replica restored from a backup numbers its
next changeset with a number it had already used and shared before the backup was taken.
Then two replicas can hold *different* changesets as ``alice#2``.  Tickets compare
numbers only, so those two would exchange nothing of ``alice`` and never converge.

Every VECTORS message therefore carries the *heads*: for each origin of its vectors, the
first :data:`~p2p_prophet.wire.messages.HEAD_BYTES` of the id of the last changeset held.
A receiver compares each head ``(origin, t, id)`` with its own changeset ``origin#t``
wherever it holds at least ``t`` of that origin (one index lookup per origin whose
tickets differ, none where they are equal: the cost follows the vector, never the log).
A difference is a :class:`Fork` at ``#t``: the first number known to name two
changesets (the fork may have begun earlier).  Where the receiver holds fewer, the
*sender* can compare, and does, on the receiver's heads; the side that finds a fork the
other could not see adds a :class:`~p2p_prophet.wire.messages.Witness` (its own id at
the other's ticket) to its next VECTORS, so both sides find every fork, and neither
takes the other's word for it: a witness is checked against the receiver's own log.

A fork of this replica's *own* origin means this replica lost changesets it had shared
(its own origin is ahead, or different, on the peer): :class:`RestoredReplica`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from p2p_prophet.clock import utc_minutes
from p2p_prophet.errors import StorageError
from p2p_prophet.store.database import Database
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync.integrate import superseded_ids
from p2p_prophet.wire import Vectors, Witness
from p2p_prophet.wire.messages import HEAD_BYTES

FORKS_META = "forks"  # meta key in replica.db: the forks found, per peer (JSON)
MAX_WITNESSES = 256  # per VECTORS message (wire/limits.py allows as many)
MAX_REMEMBERED = 256  # forks kept for `peers`, all peers together


@dataclass(frozen=True, order=True)
class Fork:
    """Origin ``origin``'s changeset ``#seq`` is not the same changeset on both sides."""

    origin: str
    seq: int
    resolutions: bool = False  # an origin of the resolution databases

    def __str__(self) -> str:
        return f"{self.origin}#{self.seq}"


@dataclass(frozen=True)
class Comparison:
    """What comparing the peer's heads and witnesses with this replica's logs found:
    forks of other origins, and of this replica's own (it was restored from a backup)."""

    forks: tuple[Fork, ...]
    own: tuple[Fork, ...]


def heads_of(*databases: Mapping[str, tuple[int, bytes]]) -> bytes:
    """The heads of vectors (VECTORS item 3), given each database's :func:`held`: for
    each origin, sorted, of ``replica.db`` then of ``resolutions.db``, the first bytes of
    the id of its last changeset."""
    out = bytearray()
    for held_ in databases:
        for origin in sorted(held_):
            out += held_[origin][1][:HEAD_BYTES]
    return bytes(out)


def held(db: Database) -> dict[str, tuple[int, bytes]]:
    """For each origin ``db`` holds changesets of: its ticket and the id at it (one
    query, remembered while the database is unchanged)."""
    return db.remembered("heads", db.heads)


def compare(replica: Replica, theirs: Vectors) -> Comparison:
    """Compare the peer's heads and witnesses with this replica's logs (module doc).

    A fork of an origin this replica has or had (:func:`own_origins`) is its own,
    unless what the peer holds there is a changeset this replica has already re-issued
    (a supersession names it): then the peer has yet to take the supersession, which
    the exchange brings it, and meanwhile it is a fork like any other."""
    own = own_origins(replica)
    gone = {
        id_[:HEAD_BYTES] for db in (replica.main, replica.resolutions) for id_ in superseded_ids(db)
    }
    forks: set[Fork] = set()
    mine: set[Fork] = set()
    their_heads = theirs.head_ids()
    for db, vector, ids, resolutions in (
        (replica.main, theirs.main, their_heads[0], False),
        (replica.resolutions, theirs.resolutions, their_heads[1], True),
    ):
        mine_held = held(db)
        for origin, seq in vector.items():
            fork = _differs(db, mine_held, origin, seq, ids[origin], resolutions)
            if fork is None and origin in own and seq > mine_held.get(origin, (0, b""))[0]:
                fork = Fork(origin, mine_held.get(origin, (0, b""))[0] + 1, resolutions)
            if fork is not None:
                ours = origin in own and ids[origin] not in gone
                (mine if ours else forks).add(fork)
    for w in theirs.witnesses:
        for db, resolutions in ((replica.main, False), (replica.resolutions, True)):
            mine_held = held(db)
            if w.origin in mine_held:
                fork = _differs(db, mine_held, w.origin, w.seq, w.id, resolutions)
                if fork is not None:
                    ours = w.origin in own and w.id not in gone
                    (mine if ours else forks).add(fork)
    return Comparison(tuple(sorted(forks)), tuple(sorted(mine)))


FORMER_ORIGINS = "former_origins"  # meta key, in each database: origins it had (JSON)


def own_origins(replica: Replica) -> set[str]:
    """The origins this replica numbers changesets under, and those it did before a
    recovery moved it to a fresh one (sync/restore.py)."""
    own = {replica.uuid, replica.resolutions_uuid}
    for db in (replica.main, replica.resolutions):
        own.update(former_origins(db))
    return own


def former_origins(db: Database) -> list[str]:
    text = db.get_meta(FORMER_ORIGINS)
    try:
        origins = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [o for o in origins if isinstance(o, str)] if isinstance(origins, list) else []


def _differs(
    db: Database,
    held: Mapping[str, tuple[int, bytes]],
    origin: str,
    seq: int,
    their_id: bytes,
    resolutions: bool,
) -> Fork | None:
    ticket, head = held.get(origin, (0, b""))
    if ticket < seq:
        return None  # not held here: the other side compares
    id_ = head if ticket == seq else db.changeset_id(origin, seq)
    if id_ is not None and id_[:HEAD_BYTES] != their_id:
        return Fork(origin, seq, resolutions)
    return None


def witnesses(replica: Replica, forks: Iterable[Fork]) -> tuple[Witness, ...]:
    """This replica's own ids at the places of ``forks`` (found on the peer's heads), so
    that the peer sees them too."""
    out = []
    for fork in sorted(forks)[:MAX_WITNESSES]:
        db = replica.resolutions if fork.resolutions else replica.main
        id_ = db.changeset_id(fork.origin, fork.seq)
        if id_ is not None:
            out.append(Witness(fork.origin, fork.seq, id_[:HEAD_BYTES]))
    return tuple(out)


def excluding(theirs: Vectors, replica: Replica, forks: Iterable[Fork]) -> Vectors:
    """``theirs`` as if the peer held everything this replica holds of each forked
    origin: planned from it, an exchange moves nothing of those origins."""
    main, resolutions = dict(theirs.main), dict(theirs.resolutions)
    for fork in forks:
        vector, db = (
            (resolutions, replica.resolutions) if fork.resolutions else (main, replica.main)
        )
        vector[fork.origin] = max(vector.get(fork.origin, 0), db.ticket(fork.origin))
    return Vectors(main, resolutions, theirs.heads, theirs.witnesses)


def explain(fork: Fork, where: str) -> str:
    """The one line that says so, naming the origin and the number."""
    which = "resolution " if fork.resolutions else ""
    return (
        f"forked origin: {where} holds another {which}changeset {fork} than this replica "
        f"(origin {fork.origin[:8]} was restored from a backup and numbered new changesets "
        "again); nothing of that origin moves between the two until it is recovered (see "
        "docs/storage.md, Restoring from a backup)"
    )


def remember(replica: Replica, peer: str, name: str, found: Iterable[Fork]) -> None:
    """Keep what an exchange with ``peer`` (its replica uuid; ``name`` for people) found,
    replacing what the last one with it found, for `p2p-prophet peers` and the node's
    status.  Written only when it changes."""
    kept = forks_found(replica)
    entries = [
        {**asdict(f), "peer": peer, "peer_name": name, "found": utc_minutes(time.time())}
        for f in sorted(found)
    ]
    before = [e for e in kept if e["peer"] == peer]
    if [_key(e) for e in before] == [_key(e) for e in entries]:
        return
    # At most MAX_REMEMBERED, the latest kept: a peer names itself, and must not be
    # able to grow this without bound by changing names.
    entries = entries[:MAX_REMEMBERED]
    others = [e for e in kept if e["peer"] != peer]
    others = others[max(0, len(others) + len(entries) - MAX_REMEMBERED) :]
    # A replica read-only here, or full, still exchanges; the note waits for the next.
    with contextlib.suppress(StorageError), replica.main.transaction():
        replica.main.set_meta(FORKS_META, json.dumps(others + entries))


def _key(entry: Mapping[str, object]) -> tuple[object, ...]:
    return (entry["origin"], entry["seq"], entry["resolutions"])


def forks_found(replica: Replica) -> list[dict[str, object]]:
    """The forks the last exchange with each peer found: ``origin``, ``seq``,
    ``resolutions``, ``peer`` (its replica uuid), ``peer_name``, ``found`` (UTC)."""
    text = replica.main.get_meta(FORKS_META)
    if not isinstance(text, str):
        return []
    try:
        entries = json.loads(text)
    except ValueError:
        return []
    return entries if isinstance(entries, list) else []
