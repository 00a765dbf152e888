"""Discovery over real mDNS: nodes find each other with no --peer, inside network
namespaces of our own (loopback with multicast), never on the machine's interfaces."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import Avahi, Lan, Namespace, NodeProcess, unavailable
from zeroconf import DNSIncoming, DNSText

from p2p_prophet.net.node import read_status
from p2p_prophet.security import Identity
from p2p_prophet.security.discovery import discovery_key, new_secret, replica_secret
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone
from p2p_prophet.wire import PROTOCOL_VERSION

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no network namespaces: {REASON}")

MDNS_ON_LO = ("--host", "127.0.0.1", "--port", "0", "--mdns-interface", "127.0.0.1")
FAST = ("--interval", "0.5")
PLAIN = ("--insecure",)  # for a plain replica (no identity): plain HTTP, no TLS


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

    other = NodeProcess(ns, stranger, *MDNS_ON_LO, *FAST, *PLAIN, "--name", "stranger")
    nodes.append(other)
    for path in paths:
        nodes.append(NodeProcess(ns, path, *MDNS_ON_LO, *FAST, *PLAIN, "--name", path.name))
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
        node = NodeProcess(lan.hosts[i], paths[i], *on(lan, i), *PLAIN, "--name", f"laptop{i}")
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
        replica_uuid = replica.uuid
        key = discovery_key(replica_secret(replica), replica.db_uuid)
    node = NodeProcess(lan.hosts[1], tmp_path / "laptop1", *on(lan, 1), *PLAIN, "--name", "laptop1")
    nodes.append(node)

    # avahi-browse lists our node, resolved, with its TXT record.
    def listed() -> str:
        out = avahi.run("avahi-browse", "-rpt", "_prophet._tcp").stdout
        return next((line for line in out.splitlines() if line.startswith("=")), "")

    eventually(lambda: bool(listed()))
    fields = listed().split(";")
    assert fields[3].startswith("laptop1") and key in fields[3]
    assert fields[7:9] == ["198.18.0.2", "7420"]
    txt = fields[9]
    for entry in (f"v={PROTOCOL_VERSION}", f"r={replica_uuid}", f"k={key}"):
        assert f'"{entry}"' in txt
    assert len(txt.encode()) < 200

    # A service published by avahi, of our database, is discovered by our browser...
    published = avahi.popen(
        "avahi-publish",
        "-s",
        f"avahi ({key})",
        "_prophet._tcp",
        "7777",
        f"v={PROTOCOL_VERSION}",
        "r=00000000-0000-4000-8000-0000000000aa",
        f"k={key}",
        "h=00",
    )
    try:
        node.wait_for("discovered http://198.18.0.1:7777")
    finally:
        published.terminate()
        published.wait(timeout=10)
    # ...and dropped when it says goodbye.
    node.wait_for("http://198.18.0.1:7777 left")


# -- what a stranger on the LAN sees ------------------------------------------------------

STRANGER = Path(__file__).with_name("mdns_stranger.py")


class Stranger:
    """tests/mdns_stranger.py in a namespace: python-zeroconf browsing ``_prophet._tcp``
    and a socket recording every mDNS packet, as any program on the LAN could."""

    def __init__(self, ns: Namespace, address: str) -> None:
        self.process = subprocess.Popen(
            ns.command(sys.executable, str(STRANGER), address),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.documents: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        eventually(lambda: any(d.get("ready") for d in list(self.documents)))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.documents.append(json.loads(line))

    @property
    def services(self) -> list[dict[str, Any]]:
        """Every service it resolved, again at each update, in order."""
        return [d for d in list(self.documents) if "name" in d]

    @property
    def removed(self) -> list[str]:
        """The services it heard say goodbye, by instance name."""
        return [d["removed"] for d in list(self.documents) if "removed" in d]

    def cache(self) -> list[dict[str, Any]]:
        """Every record in its zeroconf cache now."""
        assert self.process.stdin is not None
        asked = len(self.documents)
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        eventually(lambda: any("cache" in d for d in self.documents[asked:]))
        return next(d for d in self.documents[asked:] if "cache" in d)["cache"]  # type: ignore[no-any-return]

    def finish(self) -> dict[str, Any]:
        """Everything it heard: the raw packets and zeroconf's cache."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=20)
        self._reader.join(5)
        return next(d for d in self.documents if "packets" in d)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def strangers() -> Iterator[list[Stranger]]:
    started: list[Stranger] = []
    yield started
    for stranger in started:
        stranger.stop()


