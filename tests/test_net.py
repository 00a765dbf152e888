"""Sync over real HTTP on loopback: nodes (hypercorn) and clients (httpx) in one trio loop.

Storage runs on each replica's worker thread exactly as in `p2p-prophet serve`; the
replicas are real SQLite files under tmp_path and every byte crosses a real socket.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
import trio
from conftest import ReplicaFactory
from tcp_proxy import Proxy

from p2p_prophet.errors import Refused
from p2p_prophet.model import Change, ChangeSet, Kind, Op, PropChange
from p2p_prophet.net import NetworkError, NodeApp, Peer, ReplicaWorker, serve
from p2p_prophet.net.client import clone, new_http_client
from p2p_prophet.net.listener import MAX_CONNECTIONS_PER_ADDRESS
from p2p_prophet.store import Replica
from p2p_prophet.sync import exchange
from p2p_prophet.wire import (
    PROTOCOL_VERSION,
    BatchEnd,
    Changeset,
    Error,
    ErrorCode,
    Hello,
    Vectors,
    decode,
    encode,
    encode_batch,
    encode_end,
    frame,
)

StartNode = Callable[..., Awaitable[str]]


@pytest.fixture
def start_node(nursery: trio.Nursery) -> StartNode:
    """``await start_node(replica)``: serve it on a free loopback port; returns its URL."""

    async def start(replica: Replica, **options: Any) -> str:
        app = NodeApp(ReplicaWorker(replica), **options)
        [url] = await nursery.start(serve, app, "127.0.0.1", 0)
        start.apps[url] = app  # type: ignore[attr-defined]
        return str(url)

    start.apps = {}  # type: ignore[attr-defined]
    return start


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


def fill(replica: Replica, n: int, start: int = 0) -> None:
    with replica.edits() as batch:
        for i in range(start, start + n):
            batch.create("ticket", {"summary": f"ticket {i}", "status": "open"})


def peer(url: str, replica: Replica, http: httpx.AsyncClient, **options: Any) -> Peer:
    return Peer(url, ReplicaWorker(replica), http=http, **options)


def state(replica: Replica) -> tuple[str, dict[str, int], int]:
    return replica.main.digest(), replica.main.tickets(), replica.main.latest_seq()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- the happy paths ---------------------------------------------------------------------


async def test_bob_clones_alices_node_then_they_sync_both_ways(
    make_replica: ReplicaFactory, start_node: StartNode, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice = make_replica("alice")
    fill(alice, 50)
    url = await start_node(alice)
    bob, cloned = await clone(url, tmp_path / "bob", http=http)
    with bob:
        assert cloned.changesets.integrated == 50 and bob.db_uuid == alice.db_uuid
        assert bob.main.digest() == alice.main.digest()

        first = next(iter(alice.main.live_records("ticket"))).uuid
        alice.update("ticket", first, {"status": "stalled"})
        bob.update("ticket", first, {"status": "closed"})
        bob.create("ticket", {"summary": "bob's own"})
        result = await peer(url, bob, http).sync()
        assert result.pulled.changesets.integrated == 1  # Alice's edit
        assert result.pulled.changesets.conflicts == 1
        assert result.pushed.changesets.integrated == 3  # Bob's two edits and his answer
        assert bob.main.digest() == alice.main.digest()
        assert bob.main.tickets() == alice.main.tickets()


async def test_pull_and_push_each_go_one_way(
    make_replica: ReplicaFactory, start_node: StartNode, http: httpx.AsyncClient, cloned_pair: Any
) -> None:
    alice, bob = cloned_pair
    url = await start_node(alice)
    fill(alice, 3, 100)
    fill(bob, 2, 200)
    pulled = await peer(url, bob, http).pull()
    assert pulled.changesets.integrated == 3
    assert alice.main.count_live() == 10 + 3  # the pull moved nothing to Alice
    pushed = await peer(url, bob, http).push()
    assert pushed.changesets.integrated == 2
    assert alice.main.digest() == bob.main.digest()


@pytest.fixture
def cloned_pair(make_replica: ReplicaFactory, tmp_path: Path) -> tuple[Replica, Replica]:
    from p2p_prophet.sync import clone as path_clone

    alice = make_replica("alice")
    fill(alice, 10)
    bob, _ = path_clone(alice, tmp_path / "bob")
    return alice, bob


async def test_three_nodes_converge_with_one_answer_per_conflict(
    make_replica: ReplicaFactory, start_node: StartNode, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice = make_replica("alice")
    fill(alice, 5)
    urls = {"alice": await start_node(alice)}
    bob, _ = await clone(urls["alice"], tmp_path / "bob", http=http)
    carol, _ = await clone(urls["alice"], tmp_path / "carol", http=http)
    replicas = {"alice": alice, "bob": bob, "carol": carol}
    urls["bob"] = await start_node(bob)
    urls["carol"] = await start_node(carol)
    hot = next(iter(alice.main.live_records("ticket"))).uuid
    for name, replica in replicas.items():
        replica.update("ticket", hot, {"owner": name})  # one three-way conflict
        fill(replica, 2, 1000)
    # A ring of syncs, twice round: everything reaches everyone.
    for _ in range(2):
        for me, other in (("alice", "bob"), ("bob", "carol"), ("carol", "alice")):
            await peer(urls[other], replicas[me], http).sync()
    digests = {r.main.digest() for r in replicas.values()}
    assert len(digests) == 1
    assert len({tuple(sorted(r.main.tickets().items())) for r in replicas.values()}) == 1
    # Every replica met the conflict and recorded it for `p2p-prophet conflicts`.
    assert all(
        r.main.conn.execute("SELECT count(*) FROM conflicts").fetchone()[0]
        for r in replicas.values()
    )
    for replica in (bob, carol):
        replica.close()


async def test_an_idle_sync_is_one_small_request(
    start_node: StartNode, http: httpx.AsyncClient, cloned_pair: Any, nursery: trio.Nursery
) -> None:
    alice, bob = cloned_pair
    url = await start_node(alice)
    proxy = Proxy(port_of(url))
    await nursery.start(proxy.run)
    result = await peer(proxy.url, bob, http).sync()
    assert result.pulled.changesets.received == result.pushed.changesets.received == 0
    assert [r.endpoint for r in start_node.apps[url].history] == ["hello"]  # type: ignore[attr-defined]
    assert proxy.bytes_up + proxy.bytes_down <= 512


# -- interruptions -------------------------------------------------------------------------


async def test_a_pull_cut_mid_stream_keeps_whole_batches_and_resends_nothing(
    make_replica: ReplicaFactory,
    start_node: StartNode,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
) -> None:
    alice, bob = make_replica("alice"), None
    fill(alice, 3000)
    url = await start_node(alice, batch_size=250)
    bob = make_replica("bob", db_uuid=alice.db_uuid)
    proxy = Proxy(port_of(url), down_limit=200_000)  # ~1/3 of the stream
    await nursery.start(proxy.run)
    with pytest.raises(
        NetworkError, match=r"stopped in the middle.*the next pull or sync continues"
    ):
        await peer(proxy.url, bob, http, attempts=1).pull()
    kept = bob.main.ticket(alice.uuid)
    assert 0 < kept < 3000 and kept % 250 == 0  # whole batches only
    assert bob.main.latest_seq() == kept and bob.main.count_live() == kept
    assert bob.main.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    rest = await peer(url, bob, http).pull()
    assert rest.changesets.received == 3000 - kept  # nothing sent twice
    assert rest.changesets.skipped == 0
    assert bob.main.digest() == alice.main.digest()


async def test_retries_carry_a_pull_through_a_flaky_link(
    make_replica: ReplicaFactory,
    start_node: StartNode,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
) -> None:
    alice = make_replica("alice")
    fill(alice, 3000)
    url = await start_node(alice, batch_size=250)
    bob = make_replica("bob", db_uuid=alice.db_uuid)
    proxy = Proxy(port_of(url), down_limit=250_000)  # every connection dies part-way
    await nursery.start(proxy.run)
    node = peer(proxy.url, bob, http, attempts=10, backoff=0.01)
    result = await node.pull()
    assert node.retries >= 2 and proxy.cuts >= 2
    assert result.changesets.integrated == 3000 and result.changesets.skipped == 0
    assert bob.main.digest() == alice.main.digest()


async def test_a_push_cut_half_way_leaves_the_node_whole_batches(
    start_node: StartNode, http: httpx.AsyncClient, cloned_pair: Any, nursery: trio.Nursery
) -> None:
    alice, bob = cloned_pair
    fill(bob, 3000, 100)
    url = await start_node(alice)
    before = alice.main.ticket(bob.uuid)
    proxy = Proxy(port_of(url), up_limit=250_000)
    await nursery.start(proxy.run)
    with pytest.raises(NetworkError, match="stopped in the middle"):
        await peer(proxy.url, bob, http, attempts=1, batch_size=200).push()
    [cut] = [r for r in start_node.apps[url].history if r.endpoint == "push"]  # type: ignore[attr-defined]
    await cut.finished.wait()  # the node has noticed the vanished caller, and committed
    assert cut.error is not None
    kept = alice.main.ticket(bob.uuid)
    assert before == 0 and 0 < kept < 3000 and kept % 200 == 0
    assert alice.main.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rest = await peer(url, bob, http).push()
    assert rest.changesets.received == 3000 - kept
    assert alice.main.digest() == bob.main.digest()


# -- refusals seen by the client -------------------------------------------------------------


async def test_connection_refused_is_retried_with_backoff_then_explained(
    make_replica: ReplicaFactory, http: httpx.AsyncClient, autojump_clock: trio.abc.Clock
) -> None:
    bob = make_replica("bob")
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = trio.current_time()
    node = peer(f"http://127.0.0.1:{port}", bob, http, attempts=4, backoff=1.0)
    with pytest.raises(NetworkError, match=r"connection refused.*tried 4 times"):
        await node.pull()
    waited = trio.current_time() - start
    assert node.retries == 3
    assert (1 + 2 + 4) * 0.5 <= waited <= (1 + 2 + 4) * 1.5  # doubling, with jitter


async def test_a_node_of_another_database_is_refused_both_ways(
    make_replica: ReplicaFactory, start_node: StartNode, http: httpx.AsyncClient
) -> None:
    alice, stranger = make_replica("alice"), make_replica("stranger")
    fill(stranger, 2)
    fill(alice, 1)
    url = await start_node(alice)
    for operation in (peer(url, stranger, http).pull, peer(url, stranger, http).push):
        with pytest.raises(Refused, match="pull with --force") as refusal:
            await operation()
        assert refusal.value.code is ErrorCode.WRONG_DATABASE
    assert alice.main.latest_seq() == 1
    forced = await peer(url, stranger, http).pull(force=True)  # the puller's consent
    assert forced.changesets.integrated == 1


async def test_something_that_is_not_a_node_is_named_as_such(
    make_replica: ReplicaFactory, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    async def web_page(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await _lifespan(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html")],
            }
        )
        await send({"type": "http.response.body", "body": b"<html></html>"})

    [url] = await nursery.start(serve, web_page, "127.0.0.1", 0)
    with pytest.raises(Refused, match=r"not a p2p-prophet node.*text/html") as refusal:
        await peer(url, make_replica("bob"), http).pull()
    assert refusal.value.code is ErrorCode.MALFORMED


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while scope["type"] == "lifespan":
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


def _fake_node(responses: dict[str, bytes]) -> Any:
    """An ASGI app answering each path with fixed bytes, as a broken or hostile node."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await _lifespan(scope, receive, send)
            return
        while (await receive()).get("more_body"):
            pass
        body = responses[scope["path"]]
        headers = [(b"content-type", b"application/cbor-seq")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _hello_like(replica: Replica, version: int = PROTOCOL_VERSION) -> bytes:
    theirs = exchange.hello(replica)
    fake = Hello(
        theirs.db_uuid,
        "00000000-0000-4000-8000-00000000fa4e",
        theirs.resolutions_uuid[:-4] + "fa4e",
        b"\0" * 8,
        b"\0" * 8,
        version,
    )
    return encode(fake)


def _edit(origin: str, seq: int) -> bytes:
    return ChangeSet(
        origin,
        seq,
        "mallory",
        10 + seq,
        Kind.EDIT,
        (
            Change(
                "ticket",
                f"00000000-0000-4000-8000-{seq:012x}",
                Op.CREATE,
                (PropChange("n", None, seq),),
            ),
        ),
    ).encode()


MALLORY = "00000000-0000-4000-8000-00000000fa4e"


@pytest.mark.parametrize(
    "tail, code",
    [
        # The second batch carries a changeset whose id does not match its body.
        (
            encode(Changeset(b"\x01" * 32, _edit(MALLORY, 3))) + encode(BatchEnd(1)),
            "invalid-changeset",
        ),
        # The second batch skips #3: a gap in the origin's changesets.
        (
            encode_batch(
                [(hashlib.sha256(_edit(MALLORY, 4)).digest(), _edit(MALLORY, 4), None)],
                resolution=False,
            ),
            "invalid-changeset",
        ),
        # The node stops after the first batch.
        (b"", "truncated"),
        # Garbage where the second batch should be.
        (frame(b"\xff\xff"), "malformed"),
    ],
)
async def test_a_broken_node_costs_the_puller_nothing_but_the_bad_batch(
    make_replica: ReplicaFactory,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    tail: bytes,
    code: str,
) -> None:
    bob = make_replica("bob")
    first = [(hashlib.sha256(b).digest(), b, None) for b in (_edit(MALLORY, 1), _edit(MALLORY, 2))]
    stream = (
        encode(Vectors({MALLORY: 4}, {}, bytes(8))) + encode_batch(first, resolution=False) + tail
    )
    if tail:
        stream += encode_end()
    app = _fake_node({"/prophet/hello": _hello_like(bob), "/prophet/exchange": stream})
    [url] = await nursery.start(serve, app, "127.0.0.1", 0)
    with pytest.raises((NetworkError, Refused)) as err:
        await peer(url, bob, http, attempts=1).pull()
    assert code in str(err.value) or (code == "truncated" and "stopped" in str(err.value))
    assert bob.main.ticket(MALLORY) == 2  # the first batch, whole, and nothing else
    assert bob.main.latest_seq() == 2


async def test_a_node_speaking_another_version_is_explained(
    make_replica: ReplicaFactory, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    bob = make_replica("bob")
    hello_v4 = frame(cbor2.dumps([0, 4, "what version 4 says"]))
    [url] = await nursery.start(serve, _fake_node({"/prophet/hello": hello_v4}), "127.0.0.1", 0)
    with pytest.raises(Refused, match=r"protocol version 4.*speaks 3.*Upgrade") as refusal:
        await peer(url, bob, http).pull()
    assert refusal.value.code is ErrorCode.UNSUPPORTED_VERSION


# -- refusals seen by the node -----------------------------------------------------------------


async def _post(http: httpx.AsyncClient, url: str, body: bytes) -> tuple[int, Error]:
    response = await http.post(url, content=body)
    [content] = await _frames(response.content)
    message = decode(content)
    assert isinstance(message, Error)
    return response.status_code, message


async def _frames(data: bytes) -> list[bytes]:
    from p2p_prophet.wire import FrameDecoder

    decoder = FrameDecoder()
    frames = decoder.feed(data)
    decoder.close()
    return frames


async def test_hostile_requests_are_refused_with_a_reason_and_write_nothing(
    make_replica: ReplicaFactory, start_node: StartNode, http: httpx.AsyncClient, cloned_pair: Any
) -> None:
    alice, bob = cloned_pair
    url = await start_node(alice)
    before = (state(alice), alice.resolutions.tickets())
    mine = exchange.hello(bob)
    vectors = exchange.vectors(bob)
    good = encode(mine) + encode(vectors)
    edit = _edit(bob.uuid, bob.main.ticket(bob.uuid) + 1)
    v3 = frame(cbor2.dumps([0, 4, "x"]))  # a version this node does not speak
    stranger = Hello(
        "00000000-0000-4000-8000-0000000000ff",
        mine.replica_uuid,
        mine.resolutions_uuid,
        mine.main_digest,
        mine.resolutions_digest,
    )
    cases = [
        ("/prophet/exchange", b"\xde\xad\xbe\xef", 400, ErrorCode.MALFORMED),
        ("/prophet/exchange", frame(b"\xff"), 400, ErrorCode.MALFORMED),
        (
            "/prophet/exchange",
            bytes([0x5B]) + (1 << 40).to_bytes(8, "big"),
            413,
            ErrorCode.TOO_LARGE,
        ),
        ("/prophet/exchange", v3 + encode(vectors), 400, ErrorCode.UNSUPPORTED_VERSION),
        ("/prophet/exchange", encode(stranger) + encode(vectors), 409, ErrorCode.WRONG_DATABASE),
        ("/prophet/exchange", good[:-3], 400, ErrorCode.TRUNCATED),
        (
            "/prophet/push",
            encode(stranger) + encode(vectors) + encode_end(),
            409,
            ErrorCode.WRONG_DATABASE,
        ),
        (
            "/prophet/push",
            good + encode(Changeset(b"\x02" * 32, edit)) + encode(BatchEnd(1, True)),
            422,
            ErrorCode.INVALID_CHANGESET,
        ),
        (
            "/prophet/push",
            good
            + encode_batch(
                [(hashlib.sha256(_edit(bob.uuid, 99)).digest(), _edit(bob.uuid, 99), None)],
                resolution=False,
            )
            + encode_end(),
            422,
            ErrorCode.INVALID_CHANGESET,
        ),
        (
            "/prophet/push",
            good + encode(Changeset(hashlib.sha256(edit).digest(), edit)),  # no batch end
            400,
            ErrorCode.TRUNCATED,
        ),
        (
            "/prophet/push",
            good + bytes([0x5A]) + (1 << 30).to_bytes(4, "big"),
            413,
            ErrorCode.TOO_LARGE,
        ),
    ]
    for path, body, status, code in cases:
        got_status, error = await _post(http, url + path, body)
        assert (got_status, error.code) == (status, code), (path, body[:20], error.message)
        assert error.message  # a reason a person can read
        assert (state(alice), alice.resolutions.tickets()) == before, (path, code)
    # ...and the node still serves its members.
    assert (await peer(url, bob, http).pull()).changesets.received == 0
    bob.create("ticket", {"summary": "still welcome"})
    assert (await peer(url, bob, http).push()).changesets.integrated == 1


async def test_unknown_paths_and_methods_get_cbor_errors(
    make_replica: ReplicaFactory, start_node: StartNode, http: httpx.AsyncClient
) -> None:
    url = await start_node(make_replica("alice"))
    response = await http.get(url + "/prophet/nothing")
    assert response.status_code == 404
    response = await http.get(url + "/prophet/exchange")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    [content] = await _frames(response.content)
    error = decode(content)
    assert isinstance(error, Error) and error.code is ErrorCode.METHOD_NOT_ALLOWED


async def test_a_node_whose_disk_is_full_refuses_a_push_and_loses_nothing(
    start_node: StartNode, http: httpx.AsyncClient, cloned_pair: Any
) -> None:
    alice, bob = cloned_pair
    fill(bob, 2000, 100)
    url = await start_node(alice)
    before = state(alice)
    # Cap Alice's file at its current size: SQLite fails as on a full disk.
    pages = alice.main.conn.execute("PRAGMA page_count").fetchone()[0]
    alice.main.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(Refused, match=r"cannot store changesets.*disk is full") as refusal:
        await peer(url, bob, http, attempts=2, backoff=0.01).push()
    assert refusal.value.code is ErrorCode.UNAVAILABLE
    assert state(alice) == before
    alice.main.conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert (await peer(url, bob, http).push()).changesets.integrated == 2000
    assert alice.main.digest() == bob.main.digest()


async def test_an_interrupted_clone_is_finished_by_a_pull(
    make_replica: ReplicaFactory,
    start_node: StartNode,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    tmp_path: Path,
) -> None:
    alice = make_replica("alice")
    fill(alice, 2000)
    url = await start_node(alice, batch_size=250)
    proxy = Proxy(port_of(url), down_limit=150_000)
    await nursery.start(proxy.run)
    with pytest.raises(NetworkError, match="stopped in the middle"):
        await clone(proxy.url, tmp_path / "bob", http=http, attempts=1)
    with Replica.open(tmp_path / "bob") as bob:
        kept = bob.main.ticket(alice.uuid)
        assert 0 < kept < 2000 and bob.db_uuid == alice.db_uuid
        rest = await peer(url, bob, http).pull()
        assert rest.changesets.received == 2000 - kept
        assert bob.main.digest() == alice.main.digest()


async def test_many_short_connections_from_one_address_do_not_pile_up(
    start_node: StartNode, cloned_pair: Any
) -> None:
    alice, bob = cloned_pair
    url = await start_node(alice)
    # More syncs in a row, each on a connection of its own (as `p2p-prophet sync` in a
    # loop), than the node keeps connections from one address: each is closed as soon as
    # its client is gone, not kept until a keep-alive timeout.
    for _ in range(3 * MAX_CONNECTIONS_PER_ADDRESS):
        async with new_http_client() as http:
            await peer(url, bob, http, attempts=1).sync()
