"""Membership as replicated records, over real replicas on disk synced with ``transfer``.

Alice founds the database; Bob holds a clone of it; Carol and Dave are identities that get
added and removed.  Every replica is real SQLite files under tmp_path, and every sync is a
real ``transfer`` (or ``clone``) between them; nothing is mocked.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ReplicaFactory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2p_prophet.errors import IdentityError, ProphetError
from p2p_prophet.security import (
    MEMBER_NAMESPACE,
    MEMBER_TYPE,
    Identity,
    Member,
    TrustedPeers,
    add_member,
    invalid_members,
    member_uuid,
    members,
    refresh,
    remove_member,
    resolve,
    trusted_peers,
)
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone, transfer

Pair = tuple[Replica, Replica]


@pytest.fixture
def founded(make_replica: ReplicaFactory, alice: Identity) -> Replica:
    """Alice's replica of a new database whose founder (and only member) is Alice."""
    replica = make_replica("alice")
    add_member(replica, alice.certificate_pem, name="Alice")
    return replica


@pytest.fixture
def pair(founded: Replica, tmp_path: Path, alice: Identity, bob: Identity) -> Iterator[Pair]:
    """Alice's replica with Alice and Bob as members, and Bob's clone of it."""
    add_member(founded, bob.certificate_pem, name="Bob", added_by=alice.fingerprint)
    bobs, _ = clone(founded, tmp_path / "bob")
    with bobs:
        yield founded, bobs


def sync_both_ways(a: Replica, b: Replica) -> None:
    """Each pulls from the other: enough to converge, resolutions included."""
    transfer(b, a)
    transfer(a, b)


def fingerprints(replica: Replica) -> list[str]:
    return [m.fingerprint for m in members(replica)]


def member_records(replica: Replica, identity: Identity) -> int:
    """How many live member records, valid or not, claim ``identity``."""
    return sum(
        1
        for record in replica.main.live_records(MEMBER_TYPE)
        if record.props.get("fingerprint") == identity.fingerprint
    )


# -- the record and its uuid ----------------------------------------------------------------


def test_the_record_uuid_comes_from_the_fingerprint_in_a_fixed_namespace() -> None:
    # Pinned: a different namespace would give every member a second record in databases
    # that already exist.
    assert uuid.UUID("99dcb841-57b1-4e96-830b-0335d38759fc") == MEMBER_NAMESPACE
    assert member_uuid("0" * 64) == "b44e10dc-3382-5029-b5b4-ea7f0dac96d7"
    assert member_uuid("AB" * 32) == member_uuid("ab" * 32)
    with pytest.raises(IdentityError, match="not a replica fingerprint"):
        member_uuid("abc")


def test_the_founder_adds_itself_and_a_clone_holds_the_same_members(
    founded: Replica, tmp_path: Path, alice: Identity
) -> None:
    assert members(founded) == [
        Member(alice.fingerprint, "Alice", alice.certificate_pem, added_by="")
    ]
    [record] = founded.main.live_records(MEMBER_TYPE)
    assert record.uuid == member_uuid(alice.fingerprint)
    assert record.props == {
        "certificate": alice.certificate_pem,
        "fingerprint": alice.fingerprint,
        "name": "Alice",
        "added_by": "",
    }

    bobs, _ = clone(founded, tmp_path / "bob")
    with bobs:
        assert members(bobs) == members(founded)
        assert trusted_peers(bobs).fingerprints() == {alice.fingerprint}


def test_a_member_alice_adds_reaches_bob_and_bob_then_trusts_her(
    pair: Pair, alice: Identity, carol: Identity
) -> None:
    alices, bobs = pair
    assert add_member(alices, carol.certificate_pem, "Carol", alice.fingerprint) == (
        carol.fingerprint
    )
    assert carol.fingerprint not in trusted_peers(bobs)

    transfer(bobs, alices)

    assert carol.fingerprint in trusted_peers(bobs)
    assert resolve(bobs, carol.fingerprint).added_by == alice.fingerprint


