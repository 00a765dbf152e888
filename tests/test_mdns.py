"""Discovery over real mDNS: nodes find each other with no --peer, inside network
namespaces of our own (loopback with multicast), never on the machine's interfaces."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import Avahi, Lan, Namespace, NodeProcess, unavailable

from p2p_prophet.net.node import read_status
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no network namespaces: {REASON}")

MDNS_ON_LO = ("--host", "127.0.0.1", "--port", "0", "--mdns-interface", "127.0.0.1")
FAST = ("--interval", "0.5")


@pytest.fixture
def ns() -> Iterator[Namespace]:
    namespace = Namespace()
    yield namespace
    namespace.delete()


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for node in started:
        node.stop()


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.1)


def holds(path: Path, uuid: str) -> bool:
    with Replica.open(path) as replica:
        return any(r.uuid == uuid for r in replica.main.live_records("ticket"))


def digest(path: Path) -> str:
    with Replica.open(path) as replica:
        return replica.main.digest()


def test_three_nodes_find_each_other_and_converge_and_ignore_another_database(
    ns: Namespace, nodes: list[NodeProcess], tmp_path: Path
) -> None:
    paths = [tmp_path / name for name in ("alice", "bob", "carol")]
    with Replica.init(paths[0]) as alice:
        alice.create("ticket", {"summary": "seed"})
        for path in paths[1:]:
            clone(alice, path)[0].close()
    stranger = tmp_path / "stranger"
    Replica.init(stranger).close()

    other = NodeProcess(ns, stranger, *MDNS_ON_LO, *FAST, "--name", "stranger")
    nodes.append(other)
    for path in paths:
        nodes.append(NodeProcess(ns, path, *MDNS_ON_LO, *FAST, "--name", path.name))
    ours = nodes[1:]
    for node in ours:
        node.wait_for("discovered", count=2)  # the two others of its database

    with Replica.open(paths[0]) as cli:  # an edit, as the CLI makes it
        uuid = cli.create("ticket", {"summary": "found by mDNS"})
    eventually(lambda: all(holds(p, uuid) for p in paths))
    eventually(lambda: len({digest(p) for p in paths}) == 1)

    # The TXT records follow the digests: every node sees, without connecting, that the
    # others now hold what it holds.
    def all_in_sync() -> bool:
        for path in paths:
            peers = read_status(path)["peers"]
            if len(peers) != 2 or not all(p["in_sync"] for p in peers):
                return False
        return True

    eventually(all_in_sync)

    for node in ours:
        assert other.url not in node.log  # never discovered, never contacted
    assert "exchange with" not in other.log and "push with" not in other.log
    assert "discovered" not in other.log  # nor did it take them for its own


@pytest.fixture
def lan() -> Iterator[Lan]:
    network = Lan(3)
    yield network
    network.delete()


def on(lan: Lan, i: int) -> tuple[str, ...]:
    address = lan.addresses[i]
    return ("--host", address, "--port", "7420", "--mdns-interface", address, *FAST)


def test_hosts_on_a_lan_discover_each_other_join_late_leave_and_come_back(
    lan: Lan, nodes: list[NodeProcess], tmp_path: Path
) -> None:
    paths = [tmp_path / f"laptop{i}" for i in range(3)]
    with Replica.init(paths[0]) as first:
        first.create("ticket", {"summary": "seed"})
        for path in paths[1:]:
            clone(first, path)[0].close()

    def start(i: int) -> NodeProcess:
        node = NodeProcess(lan.hosts[i], paths[i], *on(lan, i), "--name", f"laptop{i}")
        nodes.append(node)
        return node

    def edit(i: int, summary: str) -> str:
        with Replica.open(paths[i]) as cli:
            return cli.create("ticket", {"summary": summary})

    def everyone_holds(uuid: str, among: range) -> None:
        eventually(lambda: all(holds(paths[i], uuid) for i in among))

    a, b = start(0), start(1)
    a.wait_for("discovered http://198.18.0.2:7420")
    everyone_holds(edit(0, "on the LAN"), range(2))

    late = start(2)  # a laptop opens its lid
    late.wait_for("discovered", count=2)
    everyone_holds(edit(2, "from the late one"), range(3))

    assert b.stop() == 0  # one leaves: its goodbye reaches the others at once
    a.wait_for("http://198.18.0.2:7420 left")
    while_away = edit(0, "while laptop1 was away")
    everyone_holds(while_away, range(0, 3, 2))

    nodes.remove(b)
    start(1)  # ...and comes back, and catches up
    everyone_holds(while_away, range(3))
    eventually(lambda: len({digest(p) for p in paths}) == 1)


AVAHI_MISSING = next(
    (
        f"{tool} is not installed"
        for tool in ("avahi-daemon", "avahi-browse", "dbus-daemon")
        if shutil.which(tool) is None
    ),
    None,
)


@pytest.fixture
def avahi(lan: Lan, tmp_path: Path) -> Iterator[Avahi]:
    if AVAHI_MISSING:
        pytest.skip(f"avahi cannot run here: {AVAHI_MISSING}")
    daemon = Avahi(lan.hosts[0], tmp_path / "avahi")
    yield daemon
    daemon.stop()


def test_a_real_mdns_stack_sees_our_node_and_we_see_its_services(
    lan: Lan, avahi: Avahi, nodes: list[NodeProcess], tmp_path: Path
) -> None:
    with Replica.init(tmp_path / "laptop1") as replica:
        db_uuid, replica_uuid = replica.db_uuid, replica.uuid
    node = NodeProcess(lan.hosts[1], tmp_path / "laptop1", *on(lan, 1), "--name", "laptop1")
    nodes.append(node)

    # avahi-browse lists our node, resolved, with its TXT record.
    def listed() -> str:
        out = avahi.run("avahi-browse", "-rpt", "_prophet._tcp").stdout
        return next((line for line in out.splitlines() if line.startswith("=")), "")

    eventually(lambda: bool(listed()))
    fields = listed().split(";")
    assert fields[3].startswith("laptop1") and db_uuid in fields[3]
    assert fields[7:9] == ["198.18.0.2", "7420"]
    txt = fields[9]
    for entry in ("v=1", f"r={replica_uuid}", f"d={db_uuid}"):
        assert f'"{entry}"' in txt
    assert len(txt.encode()) < 200

    # A service published by avahi, of our database, is discovered by our browser...
    published = avahi.popen(
        "avahi-publish",
        "-s",
        f"avahi ({db_uuid})",
        "_prophet._tcp",
        "7777",
        "v=1",
        "r=00000000-0000-4000-8000-0000000000aa",
        f"d={db_uuid}",
        "h=00",
    )
    try:
        node.wait_for("discovered http://198.18.0.1:7777")
    finally:
        published.terminate()
        published.wait(timeout=10)
    # ...and dropped when it says goodbye.
    node.wait_for("http://198.18.0.1:7777 left")
