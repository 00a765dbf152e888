"""Checking a replica, as ``git fsck`` checks a repository: ``p2p-prophet check``.

A replica is whole when:

1. SQLite finds both files whole (``PRAGMA integrity_check``);
2. every changeset in each log decodes, and its id is the hash of its body; the row's
   origin, number and kind are the body's;
3. each origin's changesets are its numbers 1, 2, ... k in log order, and its merge
   ticket is k, with no ticket for an origin that has none (the prefix invariant, P2);
   a chained changeset names the id of its origin's previous one; in a signed replica,
   every changeset of its own is chained and sealed, and the seal of each origin's last
   changeset verifies (through the chain it vouches for the ones before it);
4. no stamp is beyond the end of the clock's range, where the clock could not go on.

:func:`check` looks at all of this for both databases and returns what it found wrong.
A replica with problems is marked damaged (:data:`~p2p_prophet.store.database.DAMAGED_FILE`)
so that every command refuses to write to it; one found whole has the mark removed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from p2p_prophet.clock import MAX_HLC, to_datetime, unpack
from p2p_prophet.errors import (
    DamagedReplica,
    MalformedChangeSet,
    NotAReplica,
    ReplicaNotFound,
    SealError,
)
from p2p_prophet.keys.signing import verify_seal
from p2p_prophet.model import ChangeSet, Kind, changeset_id
from p2p_prophet.store.database import DAMAGED_FILE, Database, LogRow, mark_damaged
from p2p_prophet.store.replica import MAIN_FILE, RESOLUTIONS_FILE, Replica

CHUNK = 2000  # log rows read at a time
MAX_PROBLEMS = 50  # per database: a badly damaged file would otherwise list thousands
# Stamps this close to the end of the range leave no room for the clock to go on.
CLOCK_HEADROOM = 1 << 32


@dataclass
class Findings:
    """What :func:`check` found in one database of a replica."""

    name: str
    changesets: int = 0
    origins: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("(more problems not listed)")


@dataclass
class Report:
    databases: list[Findings]

    @property
    def ok(self) -> bool:
        return not any(f.problems for f in self.databases)


def check(path: Path) -> Report:
    """Check the replica at ``path`` (module doc); mark it damaged if anything is wrong,
    and remove the mark if nothing is.  Each database is opened on its own, so that one
    too damaged to open a replica on is still checked as far as it can be read.  Raises
    :class:`ReplicaNotFound` or :class:`NotAReplica` if there is no replica there."""
    path = Path(path)
    if not (path / MAIN_FILE).exists():
        Replica.open(path)  # raises what says there is no replica here
    report = Report(
        [
            _check_database(path / MAIN_FILE, resolutions=False),
            _check_database(path / RESOLUTIONS_FILE, resolutions=True),
        ]
    )
    if report.ok:
        with contextlib.suppress(OSError):
            (path / DAMAGED_FILE).unlink(missing_ok=True)
    else:
        first = next(p for f in report.databases for p in f.problems)
        mark_damaged(path, f"found by `p2p-prophet check`: {first}")
    return report


def _check_database(file: Path, *, resolutions: bool) -> Findings:
    found = Findings(file.name)
    try:
        db = Database.open(file)
    except (DamagedReplica, NotAReplica, ReplicaNotFound) as exc:
        found.add(str(exc))
        return found
    try:
        for line in db.conn.execute("PRAGMA integrity_check").fetchall():
            if line[0] != "ok":
                found.add(f"SQLite: {line[0]}")
        _check_log(db, found, resolutions=resolutions)
    except sqlite3.DatabaseError as exc:
        found.add(f"SQLite cannot read it: {exc}")
    finally:
        db.close()
    return found


def _check_log(db: Database, found: Findings, *, resolutions: bool) -> None:
    own = db.get_meta("replica_uuid")
    signed = db.get_meta("signed", 0) == 1
    last: dict[str, tuple[int, bytes, ChangeSet, bytes | None]] = {}  # origin -> its latest
    for row in _rows(db):
        found.changesets += 1
        where = f"changeset #{row.seq} of the log"
        if changeset_id(row.body) != row.id:
            found.add(f"{where}: its id is not the hash of its body")
            continue
        try:
            cs = ChangeSet.decode(row.body)
        except MalformedChangeSet as exc:
            found.add(f"{where}: its body does not decode ({exc})")
            continue
        if (cs.origin, cs.origin_seq, cs.kind.value) != (row.origin, row.origin_seq, row.kind):
            found.add(
                f"{where}: its row says {row.origin}#{row.origin_seq} ({row.kind}), "
                f"its body {cs.origin}#{cs.origin_seq} ({cs.kind.value})"
            )
            continue
        if cs.created > MAX_HLC - CLOCK_HEADROOM:
            found.add(
                f"{where} ({cs.origin}#{cs.origin_seq}, by {cs.creator}) is stamped at the end "
                f"of the clock's range ({_when(cs.created)}): no later stamp can be issued"
            )
        if cs.kind is Kind.NULLIFICATION:
            continue  # before fix-ups have no number, and never leave the replica
        assert cs.origin_seq is not None
        where = f"changeset {cs.origin}#{cs.origin_seq}"
        previous = last.get(cs.origin)
        expected = 1 if previous is None else previous[0] + 1
        if cs.origin_seq != expected:
            found.add(f"{where}: found where #{expected} should be (a gap or a reordering)")
        if cs.chained and cs.prev != (None if previous is None else previous[1]):
            found.add(f"{where}: its chain does not link to its origin's previous changeset")
        if signed and cs.origin == own and (not cs.chained or row.seal is None):
            found.add(f"{where}: this signed replica's own changeset is not chained and sealed")
        last[cs.origin] = (cs.origin_seq, row.id, cs, row.seal)
    found.origins = len(last)
    tickets = db.tickets()
    for origin in sorted(set(tickets) | set(last)):
        held = last[origin][0] if origin in last else 0
        if tickets.get(origin, 0) != held:
            found.add(
                f"origin {origin}: its merge ticket is {tickets.get(origin, 0)}, but the log "
                f"holds its changesets 1 to {held}"
            )
    if signed:
        for origin, (seq, id_, _, seal) in sorted(last.items()):
            if seal is None:
                continue  # an unsigned origin from before signing: nothing to verify
            try:
                verify_seal(seal, id_, origin, resolutions=resolutions)
            except SealError as exc:
                found.add(f"changeset {origin}#{seq}: {exc}")


def _rows(db: Database) -> Iterator[LogRow]:
    after = 0
    while rows := db.changesets_after(after, CHUNK):
        yield from rows
        after = rows[-1].seq


def _when(hlc: int) -> str:
    try:
        return to_datetime(hlc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"the year {1970 + unpack(hlc)[0] // 31_556_952_000:,}"