def test_adding_a_member_twice_makes_no_second_record_and_only_renames(
    founded: Replica, alice: Identity, carol: Identity
) -> None:
    add_member(founded, carol.certificate_pem, "Carol", alice.fingerprint)
    seq = founded.main.latest_seq()

    add_member(founded, carol.certificate_pem)  # no name given: nothing to change
    add_member(founded, carol.certificate_pem, "Carol", "")  # the same name: nothing either
    assert founded.main.latest_seq() == seq

    add_member(founded, carol.certificate_pem, "Carol B.", "")
    assert founded.main.latest_seq() == seq + 1
    assert member_records(founded, carol) == 1
    # The rename keeps who added her.
    assert resolve(founded, carol.fingerprint) == Member(
        carol.fingerprint, "Carol B.", carol.certificate_pem, alice.fingerprint
    )


def test_a_bundle_stores_only_its_first_certificate(
    founded: Replica, carol: Identity, dave: Identity
) -> None:
    add_member(founded, carol.certificate_pem + dave.certificate_pem, "Carol")
    assert resolve(founded, carol.fingerprint).certificate_pem == carol.certificate_pem
    assert dave.fingerprint not in trusted_peers(founded)


# -- concurrent edits of the membership -------------------------------------------------


def test_alice_and_bob_adding_the_same_identity_concurrently_make_one_record(
    pair: Pair, alice: Identity, bob: Identity, carol: Identity
) -> None:
    alices, bobs = pair
    add_member(alices, carol.certificate_pem, "Carol", alice.fingerprint)
    add_member(bobs, carol.certificate_pem, "Carol from work", bob.fingerprint)

    sync_both_ways(alices, bobs)

    for replica in (alices, bobs):
        assert member_records(replica, carol) == 1
        assert invalid_members(replica) == []
    assert alices.main.digest() == bobs.main.digest()
    assert members(alices) == members(bobs)
    # One of the two adds won the name and the provenance, the same on both sides.
    merged = resolve(alices, carol.fingerprint)
    assert merged.name in {"Carol", "Carol from work"}
    assert merged.added_by in {alice.fingerprint, bob.fingerprint}


def test_a_removal_wins_over_a_concurrent_rename(
    pair: Pair, alice: Identity, bob: Identity, carol: Identity
) -> None:
    alices, bobs = pair
    add_member(alices, carol.certificate_pem, "Carol", alice.fingerprint)
    transfer(bobs, alices)
    bobs_trust = trusted_peers(bobs)
    assert carol.fingerprint in bobs_trust

    remove_member(alices, carol.fingerprint)  # Alice removes Carol while...
    add_member(bobs, carol.certificate_pem, "Carol (laptop)")  # ...Bob renames her.
    sync_both_ways(alices, bobs)

    for replica in (alices, bobs):
        assert fingerprints(replica) == sorted([alice.fingerprint, bob.fingerprint])
        assert member_records(replica, carol) == 0
    assert alices.main.digest() == bobs.main.digest()

    refresh(bobs_trust, bobs)
    assert carol.fingerprint not in bobs_trust
    assert bobs_trust.fingerprints() == {alice.fingerprint, bob.fingerprint}


# -- removing ---------------------------------------------------------------------------


def test_a_member_is_removed_by_a_unique_prefix_of_its_fingerprint(
    founded: Replica, alice: Identity, carol: Identity
) -> None:
    add_member(founded, carol.certificate_pem, "Carol", alice.fingerprint)
    trust = trusted_peers(founded)

    remove_member(founded, f"  {carol.fingerprint[:8].upper()} ")

    assert fingerprints(founded) == [alice.fingerprint]
    refresh(trust, founded)
    assert trust.fingerprints() == {alice.fingerprint}


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("abc", "too short to name a member; give at least 8 hex digits"),
        ("", "not a fingerprint or the start of one"),
        ("carol-laptop", "not a fingerprint or the start of one"),
        ("0" * 65, "not a fingerprint or the start of one"),
    ],
)
def test_a_prefix_that_cannot_name_a_member_is_refused(
    founded: Replica, prefix: str, message: str
) -> None:
    digest = founded.main.digest()
    with pytest.raises(ProphetError, match=message):
        remove_member(founded, prefix)
    assert founded.main.digest() == digest


