"""What finding forked origins costs an exchange (docs/replication.md, Forked origins).

Two replicas of a database edited by ``--origins`` replicas (20 by default), exchanging
over real HTTP on loopback:

* an idle exchange between the two in sync: requests and bytes on the wire, and its
  time (the heads ride in VECTORS only, which an idle exchange never sends);
* a VECTORS message of those origins with the heads and without them (bytes);
* comparing the peer's heads with the log (``sync/forks.compare``), when every ticket
  is equal and when every ticket differs (one index lookup per origin), in microseconds.

Usage: python bench/forks.py [--origins 20] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe

from p2p_prophet.net import NodeApp, Peer, ReplicaWorker, serve
from p2p_prophet.net.client import new_http_client
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone, transfer
from p2p_prophet.sync.exchange import vectors
from p2p_prophet.sync.forks import compare
from p2p_prophet.wire import Vectors, encode


def world(root: Path, origins: int) -> tuple[Replica, Replica]:
    """Alice and Bob holding the same changesets of ``origins`` origins."""
    alice = Replica.init(root / "alice")
    alice.create("ticket", {"n": 0})
    alice.create("ticket", {"n": 0})
    for i in range(1, origins):
        other, _ = clone(alice, root / f"r{i}")
        with other:
            other.create("ticket", {"n": i})
            other.create("ticket", {"n": i})
            transfer(alice, other)
    bob, _ = clone(alice, root / "bob")
    return alice, bob


class Counting:
    """An HTTP transport that counts requests and bytes both ways."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0


async def idle_exchanges(alice: Replica, bob: Replica, runs: int) -> tuple[int, int, float]:
    """``runs`` syncs of Bob with Alice's node while both are in sync: requests and bytes
    of one, and its median time in ms."""
    import httpx

    counting = Counting()

    async def on_request(request: httpx.Request) -> None:
        counting.requests += 1
        counting.bytes += len(request.content) + sum(
            len(k) + len(v) for k, v in request.headers.raw
        )

    async def on_response(response: httpx.Response) -> None:
        headers = sum(len(k) + len(v) for k, v in response.headers.raw)
        counting.bytes += int(response.headers.get("content-length", 0)) + headers

    times = []
    async with trio.open_nursery() as nursery:
        [url] = await nursery.start(serve, NodeApp(ReplicaWorker(alice)), "127.0.0.1", 0)
        async with new_http_client() as http:
            http.event_hooks = {"request": [on_request], "response": [on_response]}
            async with Peer(url, ReplicaWorker(bob), http=http, attempts=1) as peer:
                await peer.sync()  # warm: the connection is open from here on
                counting.requests = counting.bytes = 0
                for _ in range(runs):
                    start = time.perf_counter()
                    result = await peer.sync()
                    times.append(time.perf_counter() - start)
                    assert result.pulled.changesets.received == 0
        nursery.cancel_scope.cancel()
    return counting.requests // runs, counting.bytes // runs, statistics.median(times) * 1000


def compare_us(replica: Replica, theirs: Vectors, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        compare(replica, theirs)
    return (time.perf_counter() - start) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="CI: few origins and runs")
    args = parser.parse_args()
    origins, runs, repeat = (args.origins, 50, 2000) if not args.quick else (4, 3, 50)
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        alice, bob = world(Path(tmp), origins)
        with alice, bob:
            requests, wire, ms = trio.run(idle_exchanges, alice, bob, runs)
            print(
                f"idle exchange in sync, {origins} origins: {requests} request(s), "
                f"{wire:,} bytes both ways (HTTP headers included), {ms:.2f} ms median"
            )
            mine = vectors(bob)
            plain = Vectors(mine.main, mine.resolutions)
            print(
                f"VECTORS of {origins} origins: {len(encode(mine)):,} bytes with heads, "
                f"{len(encode(plain)):,} without (+{len(encode(mine)) - len(encode(plain))})"
            )
            same = compare_us(alice, vectors(bob), repeat)
            # The same origins, each a changeset behind: every comparison is a lookup.
            older = {o: k - 1 for o, k in mine.main.items() if k > 1}
            behind = Vectors(older, {}, _heads_for(bob, older))
            differ = compare_us(alice, behind, repeat)
            print(
                f"comparing the heads: {same:.0f} us with every ticket equal, "
                f"{differ:.0f} us with {len(behind.main)} tickets behind (one lookup each)"
            )


def _heads_for(replica: Replica, vector: dict[str, int]) -> bytes:
    out = b""
    for origin in sorted(vector):
        id_ = replica.main.changeset_id(origin, vector[origin])
        assert id_ is not None
        out += id_[:8]
    return out


if __name__ == "__main__":
    main()
