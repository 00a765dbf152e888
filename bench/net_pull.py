"""Network replication throughput and the cost of an idle sync, over loopback, plain and
secured.

Prints, for a clone of 100,000 changesets (one create of 3 properties each), twice: for
a database without members (``init --insecure``, the node served ``--insecure``: plain
HTTP, unsigned changesets) and for one with members (TLS 1.3 pinned to the members,
every changeset chained and signed, the clone made with an invite and verifying every
link and one signature per run):

* over the network: a node (`p2p-prophet serve`, its own process) and a cloning client
  (another process) -- changesets/s, bytes of transfer stream per changeset, peak RSS of
  each;
* path to path, the same clone in one process (the replication issue's figure);

and for an idle sync between two replicas already in sync: bytes on the wire both ways
(counted by a loopback TCP proxy, so HTTP headers and TLS records included) and
milliseconds.

Usage: python bench/net_pull.py [--n 100000] [--idle 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the counting proxy the tests use


def run_child(*args: str) -> tuple[dict[str, Any], int]:
    """Run this script in ``--child`` mode; return its JSON and its peak RSS in KiB."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child {args[0]} failed ({process.returncode})")
    return json.loads(out), usage.ru_maxrss


LOOPBACK = ("--host", "127.0.0.1", "--port", "0", "--no-mdns")


class Node:
    """`p2p-prophet serve` in its own process (``--insecure`` unless ``secure``)."""

    def __init__(self, replica: Path, secure: bool) -> None:
        insecure = () if secure else ("--insecure",)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "p2p_prophet",
                "-R",
                str(replica),
                "serve",
                *LOOPBACK,
                *insecure,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "serving replica" in line:
                self.url = line.rsplit(" at ", 1)[1].strip()
                break
        else:
            raise SystemExit("the node did not start")

    def stop(self) -> int:
        """Stop it; return its peak RSS in KiB."""
        self.process.terminate()
        assert self.process.stderr is not None
        self.process.stderr.read()
        _, _, usage = os.wait4(self.process.pid, 0)
        return usage.ru_maxrss


# -- the child processes -------------------------------------------------------------------


def child(mode: str, *args: str) -> dict[str, Any]:
    import trio

    from p2p_prophet.net import Peer, ReplicaWorker
    from p2p_prophet.net.client import Progress, clone, new_http_client
    from p2p_prophet.store import Replica
    from p2p_prophet.sync import clone as path_clone

    if mode == "fill":
        from pull import fill

        from p2p_prophet.security import Identity
        from p2p_prophet.security.membership import add_member

        path, n, secure = Path(args[0]), int(args[1]), args[2] == "secure"
        if secure:
            me = Identity.generate()
            made = Replica.init(
                path, identity=me, prepare=lambda r: add_member(r, me.certificate_pem, "bench")
            )
        else:
            made = Replica.init(path)
        with made as source:
            fill(source, n)
            return {"digest": source.main.digest()}

    if mode == "invite":
        from p2p_prophet.security.invite import create_invite

        with Replica.open(Path(args[0])) as source:
            return {"token": create_invite(source, [args[1]]).encode()}

    if mode == "path-clone":
        with Replica.open(Path(args[0])) as source:
            start = time.perf_counter()
            dest, result = path_clone(source, Path(args[1]))
            seconds = time.perf_counter() - start
            with dest:
                return {
                    "seconds": seconds,
                    "n": result.changesets.integrated,
                    "digest": dest.main.digest(),
                }

    if mode == "net-clone":
        from p2p_prophet.net.client import clone_with_invite
        from p2p_prophet.security.invite import Invite

        url, path = args  # a URL, or an invite token for a secured node
        last: list[Progress] = []

        async def run() -> dict[str, Any]:
            async with new_http_client() as http:
                start = time.perf_counter()
                if url.startswith("http"):
                    dest, result = await clone(url, Path(path), http=http, progress=last.append)
                else:
                    dest, result = await clone_with_invite(
                        Invite.decode(url), Path(path), progress=last.append
                    )
                seconds = time.perf_counter() - start
            with dest:
                return {
                    "seconds": seconds,
                    "n": result.changesets.integrated,
                    "bytes": max(p.bytes for p in last if p.direction == "pull"),
                    "digest": dest.main.digest(),
                }

        return trio.run(run)

    if mode == "idle":
        from tcp_proxy import Proxy

        from p2p_prophet.security.membership import trusted_peers
        from p2p_prophet.security.tls import client_context

        url, path, rounds = args[0], args[1], int(args[2])

        async def idle() -> dict[str, Any]:
            proxy = Proxy(int(url.rsplit(":", 1)[1]))
            samples = []
            with Replica.open(Path(path)) as replica:
                tls = None
                if replica.identity is not None:
                    tls = client_context(replica.identity, trusted_peers(replica))
                scheme = "https" if tls is not None else "http"
                async with trio.open_nursery() as nursery:
                    await nursery.start(proxy.run)
                    target = scheme + "://" + proxy.url.split("://", 1)[1]
                    for _ in range(rounds):
                        # A fresh client each time: an idle sync as `p2p-prophet sync` does
                        # it, TCP connection set-up included.
                        up, down = proxy.bytes_up, proxy.bytes_down
                        start = time.perf_counter()
                        async with (
                            new_http_client(tls=tls) as http,
                            Peer(target, ReplicaWorker(replica), http=http) as peer,
                        ):
                            result = await peer.sync()
                        samples.append(
                            (
                                time.perf_counter() - start,
                                proxy.bytes_up - up,
                                proxy.bytes_down - down,
                            )
                        )
                        assert result.pulled.changesets.received == 0
                    # As a running node will: one client, its connection kept alive.
                    reused = []
                    async with (
                        new_http_client(tls=tls) as http,
                        Peer(target, ReplicaWorker(replica), http=http) as peer,
                    ):
                        for _ in range(rounds):
                            start = time.perf_counter()
                            await peer.sync()
                            reused.append(time.perf_counter() - start)
                    nursery.cancel_scope.cancel()
            return {
                "reused_ms": statistics.median(reused) * 1000,
                "ms": statistics.median(s[0] for s in samples) * 1000,
                "up": max(s[1] for s in samples),
                "down": max(s[2] for s in samples),
            }

        return trio.run(idle)
    raise SystemExit(f"unknown mode {mode}")


