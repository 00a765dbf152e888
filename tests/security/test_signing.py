"""Signed changesets with per-origin chains (docs/security.md, Signed changesets).

Every replica here is real SQLite files under tmp_path; identities are the session's
(``alice``, ``bob``, ``carol``, ``dave``, ``mallory`` in conftest.py), one replica each per
test, since a signed replica's uuids are derived from its key.  Forged and tampered
batches are built from real logs and handed to the same integration the wire and the
path-to-path transfers use; every refusal is checked to have written nothing.
"""

from __future__ import annotations

import importlib
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p_prophet.clock import pack, wall_ms
from p2p_prophet.errors import (
    IdentityError,
    MalformedChangeSet,
    ProphetError,
    Refused,
    SealError,
)
from p2p_prophet.keys.signing import SEAL_BYTES, SEAL_CONTEXT
from p2p_prophet.model import (
    INT_MAX,
    Change,
    ChangeSet,
    Kind,
    Op,
    PropChange,
    canonical,
    changeset_id,
)
from p2p_prophet.security import Identity, Signer, origins_of, verify_seal
from p2p_prophet.store import Replica
from p2p_prophet.store import edit as edit_module
from p2p_prophet.store.database import APPLICATION_ID
from p2p_prophet.store.schema import MIGRATIONS, SCHEMA_VERSION
from p2p_prophet.sync import clone, exchange, transfer
from p2p_prophet.sync.human import resolve_conflict
from p2p_prophet.sync.integrate import (
    Incoming,
    IntegrationError,
    SignatureError,
    integrate_decoded,
)
from p2p_prophet.wire import (
    Batch,
    Changeset,
    ErrorCode,
    FrameDecoder,
    ProtocolError,
    TransferReader,
    decode,
    encode,
    encode_batch,
    encode_end,
)
from p2p_prophet.wire.messages import encode_changeset

# The module, not the function of the same name that p2p_prophet.sync exports.
integrate_module = importlib.import_module("p2p_prophet.sync.integrate")

ALL = 10**9
TICKET = "00000000-0000-4000-8000-00000000000a"

Opener = Callable[..., Replica]


@pytest.fixture
def open_replica(tmp_path: Path) -> Iterator[Opener]:
    """``open_replica("alice", identity, db_uuid=...)``: a replica under tmp_path (signed
    if given an identity), closed after the test."""
    opened: list[Replica] = []

    def make(name: str, identity: Identity | None = None, db_uuid: str | None = None) -> Replica:
        replica = Replica.init(tmp_path / name, db_uuid=db_uuid, identity=identity)
        opened.append(replica)
        return replica

    yield make
    for replica in opened:
        replica.close()


def edits(replica: Replica, n: int, prefix: str = "t") -> list[str]:
    """``n`` creates in one batch; their uuids."""
    with replica.edits() as batch:
        return [batch.create("ticket", {"summary": f"{prefix} {i}"}) for i in range(n)]


def log(
    replica: Replica, *, resolutions: bool = False, origin: str | None = None
) -> list[Incoming]:
    """The numbered changesets of one log as a batch would carry them, in log order."""
    db = replica.resolutions if resolutions else replica.main
    return [
        (ChangeSet.decode(row.body), row.body, row.seal)
        for row in db.changesets_after(0, ALL)
        if row.origin_seq is not None and (origin is None or row.origin == origin)
    ]


def assert_chained_and_sealed(replica: Replica) -> int:
    """Walk both logs: every numbered changeset chained to its origin's previous one and
    sealed by its origin's key; nullifications neither.  Returns how many were checked."""
    checked = 0
    for db, resolutions in ((replica.main, False), (replica.resolutions, True)):
        last: dict[str, tuple[int, bytes]] = {}
        for row in db.changesets_after(0, ALL):
            cs = ChangeSet.decode(row.body)
            if cs.kind is Kind.NULLIFICATION:
                assert not cs.chained and cs.prev is None and row.seal is None
                continue
            assert cs.chained and row.seal is not None
            assert cs.origin_seq is not None
            if cs.origin_seq == 1:
                assert cs.prev is None
            else:
                assert last[cs.origin] == (cs.origin_seq - 1, cs.prev)
            verify_seal(row.seal, row.id, cs.origin, resolutions)
            last[cs.origin] = (cs.origin_seq, row.id)
            checked += 1
    return checked


