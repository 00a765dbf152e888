"""A damaged, read-only or half-cloned replica, as a person meets it through the CLI
(issue 15 §4): one clear line and exit status 1, never 70; `check` says what is wrong;
a damaged replica refuses writes; a read-only one can still be read; an interrupted
clone says how to finish.

Damage is real (pages of replica.db overwritten, rows tampered with through SQLite);
read-only and full disks are real tmpfs mounts (as root, as CI runs).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from p2p_prophet.clock import MAX_HLC
from p2p_prophet.store import Replica
from p2p_prophet.store.database import DAMAGED_FILE

SCRIPT = str(Path(sys.executable).with_name("p2p-prophet"))
READING = (("digest",), ("list", "ticket"), ("log", "--limit", "1"), ("export",))


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "P2P_PROPHET_CREATOR": "tester@test"}
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, env=env, input=stdin, timeout=120
    )


def one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def records(n: int) -> str:
    return "".join(
        json.dumps({"type": "ticket", "props": {"n": i, "pad": "x" * 300}}) + "\n" for i in range(n)
    )


@pytest.fixture
def replica(tmp_path: Path) -> Path:
    path = tmp_path / "replica"
    assert cli("-R", str(path), "init").returncode == 0
    assert cli("-R", str(path), "import", "-", stdin=records(3000)).returncode == 0
    return path


# -- damage --------------------------------------------------------------------------------


def test_overwritten_pages_are_reported_by_every_command_and_writes_refused(
    replica: Path,
) -> None:
    database = replica / "replica.db"
    pages = database.stat().st_size // 4096
    rng = random.Random(15)
    with database.open("r+b") as f:
        for page in rng.sample(range(2, pages), 8):
            f.seek(page * 4096)
            f.write(rng.randbytes(4096))
    for command in READING:
        done = cli("-R", str(replica), *command)
        one_line_error(done, "is damaged", "p2p-prophet check")
    created = cli("-R", str(replica), "create", "ticket", "summary=onto damage")
    one_line_error(created, "damaged", "p2p-prophet check")
    checked = cli("-R", str(replica), "check")
    assert checked.returncode == 1 and "problem" in checked.stdout
    assert (replica / DAMAGED_FILE).exists()


def test_a_damaged_replica_refuses_writes_even_where_its_damage_does_not_reach(
    replica: Path,
) -> None:
    with Replica.open(replica) as r:  # damage the log only: one body no longer its id's
        r.main.conn.execute(
            "UPDATE changesets SET body = CAST(replace(CAST(body AS TEXT), 'xxx', 'yyy') AS BLOB)"
            " WHERE seq = 10"
        )
    checked = cli("-R", str(replica), "check")
    assert checked.returncode == 1
    assert "changeset #10 of the log: its id is not the hash of its body" in checked.stdout
    created = cli("-R", str(replica), "create", "ticket", "summary=after check")
    one_line_error(created, "found damaged", "p2p-prophet check")
    assert cli("-R", str(replica), "digest").returncode == 0  # reading still works


def test_check_finds_a_whole_replica_whole_and_lifts_the_mark(replica: Path) -> None:
    (replica / DAMAGED_FILE).write_text("a mistaken mark\n")
    checked = cli("-R", str(replica), "check", "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] and report["databases"][0]["changesets"] == 3001
    assert not (replica / DAMAGED_FILE).exists()
    assert cli("-R", str(replica), "create", "ticket", "summary=fine").returncode == 0


def test_check_finds_gaps_broken_chains_and_wrong_tickets(tmp_path: Path) -> None:
    path = tmp_path / "signed"
    assert cli("-R", str(path), "init").returncode == 0  # signed: chains and seals
    for i in range(5):
        assert cli("-R", str(path), "create", "ticket", f"n:={i}").returncode == 0
    with Replica.open(path) as r:
        origin = r.uuid
        r.main.conn.execute("DELETE FROM changesets WHERE origin = ? AND origin_seq = 3", (origin,))
        r.main.conn.execute("UPDATE tickets SET seq = 9 WHERE origin = ?", (origin,))
    checked = cli("-R", str(path), "check")
    assert checked.returncode == 1
    assert f"changeset {origin}#4: found where #3 should be" in checked.stdout
    assert f"changeset {origin}#4: its chain does not link" in checked.stdout
    assert (
        f"origin {origin}: its merge ticket is 9, but the log holds its changesets 1 to 6"
        in checked.stdout
    )


def test_check_names_a_stamp_at_the_end_of_the_clock(tmp_path: Path) -> None:
    from p2p_prophet.sync import clone, transfer

    with Replica.init(tmp_path / "mallory") as mallory:
        bob = clone(mallory, tmp_path / "bob")[0]
        mallory.clock.last = MAX_HLC - 1
        mallory.create("ticket", {"summary": "poison"})
        bob.clock.max_offset_ms = MAX_HLC  # as before the bound existed
        transfer(bob, mallory)
        bob.close()
        poison = f"{mallory.uuid}#1"
    checked = cli("-R", str(tmp_path / "bob"), "check")
    assert checked.returncode == 1
    assert poison in checked.stdout and "end of the clock's range" in checked.stdout


# -- read-only and full disks ----------------------------------------------------------------


def test_a_replica_on_a_read_only_file_system_can_be_read(
    tmpfs: Callable[[str], Path],
) -> None:
    mount = tmpfs("4m")
    path = mount / "replica"
    assert cli("-R", str(path), "init").returncode == 0
    uuid = cli("-R", str(path), "create", "ticket", "summary=kept").stdout.strip()
    digest = cli("-R", str(path), "digest").stdout
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    for command in (*READING, ("show", "ticket", uuid), ("members",), ("check",)):
        done = cli("-R", str(path), *command)
        assert done.returncode == 0, (command, done.stderr)
    assert cli("-R", str(path), "digest").stdout == digest
    written = cli("-R", str(path), "create", "ticket", "summary=refused")
    one_line_error(written, "read-only")


def test_a_clone_stopped_by_a_full_disk_says_what_it_kept_and_how_to_finish(
    replica: Path, tmpfs: Callable[[str], Path]
) -> None:
    target = tmpfs("4m") / "clone"
    stopped = cli("clone", str(replica), str(target))
    assert stopped.returncode == 1, stopped.stderr
    assert "the disk is full" in stopped.stderr and "nothing was written" not in stopped.stderr
    kept = int(stopped.stderr.split(" keeps the ")[1].split()[0].replace(",", ""))
    with Replica.open(target) as partial:
        assert partial.main.latest_seq() == kept > 0
    assert f"p2p-prophet -R {target} pull {replica}` finishes the clone" in stopped.stderr
    again = cli("clone", str(replica), str(target))
    one_line_error(again, "already holds a replica", f"-R {target} pull {replica}")