# -- the benchmark -----------------------------------------------------------------------------


def measure(root: Path, n: int, idle_rounds: int, secure: bool) -> dict[str, Any]:
    """Fill a source, clone it by path and over the network, time idle syncs."""
    kind = "secure" if secure else "plain"
    source = root / f"source-{kind}"
    filled, _ = run_child("fill", str(source), str(n), kind)
    path, path_rss = run_child("path-clone", str(source), str(root / f"by-path-{kind}"))
    assert path["digest"] == filled["digest"]
    node = Node(source, secure)
    try:
        if secure:
            token, _ = run_child("invite", str(source), node.url)
            how = token["token"]
        else:
            how = node.url
        net, client_rss = run_child("net-clone", how, str(root / f"by-net-{kind}"))
        # A clone with an invite ends by adding its member record and removing the
        # invite's: two changesets more than the source had when it was filled.
        assert net["n"] >= n
        if not secure:
            assert net["digest"] == filled["digest"]
        idle, _ = run_child("idle", node.url, str(root / f"by-net-{kind}"), str(idle_rounds))
    finally:
        server_rss = node.stop()
    return {
        "net": net,
        "path": path,
        "idle": idle,
        "rss": (server_rss, client_rss, path_rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=20, help="idle syncs to time")
    parser.add_argument("--quick", action="store_true", help="small figures, for CI")
    args = parser.parse_args()
    if args.quick:
        args.n, args.idle = 2_000, 3
    from machine import describe

    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "plain HTTP, unsigned": measure(Path(tmp), args.n, args.idle, secure=False),
            "TLS 1.3, signed": measure(Path(tmp), args.n, args.idle, secure=True),
        }

    n = args.n
    print(f"machine: {describe()}")
    print(f"clone of {n:,} changesets")
    rates = {}
    for label, run in runs.items():
        net, path = run["net"], run["path"]
        rates[label] = n / net["seconds"]
        server_rss, client_rss, path_rss = run["rss"]
        print(f"  {label}")
        print(
            f"    over the network (loopback) {net['seconds']:7.2f} s"
            f"  {n / net['seconds']:>8,.0f} changesets/s"
            f"  {net['bytes'] / n:6.1f} bytes/changeset of transfer stream"
        )
        print(
            f"    path to path                {path['seconds']:7.2f} s"
            f"  {n / path['seconds']:>8,.0f} changesets/s"
        )
        print(
            f"    network / path time         {net['seconds'] / path['seconds']:7.2f}x"
            "  (goal <= 1.5x; goal >= 15,000 changesets/s)"
        )
        print(
            f"    peak RSS: node {server_rss / 1024:.0f} MiB, client {client_rss / 1024:.0f} MiB,"
            f" path-to-path process {path_rss / 1024:.0f} MiB"
        )
    plain, secure = rates.values()
    print(f"  signed and encrypted / plain throughput: {secure / plain:.2f} (goal >= 0.67)")
    print(f"idle sync (in sync already), median of {args.idle}")
    for label, run in runs.items():
        idle = run["idle"]
        total = idle["up"] + idle["down"]
        print(
            f"  {label}: {idle['up']} bytes up + {idle['down']} bytes down = {total}"
            f" (goal <= 512); {idle['ms']:.1f} ms with a new client (as the CLI's `sync`),"
            f" {idle['reused_ms']:.1f} ms with one client (as a running node)"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], *sys.argv[3:])))
    else:
        main()