def state(replica: Replica) -> tuple[Any, ...]:
    """Everything a refused batch must leave as it was."""
    return (
        replica.main.digest(),
        replica.main.latest_seq(),
        replica.main.tickets(),
        replica.resolutions.latest_seq(),
        replica.resolutions.tickets(),
        replica.main.conn.execute("SELECT count(*) FROM conflicts").fetchone()[0],
    )


def sealed(cs: ChangeSet, signer: Signer) -> Incoming:
    body = cs.encode()
    return cs, body, signer.seal(changeset_id(body))


def unsealed(cs: ChangeSet, seal: bytes | None) -> Incoming:
    """``cs`` re-encoded (changed by the caller), keeping a seal made for something else."""
    return cs, cs.encode(), seal


def tampered(cs: ChangeSet) -> ChangeSet:
    """``cs`` with its first property's new value flipped."""
    change = cs.changes[0]
    first = replace(change.props[0], new="tampered")
    return replace(cs, changes=(replace(change, props=(first, *change.props[1:])),))


# -- identity-derived origins and opening ------------------------------------------------


def test_a_signed_replicas_uuids_derive_from_its_key(
    open_replica: Opener, tmp_path: Path, alice: Identity
) -> None:
    replica = open_replica("alice", alice)
    signer = Signer(alice)
    assert (replica.uuid, replica.resolutions_uuid) == origins_of(signer.public_key)
    assert replica.signed and replica.identity == alice
    assert replica.signer is not None and replica.signer.public_key == signer.public_key
    assert replica.main.get_meta("signed") == replica.resolutions.get_meta("signed") == 1
    secret = replica.discovery_secret
    assert secret is not None and len(secret) == 32
    key = tmp_path / "alice" / "identity.key"
    assert (tmp_path / "alice" / "identity.crt").exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    replica.close()
    with Replica.open(tmp_path / "alice") as again:
        assert again.signed and again.identity == alice
        assert again.discovery_secret == secret


def test_a_plain_replica_stays_plain(open_replica: Opener, tmp_path: Path) -> None:
    replica = open_replica("plain")
    assert not replica.signed and replica.identity is None and replica.signer is None
    assert replica.discovery_secret is None
    assert replica.main.get_meta("signed") is None
    assert not (tmp_path / "plain" / "identity.key").exists()
    edits(replica, 2)
    assert [cs.chained for cs, _, seal in log(replica)] == [False, False]
    assert [seal for _, _, seal in log(replica)] == [None, None]


def test_init_refuses_uuids_and_an_identity_together_and_stray_secrets(
    tmp_path: Path, alice: Identity
) -> None:
    with pytest.raises(ProphetError, match="not both"):
        Replica.init(tmp_path / "a", identity=alice, replica_uuids=(TICKET, TICKET))
    with pytest.raises(ProphetError, match="signed replica"):
        Replica.init(tmp_path / "b", discovery_secret=b"\x01" * 32)
    with pytest.raises(ProphetError, match="at least 16 bytes"):
        Replica.init(tmp_path / "c", identity=alice, discovery_secret=b"short")
    assert not any(tmp_path.iterdir())  # nothing left behind, not even a staging dir


def test_a_given_discovery_secret_is_kept(tmp_path: Path, alice: Identity) -> None:
    with Replica.init(tmp_path / "a", identity=alice, discovery_secret=b"\x07" * 32) as replica:
        assert replica.discovery_secret == b"\x07" * 32
        assert replica.resolutions.get_meta("discovery_secret") is None  # replica.db only


@pytest.mark.parametrize("missing", ["identity.key", "identity.crt"])
def test_a_signed_replica_without_its_identity_is_refused_by_name(
    tmp_path: Path, alice: Identity, missing: str
) -> None:
    Replica.init(tmp_path / "alice", identity=alice).close()
    (tmp_path / "alice" / missing).unlink()
    with pytest.raises(IdentityError, match=f"{missing} is missing.*signed replica"):
        Replica.open(tmp_path / "alice")
    assert not (tmp_path / "alice" / missing).exists()  # never made anew


def test_another_replicas_identity_is_refused(
    tmp_path: Path, alice: Identity, bob: Identity
) -> None:
    Replica.init(tmp_path / "alice", identity=alice).close()
    for name in ("identity.key", "identity.crt"):
        (tmp_path / "alice" / name).unlink()
    bob.save(tmp_path / "alice")
    with pytest.raises(IdentityError, match=r"identity\.key does not belong to this replica"):
        Replica.open(tmp_path / "alice")


