"""Discovery over real mDNS: nodes find each other with no --peer, inside network
namespaces of our own (loopback with multicast), never on the machine's interfaces."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import Namespace, NodeProcess, unavailable

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

    for node in ours:
        assert other.url not in node.log  # never discovered, never contacted
    assert "exchange with" not in other.log and "push with" not in other.log
    assert "discovered" not in other.log  # nor did it take them for its own
