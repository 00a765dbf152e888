"""A node you can leave running (issue 15 §1): its background tasks outlive the faults of
their environment, it holds no more connections than its descriptors allow, and a full
disk neither stops it nor loses anything.

The supervisor is tested on trio's MockClock; the node itself against real faults: a
process with a low descriptor limit under real connections from many loopback addresses,
and a replica on a real tmpfs that fills up.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2p_prophet.net.supervisor import supervised

SERVE = (sys.executable, "-m", "p2p_prophet", "-R")

# -- the supervisor ------------------------------------------------------------------------


async def test_a_task_failing_in_its_environment_is_started_again_with_growing_delays(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
        if len(starts) <= 3:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    with caplog.at_level(logging.WARNING, "p2p_prophet.node"):
        await supervised("the status file", flaky, first_delay=0.5, max_delay=60)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    assert gaps == [0.5, 1.0, 2.0]
    assert [r.getMessage() for r in caplog.records] == [
        f"the status file failed: too many open files; starting it again in {d:g} s"
        for d in (0.5, 1.0, 2.0)
    ]


async def test_the_delay_starts_over_once_the_task_has_run_well_for_a_while(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []

    async def fails_then_lasts() -> None:
        starts.append(trio.current_time())
        if len(starts) in (1, 2):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if len(starts) == 3:
            await trio.sleep(120)  # a long healthy run, then a new failure
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    await supervised("a task", fails_then_lasts, first_delay=1, max_delay=60)
    assert [round(b - a) for a, b in itertools.pairwise(starts)] == [1, 2, 121]


async def test_a_bug_in_a_supervised_task_is_not_hidden(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def buggy() -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        await supervised("a task", buggy)


async def test_sqlite_misuse_is_a_bug_not_the_environment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    import sqlite3

    async def misuse() -> None:
        conn = sqlite3.connect(":memory:")
        conn.close()
        conn.execute("SELECT 1")  # ProgrammingError: a DatabaseError, but our bug

    with pytest.raises(sqlite3.ProgrammingError):
        await supervised("a task", misuse)


async def test_a_failure_inside_a_nursery_of_the_task_is_recognised_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def with_a_nursery() -> None:
        nonlocal runs
        runs += 1

        async def part() -> None:
            if runs == 1:
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(part)

    await supervised("mDNS", with_a_nursery)
    assert runs == 2


# -- a full disk ---------------------------------------------------------------------------


def fill(disk: Path) -> Path:
    """Write a file until ``disk`` is full; the file, to delete to free the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_stops_pushes_not_the_node_and_it_recovers_by_itself(
    tmp_path: Path,
    tmpfs: Callable[[str], Path],
    alice: Any,
    bob: Any,
    carol: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from node_world import peek, world_of

    from p2p_prophet.errors import Refused
    from p2p_prophet.net.client import Peer
    from p2p_prophet.net.node import STATUS_FILE
    from p2p_prophet.net.worker import ReplicaWorker
    from p2p_prophet.wire import ErrorCode

    ids = {"alice": alice, "bob": bob, "carol": carol}
    small_disk = tmpfs("16m")
    caplog.set_level(logging.WARNING, "p2p_prophet.node")
    async with world_of(tmp_path, ids, alice_path=small_disk / "alice") as world:
        news = world.alice.create("ticket", {"summary": "written before the disk filled"})
        filler = fill(small_disk)
        with trio.fail_after(10):  # the status file is the first to meet the full disk
            while not any("no space left" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.05)

        edit = world.bob.create("ticket", {"summary": "pushed onto a full disk"})
        async with world.client(world.ids["bob"]) as http:
            with pytest.raises(Refused, match="disk is full") as refusal:
                await Peer(world.url, ReplicaWorker(world.bob), http=http, attempts=1).push()
        assert refusal.value.code is ErrorCode.UNAVAILABLE and refusal.value.retry_after
        async with world.client(world.ids["carol"]) as http:  # pulls are still served
            await Peer(world.url, ReplicaWorker(world.carol), http=http).pull()
        assert world.carol.main.find_record("ticket", news) is not None

        filler.unlink()  # space returns: the node takes pushes again, by itself
        async with world.client(world.ids["bob"]) as http:
            pushed = await Peer(world.url, ReplicaWorker(world.bob), http=http).push()
        assert pushed.changesets.integrated == 1
        assert peek(world.alice.path, lambda r: r.main.find_record("ticket", edit)) is not None
        assert (
            peek(
                world.alice.path,
                lambda r: r.main.conn.execute("PRAGMA integrity_check").fetchone()[0],
            )
            == "ok"
        )
        with trio.fail_after(10):  # and its status file is written again
            while not (world.alice.path / STATUS_FILE).exists():
                await trio.sleep(0.05)
        assert json.loads((world.alice.path / STATUS_FILE).read_text())["pid"] == os.getpid()


# -- descriptors -----------------------------------------------------------------------------


class NodeProcess:
    """``p2p-prophet serve`` of a members' database on loopback, in a process whose limit
    on open files is ``nofile`` (soft, hard)."""

    def __init__(self, replica: Path, nofile: tuple[int, int]) -> None:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        self.process = subprocess.Popen(
            [*SERVE, str(replica), "serve", "--host", "127.0.0.1", "--port", "0", "--no-mdns"],
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
        )
        self.lines: list[str] = []
        self._serving = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._serving.wait(30):
            self.stop()
            raise AssertionError("the node did not start:\n" + "".join(self.lines))
        self.url = next(line for line in self.lines if "serving replica" in line).split()[-1]

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "serving replica" in line:
                self._serving.set()

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def open_file_limit(self) -> tuple[str, str]:
        for line in Path(f"/proc/{self.process.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
        raise AssertionError("no open-file limit in /proc")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@pytest.fixture
def members(tmp_path: Path, alice: Any, bob: Any) -> Iterator[tuple[Path, Any]]:
    """Alice's replica (a path) and Bob's (open), members of one database."""
    from node_world import found, join

    with found(tmp_path / "alice", alice, "alice") as alice_replica:
        alice_replica.create("ticket", {"summary": "a ticket"})
        bob_replica = join(alice_replica, tmp_path / "bob", bob, "bob")
    with bob_replica:
        yield tmp_path / "alice", bob_replica


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for node in started:
        node.stop()


def test_a_node_raises_its_open_file_limit_to_the_hard_limit(
    members: tuple[Path, Any], nodes: list[NodeProcess]
) -> None:
    alice_path, _ = members
    node = NodeProcess(alice_path, (256, 2048))
    nodes.append(node)
    assert node.open_file_limit() == ("2048", "2048")
    assert any("open files: up to 2048" in line for line in node.lines)


async def test_idle_strangers_from_many_addresses_cannot_run_the_node_out_of_descriptors(
    members: tuple[Path, Any], nodes: list[NodeProcess], alice: Any, bob: Any
) -> None:
    from p2p_prophet.net.client import Peer, new_http_client
    from p2p_prophet.net.listener import limits_for, raise_open_file_limit
    from p2p_prophet.net.worker import ReplicaWorker
    from p2p_prophet.security.tls import TrustedPeers, client_context

    assert raise_open_file_limit() > 2 * 1100  # this test holds the strangers' ends
    alice_path, bob_replica = members
    node = NodeProcess(alice_path, (256, 256))  # without caps, 1,100 connections kill it
    nodes.append(node)
    limits = limits_for(256)
    host, port = node.url[len("https://") :].rsplit(":", 1)
    dropped = 0
    all_dropped = trio.Event()
    enough_dropped = trio.Event()

    async def stranger(address: str) -> None:
        # Connect, send nothing, and wait for the node to let go (a close or a reset).
        nonlocal dropped
        sock = trio.socket.socket()
        with sock:
            await sock.bind((address, 0))
            with contextlib.suppress(OSError):
                await sock.connect((host, int(port)))
                while await sock.recv(1024):
                    pass
        dropped += 1
        if dropped >= 1100 - limits.waiting:
            enough_dropped.set()
        if dropped == 1100:
            all_dropped.set()

    async with trio.open_nursery() as nursery:
        # 1,100 connections: 11 from each of 100 addresses (127.0.0.2 to 127.0.0.101), so
        # that the per-address cap does not do all the work.
        for n in range(1100):
            nursery.start_soon(stranger, f"127.0.0.{2 + n % 100}")
        with trio.fail_after(30):
            await enough_dropped.wait()  # all but the waiting few are turned away at once
        assert node.process.poll() is None
        assert node.descriptors() < 256 - 32

        # A member is served in the middle of it.
        bob_replica.create("ticket", {"summary": "synced among strangers"})
        tls = client_context(bob, TrustedPeers([alice.certificate_pem]))
        async with new_http_client(tls=tls) as http:
            result = await Peer(node.url, ReplicaWorker(bob_replica), http=http).sync()
        assert result.pushed.changesets.integrated == 1

        with trio.fail_after(30):
            await all_dropped.wait()  # the waiting ones go at the handshake timeout
    assert node.process.poll() is None
    assert node.stop() == 0
    assert not any("Traceback" in line for line in node.lines), "".join(node.lines)
