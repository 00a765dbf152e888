"""Integration: taking a batch of incoming changesets into a replica, in one transaction.

The rules (docs/replication.md explains them at length):

* **Seen or next, nothing else (P2, P3).**  A changeset whose ``origin_seq`` is at or below
  my ticket for its origin is skipped; the next one (``ticket + 1``) is integrated and
  advances the ticket in the same transaction; anything else is a gap and the whole batch
  is refused.  Nullifications are never accepted: they never leave their replica.
* **Every write goes through the stamp order (P6).**  A property takes an incoming value
  only if the write's stamp ``(hlc, origin)`` is larger than the stored one; a delete
  leaves a tombstone that no update undoes.  State is therefore a function of the *set* of
  changesets integrated, whatever their order (P1).
* **"Applies cleanly" decides only the fix-ups (P5).**  When a change's ``old`` differs
  from the current value, the log gets a "before" fix-up (nullification, never sent, no
  origin_seq), then the original changeset unchanged, then an "after" fix-up (resolution,
  sent like any changeset) whose writes carry the winning stamps, so a replica that
  already holds the answer applies nothing twice.
* **The resolver chain.**  Identical changes (the incoming value is already the current
  one) are not conflicts.  Otherwise the resolution database is asked: a fingerprint
  already answered (P7) is reused, which means no resolution is minted; the answer's
  values are never written from the resolution database itself, only by the changesets
  that carry them, so that state stays a function of the changesets integrated.
  Otherwise the policy answers: the larger stamp wins; delete wins over update.
* Conflicts on a deleted or unknown record are recorded (``p2p-prophet conflicts``) but get
  no fix-ups: the tombstone wins in every order on its own, so an after fix-up would carry
  nothing and there is no property value to nullify.
* The clock observes every stamp integrated (P8).  A stamp more than the clock's maximum
  offset ahead of this replica's wall clock refuses the whole batch
  (:class:`ClockSkewError`; p2p_prophet/clock.py, Bounds): one broken or forged clock must
  not drag every replica's clock to the end of its range.

**Signed replicas** (``replica.signed``, docs/security.md "Signed changesets").  Into a
signed replica, every changeset *taken* (not one skipped as already held) must be chained
(format 2) and come with a seal, and:

* its ``prev`` must be the id of its origin's changeset ``origin_seq - 1``: the one taken
  just before it in this batch, or the one in the log (an index lookup); null for
  ``origin_seq`` 1.  A gap, a reordering or a rewritten history breaks the link;
* its origin's signature must cover it.  Only **one seal per origin per batch** is
  verified: that of the origin's last changeset taken in the batch, at the end of the
  batch, before the commit.  Each id covers ``prev``, so that last id vouches for every
  changeset of the origin taken in the batch, back to one already held, whatever other
  origins' changesets lay between them: one Ed25519 verification per origin and batch,
  not per changeset, nor per run (a log that interleaves origins one by one would make
  every changeset a run of its own);
* the seal's public key must derive the changeset's origin
  (:func:`~p2p_prophet.keys.signing.origins_of`, the main or the resolution
  database's origin as the batch is): authorship is checked against the origin's *own*
  key, which the origin names, so no directory of keys and no trust root are needed.

Any failure raises :class:`SignatureError` (an :class:`IntegrationError`) and the whole
batch's transaction rolls back: nothing of it is written, and the clock goes back to where
it was (a refused changeset's stamp, perhaps forged far in the future, must not push
it).  Each taken changeset's seal is stored with it, so the replica can forward it.
Membership is *not* checked here: it is enforced at the transport (only members can
connect, so every relay is a member).
Checking it at integration would need a trust root for the membership records
themselves, and would break resolutions-first ordering and convergence: a removal that
crosses a removed member's earlier changesets would make replicas disagree on which of
them to accept, depending on the order they arrived in.  The seals of the changesets that
are not an origin's last in the batch are stored unverified (their ids are authenticated
through the chain, their seals are not): a member relaying in bad faith could corrupt
them, and a later receiver whose batch ends that origin on such a changeset would then
refuse the batch, a denial of service by a member, which is out of scope.

A plain replica accepts signed and unsigned changesets alike, and stores seals as given
without checking them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields

from p2p_prophet.clock import to_datetime
from p2p_prophet.conflict import Choice, Conflict, ConflictKind, PropConflict
from p2p_prophet.errors import MalformedChangeSet, ProphetError, SealError
from p2p_prophet.keys.signing import verify_seal
from p2p_prophet.model import (
    Change,
    ChangeSet,
    Kind,
    Op,
    PropChange,
    Stamp,
    Value,
    changeset_id,
    same_value,
)
from p2p_prophet.store.appender import LogAppender
from p2p_prophet.store.database import Database, RecordRow
from p2p_prophet.store.history import History
from p2p_prophet.store.history import drop as history_drop
from p2p_prophet.store.new_records import NewRecords
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync import resolutions as resdb

# A supersession (sync/restore.py): the record a restored replica writes first under its
# fresh origin, naming the changesets of its old origin it re-issued.  Integrating one
# drops those changesets here, if held (unsigned replicas only).
SUPERSEDED_TYPE = "_superseded"


class IntegrationError(ProphetError):
    """An incoming batch breaks the protocol (a gap, a nullification); nothing of it
    was written."""


class ClockSkewError(IntegrationError):
    """A changeset's stamp is further ahead of this replica's wall clock than its clock's
    maximum offset allows; nothing of the batch was written."""


class SignatureError(IntegrationError):
    """A signed replica refused a batch: a changeset unsigned, badly sealed, signed by
    another key than its origin's, or not chained to its origin's previous changeset;
    nothing of it was written."""


# What a batch carries: each changeset decoded, its canonical body, and its seal (None:
# unsigned).
Incoming = tuple[ChangeSet, bytes, bytes | None]


@dataclass
class IntegrationResult:
    """What integrating one or more batches did."""

    received: int = 0
    integrated: int = 0
    skipped: int = 0  # already held (P3)
    conflicts: int = 0
    resolutions_minted: int = 0
    resolutions_reused: int = 0

    def add(self, other: IntegrationResult) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def integrate(replica: Replica, bodies: Iterable[bytes]) -> IntegrationResult:
    """Integrate canonical changeset bodies (unsigned: no seals) into ``replica``'s
    records and log, in one transaction.  Raises :class:`MalformedChangeSet` or
    :class:`IntegrationError` (and writes nothing) if any changeset in the batch is bad;
    a signed replica refuses them all (:class:`SignatureError`)."""
    return integrate_decoded(replica, _decoded(bodies))


def integrate_resolutions(replica: Replica, bodies: Iterable[bytes]) -> IntegrationResult:
    """Integrate a batch into ``replica``'s resolution database (plain stamp order: answers
    to conflicts never conflict themselves)."""
    return integrate_decoded(replica, _decoded(bodies), resolutions=True)


def integrate_decoded(
    replica: Replica, batch: Iterable[Incoming], *, resolutions: bool = False
) -> IntegrationResult:
    """Integrate ``(changeset, canonical body, seal)`` triples, already decoded (as the
    wire and path-to-path transfers do), into ``replica`` (with ``resolutions``, into its
    resolution database), in one transaction.  Raises as :func:`integrate` does; into a
    signed replica, every changeset taken must be chained and sealed (module docstring)."""
    if resolutions:
        return _Batch(replica, replica.resolutions, detect_conflicts=False).run(batch)
    return _Batch(replica, replica.main, detect_conflicts=True).run(batch)


def _decoded(bodies: Iterable[bytes]) -> Iterator[Incoming]:
    return ((ChangeSet.decode(body), body, None) for body in bodies)


class _Batch:
    def __init__(self, replica: Replica, db: Database, *, detect_conflicts: bool) -> None:
        self.replica = replica
        self.db = db
        self.detect = detect_conflicts
        self.clock = replica.clock
        self.result = IntegrationResult()
        self.log: LogAppender
        self.tickets: dict[str, int] = {}
        self.new: NewRecords
        self.history: History
        # The records each change of the changeset being taken wrote to (rid, change).
        self.written: list[tuple[int, Change]] = []
        self.supersessions: list[Change] = []
        # The ids supersessions held here name (never taken again), and the origins of
        # this batch whose changesets are skipped from a superseded one on.
        self.superseded: set[bytes] = set()
        self.stopped: set[str] = set()
        self.answers: dict[str, tuple[str, str, resdb.Answer]] = {}
        # Signed replicas only: for each origin, its latest changeset taken in this batch
        # (what its next one must link to, and whose seal is verified at the end), as
        # (changeset, id, seal).
        self.signed = replica.signed
        self.resolutions = db is replica.resolutions  # which of a key's two origins signs
        self.last_taken: dict[str, tuple[ChangeSet, bytes, bytes]] = {}

    def run(self, batch: Iterable[Incoming]) -> IntegrationResult:
        clock_before = self.clock.last
        try:
            return self._run(batch)
        except (IntegrationError, MalformedChangeSet):
            # Refused before anything was committed: the stamps the batch made the clock
            # observe (perhaps forged, far in the future) go with it, as do the stamps
            # issued for its fix-ups, which were never written.
            self.clock.last = clock_before
            raise

    def _run(self, batch: Iterable[Incoming]) -> IntegrationResult:
        with self.db.transaction():
            # Another process sharing the replica may have issued stamps since this one
            # last looked: the fix-ups minted here must come after them (P8).
            self.replica.observe_persisted_clock()
            self.log = LogAppender(self.db, self.db.get_meta("replica_uuid"), self.replica.signer)
            self.tickets = self.db.tickets()
            self.new = NewRecords(self.db)
            self.history = History(self.db)
            if not self.signed:
                self.superseded = superseded_ids(self.db)
            for cs, body, seal in batch:
                self.result.received += 1
                self.take(cs, body, seal)
            # Inside the transaction: a bad seal rolls the whole batch back.
            self.verify_seals()
            self.new.flush()
            self.log.flush()
            self.history.flush()
            for change in self.supersessions:
                self.supersede(change)
            self.db.set_meta("hlc", self.clock.last)
            if self.answers:
                # Answers are committed just before the changesets that raised them: if we
                # die in between, the retried batch finds its answers and mints nothing.
                resdb.record(
                    self.replica, ((fp, t, u, a) for fp, (t, u, a) in self.answers.items())
                )
        return self.result

    # -- one changeset ---------------------------------------------------------------

    def take(self, cs: ChangeSet, body: bytes, seal: bytes | None) -> None:
        if cs.kind is Kind.NULLIFICATION:
            raise IntegrationError(
                f"refused a nullification from {cs.origin}: before fix-ups never leave "
                "their replica"
            )
        assert cs.origin_seq is not None
        have = self.tickets.get(cs.origin, 0)
        if cs.origin_seq <= have:
            self.result.skipped += 1
            return
        if self.superseded and (cs.origin in self.stopped or changeset_id(body) in self.superseded):
            # A restored replica re-issued it (sync/restore.py); what its sender built
            # on it waits for the sender to take the supersession too.
            self.stopped.add(cs.origin)
            self.result.skipped += 1
            return
        if cs.origin_seq != have + 1:
            raise IntegrationError(
                f"changeset {cs.origin}#{cs.origin_seq} arrived before #{have + 1}: "
                "the sender broke the prefix order; nothing of this batch was written"
            )
        if self.signed:
            self.check_chain(cs, changeset_id(body), seal)
        self.tickets[cs.origin] = cs.origin_seq
        self.observe(cs)
        detect = self.detect and cs.kind is Kind.EDIT
        self.written.clear()
        conflicts = [c for c in (self.apply(cs, ch, detect) for ch in cs.changes) if c]
        self.result.integrated += 1
        prop_conflicts = [c for c in conflicts if c.kind is ConflictKind.PROPS]
        if prop_conflicts:
            self.log.append(self.nullification(prop_conflicts))
        seq = self.log.append(cs, body, seal)
        for rid, change in self.written:
            self.history.add(rid, seq, cs, change)
            if change.type == SUPERSEDED_TYPE and change.op is Op.CREATE and not self.signed:
                self.supersessions.append(change)
                found = superseded(change)
                if found is not None:
                    self.superseded.update(found[2])
        if prop_conflicts:
            self.resolve(prop_conflicts)
        self.result.conflicts += len(conflicts)

    def supersede(self, change: Change) -> None:
        """Drop the changesets a supersession names, if this replica holds them from
        its ``from_seq`` on (it took a restored replica's post-restore changesets before
        that replica recovered), so that it can take the lost history they hid.

        Whatever this replica holds of that origin after them was built on them, and is
        dropped too; the restored replica no longer has those (another restore lost
        them), so this replica re-issues their edits under its own origin, each keeping
        its time (:func:`keeping_time`): nothing anyone wrote is lost."""
        found = superseded(change)
        if found is None:
            return
        origin, from_seq, ids = found
        if origin == self.log.own_origin:
            return  # never this replica's own changesets
        held = list(self.db.origin_run(origin, from_seq - 1, 1000))
        if not held or held[0].id != ids[0]:
            return  # another history (the lost one), or nothing of it
        history_drop(self.db, [row.seq for row in held])
        self.db.set_ticket(origin, from_seq - 1)
        named = set(ids)
        for row in held:
            cs = ChangeSet.decode(row.body)
            if row.id in named or cs.kind is not Kind.EDIT:
                continue
            own = self.log.own_origin
            again = ChangeSet(
                origin=own,
                origin_seq=self.db.ticket(own) + 1,
                creator=cs.creator,
                created=self.clock.now(),
                kind=Kind.EDIT,
                changes=keeping_time(cs, own),
            )
            _Batch(self.replica, self.db, detect_conflicts=self.detect).run(
                [(again, again.encode(), None)]
            )

    # -- signatures (signed replicas only) ---------------------------------------------

    def check_chain(self, cs: ChangeSet, id_: bytes, seal: bytes | None) -> None:
        """Refuse ``cs`` (the next of its origin) unless it is chained and sealed and
        links to its origin's previous changeset; it becomes the origin's latest."""
        assert cs.origin_seq is not None
        where = f"changeset {cs.origin}#{cs.origin_seq}"
        if not cs.chained or seal is None:
            raise SignatureError(
                f"{where}: unsigned changeset refused by a signed replica (it is "
                f"{'not chained' if not cs.chained else 'without a seal'}); nothing of "
                "this batch was written"
            )
        previous = self.last_taken.get(cs.origin)
        if cs.origin_seq == 1:
            expected = None
        elif previous is not None:
            expected = previous[1]
        else:
            expected = self.db.changeset_id(cs.origin, cs.origin_seq - 1)
        if cs.prev != expected:
            raise SignatureError(
                f"{where}: its chain does not link to #{cs.origin_seq - 1} (a gap or "
                "reordering, or a rewritten history); nothing of this batch was written"
            )
        self.last_taken[cs.origin] = (cs, id_, seal)

    def verify_seals(self) -> None:
        """Verify, for each origin, the seal of its last changeset taken in this batch:
        through the chain of ids, it vouches for every one taken before it, whatever
        other origins' changesets lay between them."""
        for cs, id_, seal in self.last_taken.values():
            try:
                verify_seal(seal, id_, cs.origin, resolutions=self.resolutions)
            except SealError as exc:
                raise SignatureError(
                    f"changeset {cs.origin}#{cs.origin_seq}: {exc}; nothing of this batch"
                    " was written"
                ) from None

    def observe(self, cs: ChangeSet) -> None:
        """Move the clock past ``cs``'s stamps (P8), refusing any stamp more than the
        clock's maximum offset ahead of this replica's wall clock (clock.py, Bounds)."""
        self.check_offset(cs, cs.created)
        self.clock.observe(cs.created)
        for change in cs.changes:
            for p in change.props:
                if p.stamp is not None:
                    self.check_offset(cs, p.stamp.hlc)
                    self.clock.observe(p.stamp.hlc)

    def check_offset(self, cs: ChangeSet, hlc: int) -> None:
        ahead = self.clock.too_far_ahead(hlc)
        if ahead:
            allowed = self.clock.max_offset_ms / 3_600_000
            raise ClockSkewError(
                f"changeset {cs.origin}#{cs.origin_seq} (by {cs.creator}) is stamped "
                f"{_when(hlc)}, {_duration(ahead + self.clock.max_offset_ms)} ahead of this "
                f"replica's clock, more than the {allowed:g} h allowed (sync.max_clock_offset):"
                " its origin's clock is wrong, or the stamp was forged. It will be taken once"
                " this clock is within that offset of it; nothing of this batch was written"
            )

    # -- applying writes ---------------------------------------------------------------

    def apply(self, cs: ChangeSet, change: Change, detect: bool) -> Conflict[PropConflict] | None:
        stamp = cs.stamp
        row = self.record(change.type, change.uuid)
        if change.op is Op.DELETE:
            return self.apply_delete(change, row, stamp, detect)
        if row is None:
            # Every write keeps its stamp, a null one too (so that an older write
            # arriving later cannot bring the property back).
            rid = self.new.add(
                change.type,
                change.uuid,
                stamp,
                ((p.name, p.new, p.stamp or stamp) for p in change.props),
            )
            self.written.append((rid, change))
            if change.op is Op.CREATE or not detect:
                return None
            self.history.stale(rid, change.type, change.uuid)
            return Conflict(
                change.type,
                change.uuid,
                ConflictKind.MISSING,
                tuple(
                    PropConflict(p.name, p.old, Choice(None, None), Choice(p.new, p.stamp or stamp))
                    for p in change.props
                ),
            )
        current = self.db.props(row.rid)
        conflicting = []
        writes = []
        # Whether the listed conflicts may change (store/history.py): unless every write
        # lands last in its property's stamp order and saw the value before it.  The
        # create of a record met before it was created always may.
        stale = not row.live or change.op is Op.CREATE
        for p in change.props:
            w = p.stamp or stamp
            stored = current.get(p.name)
            value = None if stored is None else stored.value
            later = stored is None or w > stored.stamp
            if later:
                writes.append((row.rid, p.name, p.new, w))
            saw = same_value(p.old, value) or same_value(p.new, value)
            stale = stale or not (later and saw)
            if detect and not saw:
                local = Choice(value, None if stored is None else stored.stamp)
                conflicting.append(PropConflict(p.name, p.old, local, Choice(p.new, w)))
        self.db.write_props(writes)
        self.written.append((row.rid, change))
        if stale and self.detect:  # a resolution's repeat too: it may stand for a write
            self.history.stale(row.rid, change.type, change.uuid)  # superseded since
        if not detect:
            return None
        if not row.live:
            assert row.deleted is not None
            return Conflict(
                change.type,
                change.uuid,
                ConflictKind.DELETE,
                tuple(
                    PropConflict(
                        p.name, p.old, Choice(p.new, p.stamp or stamp), Choice(None, row.deleted)
                    )
                    for p in change.props
                ),
            )
        if conflicting:
            return Conflict(change.type, change.uuid, ConflictKind.PROPS, tuple(conflicting))
        return None

    def apply_delete(
        self, change: Change, row: RecordRow | None, stamp: Stamp, detect: bool
    ) -> Conflict[PropConflict] | None:
        if row is None:
            rid = self.new.add(change.type, change.uuid, stamp, ())
            self.new.flush()
            self.db.mark_deleted(rid, stamp)
            self.written.append((rid, change))
            if not detect:
                return None
            self.history.stale(rid, change.type, change.uuid)
            return Conflict(change.type, change.uuid, ConflictKind.MISSING, ())
        self.written.append((row.rid, change))
        if detect:
            self.history.stale(row.rid, change.type, change.uuid)
        if not row.live:
            # Delete/delete: the same outcome either way; keep the larger tombstone stamp
            # so every replica ends with the same one.
            assert row.deleted is not None
            if stamp > row.deleted:
                self.db.mark_deleted(row.rid, stamp)
            return None
        self.db.mark_deleted(row.rid, stamp)
        if not detect:
            return None
        current = self.db.props(row.rid)
        olds = {p.name: p.old for p in change.props}
        lost = [
            PropConflict(
                name, olds.get(name), Choice(stored.value, stored.stamp), Choice(None, stamp)
            )
            for name, stored in sorted(current.items())
            if not same_value(olds.get(name), stored.value)
        ]
        if not lost:
            return None
        return Conflict(change.type, change.uuid, ConflictKind.DELETE, tuple(lost))

    # -- fix-ups -----------------------------------------------------------------------

    def nullification(self, conflicts: list[Conflict[PropConflict]]) -> ChangeSet:
        """The "before" fix-up: what had to be undone for the incoming change to apply
        cleanly (each conflicted property back to the incoming change's ``old``)."""
        return ChangeSet(
            origin=self.log.own_origin,
            origin_seq=None,
            creator=self.replica.creator,
            created=self.clock.now(),
            kind=Kind.NULLIFICATION,
            changes=tuple(
                Change(
                    c.type,
                    c.uuid,
                    Op.UPDATE,
                    tuple(PropChange(p.name, p.local.value, p.base) for p in c.props),
                )
                for c in conflicts
            ),
        )

    def resolve(self, conflicts: list[Conflict[PropConflict]]) -> None:
        """Answer each conflict: reuse the resolution database's answer if it has one,
        else mint an "after" fix-up carrying the policy's winners and their stamps."""
        minted: list[Change] = []
        for c in conflicts:
            fingerprint = c.fingerprint
            known = resdb.lookup(self.replica.resolutions, fingerprint)
            if known is None and fingerprint in self.answers:
                known = self.answers[fingerprint][2]
            if known is not None:
                # Reuse means: mint nothing.  The answer's values are not written here:
                # state must be a function of the changesets integrated (P1), and every
                # answer is carried by changesets anyway (the policy's is the stamp order
                # of the two edits; a person's is their edit).
                self.result.resolutions_reused += 1
                continue
            answer = {p.name: (p.winner.value, _stamp(p.winner)) for p in c.props}
            self.answers[fingerprint] = (c.type, c.uuid, answer)
            minted.append(
                Change(
                    c.type,
                    c.uuid,
                    Op.UPDATE,
                    tuple(
                        PropChange(p.name, p.incoming.value, p.winner.value, _stamp(p.winner))
                        for p in c.props
                    ),
                )
            )
        if not minted:
            return
        # Numbered (it travels), and in a signed replica chained and sealed by the log.
        resolution = self.log.append_own(
            ChangeSet(
                origin=self.log.own_origin,
                origin_seq=self.log.peek_own_seq(),
                creator=self.replica.creator,
                created=self.clock.now(),
                kind=Kind.RESOLUTION,
                changes=tuple(minted),
            )
        )
        for change in minted:
            row = self.record(change.type, change.uuid)
            assert row is not None  # a props conflict is met on a record held
            self.history.add(row.rid, self.log.last_seq, resolution, change)
        self.result.resolutions_minted += 1

    def record(self, rtype: str, ruuid: str) -> RecordRow | None:
        if (rtype, ruuid) in self.new:
            self.new.flush()
        return self.db.find_record(rtype, ruuid)