def test_an_unknown_prefix_is_refused_and_the_members_are_listed(
    founded: Replica, alice: Identity, carol: Identity
) -> None:
    # Carol is not a member; a prefix of her fingerprint names no one (unless it happens
    # to start Alice's too, which 8 hex digits make a one-in-four-billion event).
    prefix = carol.fingerprint[:8]
    digest = founded.main.digest()
    with pytest.raises(ProphetError, match=f"no member's fingerprint starts with {prefix}") as e:
        remove_member(founded, prefix)
    assert f"{alice.fingerprint} (Alice)" in str(e.value)
    assert founded.main.digest() == digest


def test_the_last_member_cannot_be_removed(founded: Replica, alice: Identity) -> None:
    digest = founded.main.digest()
    with pytest.raises(ProphetError, match="last member of this database"):
        remove_member(founded, alice.fingerprint)
    assert founded.main.digest() == digest
    assert fingerprints(founded) == [alice.fingerprint]


def test_a_removed_identity_cannot_be_added_again_and_rejoins_with_a_new_one(
    founded: Replica, alice: Identity, carol: Identity
) -> None:
    add_member(founded, carol.certificate_pem, "Carol", alice.fingerprint)
    remove_member(founded, carol.fingerprint)
    digest = founded.main.digest()

    with pytest.raises(ProphetError, match=r"has been removed.*make a new identity"):
        add_member(founded, carol.certificate_pem, "Carol", alice.fingerprint)
    with pytest.raises(ProphetError, match="it was removed"):
        resolve(founded, carol.fingerprint)
    assert founded.main.digest() == digest

    carols_new_laptop = Identity.generate()
    add_member(founded, carols_new_laptop.certificate_pem, "Carol", alice.fingerprint)
    assert fingerprints(founded) == sorted([alice.fingerprint, carols_new_laptop.fingerprint])


def test_an_add_on_a_replica_that_missed_the_removal_stays_removed(
    pair: Pair, alice: Identity, bob: Identity, carol: Identity
) -> None:
    alices, bobs = pair
    # Alice adds and removes Carol before Bob hears of either; Bob then adds Carol himself.
    add_member(alices, carol.certificate_pem, "Carol", alice.fingerprint)
    remove_member(alices, carol.fingerprint)
    add_member(bobs, carol.certificate_pem, "Carol", bob.fingerprint)
    assert carol.fingerprint in trusted_peers(bobs)

    sync_both_ways(alices, bobs)

    # The same record uuid on both sides, so Alice's tombstone buries Bob's add.
    for replica in (alices, bobs):
        assert carol.fingerprint not in trusted_peers(replica)
    assert alices.main.digest() == bobs.main.digest()


# -- records that do not add up -----------------------------------------------------------


def test_a_record_given_another_identitys_certificate_lets_no_one_in(
    pair: Pair, alice: Identity, bob: Identity, carol: Identity
) -> None:
    alices, bobs = pair
    # Someone pastes Carol's certificate into Bob's record, leaving its fingerprint.
    alices.update(MEMBER_TYPE, member_uuid(bob.fingerprint), {"certificate": carol.certificate_pem})
    transfer(bobs, alices)

    for replica in (alices, bobs):
        assert fingerprints(replica) == [alice.fingerprint]
        assert trusted_peers(replica).fingerprints() == {alice.fingerprint}
        [ignored] = invalid_members(replica)
        assert ignored.uuid == member_uuid(bob.fingerprint)
        assert ignored.fingerprint == bob.fingerprint
        assert ignored.name == "Bob"
        assert f"certificate is that of {carol.fingerprint}" in ignored.reason
    # A prefix of Bob's names the broken record, not a member.
    with pytest.raises(ProphetError, match="only member records that are not valid"):
        resolve(bobs, bob.fingerprint[:8])


