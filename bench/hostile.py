"""A node under hostile load: what it holds, and whether its members stay served.

Alice's node (TLS, members only) runs in a `p2p-prophet serve` process of its own whose
descriptor limit is set to ``--nofile`` (soft and hard, so raising the soft limit gains
nothing); Bob, Carol and Dave are members.  Two attacks, one after the other:

* **idle strangers**: ``--strangers`` TCP connections from 127.0.0.2 (another loopback
  address, so a per-address cap does not touch Bob on 127.0.0.1), opened and left idle;
* **held pushes**: ``--pushes`` concurrent pushes by Bob and Dave in turn, each sending
  the preamble and an unfinished batch of ``--push-mib`` MiB of valid changesets, then
  holding the request open.

For each it prints the node's descriptors and resident memory before and during the
attack (from /proc), whether the node is still running, and how long Carol's sync (one
new edit, pushed and pulled, one attempt) took during it, or why it failed.

Usage: python bench/hostile.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import trio

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from machine import describe  # noqa: E402

from p2p_prophet.errors import ProphetError  # noqa: E402
from p2p_prophet.net.client import Peer, new_http_client  # noqa: E402
from p2p_prophet.net.worker import ReplicaWorker  # noqa: E402
from p2p_prophet.security import Identity  # noqa: E402
from p2p_prophet.security.membership import add_member  # noqa: E402
from p2p_prophet.security.tls import TrustedPeers, client_context  # noqa: E402
from p2p_prophet.store import Replica  # noqa: E402
from p2p_prophet.sync import exchange, transfer  # noqa: E402
from p2p_prophet.wire import encode  # noqa: E402
from p2p_prophet.wire.messages import encode_changeset  # noqa: E402

STRANGER = "127.0.0.2"
SERVE = (sys.executable, "-m", "p2p_prophet", "-R")
LOOPBACK = ("--host", "127.0.0.1", "--no-mdns")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeProcess:
    """Alice's node, with its descriptor limit set before it starts."""

    def __init__(self, replica: Path, port: int, nofile: int) -> None:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = subprocess.Popen(
            [*SERVE, str(replica), "serve", "--port", str(port), *LOOPBACK],
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
        )
        self.url = f"https://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._serving = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._serving.wait(30):
            raise SystemExit("the node did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "serving replica" in line:
                self._serving.set()

    def alive(self) -> bool:
        return self.process.poll() is None

    def descriptors(self) -> int | None:
        with contextlib.suppress(OSError):
            return len(list(Path(f"/proc/{self.process.pid}/fd").iterdir()))
        return None

    def rss_mib(self) -> float | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None

    def state(self) -> str:
        if not self.alive():
            return f"DEAD (exit {self.process.returncode})"
        return f"{self.descriptors()} descriptors, {self.rss_mib():.0f} MiB resident"

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            self.process.wait(timeout=20)


class World:
    def __init__(self, root: Path) -> None:
        self.alice_id, self.bob_id = Identity.generate(), Identity.generate()
        self.carol_id, self.dave_id = Identity.generate(), Identity.generate()
        alice = Replica.init(
            root / "alice",
            identity=self.alice_id,
            prepare=lambda new: add_member(new, self.alice_id.certificate_pem, "alice"),
        )
        with alice.edits() as batch:
            for i in range(1000):
                batch.create("ticket", {"summary": f"ticket {i}", "status": "open"})
        members = []
        for name, identity in (("bob", self.bob_id), ("carol", self.carol_id)):
            add_member(alice, identity.certificate_pem, name, added_by=self.alice_id.fingerprint)
            member = Replica.init(
                root / name,
                db_uuid=alice.db_uuid,
                identity=identity,
                discovery_secret=alice.discovery_secret,
            )
            members.append(member)
        # Dave needs no replica: he only sends what he pushes (Bob's changesets will do).
        add_member(alice, self.dave_id.certificate_pem, "dave", added_by=self.alice_id.fingerprint)
        for member in members:
            transfer(member, alice)
        self.bob, self.carol = members
        alice.close()
        self.root = root

    def http(self, identity: Identity | None = None) -> httpx.AsyncClient:
        trusted = TrustedPeers([self.alice_id.certificate_pem])
        return new_http_client(tls=client_context(identity or self.bob_id, trusted))

    async def member_sync(self, url: str, timeout: float = 60) -> str:
        """Carol (a member who is not the attacker) makes an edit and syncs: how long it
        took, or why it failed."""
        self.carol.create("ticket", {"summary": f"edit at {time.time()}"})
        started = time.perf_counter()
        try:
            with trio.fail_after(timeout):
                async with self.http(self.carol_id) as http:
                    await Peer(url, ReplicaWorker(self.carol), http=http, attempts=1).sync()
        except (ProphetError, trio.TooSlowError) as exc:
            return f"FAILED after {time.perf_counter() - started:.2f} s: {exc or 'timed out'}"
        return f"{(time.perf_counter() - started) * 1000:.0f} ms"

    def unfinished_batch(self, mib: int) -> bytes:
        """Frames of valid changesets, about ``mib`` MiB, made on a copy of Bob's replica
        (the node lacks them), with no batch end."""
        scratch = self.root / "bob-scratch"
        if not scratch.exists():
            shutil.copytree(self.bob.path, scratch)
        with Replica.open(scratch) as copy:
            start = copy.main.latest_seq()
            with copy.edits() as batch:
                for i in range(mib):
                    batch.create("ticket", {"blob": f"{i:08d}" + "x" * ((1 << 20) - 8)})
            rows = copy.main.changesets_after(start, 10_000)
        return b"".join(encode_changeset(r.id, r.body, r.seal, resolution=False) for r in rows)


async def strangers(port: int, count: int) -> None:
    """The attacker, in a process of its own: ``count`` idle connections from STRANGER,
    each opened again as soon as the node lets go of it.  Prints its counts every second."""
    opened = dropped = 0

    async def stranger() -> None:
        nonlocal opened, dropped
        while True:
            sock = trio.socket.socket()
            try:
                await sock.bind((STRANGER, 0))
                await sock.connect(("127.0.0.1", port))
                opened += 1
                while await sock.recv(1):
                    pass
                dropped += 1
            except OSError:
                dropped += 1
                await trio.sleep(0.01)
            finally:
                sock.close()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(stranger)
        while True:
            await trio.sleep(1)
            print(f"{opened} {dropped}", flush=True)


async def idle_strangers(world: World, node: NodeProcess, count: int, hold: float) -> None:
    print(f"\n== {count} idle connections from a stranger ({STRANGER}), each reopened when dropped")
    print(f"before: {node.state()}")
    port = int(node.url.rsplit(":", 1)[1])
    attacker = subprocess.Popen(
        [sys.executable, __file__, "--attack-port", str(port), "--strangers", str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert attacker.stdout is not None
    try:
        counts = attacker.stdout.readline().split()
        for _ in range(2):
            counts = attacker.stdout.readline().split()
        print(f"after 3 s: {counts[0]} opened, {counts[1]} dropped; node: {node.state()}")
        syncs = [await world.member_sync(node.url) for _ in range(5)]
        print(f"member syncs during the attack: {', '.join(syncs)}")
        deadline = time.monotonic() + hold - 3
        while time.monotonic() < deadline:
            counts = attacker.stdout.readline().split()
        print(f"after {hold:.0f} s: {counts[0]} opened, {counts[1]} dropped; node: {node.state()}")
        print(f"member sync during the attack: {await world.member_sync(node.url)}")
    finally:
        attacker.kill()
        attacker.wait()


async def held_pushes(world: World, node: NodeProcess, count: int, mib: int) -> None:
    print(f"\n== {count} held pushes by a member, each an unfinished batch of {mib} MiB")
    frames = world.unfinished_batch(mib)
    mine = exchange.hello(world.bob)
    preamble = encode(mine) + encode(exchange.vectors(world.bob))
    print(f"before: {node.state()}")
    sent = [0] * count
    answers: list[str] = []

    async def push(i: int) -> None:
        async def body() -> AsyncIterator[bytes]:
            yield preamble
            for at in range(0, len(frames), 1 << 16):
                chunk = frames[at : at + (1 << 16)]
                sent[i] += len(chunk)
                yield chunk
            await trio.sleep_forever()  # hold the request open, the batch unfinished

        # Bob and Dave take turns: no one caller's cap on exchanges limits the attack.
        async with world.http([world.bob_id, world.dave_id][i % 2]) as http:
            try:
                response = await http.post(
                    node.url + "/prophet/push",
                    content=body(),
                    headers={"content-type": "application/x-p2p-prophet"},
                    timeout=None,
                )
                answers.append(f"{response.status_code} {response.headers.get('retry-after')}")
            except httpx.HTTPError as exc:
                answers.append(f"{type(exc).__name__}")

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(push, i)
        deadline = trio.current_time() + 30
        while trio.current_time() < deadline and sum(sent) + len(answers) * len(frames) < (
            count * len(frames)
        ):
            await trio.sleep(0.2)
            if len(answers) == count:
                break
        await trio.sleep(2)  # let the node take in what it was sent
        print(
            f"sent {sum(sent) / (1 << 20):.0f} MiB in all; answers so far: "
            f"{', '.join(answers) or 'none'}; node: {node.state()}"
        )
        print(f"member sync during the attack: {await world.member_sync(node.url)}")
        nursery.cancel_scope.cancel()
    await trio.sleep(1)
    print(f"after the pushes went away: {node.state()}")


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        node = NodeProcess(world.root / "alice", free_port(), args.nofile)
        try:
            print(f"member sync, no attack: {await world.member_sync(node.url)}")
            await idle_strangers(world, node, args.strangers, args.hold)
            if not node.alive():
                node = NodeProcess(world.root / "alice", free_port(), args.nofile)
            await held_pushes(world, node, args.pushes, args.push_mib)
        finally:
            node.stop()
            world.bob.close()
            world.carol.close()
        errors = [line for line in node.lines if "Error" in line or "Traceback" in line]
        if errors:
            print("\nthe node's log had errors:\n" + "".join(errors[:10]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--strangers", type=int, default=1100)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--pushes", type=int, default=4)
    parser.add_argument("--push-mib", type=int, default=54)
    parser.add_argument("--quick", action="store_true", help="small figures, for CI")
    parser.add_argument("--attack-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack_port:
        trio.run(strangers, args.attack_port, args.strangers)
        return
    if args.quick:
        args.strangers, args.hold, args.push_mib = 200, 2.0, 4
    print(f"machine: {describe()}")
    print(
        f"node: descriptor limit {args.nofile}; {args.strangers} idle strangers; "
        f"{args.pushes} held pushes of {args.push_mib} MiB"
    )
    trio.run(run, args)


if __name__ == "__main__":
    main()