def secret_forms(db_uuid: str, secret: bytes, identity: Identity) -> dict[str, bytes]:
    """Every form of what must never go on the LAN."""
    raw_key = identity.key.private_bytes_raw()
    pem_body = b"".join(identity.key_pem().splitlines()[1:-1])
    return {
        "the database id": db_uuid.encode(),
        "the database id without dashes": db_uuid.replace("-", "").encode(),
        "the database id as 16 bytes": uuid.UUID(db_uuid).bytes,
        "the discovery secret": secret,
        "the discovery secret in hex": secret.hex().encode(),
        "the identity's private key": raw_key,
        "the identity's private key in hex": raw_key.hex().encode(),
        "the identity's private key in PEM": pem_body,
    }


def leaked(blob: bytes, forms: dict[str, bytes]) -> list[str]:
    """The forms found in ``blob``, in any case."""
    lowered = blob.lower()
    return [what for what, form in forms.items() if form in blob or form.lower() in lowered]


def test_a_stranger_on_the_lan_sees_a_discovery_key_never_the_database_id_or_a_secret(
    ns: Namespace, nodes: list[NodeProcess], strangers: list[Stranger], tmp_path: Path
) -> None:
    path = tmp_path / "laptop"
    # A signed replica: an identity, and a discovery secret made with the database.
    with Replica.init(path, identity=Identity.generate()) as replica:
        replica.create("ticket", {"summary": "private"})
        db_uuid, replica_uuid = replica.db_uuid, replica.uuid
        secret, identity = replica_secret(replica), replica.identity
    assert identity is not None
    forms = secret_forms(db_uuid, secret, identity)
    key = discovery_key(secret, db_uuid)

    stranger = Stranger(ns, "127.0.0.1")  # listening before the node announces itself
    strangers.append(stranger)
    node = NodeProcess(ns, path, *MDNS_ON_LO, *FAST, "--name", "laptop")
    nodes.append(node)
    assert db_uuid in node.wait_for("advertising")  # the local log names it; the LAN not
    eventually(lambda: bool(stranger.services))
    with Replica.open(path) as cli:  # an edit: the TXT record is updated with the digest
        cli.create("ticket", {"summary": "also private"})
    eventually(lambda: len({s["properties"]["h"] for s in stranger.services}) == 2)
    cache = stranger.cache()
    assert node.stop() == 0  # and the goodbye, which the stranger's browser hears
    eventually(lambda: bool(stranger.removed))
    heard = stranger.finish()

    # What a browser shows: our node, under the discovery key.
    for service in stranger.services:
        assert service["properties"] == {
            "v": str(PROTOCOL_VERSION),
            "r": replica_uuid,
            "k": key,
            "h": service["properties"]["h"],
        }
        assert service["name"] == f"laptop ({key})._prophet._tcp.local."
        assert service["server"] == f"p2p-prophet-{replica_uuid[:8]}.local."
        shown = json.dumps({k: v for k, v in service.items() if k != "text"}).encode()
        assert leaked(shown, forms) == []
        assert leaked(bytes.fromhex(service["text"]), forms) == []
    # Every record it cached, and every byte of every packet multicast while it listened
    # (probes, announcements, the update, the goodbye).
    assert any(entry["text"] for entry in cache) and heard["packets"]
    for entry in cache + heard["cache"]:
        assert leaked(json.dumps({**entry, "text": ""}).encode(), forms) == []
        assert leaked(bytes.fromhex(entry["text"]), forms) == []
    packets = [bytes.fromhex(p) for p in heard["packets"]]
    for packet in packets:
        assert leaked(packet, forms) == []
    assert any(key.encode() in packet for packet in packets)
    goodbyes = [
        record
        for packet in packets
        for record in DNSIncoming(packet).answers()
        if isinstance(record, DNSText) and record.ttl == 0
    ]
    assert goodbyes and all(f"k={key}".encode() in record.text for record in goodbyes)