def test_adding_the_identity_again_repairs_its_record(
    founded: Replica, alice: Identity, bob: Identity, carol: Identity
) -> None:
    add_member(founded, bob.certificate_pem, "Bob", alice.fingerprint)
    founded.update(
        MEMBER_TYPE, member_uuid(bob.fingerprint), {"certificate": carol.certificate_pem}
    )
    assert bob.fingerprint not in fingerprints(founded)

    add_member(founded, bob.certificate_pem)

    assert invalid_members(founded) == []
    assert resolve(founded, bob.fingerprint) == Member(
        bob.fingerprint, "Bob", bob.certificate_pem, alice.fingerprint
    )


def test_a_member_record_made_by_hand_with_a_random_uuid_is_ignored(
    founded: Replica, alice: Identity, carol: Identity
) -> None:
    made = founded.create(
        MEMBER_TYPE,
        {"certificate": carol.certificate_pem, "fingerprint": carol.fingerprint, "name": "C"},
    )
    assert fingerprints(founded) == [alice.fingerprint]
    [ignored] = invalid_members(founded)
    assert ignored.uuid == made
    assert "uuid is not the one derived from its fingerprint" in ignored.reason


def test_a_record_with_a_broken_certificate_or_fingerprint_is_ignored(
    founded: Replica, alice: Identity, bob: Identity, carol: Identity
) -> None:
    add_member(founded, bob.certificate_pem, "Bob", alice.fingerprint)
    add_member(founded, carol.certificate_pem, "Carol", alice.fingerprint)
    founded.update(MEMBER_TYPE, member_uuid(bob.fingerprint), {"certificate": "garbage"})
    founded.update(MEMBER_TYPE, member_uuid(carol.fingerprint), {"fingerprint": None})

    assert fingerprints(founded) == [alice.fingerprint]
    reasons = {i.uuid: i.reason for i in invalid_members(founded)}
    assert "certificate is not usable" in reasons[member_uuid(bob.fingerprint)]
    assert "fingerprint is missing" in reasons[member_uuid(carol.fingerprint)]


# -- what add_member refuses --------------------------------------------------------------


def _ecdsa_certificate() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not ed25519")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.mark.parametrize(
    ("certificate", "message"),
    [
        ("hello", "not a PEM X.509 certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            "not a PEM X.509 certificate",
        ),
        (b"\x00\xff", "not a PEM X.509 certificate"),
        (_ecdsa_certificate(), "does not hold an Ed25519 key"),
    ],
)
def test_a_certificate_that_is_not_an_identity_is_refused_and_nothing_is_written(
    founded: Replica, certificate: str | bytes, message: str
) -> None:
    digest, seq = founded.main.digest(), founded.main.latest_seq()
    with pytest.raises(IdentityError, match=message):
        add_member(founded, certificate, "Mallory")
    assert (founded.main.digest(), founded.main.latest_seq()) == (digest, seq)


def test_added_by_must_be_a_fingerprint(founded: Replica, carol: Identity) -> None:
    digest = founded.main.digest()
    with pytest.raises(IdentityError, match="added_by 'alice' is not a replica fingerprint"):
        add_member(founded, carol.certificate_pem, "Carol", added_by="alice")
    assert founded.main.digest() == digest


def test_trusted_peers_from_an_empty_membership_trusts_no_one(
    make_replica: ReplicaFactory,
) -> None:
    replica = make_replica("empty")
    assert members(replica) == []
    trust = TrustedPeers()
    refresh(trust, replica)
    assert len(trust) == 0 and len(trusted_peers(replica)) == 0