def test_prepare_runs_before_the_replica_appears_and_a_failure_leaves_nothing(
    tmp_path: Path, alice: Identity
) -> None:
    seen: list[Path] = []

    def founder(replica: Replica) -> None:
        seen.append(replica.path)
        assert replica.signed and not (tmp_path / "alice").exists()
        replica.create("member", {"name": "Alice"}, uuid=TICKET)

    with Replica.init(tmp_path / "alice", identity=alice, prepare=founder) as replica:
        assert seen and seen[0] != replica.path
        assert replica.main.ticket(replica.uuid) == 1
        assert assert_chained_and_sealed(replica) == 1

    def broken(replica: Replica) -> None:
        replica.create("member", {"name": "Bob"})
        raise RuntimeError("no founder")

    with pytest.raises(RuntimeError, match="no founder"):
        Replica.init(tmp_path / "bob", prepare=broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice"]


# -- what a signed replica makes -----------------------------------------------------------


def test_edits_fix_ups_answers_and_a_persons_choice_are_all_chained_and_sealed(
    open_replica: Opener, tmp_path: Path, alice: Identity, bob: Identity
) -> None:
    a = open_replica("alice", alice)
    [ticket] = edits(a, 1)
    b, _ = clone(a, tmp_path / "bob", identity=bob)
    with b:
        assert b.signed and b.discovery_secret == a.discovery_secret
        a.update("ticket", ticket, {"status": "alice's"})
        b.update("ticket", ticket, {"status": "bob's"})
        b.delete("ticket", edits(b, 1, "gone")[0])
        pulled = transfer(b, a).changesets
        assert pulled.conflicts == 1 and pulled.resolutions_minted == 1
        kinds = [cs.kind for cs, _, _ in log(b, origin=b.uuid)]
        assert Kind.RESOLUTION in kinds  # the after fix-up, Bob's own and numbered
        assert len(log(b, resolutions=True)) == 1  # the answer, in the resolution database
        transfer(a, b)
        assert a.main.digest() == b.main.digest()
        # A person's choice: an edit and an overwritten answer, both signed.
        [conflict] = a.main.conn.execute("SELECT fingerprint FROM conflicts").fetchall()
        assert resolve_conflict(a, "ticket", ticket, {"status": "agreed"}) == [conflict[0]]
        transfer(b, a)
        transfer(a, b)
        assert a.main.digest() == b.main.digest()
        nullifications = b.main.conn.execute(
            "SELECT count(*) FROM changesets WHERE kind = 'nullification'"
        ).fetchone()[0]
        assert nullifications == 1  # Bob's before fix-up: unchained, unsealed (walked)
        for replica in (a, b):
            assert assert_chained_and_sealed(replica) > 5


def test_a_signed_edit_is_measured_with_its_chain(
    open_replica: Opener, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = open_replica("alice", alice)
    [ticket] = edits(replica, 1)
    plain = ChangeSet(
        replica.uuid,
        2,
        replica.creator,
        1_700_000_000_000 << 16,  # an HLC stamp takes its 8-byte form, as a real one does
        Kind.EDIT,
        (Change("ticket", ticket, Op.UPDATE, (PropChange("summary", "t 0", "x" * 100),)),),
    )
    # A limit the unchained edit fits and the chained one (34 bytes of prev) does not.
    monkeypatch.setattr(edit_module, "MAX_EDIT_BYTES", len(plain.encode()) + 20)
    with pytest.raises(ProphetError, match="encodes to"):
        replica.update("ticket", ticket, {"summary": "x" * 100})
    replica.update("ticket", ticket, {"summary": "x"})
    assert replica.main.ticket(replica.uuid) == 2  # the refused edit left no gap
    assert assert_chained_and_sealed(replica) == 2


# -- signed replicas sync ------------------------------------------------------------------


def test_signed_replicas_clone_and_sync_path_to_path(
    open_replica: Opener, tmp_path: Path, alice: Identity, bob: Identity
) -> None:
    a = open_replica("alice", alice)
    edits(a, 30)
    b, cloned = clone(a, tmp_path / "bob", batch_size=7, identity=bob)
    with b:
        assert cloned.changesets.integrated == 30
        edits(b, 10, "bob")
        edits(a, 10, "alice")
        transfer(a, b, batch_size=4)
        transfer(b, a, batch_size=4)
        assert a.main.digest() == b.main.digest()
        assert a.main.tickets() == b.main.tickets()
        assert assert_chained_and_sealed(a) == assert_chained_and_sealed(b) == 50


def test_signed_replicas_sync_through_wire_batches(
    open_replica: Opener, alice: Identity, bob: Identity
) -> None:
    """The exchange's own steps: plan, encode as a transfer stream, read it back, integrate
    each batch (seals travel in the CHANGESET and RESOLUTION messages)."""
    a = open_replica("alice", alice)
    b = open_replica("bob", bob, db_uuid=a.db_uuid)
    [ticket] = edits(a, 1)
    transfer(b, a)
    a.update("ticket", ticket, {"status": "a"})
    b.update("ticket", ticket, {"status": "b"})
    edits(a, 20, "alice")
    transfer(b, a)  # Bob mints a fix-up and an answer, for Alice to receive over the wire

    def over_the_wire(receiver: Replica, sender: Replica) -> int:
        theirs = exchange.vectors(receiver)
        stream = b"".join(
            encode_batch(((r.id, r.body, r.seal) for r in rows), resolution=resolution)
            for resolution, rows in exchange.outgoing(sender, theirs, batch_size=6)
        )
        reader = TransferReader()
        integrated = 0
        for event in reader.feed(stream + encode_end()):
            if isinstance(event, Batch):
                assert all(seal is not None for _, _, seal in event.changesets)
                integrated += exchange.integrate_batch(receiver, event).integrated
        reader.close()
        return integrated

    assert over_the_wire(a, b) > 0
    assert a.main.digest() == b.main.digest()
    assert a.resolutions.tickets() == b.resolutions.tickets()
    assert assert_chained_and_sealed(a) == assert_chained_and_sealed(b)


def test_a_plain_relay_keeps_the_seals_for_signed_peers(
    open_replica: Opener, alice: Identity, bob: Identity
) -> None:
    a = open_replica("alice", alice)
    relay = open_replica("relay", db_uuid=a.db_uuid)
    b = open_replica("bob", bob, db_uuid=a.db_uuid)
    edits(a, 5)
    transfer(relay, a)
    relay.create("ticket", {"summary": "unsigned"})  # the relay's own: unsigned
    assert [seal is not None for _, _, seal in log(relay)] == [True] * 5 + [False]
    with pytest.raises(Refused, match="unsigned changeset refused") as refusal:
        transfer(b, relay)  # the relay's own unsigned edit is refused, whole batch
    assert refusal.value.code is ErrorCode.INVALID_CHANGESET
    assert b.main.latest_seq() == 0
    integrate_decoded(b, log(relay, origin=a.uuid))  # Alice's, relayed, still verify
    assert b.main.ticket(a.uuid) == 5


# -- refusals --------------------------------------------------------------------------------


@pytest.fixture
def signed_pair(open_replica: Opener, alice: Identity, bob: Identity) -> tuple[Replica, Replica]:
    """Alice's signed replica with 4 edits, Bob's with her first 2 of them."""
    a = open_replica("alice", alice)
    edits(a, 4)
    b = open_replica("bob", bob, db_uuid=a.db_uuid)
    integrate_decoded(b, log(a)[:2])
    return a, b


def refuse(receiver: Replica, batch: list[Incoming], match: str, **kw: Any) -> None:
    """Integrating ``batch`` is refused with ``match`` and changes nothing, not even the
    clock (a forged changeset's stamp must not push it)."""
    before, clock = state(receiver), receiver.clock.last
    with pytest.raises(IntegrationError, match=match):
        integrate_decoded(receiver, batch, **kw)
    assert state(receiver) == before
    assert receiver.clock.last == clock


def test_a_changeset_forged_under_another_members_origin_is_refused(
    signed_pair: tuple[Replica, Replica], mallory: Identity
) -> None:
    a, b = signed_pair
    third, _, _ = log(a)[2]
    # Mallory's own #3 of Alice's origin, chained right, sealed with Mallory's key, and
    # stamped an hour ahead (within the clock's maximum offset) to win every conflict.
    forged = replace(tampered(third), creator="mallory", created=pack(wall_ms() + 3_600_000))
    refuse(b, [sealed(forged, Signer(mallory))], "not origin .* own")
    # Even behind two genuine changesets of Alice's, in the same run.
    refuse(
        b,
        [*log(a)[2:], sealed(replace(forged, origin_seq=5, prev=log(a)[3][0].id), Signer(mallory))],
        "not origin .* own",
    )


def test_a_tampered_body_is_refused(signed_pair: tuple[Replica, Replica]) -> None:
    a, b = signed_pair
    third, fourth = log(a)[2:]
    # The run's last: its seal no longer verifies.
    refuse(b, [third, unsealed(tampered(fourth[0]), fourth[2])], "does not verify")
    # In the middle of a run: the next one's chain no longer links to it.
    refuse(b, [unsealed(tampered(third[0]), third[2]), fourth], "does not link to #3")


def test_a_gap_is_refused(signed_pair: tuple[Replica, Replica]) -> None:
    a, b = signed_pair
    fourth = log(a)[3]
    refuse(b, [fourth], "arrived before #3")  # by the numbers
    # #3 dropped and #4 renumbered in its place: its chain names the dropped one.
    refuse(b, [unsealed(replace(fourth[0], origin_seq=3), fourth[2])], "does not link to #2")


def test_a_reordering_is_refused(signed_pair: tuple[Replica, Replica]) -> None:
    a, b = signed_pair
    third, fourth = log(a)[2:]
    refuse(b, [fourth, third], "arrived before #3")  # by the numbers
    # The two swapped and renumbered to look in order.
    swapped = [
        unsealed(replace(fourth[0], origin_seq=3), fourth[2]),
        unsealed(replace(third[0], origin_seq=4), third[2]),
    ]
    refuse(b, swapped, "does not link to #2")


def test_a_prev_pointing_to_the_wrong_id_is_refused_even_with_a_good_seal(
    signed_pair: tuple[Replica, Replica], alice: Identity
) -> None:
    a, b = signed_pair
    third, _, _ = log(a)[2]
    wrong = replace(third, prev=b"\x42" * 32)
    refuse(b, [sealed(wrong, Signer(alice))], "does not link to #2")
    first, _, _ = log(a)[0]
    refuse(b, [sealed(replace(wrong, prev=first.id), Signer(alice))], "does not link to #2")


def test_unsigned_changesets_are_refused_by_a_signed_replica(
    signed_pair: tuple[Replica, Replica], alice: Identity
) -> None:
    a, b = signed_pair
    third, body, _ = log(a)[2]
    refuse(b, [(third, body, None)], "unsigned changeset refused by a signed replica")
    # Unchained (format 1), even if sealed by the right key.
    plain = replace(third, prev=None, chained=False)
    refuse(b, [sealed(plain, Signer(alice))], "unsigned changeset refused.*not chained")


@pytest.mark.parametrize("length", [0, 95, 97, 160])
def test_a_seal_of_the_wrong_length_is_refused(
    signed_pair: tuple[Replica, Replica], length: int
) -> None:
    a, b = signed_pair
    third, body, seal = log(a)[2]
    assert seal is not None
    bad = (seal * 2)[:length]
    refuse(b, [(third, body, bad)], f"is {length} bytes, not 96")


def test_a_valid_run_whose_last_seal_is_bad_is_refused_whole(
    signed_pair: tuple[Replica, Replica], alice: Identity
) -> None:
    a, b = signed_pair
    third, fourth = log(a)[2:]
    assert third[2] is not None
    # Alice's key, a real signature, but of another changeset.
    refuse(b, [third, (fourth[0], fourth[1], third[2])], "does not verify")
    # A signature by Alice's key over the id without the seal context.
    raw = Signer(alice).public_key + alice.sign(fourth[0].id)
    refuse(b, [third, (fourth[0], fourth[1], raw)], "does not verify")
    # The same run, well sealed, goes in.
    assert integrate_decoded(b, [third, fourth]).integrated == 2


def test_a_main_log_seal_does_not_pass_for_the_resolution_database(
    signed_pair: tuple[Replica, Replica],
) -> None:
    a, b = signed_pair
    # Alice's main-log changesets, offered as resolution database changesets: the key
    # derives her main origin, not her resolution database's.
    refuse(b, log(a)[:2], "not origin .* own", resolutions=True)


def test_a_plain_replica_takes_signed_and_unsigned_and_keeps_seals_as_given(
    signed_pair: tuple[Replica, Replica], open_replica: Opener
) -> None:
    a, _ = signed_pair
    plain = open_replica("plain", db_uuid=a.db_uuid)
    third, body, seal = log(a)[2]
    assert seal is not None
    odd = bytes(SEAL_BYTES)  # not a valid seal: a plain replica does not look
    batch = [*log(a)[:2], (third, body, odd), (log(a)[3][0], log(a)[3][1], None)]
    assert integrate_decoded(plain, batch).integrated == 4
    assert [s for _, _, s in log(plain)] == [log(a)[0][2], log(a)[1][2], odd, None]


# -- one verification per run ---------------------------------------------------------------


@pytest.fixture
def three_writers(
    open_replica: Opener, alice: Identity, bob: Identity, carol: Identity
) -> list[Replica]:
    """Alice's, Bob's and Carol's signed replicas of one database, 50 edits each."""
    first = open_replica("alice", alice)
    writers = [first]
    writers += [
        open_replica(n, i, db_uuid=first.db_uuid) for n, i in (("bob", bob), ("carol", carol))
    ]
    for w in writers:
        edits(w, 50, w.uuid[:4])
    return writers


def interleave(logs: list[list[Incoming]], chunks: list[list[int]]) -> tuple[list[Incoming], int]:
    """The logs cut into runs of the given lengths, taken round robin; the batch and its
    number of runs."""
    logs, chunks = [list(x) for x in logs], [list(c) for c in chunks]
    batch: list[Incoming] = []
    runs = 0
    while any(chunks):
        for i, sizes in enumerate(chunks):
            if sizes:
                n = sizes.pop(0)
                batch.extend(logs[i][:n])
                logs[i] = logs[i][n:]
                runs += 1
    return batch, runs


@pytest.fixture
def count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The origins of the seals integration verifies, in order."""
    calls: list[str] = []
    real = integrate_module.verify_seal

    def counting(seal: bytes, id_: bytes, origin: str, resolutions: bool) -> None:
        calls.append(origin)
        real(seal, id_, origin, resolutions)

    monkeypatch.setattr(integrate_module, "verify_seal", counting)
    return calls


@pytest.mark.parametrize(
    "chunks",
    [
        [[1, 5, 10, 34], [20, 30], [3, 3, 44]],  # 9 runs
        [[1] * 50, [1] * 50, [1] * 50],  # 150 runs of one: the origins alternate
        [[50], [50], [50]],  # 3 runs
    ],
    ids=["9-runs", "150-runs", "3-runs"],
)
def test_one_signature_is_verified_per_origin_and_batch(
    three_writers: list[Replica],
    open_replica: Opener,
    dave: Identity,
    count_verifications: list[str],
    chunks: list[list[int]],
) -> None:
    """However the origins' changesets interleave (3 origins x 50, in runs), a signed
    receiver verifies one seal per origin: each origin's last, whose id covers the
    others through the chain.  That is never more than one per run."""
    batch, runs = interleave([log(w) for w in three_writers], chunks)
    assert len(batch) == 150
    receiver = open_replica("dave", dave, db_uuid=three_writers[0].db_uuid)
    assert integrate_decoded(receiver, batch).integrated == 150
    assert sorted(count_verifications) == sorted(w.uuid for w in three_writers)
    assert len(count_verifications) <= runs
    assert all(receiver.main.ticket(w.uuid) == 50 for w in three_writers)
    assert assert_chained_and_sealed(receiver) == 150
    count_verifications.clear()
    assert integrate_decoded(receiver, batch).skipped == 150
    assert count_verifications == []  # what is already held is not checked again


def test_an_origins_last_seal_is_checked_wherever_it_sits_in_the_batch(
    three_writers: list[Replica], open_replica: Opener, dave: Identity
) -> None:
    a, b, c = (log(w) for w in three_writers)
    # Alice's last changeset in the batch comes first, with Carol's seal on it: the
    # receiver finds out only at the end, and still writes nothing.
    bad = (a[0][0], a[0][1], c[0][2])
    refuse(
        open_replica("dave", dave, db_uuid=three_writers[0].db_uuid), [bad, *b, *c], "not origin"
    )


def test_seals_inside_an_origins_run_are_not_verified(
    three_writers: list[Replica], open_replica: Opener, dave: Identity
) -> None:
    """The documented limit: a seal that is not its origin's last in the batch is stored
    as it came (the chain authenticates its changeset, not its seal)."""
    a = log(three_writers[0])
    junk = bytes(SEAL_BYTES)
    receiver = open_replica("dave", dave, db_uuid=three_writers[0].db_uuid)
    assert integrate_decoded(receiver, [(a[0][0], a[0][1], junk), *a[1:]]).integrated == 50
    assert receiver.main.changesets_after(0, 1)[0].seal == junk


# -- the encoding ---------------------------------------------------------------------------

uuids = st.uuids().map(str)


@st.composite
def chained_changesets(draw: st.DrawFn) -> ChangeSet:
    origin_seq = draw(st.integers(1, INT_MAX))
    return ChangeSet(
        origin=draw(uuids),
        origin_seq=origin_seq,
        creator=draw(st.text(max_size=20)),
        created=draw(st.integers(0, INT_MAX)),
        kind=draw(st.sampled_from([Kind.EDIT, Kind.RESOLUTION])),
        changes=(
            Change(
                "ticket",
                draw(uuids),
                Op.UPDATE,
                (PropChange("status", draw(st.text(max_size=8)), draw(st.integers(0, 99))),),
            ),
        ),
        prev=None if origin_seq == 1 else draw(st.binary(min_size=32, max_size=32)),
        chained=True,
    )


@given(chained_changesets())
def test_chained_changesets_round_trip_byte_for_byte(cs: ChangeSet) -> None:
    body = cs.encode()
    assert body[0] == 0x88 and body[1] == 2  # array(8), format 2
    assert ChangeSet.decode(body) == cs
    assert ChangeSet.decode(body).encode() == body
    unchained = replace(cs, prev=None, chained=False)
    assert unchained.encode()[:2] == b"\x87\x01"  # exactly the format before chains
    assert cs.id != unchained.id  # the id covers the chain


def test_a_chained_encoding_is_byte_stable() -> None:
    """docs/model.md's worked example, chained: if these bytes change, every signed
    replica's ids change."""
    cs = ChangeSet(
        "00000000-0000-4000-8000-000000000001",
        7,
        "alice@laptop",
        (1_700_000_000_000 << 16) | 3,
        Kind.EDIT,
        (
            Change(
                "ticket",
                TICKET,
                Op.UPDATE,
                (
                    PropChange("done", False, True),
                    PropChange("estimate", None, 1.5),
                    PropChange("status", "open", "stalled"),
                ),
            ),
        ),
    )
    assert cs.id.hex() == "f5043d955e8b4c7d3f18e41da884c8f31cd651dbd0047a1d91af48e1b779a70f"
    chained = replace(cs, prev=b"\x11" * 32, chained=True)
    body = chained.encode()
    assert len(body) == 200 and body[:2] == b"\x88\x02"
    assert body[2:166] == cs.encode()[2:] and body[166:] == b"\x58\x20" + b"\x11" * 32
    assert chained.id.hex() == "bbfded8e3c5837cd07a22b61453e456551a37d570ecea48a3e38f8fbbed8997e"


def _chained(origin_seq: Any, prev: Any, *, version: Any = 2, kind: str = "edit") -> list[Any]:
    return [version, TICKET, origin_seq, "c", 1, kind, [], prev]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (_chained(1, None)[:7], "format version 2 has 8 items"),
        ([1, TICKET, 1, "c", 1, "edit", [], None], "format version 1 has 7 items"),
        (_chained(2, None), "prev is not a changeset id"),
        (_chained(1, b"\x01" * 32), "first changeset is not null"),
        (_chained(2, b"\x01" * 31), "prev is not a changeset id of 32"),
        (_chained(2, b"\x01" * 33), "prev is not a changeset id of 32"),
        (_chained(2, "01" * 32), "prev is not a changeset id"),
        (_chained(None, None, kind="nullification"), "never chained"),
        (_chained(2, b"\x01" * 32, version=3), "format version 3"),
        (_chained(2, b"\x01" * 32, version=True), "format version True"),
        ([2, TICKET, 2, "c", 1, "edit", [], b"\x01" * 32, None], "array of 7 items"),
    ],
)
def test_strict_decoding_of_chains(obj: Any, message: str) -> None:
    with pytest.raises(MalformedChangeSet, match=message):
        ChangeSet.decode(cbor2.dumps(obj))