def keeping_time(cs: ChangeSet, origin: str) -> tuple[Change, ...]:
    """``cs``'s changes, each write stamped with its first hlc under ``origin`` (the
    five-item form): re-issued, they keep their place in the stamp order."""
    return tuple(
        Change(
            change.type,
            change.uuid,
            change.op,
            tuple(
                PropChange(p.name, p.old, p.new, Stamp((p.stamp or cs.stamp).hlc, origin))
                for p in change.props
            ),
        )
        for change in cs.changes
    )


def superseded(change: Change) -> tuple[str, int, list[bytes]] | None:
    """The origin, first number and ids a supersession record's create names; None if
    it is not well formed (then it is only a record)."""
    return _supersession({p.name: p.new for p in change.props})


def superseded_ids(db: Database) -> set[bytes]:
    """Every changeset id the supersessions ``db`` holds name."""
    ids: set[bytes] = set()
    for record in db.live_records(SUPERSEDED_TYPE):
        found = _supersession(record.props)
        if found is not None:
            ids.update(found[2])
    return ids


def _supersession(props: Mapping[str, Value]) -> tuple[str, int, list[bytes]] | None:
    origin, from_seq, ids = props.get("origin"), props.get("from_seq"), props.get("ids")
    if not (isinstance(origin, str) and type(from_seq) is int and isinstance(ids, str)):
        return None
    try:
        parsed = [bytes.fromhex(h) for h in ids.split(",")] if ids else []
    except ValueError:
        return None
    if from_seq < 1 or not parsed or any(len(i) != 32 for i in parsed):
        return None
    return origin, from_seq, parsed


def _when(hlc: int) -> str:
    try:
        return to_datetime(hlc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{hlc} (beyond any date)"


def _duration(ms: int) -> str:
    hours = ms / 3_600_000
    return f"{hours:,.1f} h" if hours < 48 else f"{hours / 24:,.0f} days"


def _stamp(choice: Choice) -> Stamp:
    assert choice.stamp is not None  # the incoming side always has one, and wins ties
    return choice.stamp
