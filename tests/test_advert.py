"""What a node advertises over mDNS and what it takes from others' advertisements, as
plain data (no multicast here; tests/test_mdns.py runs the real thing in namespaces)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ReplicaFactory
from zeroconf import ServiceInfo

from p2p_prophet.net.mdns import SERVICE_TYPE, Advert, Found, Gone, parse
from p2p_prophet.net.node import Node
from p2p_prophet.security.discovery import discovery_key
from p2p_prophet.wire import PROTOCOL_VERSION, SUPPORTED_VERSIONS

DB = "00000000-0000-4000-8000-0000000000db"
ME = "00000000-0000-4000-8000-0000000000a1"
THEM = "00000000-0000-4000-8000-0000000000b2"
SECRET = bytes(range(32))
KEY = discovery_key(SECRET, DB)


def advert(name: str = "laptop", replica: str = THEM, key: str = KEY) -> Advert:
    return Advert(name, key, replica, 7420, ["198.18.0.2"], bytes(range(16)))


def test_the_txt_record_is_small_and_names_version_replica_discovery_key_digest() -> None:
    info = advert().service_info()
    assert info.properties == {
        b"v": str(PROTOCOL_VERSION).encode(),
        b"r": THEM.encode(),
        b"k": KEY.encode(),
        b"h": bytes(range(16)).hex().encode(),
    }
    assert len(info.text) == 113  # every value has a fixed length
    assert info.name == f"laptop ({KEY}).{SERVICE_TYPE}"
    for text in (info.text, info.name.encode(), (info.server or "").encode()):
        assert DB.encode() not in text and DB.replace("-", "").encode() not in text


@pytest.mark.parametrize("name", ["x" * 80, "Alice's MacBook.local", "é" * 40])
def test_any_name_fits_one_dns_label_with_room_for_a_clash_suffix(name: str) -> None:
    label = advert(name).instance.removesuffix(f".{SERVICE_TYPE}")
    assert len(label.encode()) <= 63 - 4 and "." not in label and label.endswith(f"({KEY})")


def test_only_other_nodes_of_our_database_and_version_are_taken() -> None:
    found = parse(advert().service_info(), KEY, ME)
    assert found == Found(advert().instance, "http://198.18.0.2:7420", THEM, bytes(range(16)))
    assert parse(advert(replica=ME).service_info(), KEY, ME) is None  # ourselves
    other_db = "00000000-0000-4000-8000-0000000000dd"
    assert parse(advert(key=discovery_key(SECRET, other_db)).service_info(), KEY, ME) is None
    # Our database's id, but another secret: not a node we can recognise.
    assert parse(advert(key=discovery_key(bytes(32), DB)).service_info(), KEY, ME) is None
    newer = ServiceInfo(
        SERVICE_TYPE,
        f"n ({KEY}).{SERVICE_TYPE}",
        port=1,
        properties={"v": str(max(SUPPORTED_VERSIONS) + 1), "r": THEM, "k": KEY},
        parsed_addresses=["198.18.0.9"],
    )
    assert parse(newer, KEY, ME) is None
    # An advertisement of the database id in "d" (as before discovery keys): not taken.
    old = ServiceInfo(
        SERVICE_TYPE,
        f"n ({DB}).{SERVICE_TYPE}",
        port=1,
        properties={"v": str(PROTOCOL_VERSION), "r": THEM, "d": DB},
        parsed_addresses=["198.18.0.9"],
    )
    assert parse(old, KEY, ME) is None


def test_a_node_serving_tls_takes_its_peers_at_https_urls() -> None:
    found = parse(advert().service_info(), KEY, ME, "https")
    assert found is not None and found.url == "https://198.18.0.2:7420"
    v6 = Advert("laptop", KEY, THEM, 7420, ["fd00::2"], b"")
    found = parse(v6.service_info(), KEY, ME, "https")
    assert found is not None and found.url == "https://[fd00::2]:7420"


def test_a_goodbye_drops_a_discovered_peer_but_never_one_given_by_hand(
    make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    given = "http://198.18.0.7:7420"
    node = Node(make_replica("alice"), peers=[given])
    node.found(Found("a", given, THEM, None))  # the given peer also shows up on mDNS
    node.found(Found("b", "http://198.18.0.8:7420", ME, None))
    node.found(Found("b", "http://198.18.0.9:7420", ME, None))  # b moved
    assert set(node.scheduler.peers.peers) == {given, "http://198.18.0.9:7420"}
    node.gone(Gone("a"))
    node.gone(Gone("b"))
    assert set(node.scheduler.peers.peers) == {given}
