"""The command line, as a person or a script uses it (the CLI contract of docs/cli.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from p2p_prophet.cli import default_replica_path, main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Runner = Callable[..., Result]


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Runner:
    """Run the CLI in-process against ``tmp_path/replica`` unless -R says otherwise."""
    monkeypatch.setenv("P2P_PROPHET_REPLICA", str(tmp_path / "replica"))
    monkeypatch.delenv("P2P_PROPHET_DEBUG", raising=False)

    def invoke(*args: str, stdin: str | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            import io

            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        captured = capsys.readouterr()
        return Result(int(exit_info.value.code or 0), captured.out, captured.err)

    return invoke


def test_init_create_show_update_list(run: Runner) -> None:
    init = run("init", "--json")
    assert init.code == 0
    assert set(init.json()) == {"replica_uuid", "db_uuid", "path", "identity"}
    uuid = run("create", "ticket", "summary=Wifi drops", "status=open", "prio:=2").out.strip()
    shown = run("show", "ticket", uuid, "--json").json()
    assert shown["props"] == {"summary": "Wifi drops", "status": "open", "prio": 2}
    assert run("update", "ticket", uuid[:8], "status=stalled", "prio=").code == 0
    listed = run("list", "ticket", "status=stalled", "--json").json()
    assert listed == [
        {"type": "ticket", "uuid": uuid, "props": {"summary": "Wifi drops", "status": "stalled"}}
    ]
    assert run("list", "ticket", "status=open", "--json").json() == []
    # A filter with key= matches records that lack the property.
    assert len(run("list", "ticket", "prio=", "--json").json()) == 1


def test_text_is_never_guessed_into_a_number(run: Runner) -> None:
    run("init")
    uuid = run("create", "ticket", "code=007", "n:=7", "ok:=true", "ratio:=0.5").out.strip()
    props = run("show", "ticket", uuid, "--json").json()["props"]
    assert props == {"code": "007", "n": 7, "ok": True, "ratio": 0.5}


def test_delete_and_the_log(run: Runner) -> None:
    run("init")
    uuid = run("create", "note", "text=hello").out.strip()
    assert run("delete", "note", uuid).code == 0
    entries = run("log", "--json").json()
    # The first changeset is init's: the founder's member record.
    assert [e["changes"][0]["op"] for e in entries] == ["delete", "create", "create"]
    assert [e["changes"][0]["type"] for e in entries] == ["note", "note", "member"]
    assert [e["origin_seq"] for e in entries] == [3, 2, 1]
    assert entries[0]["changes"][0]["props"] == [{"name": "text", "old": "hello", "new": None}]
    assert len(run("log", "--limit", "1", "--json").json()) == 1
    human = run("log").out
    assert "delete note" in human and "text: hello → ∅" in human
    shown = run("show", "note", uuid)
    assert shown.code == 1 and "deleted" in shown.err


def test_digest_and_export_agree_between_replicas_with_the_same_records(
    run: Runner, tmp_path: Path
) -> None:
    # Without members: a database with members holds its founder's record too, and two
    # founders' records differ (tests/security covers those).
    run("init", "--insecure")
    for n in range(3):
        run("create", "ticket", f"n:={n}", "status=open")
    dump = run("export", "--format", "jsonl").out
    assert len(dump.splitlines()) == 3
    other = str(tmp_path / "other")
    run("-R", other, "init", "--insecure")
    imported = run("-R", other, "import", "-", "--json", stdin=dump)
    assert imported.json() == {"imported": 3}
    assert run("digest").out == run("-R", other, "digest").out
    doc = run("export", "--json").json()
    assert [r["props"]["n"] for r in sorted(doc["records"], key=lambda r: r["uuid"])] == [
        r["props"]["n"] for r in doc["records"]
    ]
    assert run("digest", "--json").json()["records"] == 3


def test_import_stops_at_a_bad_line_and_keeps_whole_batches(run: Runner) -> None:
    run("init")
    lines = [json.dumps({"type": "t", "props": {"n": n}}) for n in range(5)]
    lines.insert(3, '{"type": "t", "props": {"bad name": 1}}')
    result = run("import", "--batch-size", "2", stdin="\n".join(lines))
    assert result.code == 1
    assert "line 4" in result.err and "imported 2 records" in result.err
    assert len(run("list", "t", "--json").json()) == 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("show", "ticket", "00000000-0000-4000-8000-000000000000"), 1, "no ticket"),
        (("create", "ticket", "novalue"), 2, "is not key=value"),
        (("create", "ticket", "n:={oops"), 2, "is not JSON"),
        (("create", "ticket", "bad name=1"), 2, "invalid property name"),
        (("create", "ticket", "a=1", "a=2"), 2, "given twice"),
        (("update", "ticket", "zz", "a=1"), 1, "no ticket with a uuid starting"),
        (("log", "--limit", "0"), 2, "0"),
    ],
)
def test_bad_input_gets_a_clear_message_and_no_traceback(
    run: Runner, args: tuple[str, ...], code: int, message: str
) -> None:
    run("init")
    result = run(*args)
    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err


def test_a_missing_replica_says_how_to_create_one(run: Runner, tmp_path: Path) -> None:
    result = run("-R", str(tmp_path / "nope"), "list", "ticket")
    assert result.code == 1
    assert "no replica at" in result.err and "p2p-prophet init" in result.err


def test_replica_option_works_after_the_command_too(run: Runner, tmp_path: Path) -> None:
    path = str(tmp_path / "elsewhere")
    run("init", "-R", path)
    assert (Path(path) / "replica.db").exists()
    assert run("digest", "--replica", path).code == 0


def test_an_ambiguous_uuid_prefix_is_refused(run: Runner) -> None:
    run("init")
    uuids = [run("create", "t", f"n:={n}").out.strip() for n in range(40)]
    # Among 40 random uuids some share a first hex digit.
    first = [u[0] for u in uuids]
    shared = next(c for c in first if first.count(c) > 1)
    result = run("show", "t", shared)
    assert result.code == 1 and "several" in result.err


def test_default_replica_path_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if sys.platform.startswith("linux"):
        assert default_replica_path() == tmp_path / "data" / "p2p-prophet" / "replica"


def test_the_installed_console_script_and_module_entry_point(tmp_path: Path) -> None:
    env_path = str(tmp_path / "r")
    script = Path(sys.executable).with_name("p2p-prophet")
    for argv in ([str(script)], [sys.executable, "-m", "p2p_prophet"]):
        if not Path(argv[0]).exists():
            pytest.fail(f"{argv[0]} is not installed: install the project with pip first")
        out = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=True)
        assert "p2p-prophet" in out.stdout
    subprocess.run([str(script), "-R", env_path, "init"], check=True, capture_output=True)
    missing = subprocess.run(
        [sys.executable, "-m", "p2p_prophet", "-R", env_path, "show", "ticket", "abc"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1
    assert "no ticket" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_the_demo_runs_on_a_fresh_machine(run: Runner, tmp_path: Path) -> None:
    result = run("-R", str(tmp_path / "demo"), "demo")
    assert result.code == 0
    assert "Equal digests" in result.out
    assert (
        run("-R", str(tmp_path / "demo"), "digest").out
        == run("-R", str(tmp_path / "demo-bob"), "digest").out
    )
    listed = run("-R", str(tmp_path / "demo-bob"), "list", "ticket", "--json").json()
    assert len(listed) == 2
    assert len(run("-R", str(tmp_path / "demo"), "conflicts", "--json").json()) == 1


def test_replication_from_the_command_line(run: Runner, tmp_path: Path) -> None:
    alice, bob = str(tmp_path / "alice"), str(tmp_path / "bob")
    run("-R", alice, "init")
    uuid = run("-R", alice, "create", "ticket", "status=new").out.strip()
    cloned = run("clone", alice, bob, "--json").json()
    # Alice's founder record, the ticket, and Bob's member record: a clone of a member's
    # replica by path is a new member, which Alice's replica adds before the copy.
    assert cloned["changesets"]["integrated"] == 3
    members = run("-R", alice, "members", "--json").json()["members"]
    assert len(members) == 2 and run("-R", bob, "members", "--json").json()["members"] == [
        dict(m, this_replica=not m["this_replica"]) for m in members
    ]
    run("-R", alice, "update", "ticket", uuid, "status=open")
    run("-R", bob, "update", "ticket", uuid, "status=stalled")
    synced = run("-R", alice, "sync", bob, "--json").json()
    assert synced["pulled"]["changesets"]["conflicts"] == 1
    assert run("-R", alice, "digest").out == run("-R", bob, "digest").out
    # Both ends hold the same changesets: nothing more moves either way.
    assert run("-R", bob, "pull", alice, "--json").json()["changesets"]["received"] == 0
    assert run("-R", bob, "push", alice, "--json").json()["changesets"]["received"] == 0
    [conflict] = run("-R", bob, "conflicts", "--json").json()
    assert conflict["type"] == "ticket" and conflict["props"][0]["name"] == "status"
    human = run("-R", bob, "conflicts").out
    assert conflict["fingerprint"][:12] in human and "open | stalled" in human
    resolved = run("-R", bob, "resolve", conflict["fingerprint"][:8], "status=blocked", "--json")
    assert resolved.json()["fingerprints"] == [conflict["fingerprint"]]
    run("-R", bob, "push", alice)
    assert run("-R", alice, "show", "ticket", uuid, "--json").json()["props"] == {
        "status": "blocked"
    }


def test_replication_errors_are_clear(run: Runner, tmp_path: Path) -> None:
    alice, other = str(tmp_path / "alice"), str(tmp_path / "other")
    run("-R", alice, "init")
    run("-R", other, "init")
    refused = run("-R", alice, "pull", other)
    assert refused.code == 1 and "different databases" in refused.err and "--force" in refused.err
    assert run("-R", alice, "pull", other, "--force").code == 0
    url = run("-R", alice, "pull", "ftp://example.invalid/replica")
    assert url.code == 1 and "only http:// and https:// URLs" in url.err
    missing = run("-R", alice, "pull", str(tmp_path / "nope"))
    assert missing.code == 1 and "no replica at" in missing.err
    exists = run("clone", alice, other)
    assert exists.code == 1 and "already exists" in exists.err
    unknown = run("-R", alice, "resolve", "abcdef", "status=x")
    assert unknown.code == 1 and "no conflict" in unknown.err
    assert run("-R", alice, "conflicts", "--json").json() == []


def test_a_replica_poisoned_before_clock_bounds_reads_and_refuses_writes_clearly(
    run: Runner, tmp_path: Path
) -> None:
    from p2p_prophet.clock import MAX_HLC
    from p2p_prophet.store import Replica
    from p2p_prophet.sync import clone, transfer

    with Replica.init(tmp_path / "mallory") as mallory:
        bob = clone(mallory, tmp_path / "replica")[0]
        mallory.clock.last = MAX_HLC - 1
        mallory.create("ticket", {"summary": "poison"})  # created = 2^63 - 1
        bob.clock.max_offset_ms = MAX_HLC  # as a replica did before the bound existed
        transfer(bob, mallory)
        bob.close()
    assert run("list", "ticket").code == 0
    assert run("digest").code == 0
    created = run("create", "ticket", "summary=after")
    assert created.code == 1, created.err
    assert "end of its range" in created.err and "p2p-prophet check" in created.err
