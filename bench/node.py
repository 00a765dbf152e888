"""What a node costs and how fast it reacts, two `p2p-prophet serve` processes on loopback.

Prints:

* start-up: time from starting a node to its first completed exchange with a node that
  is already running (median of 5 starts; goal < 2 s);
* edit-to-visible: time from an edit committed on one node's replica (as the CLI commits
  it) to the record being readable on the other's, carried by the rumor (median and 90th
  percentile of 20 edits; goal < 250 ms median);
* an idle pair already in sync, default settings: CPU seconds per minute of each node and
  bytes per minute on the wire both ways (counted by a TCP proxy between them).

mDNS stays off (--no-mdns): the nodes know each other by URL, and nothing is multicast on
this machine's interfaces.  The replicas are plain (``--insecure``): this measures the
node's own costs; bench/net_pull.py measures what TLS and signing add to an exchange.

Usage: python bench/node.py [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the counting proxy the tests use

from machine import describe  # noqa: E402
from tcp_proxy import Proxy  # noqa: E402

from p2p_prophet.store import Replica  # noqa: E402
from p2p_prophet.sync import clone  # noqa: E402

SERVE = (sys.executable, "-m", "p2p_prophet", "-R")
LOOPBACK = ("--host", "127.0.0.1", "--port")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeProcess:
    def __init__(self, replica: Path, port: int, *options: str) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            # Plain replicas (made without members), so plain HTTP: bench/net_pull.py
            # measures what TLS adds to an exchange.
            [
                *SERVE,
                str(replica),
                "serve",
                *LOOPBACK,
                str(port),
                "--no-mdns",
                "--insecure",
                *options,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.perf_counter(), line))

    def first(self, needle: str, timeout: float = 30) -> float:
        """Seconds from the start of the process to the first line holding ``needle``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for at, line in list(self.lines):
                if needle in line:
                    return at - self.started
            time.sleep(0.005)
        raise SystemExit(f"no {needle!r} from the node: {''.join(line for _, line in self.lines)}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


class Proxies:
    """Counting proxies on their own trio thread."""

    def __init__(self, *targets: int) -> None:
        self.proxies = [Proxy(port) for port in targets]
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        threading.Thread(target=trio.run, args=(self._main,), daemon=True).start()
        self._ready.wait(10)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            for proxy in self.proxies:
                await nursery.start(proxy.run)
            self._ready.set()

    def bytes(self) -> int:
        return sum(p.bytes_up + p.bytes_down for p in self.proxies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="small figures, for CI")
    args = parser.parse_args()
    startup_runs, edits = 5, 20
    if args.quick:
        args.idle_seconds, startup_runs, edits = 2.0, 2, 5
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Replica.init(root / "alice") as alice:
            with alice.edits() as batch:
                for i in range(1000):
                    batch.create("ticket", {"summary": f"ticket {i}", "status": "open"})
            clone(alice, root / "bob")[0].close()

        # -- start-up ----------------------------------------------------------------------
        a_port = free_port()
        alice_node = NodeProcess(root / "alice", a_port)
        alice_node.first("serving replica")
        startups = []
        for _ in range(startup_runs):
            bob_node = NodeProcess(root / "bob", free_port(), "--peer", alice_node.url)
            startups.append(bob_node.first(f"anti-entropy with {alice_node.url}: ok"))
            bob_node.stop()
        alice_node.stop()

        # -- edit to visible ----------------------------------------------------------------
        a_port, b_port = free_port(), free_port()
        alice_node = NodeProcess(root / "alice", a_port, "--peer", f"http://127.0.0.1:{b_port}")
        bob_node = NodeProcess(root / "bob", b_port, "--peer", alice_node.url)
        bob_node.first(f"anti-entropy with {alice_node.url}: ok")
        latencies = []
        with Replica.open(root / "alice") as writer, Replica.open(root / "bob") as reader:
            spacing = random.Random(1)
            for i in range(edits):
                # Edits a few tenths of a second apart, at no fixed beat (a fixed one would
                # lock onto the node's 0.1 s watch and measure the beat, not the node).
                time.sleep(0.3 + 0.2 * spacing.random())
                uuid = writer.create("ticket", {"summary": f"edit {i}"})
                start = time.perf_counter()
                deadline = start + 10
                while reader.main.find_record("ticket", uuid) is None:
                    if time.perf_counter() > deadline:
                        raise SystemExit("an edit did not arrive within 10 s")
                    time.sleep(0.002)
                latencies.append(time.perf_counter() - start)
        alice_node.stop()
        bob_node.stop()

        # -- an idle pair -------------------------------------------------------------------
        a_port, b_port = free_port(), free_port()
        proxies = Proxies(a_port, b_port)
        to_alice, to_bob = (f"http://127.0.0.1:{p.port}" for p in proxies.proxies)
        alice_node = NodeProcess(root / "alice", a_port, "--peer", to_bob)
        bob_node = NodeProcess(root / "bob", b_port, "--peer", to_alice)
        for node in (alice_node, bob_node):
            node.first("serving replica")
        time.sleep(3)  # past the first meeting
        cpu0 = [n.cpu_seconds() for n in (alice_node, bob_node)]
        bytes0 = proxies.bytes()
        time.sleep(args.idle_seconds)
        cpu = [n.cpu_seconds() - c for n, c in zip((alice_node, bob_node), cpu0, strict=True)]
        wire = proxies.bytes() - bytes0
        alice_node.stop()
        bob_node.stop()

    per_minute = 60 / args.idle_seconds
    latencies_ms = sorted(x * 1000 for x in latencies)
    print(f"machine: {describe()}")
    print(
        f"start-up to first exchange: median {statistics.median(startups):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s in startups)}; goal < 2 s)"
    )
    print(
        f"edit to visible on the other node: median {statistics.median(latencies_ms):.0f} ms, "
        f"90th percentile {latencies_ms[int(0.9 * len(latencies_ms)) - 1]:.0f} ms, "
        f"max {latencies_ms[-1]:.0f} ms (goal < 250 ms median)"
    )
    print(
        f"idle pair in sync, {args.idle_seconds:.0f} s: CPU "
        f"{cpu[0] * per_minute:.2f} s/min (alice), {cpu[1] * per_minute:.2f} s/min (bob); "
        f"{wire * per_minute:,.0f} bytes/min on the wire, both ways"
    )


if __name__ == "__main__":
    main()