def test_a_chain_in_non_canonical_form_is_refused() -> None:
    good = canonical(_chained(2, b"\x01" * 32))
    # The same prev with a 2-byte length head: valid CBOR, not canonical.
    bad = good[:-34] + b"\x59\x00\x20" + b"\x01" * 32
    assert cbor2.loads(bad) == cbor2.loads(good)
    with pytest.raises(MalformedChangeSet, match="canonical"):
        ChangeSet.decode(bad)


def test_seals_sign_the_context_and_the_id(alice: Identity, bob: Identity) -> None:
    signer = Signer(alice)
    cid = changeset_id(b"anything")
    seal = signer.seal(cid)
    assert len(seal) == SEAL_BYTES and seal[:32] == signer.public_key
    alice.key.public_key().verify(seal[32:], SEAL_CONTEXT + cid)
    main, resolutions = origins_of(signer.public_key)
    verify_seal(seal, cid, main, False)
    verify_seal(seal, cid, resolutions, True)
    with pytest.raises(SealError, match=f"not origin {main}'s own"):
        verify_seal(seal, cid, main, True)
    with pytest.raises(SealError, match=f"origin {main}'s key"):
        verify_seal(seal, changeset_id(b"other"), main, False)
    assert origins_of(Signer(bob).public_key)[0] != main


