"""Shared fixtures: replicas are real directories of real SQLite files under tmp_path."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from p2p_prophet.security import Identity
from p2p_prophet.store import Replica

# Real SQLite files, on RAM where the machine has a tmpfs: every commit is fsync'd, and
# on this CI's disk the random-workload and kill -9 suites spent most of their time
# waiting for fsyncs that tell a test nothing (a killed process loses no more on tmpfs
# than on disk; power loss is not what they test).  pytest's tmp_path and the tempfile
# module both follow; P2P_PROPHET_TEST_DISK=1 keeps them on the default disk.
_RAM = Path("/dev/shm")
if os.environ.get("P2P_PROPHET_TEST_DISK") != "1" and _RAM.is_dir() and os.access(_RAM, os.W_OK):
    os.environ["TMPDIR"] = str(_RAM)
    tempfile.tempdir = str(_RAM)

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci")

ReplicaFactory = Callable[..., Replica]


@pytest.fixture
def make_replica(tmp_path: Path) -> Iterator[ReplicaFactory]:
    """``make_replica("alice")`` creates ``tmp_path/alice`` and closes it after the test."""
    opened: list[Replica] = []

    def make(name: str = "replica", db_uuid: str | None = None) -> Replica:
        replica = Replica.init(tmp_path / name, db_uuid=db_uuid)
        opened.append(replica)
        return replica

    yield make
    for replica in opened:
        replica.close()


# Replica identities for the security tests: one key pair each per test session
# (identities are immutable, and making keys is the slow part).


@pytest.fixture(scope="session")
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def bob() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def carol() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def dave() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def mallory() -> Identity:
    return Identity.generate()


# A real tmpfs, for a disk that fills or a file system that turns read-only.


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("16m")``: a real tmpfs of that size, mounted under ``tmp_path`` for the
    test and unmounted after it (as root: .ci/run runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (.ci/run runs as root)")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs-{len(mounted)}"
        where.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True
        )
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


# Alice's node serving a database with members, Bob and Carol (tests/node_world.py).


@pytest.fixture
async def world(
    tmp_path: Path, alice: Identity, bob: Identity, carol: Identity
) -> AsyncIterator[object]:
    from node_world import world_of

    async with world_of(tmp_path, {"alice": alice, "bob": bob, "carol": carol}) as w:
        yield w
