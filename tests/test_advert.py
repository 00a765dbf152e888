"""What a node advertises over mDNS and what it takes from others' advertisements, as
plain data (no multicast here; tests/test_mdns.py runs the real thing in namespaces)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ReplicaFactory
from zeroconf import ServiceInfo

from p2p_prophet.net.mdns import SERVICE_TYPE, Advert, Found, Gone, parse
from p2p_prophet.net.node import Node

DB = "00000000-0000-4000-8000-0000000000db"
ME = "00000000-0000-4000-8000-0000000000a1"
THEM = "00000000-0000-4000-8000-0000000000b2"


def advert(name: str = "laptop", replica: str = THEM, db: str = DB) -> Advert:
    return Advert(name, db, replica, 7420, ["198.18.0.2"], bytes(range(16)))


def test_the_txt_record_is_small_and_names_version_replica_database_digest() -> None:
    info = advert().service_info()
    assert info.properties == {
        b"v": b"1",
        b"r": THEM.encode(),
        b"d": DB.encode(),
        b"h": bytes(range(16)).hex().encode(),
    }
    assert len(info.text) < 200
    assert info.name == f"laptop ({DB}).{SERVICE_TYPE}"


@pytest.mark.parametrize("name", ["x" * 80, "Alice's MacBook.local", "é" * 40])
def test_any_name_fits_one_dns_label_with_room_for_a_clash_suffix(name: str) -> None:
    label = advert(name).instance.removesuffix(f".{SERVICE_TYPE}")
    assert len(label.encode()) <= 63 - 4 and "." not in label and label.endswith(f"({DB})")


def test_only_other_nodes_of_our_database_and_version_are_taken() -> None:
    found = parse(advert().service_info(), DB, ME)
    assert found == Found(advert().instance, "http://198.18.0.2:7420", THEM, bytes(range(16)))
    assert parse(advert(replica=ME).service_info(), DB, ME) is None  # ourselves
    other_db = "00000000-0000-4000-8000-0000000000dd"
    assert parse(advert(db=other_db).service_info(), DB, ME) is None
    newer = ServiceInfo(
        SERVICE_TYPE,
        f"n ({DB}).{SERVICE_TYPE}",
        port=1,
        properties={"v": "2", "r": THEM, "d": DB},
        parsed_addresses=["198.18.0.9"],
    )
    assert parse(newer, DB, ME) is None


def test_a_goodbye_drops_a_discovered_peer_but_never_one_given_by_hand(
    make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    given = "http://198.18.0.7:7420"
    node = Node(make_replica("alice"), peers=[given])
    node._found(Found("a", given, THEM, None))  # the given peer also shows up on mDNS
    node._found(Found("b", "http://198.18.0.8:7420", ME, None))
    node._found(Found("b", "http://198.18.0.9:7420", ME, None))  # b moved
    assert set(node.scheduler.peers.peers) == {given, "http://198.18.0.9:7420"}
    node._gone(Gone("a"))
    node._gone(Gone("b"))
    assert set(node.scheduler.peers.peers) == {given}