# -- the wire -------------------------------------------------------------------------------


def test_the_wire_carries_seals_and_refuses_malformed_ones(alice: Identity) -> None:
    cs = ChangeSet(TICKET, 1, "c", 1, Kind.EDIT, (), chained=True)
    body = cs.encode()
    seal = Signer(alice).seal(cs.id)
    for message in (
        Changeset(cs.id, body, False, seal),
        Changeset(cs.id, body, True, seal),
        Changeset(cs.id, body),
    ):
        [content] = FrameDecoder().feed(encode(message))
        assert decode(content) == message
        # The batch encoder's shortcut writes the same bytes.
        assert encode_changeset(cs.id, body, message.seal, resolution=message.resolution) == encode(
            message
        )
    for bad in (seal[:-1], seal + b"\x00", "text"):
        with pytest.raises(ProtocolError, match="seal is not 96 bytes") as err:
            decode(canonical([2, cs.id, body, bad]))
        assert err.value.code is ErrorCode.MALFORMED
    [event] = TransferReader().feed(encode_batch([(cs.id, body, seal)], resolution=False))
    assert isinstance(event, Batch)
    assert event.changesets == ((cs, body, seal),)
    assert event.size == len(body) + SEAL_BYTES


def test_a_signed_receiver_refuses_a_bad_batch_from_the_wire_as_invalid_changeset(
    signed_pair: tuple[Replica, Replica],
) -> None:
    a, b = signed_pair
    third, body, _ = log(a)[2]
    reader = TransferReader()
    [batch] = reader.feed(encode_batch([(third.id, body, None)], resolution=False))
    assert isinstance(batch, Batch)
    before = state(b)
    with pytest.raises(Refused, match="unsigned") as err:
        exchange.integrate_batch(b, batch)
    assert err.value.code is ErrorCode.INVALID_CHANGESET
    assert state(b) == before
    assert issubclass(SignatureError, IntegrationError)