def test_only_nodes_that_hold_the_databases_secret_find_each_other(
    ns: Namespace, nodes: list[NodeProcess], strangers: list[Stranger], tmp_path: Path
) -> None:
    paths = [tmp_path / name for name in ("alice", "bob", "carol")]
    # Three replicas of one database id; carol's discovery secret is not the others'.
    db_uuid = str(uuid.uuid4())
    secret, other_secret = new_secret(), new_secret()
    for path, its_secret in zip(paths, (secret, secret, other_secret), strict=True):
        Replica.init(
            path, db_uuid=db_uuid, identity=Identity.generate(), discovery_secret=its_secret
        ).close()
    ours, theirs = discovery_key(secret, db_uuid), discovery_key(other_secret, db_uuid)
    assert ours != theirs

    stranger = Stranger(ns, "127.0.0.1")
    strangers.append(stranger)
    a, b, c = (NodeProcess(ns, p, *MDNS_ON_LO, *FAST, "--name", p.name) for p in paths)
    nodes.extend((a, b, c))
    a.wait_for(f"discovered {b.url}")
    b.wait_for(f"discovered {a.url}")

    # All three advertisements are on the medium, each under its key...
    def keys_seen() -> dict[str, str]:
        return {s["name"].split(" ")[0]: s["properties"]["k"] for s in stranger.services}

    eventually(lambda: len(keys_seen()) == 3)
    assert keys_seen() == {"alice": ours, "bob": ours, "carol": theirs}
    # Each node has seen the other database's advert and set it aside...
    for node in (a, b):
        node.wait_for(f"ignoring carol ({theirs})")
    c.wait_for(f"ignoring alice ({ours})")
    c.wait_for(f"ignoring bob ({ours})")
    # ...and carol's is ignored by alice and bob, theirs by carol.
    for node in (a, b):
        assert c.url not in node.log
    assert "discovered" not in c.log
    assert "exchange with" not in c.log and "push with" not in c.log


def test_avahi_sees_the_discovery_key_and_no_database_id_or_secret(
    lan: Lan, avahi: Avahi, nodes: list[NodeProcess], tmp_path: Path
) -> None:
    path = tmp_path / "laptop1"
    with Replica.init(path, identity=Identity.generate()) as replica:
        db_uuid, replica_uuid = replica.db_uuid, replica.uuid
        secret, identity = replica_secret(replica), replica.identity
    assert identity is not None
    forms = secret_forms(db_uuid, secret, identity)
    key = discovery_key(secret, db_uuid)
    node = NodeProcess(lan.hosts[1], path, *on(lan, 1), "--name", "laptop1")
    nodes.append(node)

    def browsed() -> str:
        return avahi.run("avahi-browse", "-rpt", "_prophet._tcp").stdout

    eventually(lambda: any(line.startswith("=") for line in browsed().splitlines()))
    out = browsed()
    resolved = next(line for line in out.splitlines() if line.startswith("="))
    fields = resolved.split(";")
    assert unescape(fields[3]) == f"laptop1 ({key})"
    assert fields[6] == f"p2p-prophet-{replica_uuid[:8]}.local"
    assert f'"k={key}"' in fields[9] and f'"r={replica_uuid}"' in fields[9]
    for shown in (out, unescape(out)):
        assert leaked(shown.encode(), forms) == []


def unescape(parsable: str) -> str:
    """avahi-browse -p's names, with its \\DDD (decimal) escapes undone."""
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m[1])), parsable)
