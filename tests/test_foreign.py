"""Foreign replicas through a gateway, against the real programs: Taskwarrior's `task`
and Fossil's `fossil` (installed by .ci/run from Debian's packages)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from test_cli_net import Server, cli, invite

from p2p_prophet.foreign import (
    ForeignError,
    Fossil,
    Item,
    Taskwarrior,
    clone,
    foreign_adapter,
    pull,
    push,
)
from p2p_prophet.model import Value
from p2p_prophet.store import Replica
from p2p_prophet.store.foreign_state import ForeignState

pytestmark = pytest.mark.skipif(
    shutil.which("task") is None or shutil.which("fossil") is None,
    reason="needs the taskwarrior and fossil programs (.ci/run installs them: "
    "apt-get install taskwarrior fossil)",
)

FOSSIL_USER = "tester"


@pytest.fixture(autouse=True)
def fossil_user(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fossil records who makes each change; the gateway (and these tests) act as this
    # user of the test repositories.
    monkeypatch.setenv("USER", FOSSIL_USER)


def program(argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run a real program as a person would; its output."""
    done = subprocess.run(
        argv,
        input=stdin,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def task(data: Path, *args: str) -> str:
    """The real `task` on the list in ``data``."""
    env = {"TASKDATA": str(data), "TASKRC": "/dev/null"}
    return program(["task", "rc.verbose=nothing", "rc.confirmation=off", *args], env)


def exported(data: Path) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = json.loads(task(data, "export"))
    return tasks


def fossil(repo: Path, *args: str, stdin: str | None = None) -> str:
    """The real `fossil` on the repository ``repo``."""
    return program(["fossil", *args, "-R", str(repo)], stdin=stdin)


def tickets(repo: Path) -> list[dict[str, Any]]:
    out = fossil(
        repo,
        "sql",
        "--readonly",
        stdin=".mode json\nSELECT tkt_uuid, title, status, priority FROM ticket ORDER BY tkt_id;\n",
    )
    rows: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    return rows


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    """A Taskwarrior list with three tasks."""
    data = tmp_path / "tasks"
    data.mkdir()
    task(data, "add", "Buy milk", "project:home", "priority:H", "due:2026-12-01", "+shop")
    task(data, "add", "Write the report")
    task(data, "add", "Call the plumber", "priority:L")
    return data


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A Fossil repository with one ticket of its own."""
    path = tmp_path / "tracker.fossil"
    subprocess.run(
        ["fossil", "init", "--admin-user", FOSSIL_USER, str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    fossil(
        path, "ticket", "add", "title", "Crash on start", "status", "Open", "type", "Code_Defect"
    )
    return path


def state_of(replica: Replica) -> tuple[Any, ...]:
    """Everything a sync may write in a gateway: its log, its tickets, its records and
    the foreign state under every foreign uuid."""
    db = replica.main
    dump = tuple(
        tuple(db.conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall())
        for table in ("foreign_replicas", "foreign_tickets", "foreign_items")
    )
    return (db.latest_seq(), db.tickets(), db.digest(), dump)


def by_summary(replica: Replica) -> dict[str, dict[str, Value]]:
    return {str(r.props.get("summary")): r.props for r in replica.main.live_records("ticket")}


# -- acceptance 1: the seed's bug --------------------------------------------------------------


def test_bob_clones_from_taskwarrior_pulls_fossil_and_pushes_each_task_to_fossil_once(
    tasks: Path, repo: Path, tmp_path: Path
) -> None:
    bob_path = tmp_path / "bob"
    cloned = json.loads(cli("clone", f"taskwarrior:{tasks}", str(bob_path), "--json").stdout)
    assert cloned["created"] == 3
    # The gateway's replica founds a database with members: it can serve TLS to them.
    [gateway] = json.loads(cli("-R", str(bob_path), "members", "--json").stdout)["members"]
    assert gateway["this_replica"] and gateway["added_by"] is None
    pulled = json.loads(cli("-R", str(bob_path), "pull", f"fossil:{repo}", "--json").stdout)
    assert pulled["created"] == 1  # Fossil's own ticket

    with Replica.open(bob_path) as bob:
        own_tickets = bob.main.tickets()
        tw_state = ForeignState(bob.main, Taskwarrior(str(tasks)).uuid)
        tw_tickets = tw_state.tickets()
    pushed = json.loads(cli("-R", str(bob_path), "push", f"fossil:{repo}", "--json").stdout)
    assert (pushed["created"], pushed["unchanged"]) == (3, 1)

    titles = sorted(t["title"] for t in tickets(repo))
    assert titles == ["Buy milk", "Call the plumber", "Crash on start", "Write the report"]
    again = json.loads(cli("-R", str(bob_path), "pull", f"fossil:{repo}", "--json").stdout)
    assert again == {
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "unchanged": 1,  # Fossil's own ticket
        "ours": 3,  # the tickets our push wrote, known as ours: no echo
        "skipped": [],
    }
    with Replica.open(bob_path) as bob:
        assert len(list(bob.main.live_records("ticket"))) == 4
        # P9: the push wrote Fossil's tickets only.
        assert bob.main.tickets() == own_tickets
        assert ForeignState(bob.main, Taskwarrior(str(tasks)).uuid).tickets() == tw_tickets
        fossil_tickets = ForeignState(bob.main, Fossil(str(repo)).uuid).tickets()
        assert fossil_tickets == own_tickets  # Fossil has been given all of Bob's log

    # Pushing again writes nothing; Fossil still has one ticket per task.
    twice = json.loads(cli("-R", str(bob_path), "push", f"fossil:{repo}", "--json").stdout)
    assert twice["created"] == twice["updated"] == 0
    assert len(tickets(repo)) == 4


def test_tickets_pushed_to_fossil_reach_taskwarrior_once_and_come_back_as_the_same_records(
    tasks: Path, repo: Path, tmp_path: Path
) -> None:
    bob, _ = clone(Taskwarrior(str(tasks)), tmp_path / "bob")
    with bob:
        pull(bob, Fossil(str(repo)))
        push(bob, Fossil(str(repo)))
        result = push(bob, Taskwarrior(str(tasks)))
        assert (result.created, result.unchanged) == (1, 3)  # Fossil's ticket, once
        assert sorted(t["description"] for t in exported(tasks)) == [
            "Buy milk",
            "Call the plumber",
            "Crash on start",
            "Write the report",
        ]
        before = state_of(bob)
        for adapter in (Taskwarrior(str(tasks)), Fossil(str(repo))):
            assert pull(bob, adapter).created == 0
        assert state_of(bob)[:3] == before[:3]  # no new changesets, same records


# -- acceptance 2: echo suppression does not hide real foreign changes -------------------------


def test_a_change_made_in_fossil_after_the_push_is_pulled(
    tasks: Path, repo: Path, tmp_path: Path
) -> None:
    bob, _ = clone(Taskwarrior(str(tasks)), tmp_path / "bob")
    with bob:
        push(bob, Fossil(str(repo)))
        [milk] = [t for t in tickets(repo) if t["title"] == "Buy milk"]
        assert milk["priority"] == "High"
        fossil(repo, "ticket", "change", milk["tkt_uuid"], "status", "Closed")

        result = pull(bob, Fossil(str(repo)))
        assert (result.created, result.updated) == (1, 1)  # Fossil's own ticket, the edit
        props = by_summary(bob)["Buy milk"]
        assert props["status"] == "closed"
        # Only what changed in Fossil moved: the fields Fossil cannot hold stay.
        assert (props["project"], props["tags"], props["priority"]) == ("home", "shop", "high")

        # ...and the change goes on to Taskwarrior.
        push(bob, Taskwarrior(str(tasks)))
        [done] = [t for t in exported(tasks) if t["description"] == "Buy milk"]
        assert done["status"] == "completed"


def test_foreign_and_native_edits_to_different_fields_both_survive(
    tasks: Path, tmp_path: Path
) -> None:
    bob, _ = clone(Taskwarrior(str(tasks)), tmp_path / "bob")
    with bob:
        uuid = next(r.uuid for r in bob.main.live_records() if r.props["summary"] == "Buy milk")
        bob.update("ticket", uuid, {"summary": "Buy oat milk"})  # here
        task(tasks, uuid, "modify", "priority:L")  # there, before our push
        tw = Taskwarrior(str(tasks))
        pull(bob, tw)
        push(bob, tw)
        assert bob.main.find_record("ticket", uuid) is not None
        assert by_summary(bob)["Buy oat milk"]["priority"] == "low"
        [mine] = [t for t in exported(tasks) if t["uuid"] == uuid]
        assert (mine["description"], mine["priority"]) == ("Buy oat milk", "L")


def test_a_push_over_an_unpulled_foreign_change_still_lets_the_next_pull_find_it(
    tasks: Path, tmp_path: Path
) -> None:
    bob, _ = clone(Taskwarrior(str(tasks)), tmp_path / "bob")
    with bob:
        uuid = next(r.uuid for r in bob.main.live_records() if r.props["summary"] == "Buy milk")
        bob.update("ticket", uuid, {"summary": "Buy oat milk"})
        task(tasks, uuid, "modify", "project:errands")  # not pulled before the push
        tw = Taskwarrior(str(tasks))
        assert push(bob, tw).updated == 1
        assert pull(bob, tw).updated == 1
        props = by_summary(bob)["Buy oat milk"]
        assert props["project"] == "errands"


def test_deletes_go_both_ways(tasks: Path, repo: Path, tmp_path: Path) -> None:
    tw, fo = Taskwarrior(str(tasks)), Fossil(str(repo))
    bob, _ = clone(tw, tmp_path / "bob")
    with bob:
        push(bob, fo)
        milk = next(r.uuid for r in bob.main.live_records() if r.props["summary"] == "Buy milk")
        bob.delete("ticket", milk)
        assert push(bob, tw).deleted == 1
        assert push(bob, fo).deleted == 1
        assert [t["status"] for t in exported(tasks) if t["uuid"] == milk] == ["deleted"]
        assert [t["status"] for t in tickets(repo) if t["title"] == "Buy milk"] == ["Deleted"]
        assert pull(bob, tw).deleted == pull(bob, fo).deleted == 0  # our own deletes

        report = next(t["uuid"] for t in exported(tasks) if t["description"] == "Write the report")
        task(tasks, report, "delete")
        assert pull(bob, tw).deleted == 1
        assert bob.main.find_record("ticket", report).live is False  # type: ignore[union-attr]


def test_the_mappings_carry_each_field_and_awkward_text(
    tasks: Path, repo: Path, tmp_path: Path
) -> None:
    bob, _ = clone(Taskwarrior(str(tasks)), tmp_path / "bob")
    with bob:
        props = by_summary(bob)["Buy milk"]
        assert props == {
            "summary": "Buy milk",
            "status": "open",
            "project": "home",
            "priority": "high",
            "due": "2026-12-01T00:00:00Z",
            "tags": "shop",
        }
        awkward = "-R /etc/passwd \\ with\ttabs\nand lines"
        bob.create("ticket", {"summary": awkward, "status": "review", "priority": "medium"})
        push(bob, Fossil(str(repo)))
        [row] = [t for t in tickets(repo) if t["title"] == awkward]
        assert (row["status"], row["priority"]) == ("Review", "Medium")
        push(bob, Taskwarrior(str(tasks)))
        [made] = [t for t in exported(tasks) if t["description"] == awkward]
        assert (made["status"], made["priority"]) == ("pending", "M")


def test_a_read_only_foreign_replica_is_pulled_and_never_pushed(
    tasks: Path, repo: Path, tmp_path: Path
) -> None:
    bob = tmp_path / "bob"
    cli("clone", f"taskwarrior:{tasks}", str(bob))
    (bob / "config.toml").write_text(f'[foreign]\nread_only = ["fossil:{repo}"]\n')
    assert json.loads(cli("-R", str(bob), "pull", f"fossil:{repo}", "--json").stdout)["created"]
    refused = cli("-R", str(bob), "push", f"fossil:{repo}", check=False)
    assert refused.returncode == 1 and "read-only" in refused.stderr
    assert len(tickets(repo)) == 1
    synced = cli("-R", str(bob), "sync", f"fossil:{repo}")
    assert "not pushed" in synced.stderr and len(tickets(repo)) == 1


# -- acceptance 3: through the network ---------------------------------------------------------


def test_an_edit_in_a_native_replica_reaches_taskwarrior_through_the_gateway_and_back(
    tasks: Path, tmp_path: Path
) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli("-R", str(alice), "init")
    alice_node = Server(alice)
    try:
        cli("clone", invite(alice, alice_node), str(bob))  # Bob joins as a member
        (bob / "config.toml").write_text(
            f'[node]\npeers = ["{alice_node.url}"]\n\n[gossip]\ninterval = 0.3\n'
        )
        bob_node = Server(bob)  # the gateway, a node like any other
        try:
            cli("-R", str(bob), "pull", f"taskwarrior:{tasks}")
            milk = next(t["uuid"] for t in exported(tasks) if t["description"] == "Buy milk")
            eventually(lambda: show(alice, milk).get("summary") == "Buy milk")

            cli("-R", str(alice), "update", "ticket", milk, "status=closed", "due=2026-12-24")
            eventually(lambda: show(bob, milk).get("status") == "closed")
            cli("-R", str(bob), "push", f"taskwarrior:{tasks}")
            [edited] = [t for t in exported(tasks) if t["uuid"] == milk]
            assert (edited["status"], edited["due"]) == ("completed", "20261224T000000Z")

            task(tasks, milk, "modify", "Buy oat milk")
            cli("-R", str(bob), "pull", f"taskwarrior:{tasks}")
            eventually(lambda: show(alice, milk).get("summary") == "Buy oat milk")
            assert show(alice, milk)["status"] == "closed"
        finally:
            bob_node.stop()
    finally:
        alice_node.stop()


def show(replica: Path, uuid: str) -> dict[str, Any]:
    done = cli("-R", str(replica), "show", "ticket", uuid, "--json", check=False)
    if done.returncode != 0:
        return {}
    props: dict[str, Any] = json.loads(done.stdout)["props"]
    return props


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the nodes did not converge in time"
        time.sleep(0.1)


# -- acceptance 4: broken foreign stores -------------------------------------------------------


@pytest.fixture
def gateway(tasks: Path, repo: Path, tmp_path: Path) -> Iterator[Replica]:
    """Bob, in sync with both stores, and one edit of his not pushed yet."""
    bob, _ = clone(Taskwarrior(str(tasks)), tmp_path / "bob")
    with bob:
        pull(bob, Fossil(str(repo)))
        push(bob, Fossil(str(repo)))
        push(bob, Taskwarrior(str(tasks)))
        bob.create("ticket", {"summary": "Not pushed yet"})
        yield bob


def refused(bob: Replica, action: Callable[[], object], *words: str) -> str:
    before = state_of(bob)
    with pytest.raises(ForeignError) as caught:
        action()
    message = str(caught.value)
    assert all(word in message for word in words), message
    assert state_of(bob) == before
    return message


def test_a_missing_program_is_a_clear_error_and_changes_nothing(
    gateway: Replica, tasks: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for adapter, package in (
        (Taskwarrior(str(tasks)), "taskwarrior"),
        (Fossil(str(repo)), "fossil"),
    ):
        refused(gateway, lambda a=adapter: pull(gateway, a), "not installed", package)
        refused(gateway, lambda a=adapter: push(gateway, a), "not installed", package)


def test_corrupt_stores_are_clear_errors_and_change_nothing(
    gateway: Replica, tasks: Path, repo: Path
) -> None:
    (tasks / "pending.data").write_text("this is not a task list\n")
    refused(gateway, lambda: pull(gateway, Taskwarrior(str(tasks))), "taskwarrior:", "task")
    refused(gateway, lambda: push(gateway, Taskwarrior(str(tasks))), "taskwarrior:")

    repo.write_bytes(b"not a repository" * 100)
    refused(gateway, lambda: pull(gateway, Fossil(str(repo))), "not a valid repository")
    refused(gateway, lambda: push(gateway, Fossil(str(repo))), "not a valid repository")

    missing = tasks.parent / "nowhere"
    refused(gateway, lambda: pull(gateway, Taskwarrior(str(missing))), "no Taskwarrior data")
    refused(gateway, lambda: pull(gateway, Fossil(str(missing))), "no Fossil repository")


def test_a_task_taskwarrior_cannot_take_is_named_and_the_state_is_unchanged(
    gateway: Replica, tasks: Path
) -> None:
    tw = Taskwarrior(str(tasks))
    push(gateway, tw)  # the pending edit goes first
    bad = gateway.create("ticket", {"summary": "Someday", "due": "next blursday"})
    listed = exported(tasks)
    message = refused(gateway, lambda: push(gateway, tw), bad, "not a date", "next blursday")
    assert "Someday" not in {t["description"] for t in exported(tasks)}
    assert len(exported(tasks)) == len(listed)
    # Fixed here, the next push takes it.
    gateway.update("ticket", bad, {"due": "2027-01-01"})
    assert push(gateway, tw).created == 1, message


def test_a_task_without_a_description_is_refused_before_taskwarrior_runs(
    gateway: Replica, tasks: Path
) -> None:
    tw = Taskwarrior(str(tasks))
    push(gateway, tw)
    nameless = gateway.create("ticket", {"priority": "high"})
    refused(gateway, lambda: push(gateway, tw), nameless, "description")


class Breaking:
    """A Taskwarrior adapter whose mapping fails on the second item: a pull must then
    write nothing at all (one transaction)."""

    def __init__(self, inner: Taskwarrior) -> None:
        self.inner = inner
        self.kind, self.location = inner.kind, inner.location
        self.record_type, self.read_only = inner.record_type, inner.read_only
        self.properties, self.purges = inner.properties, inner.purges
        self.uuid = inner.uuid
        self.mapped = 0

    def items(self) -> list[Item]:
        return self.inner.items()

    def to_props(self, item: Item) -> dict[str, Value]:
        self.mapped += 1
        if self.mapped == 2:
            raise ForeignError("mapping failed half-way")
        return self.inner.to_props(item)

    def create(self, record_uuid: str, props: Mapping[str, Value]) -> Item:
        return self.inner.create(record_uuid, props)

    def update(self, item: Item, changed: Mapping[str, Value]) -> Item:
        return self.inner.update(item, changed)

    def delete(self, item: Item) -> Item:
        return self.inner.delete(item)


def test_a_pull_that_fails_half_way_writes_nothing(tasks: Path, make_replica: Any) -> None:
    bob = make_replica("bob")
    before = state_of(bob)
    with pytest.raises(ForeignError, match="half-way"):
        pull(bob, Breaking(Taskwarrior(str(tasks))))
    assert state_of(bob) == before
    assert pull(bob, Taskwarrior(str(tasks))).created == 3


def test_foreign_locations_are_parsed_and_checked(tmp_path: Path) -> None:
    adapter = foreign_adapter(
        f"fossil:{tmp_path}/x.fossil", read_only=(f"fossil:{tmp_path}/x.fossil",)
    )
    assert adapter.read_only and adapter.kind == "fossil"
    assert not foreign_adapter(f"taskwarrior:{tmp_path}").read_only
    with pytest.raises(ForeignError, match="taskwarrior:PATH or fossil:PATH"):
        foreign_adapter("fossil:")
    # The same list, wherever it is named from, is the same foreign replica.
    assert Taskwarrior(str(tmp_path)).uuid == Taskwarrior(f"{tmp_path}/../{tmp_path.name}").uuid
    bad = cli("-R", str(tmp_path / "r"), "pull", "taskwarrior:/nonexistent/tasks", check=False)
    assert bad.returncode == 1 and "no replica" in bad.stderr  # the gateway must exist first


def test_a_second_gateway_of_the_same_database_adopts_the_tasks_the_first_pushed(
    tasks: Path, tmp_path: Path
) -> None:
    alice_path, bob_path = tmp_path / "alice", tmp_path / "bob"
    cli("clone", f"taskwarrior:{tasks}", str(alice_path))
    cli("-R", str(alice_path), "create", "ticket", "summary=Made by Alice")
    cli("-R", str(alice_path), "push", f"taskwarrior:{tasks}")
    cli("clone", str(alice_path), str(bob_path))  # a native replica of Alice's database
    pulled = json.loads(cli("-R", str(bob_path), "pull", f"taskwarrior:{tasks}", "--json").stdout)
    # The same four records: Alice's own has its status filled in from the task.
    assert pulled["created"] == 0 and pulled["updated"] + pulled["unchanged"] == 4
    with Replica.open(bob_path) as bob:
        assert len(list(bob.main.live_records("ticket"))) == 4
        assert push(bob, Taskwarrior(str(tasks))).created == 0
    assert len(exported(tasks)) == 4


def second_gateway(tasks: Path, tmp_path: Path) -> tuple[Path, str]:
    """Alice clones the list; Bob clones Alice (the same database) and has not met the
    list yet.  Bob's replica, and the uuid of "Buy milk"."""
    alice_path, bob_path = tmp_path / "alice", tmp_path / "bob"
    cli("clone", f"taskwarrior:{tasks}", str(alice_path))
    cli("clone", str(alice_path), str(bob_path))
    return bob_path, next(t["uuid"] for t in exported(tasks) if t["description"] == "Buy milk")


def test_an_adopted_task_changed_in_taskwarrior_keeps_that_change(
    tasks: Path, tmp_path: Path
) -> None:
    bob_path, milk = second_gateway(tasks, tmp_path)
    time.sleep(1.1)  # Taskwarrior's modification times count whole seconds
    task(tasks, milk, "done")
    cli("-R", str(bob_path), "pull", f"taskwarrior:{tasks}")  # Bob meets the list first
    cli("-R", str(bob_path), "push", f"taskwarrior:{tasks}")
    assert show(bob_path, milk)["status"] == "closed"
    assert [t["status"] for t in exported(tasks) if t["uuid"] == milk] == ["completed"]


def test_a_fossil_clone_lacking_a_ticket_deletes_nothing(
    tasks: Path, repo: Path, tmp_path: Path
) -> None:
    bob, _ = clone(Taskwarrior(str(tasks)), tmp_path / "bob")
    older = tmp_path / "older.fossil"
    shutil.copy(repo, older)  # same project code: the same foreign replica, behind
    with bob:
        push(bob, Fossil(str(repo)))
        result = pull(bob, Fossil(str(older)))
        assert result.deleted == 0
        assert len(list(bob.main.live_records("ticket"))) == 4


def test_a_clone_from_a_broken_store_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "bob"
    failed = cli("clone", f"taskwarrior:{tmp_path / 'nowhere'}", str(target), check=False)
    assert failed.returncode == 1 and "no Taskwarrior data directory" in failed.stderr
    assert not target.exists()


def test_read_only_paths_in_the_config_are_relative_to_the_replica(
    repo: Path, tmp_path: Path
) -> None:
    bob = tmp_path / "bob"
    cli("-R", str(bob), "init")
    (bob / "config.toml").write_text('[foreign]\nread_only = ["fossil:../tracker.fossil"]\n')
    refused = cli("-R", str(bob), "push", f"fossil:{repo}", check=False)
    assert refused.returncode == 1 and "read-only" in refused.stderr


def test_a_task_whose_record_was_deleted_here_is_adopted_and_then_deleted(
    tasks: Path, tmp_path: Path
) -> None:
    bob_path, milk = second_gateway(tasks, tmp_path)
    cli("-R", str(bob_path), "delete", "ticket", milk)
    pulled = json.loads(cli("-R", str(bob_path), "pull", f"taskwarrior:{tasks}", "--json").stdout)
    assert pulled["created"] == 0  # not revived, not refused as "already exists"
    assert show(bob_path, milk) == {}
    cli("-R", str(bob_path), "push", f"taskwarrior:{tasks}")
    assert [t["status"] for t in exported(tasks) if t["uuid"] == milk] == ["deleted"]
