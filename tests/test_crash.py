"""A replica survives kill -9 in the middle of a batch of 10,000 edits."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from workload import EDITS_PER_BATCH, ExpectedState, batch_edits

from p2p_prophet.model import ChangeSet
from p2p_prophet.store import Replica

HERE = Path(__file__).parent


def start_child(path: Path, batches: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    return subprocess.Popen(
        [sys.executable, str(HERE / "crash_child.py"), str(path), str(batches)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_until(child: subprocess.Popen[str], prefix: str) -> list[str]:
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            raise AssertionError(f"child exited ({child.wait()}) before {prefix!r}: {lines}")
        lines.append(line.strip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no {prefix!r} from the child within 120 s")


def check_replica(path: Path, committed_at_least: int) -> int:
    """Reopen after the kill and check every invariant; return whole batches stored."""
    conn = sqlite3.connect(path / "replica.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Replica.open(path) as replica:
        ticket = replica.main.ticket(replica.uuid)
        # Nothing of the killed batch is visible: whole batches only.
        assert ticket % EDITS_PER_BATCH == 0
        batches = ticket // EDITS_PER_BATCH
        assert committed_at_least <= batches <= committed_at_least + 1
        # The log has no gap: local seqs and origin seqs are 1..ticket.
        rows = replica.main.changesets_after(0, 10 * ticket + 10)
        assert [r.seq for r in rows] == list(range(1, ticket + 1))
        assert [r.origin_seq for r in rows] == list(range(1, ticket + 1))
        assert ChangeSet.decode(rows[-1].body).origin_seq == ticket if rows else True
        # The state is exactly the state after the last committed batch.
        expected = ExpectedState()
        for b in range(batches):
            for _ in batch_edits(b, expected):
                pass
        assert replica.main.count_live() == len(expected.records)
        assert replica.main.digest() == expected.digest()
        return batches


def test_kill_9_in_the_middle_of_a_batch_leaves_the_last_committed_state(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replica"
    Replica.init(path).close()
    rng = random.Random(2026)
    batches_stored = 0
    kills_mid_batch = 0
    for _round in range(6):
        child = start_child(path, batches=batches_stored + 3)
        lines = read_until(child, "ready")
        lines += read_until(child, "committed")  # one whole batch lands...
        lines += read_until(child, "mid")  # ...and the next is half-way when we kill
        time.sleep(rng.uniform(0, 0.15))  # sometimes mid-batch, sometimes mid-commit
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        committed = sum(1 for line in lines if line.startswith("committed"))
        stored = check_replica(path, batches_stored + committed)
        kills_mid_batch += stored == batches_stored + committed
        batches_stored = stored
    assert batches_stored >= 6  # the state checked grew every round
    assert kills_mid_batch >= 1  # at least one kill really landed inside a transaction
    # After all that, the replica still takes edits and numbers them on from the log.
    with Replica.open(path) as replica:
        replica.create("ticket", {"summary": "after the crashes"})
        assert replica.main.ticket(replica.uuid) == batches_stored * EDITS_PER_BATCH + 1
