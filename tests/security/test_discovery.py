"""The discovery key that mDNS advertises in place of the database id, as plain data.

What a stranger on the LAN actually receives is tested over real mDNS in
tests/test_mdns.py; here: the key's definition, and where a replica's secret comes from.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path

import pytest
from conftest import ReplicaFactory

from p2p_prophet.errors import ProphetError
from p2p_prophet.security import Identity
from p2p_prophet.security.discovery import (
    PLAIN_SECRET,
    SECRET_META,
    discovery_key,
    new_secret,
    replica_secret,
)
from p2p_prophet.store import Replica

DB = "0ba8a424-d8bd-4a62-b165-08c4fd9f2efd"
OTHER_DB = "7d3f8a51-1c2e-4b9a-8f60-2d9e4c1b7a33"
SECRET = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")


def test_the_key_is_the_first_16_bytes_of_hmac_sha256_of_the_db_id_in_hex() -> None:
    expected = hmac.new(SECRET, DB.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    assert discovery_key(SECRET, DB) == expected
    # A fixed vector, computed with `openssl dgst -sha256 -mac HMAC -macopt hexkey:...`,
    # so that a change of definition (which would cut every node off from the nodes of
    # older versions) cannot pass unnoticed.
    assert discovery_key(SECRET, DB) == "c7d00ef23ba319df32f0ca6fd7b7c156"


def test_the_key_is_deterministic_32_lowercase_hex_digits() -> None:
    key = discovery_key(SECRET, DB)
    assert key == discovery_key(bytes(SECRET), str(DB))
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)


def test_the_key_differs_by_secret_and_by_database() -> None:
    keys = {
        discovery_key(SECRET, DB),
        discovery_key(SECRET, OTHER_DB),
        discovery_key(SECRET[:-1] + b"\x00", DB),
        discovery_key(PLAIN_SECRET, DB),
        discovery_key(PLAIN_SECRET, OTHER_DB),
    }
    assert len(keys) == 5


def test_the_key_shows_neither_the_database_id_nor_the_secret() -> None:
    key = discovery_key(SECRET, DB)
    for form in (DB, DB.replace("-", ""), uuid.UUID(DB).hex, SECRET.hex()):
        assert form not in key
        assert key not in form


def test_new_secrets_are_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100 and all(len(s) == 32 for s in secrets)


def test_a_signed_replica_uses_the_secret_it_stores(alice: Identity, tmp_path: Path) -> None:
    secret = new_secret()
    path = tmp_path / "alice"
    Replica.init(path, identity=alice, discovery_secret=secret).close()
    with Replica.open(path) as replica:  # stored, not remembered
        assert replica.main.get_meta(SECRET_META) == secret
        assert replica_secret(replica) == secret
        key = discovery_key(replica_secret(replica), replica.db_uuid)
        assert key == discovery_key(secret, replica.db_uuid)


def test_a_new_signed_database_gets_a_random_secret(
    alice: Identity, bob: Identity, tmp_path: Path
) -> None:
    with (
        Replica.init(tmp_path / "a", identity=alice) as a,
        Replica.init(tmp_path / "b", db_uuid=a.db_uuid, identity=bob) as b,
    ):
        assert len(replica_secret(a)) >= 16 and replica_secret(a) != PLAIN_SECRET
        # The same database id, but each made its own secret: they cannot find each
        # other (a clone or an invite hands the secret over instead).
        assert replica_secret(a) != replica_secret(b)
        assert discovery_key(replica_secret(a), a.db_uuid) != discovery_key(
            replica_secret(b), b.db_uuid
        )


def test_a_plain_replica_uses_the_public_plain_secret(make_replica: ReplicaFactory) -> None:
    replica = make_replica("plain")  # --insecure, or made before discovery secrets
    assert replica.main.get_meta(SECRET_META) is None
    assert replica_secret(replica) == PLAIN_SECRET
    # Not secret: anyone who knows the database id computes the key.
    assert discovery_key(replica_secret(replica), replica.db_uuid) == discovery_key(
        b"p2p-prophet plain database", replica.db_uuid
    )


def test_a_secret_that_is_not_bytes_is_refused(make_replica: ReplicaFactory) -> None:
    replica = make_replica("damaged")
    with replica.main.transaction():
        replica.main.set_meta(SECRET_META, SECRET.hex())
    with pytest.raises(ProphetError, match="not bytes"):
        replica_secret(replica)