# -- the migration ----------------------------------------------------------------------------


def test_a_version_2_replica_gets_the_seal_column(tmp_path: Path) -> None:
    """A replica made before seals (schema 2, built here by the first two migrations only,
    with one changeset logged in its seven columns) opens, migrates to schema 3, keeps its
    log, and grows it with unsigned changesets."""
    path = tmp_path / "old"
    path.mkdir()
    db_uuid, main_uuid, res_uuid = (f"00000000-0000-4000-8000-00000000000{s}" for s in "abc")
    cs = ChangeSet(
        main_uuid,
        1,
        "old@laptop",
        1 << 16,
        Kind.EDIT,
        (Change("ticket", TICKET, Op.CREATE, (PropChange("summary", None, "old"),)),),
    )
    body = cs.encode()
    for name, role, ruuid in (
        ("replica.db", "replica", main_uuid),
        ("resolutions.db", "resolutions", res_uuid),
    ):
        conn = sqlite3.connect(path / name, isolation_level=None)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for script in MIGRATIONS[:2]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 2")
        meta = {"role": role, "db_uuid": db_uuid, "replica_uuid": ruuid, "hlc": 0}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        if role == "replica":
            conn.execute(
                "INSERT INTO changesets VALUES (1, ?, 1, 'edit', ?, ?, ?)",
                (main_uuid, cs.id, cs.created, body),
            )
            conn.execute("INSERT INTO tickets VALUES (?, 1)", (main_uuid,))
        assert "seal" not in [c[1] for c in conn.execute("PRAGMA table_info(changesets)")]
        conn.close()
    with Replica.open(path) as replica:
        assert not replica.signed
        for db in (replica.main, replica.resolutions):
            assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
            columns = [c[1] for c in db.conn.execute("PRAGMA table_info(changesets)")]
            assert columns[-1] == "seal"
        [old] = replica.main.changesets_after(0, ALL)
        assert (old.id, old.body, old.seal) == (cs.id, body, None)
        assert replica.main.changeset_id(main_uuid, 1) == cs.id
        replica.create("ticket", {"summary": "new"})
        rows = replica.main.changesets_after(0, ALL)
        assert [(row.origin_seq, row.seal) for row in rows] == [(1, None), (2, None)]
        assert not ChangeSet.decode(rows[1].body).chained
