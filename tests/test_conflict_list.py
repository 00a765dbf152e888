"""The conflict list is a function of the changesets held (issue 17, part 2).

Replicas holding the same changesets list the same conflicts, with the same fingerprints
and choices, whatever order they met the writes in; so a fingerprint copied from one
laptop names the same conflict on another.  (The random-workload version of this is in
tests/test_convergence.py.)
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

from p2p_prophet.model import Change, ChangeSet, Kind, Op, PropChange, Value
from p2p_prophet.store import Replica
from p2p_prophet.sync import integrate
from p2p_prophet.sync.human import list_conflicts
from tests.conftest import ReplicaFactory
from tests.test_cli import Runner
from tests.test_cli import run as run
from tests.test_replication import Cloner, cloned, net  # noqa: F401  (fixtures)
from tests.transports import Transport


def test_the_issue_reproduction_lists_one_conflict_everywhere(run: Runner, tmp_path: Path) -> None:
    """a: p=1; b: q=1; c: p=2 q=2, all concurrent; x pulls a, b, c and y pulls a, c, b.
    x met one conflict on (p, q), y two; both now list the same one."""
    names = "abcxy"
    path = {n: str(tmp_path / n) for n in names}
    run("-R", path["a"], "init", "--insecure")
    ticket = run("-R", path["a"], "create", "ticket", "p=0", "q=0").out.strip()
    for n in "bcxy":
        assert run("clone", path["a"], path[n]).code == 0
    run("-R", path["a"], "update", "ticket", ticket, "p=1")
    run("-R", path["b"], "update", "ticket", ticket, "q=1")
    run("-R", path["c"], "update", "ticket", ticket, "p=2", "q=2")
    for n in "abc":
        run("-R", path["x"], "pull", path[n])
    for n in "acb":
        run("-R", path["y"], "pull", path[n])
    for _ in range(2):
        for n in "abcx":
            assert run("-R", path[n], "sync", path["y"]).code == 0
    digests = {run("-R", path[n], "digest").out for n in names}
    assert len(digests) == 1
    listed = {n: run("-R", path[n], "conflicts", "--json").json() for n in names}
    assert all(entries == listed["a"] for entries in listed.values())
    [conflict] = listed["x"]
    # One edit (c's) clashed with a's on p and with b's on q: one conflict, two properties.
    assert [p["name"] for p in conflict["props"]] == ["p", "q"]
    assert [sorted(c["value"] for c in p["choices"]) for p in conflict["props"]] == [
        ["1", "2"],
        ["1", "2"],
    ]
    # A fingerprint copied from one laptop resolves the conflict on another.
    resolved = run("-R", path["y"], "resolve", conflict["fingerprint"][:10], "p=9", "--json")
    assert resolved.code == 0, resolved.err
    assert resolved.json()["fingerprints"] == [conflict["fingerprint"]]
    run("-R", path["y"], "sync", path["x"])
    [after] = run("-R", path["x"], "conflicts", "--json").json()
    assert after["fingerprint"] == conflict["fingerprint"] and after["answered"]
    assert after["props"][0]["now"] == "9"


def _edit(origin: str, hlc: int, record: str, old: Value, new: Value) -> bytes:
    return ChangeSet(
        origin,
        1,
        origin[-1],
        hlc,
        Kind.EDIT,
        (Change("ticket", record, Op.UPDATE, (PropChange("status", old, new),)),),
    ).encode()


def _listed(replica: Replica) -> list[dict[str, Any]]:
    """The list without ``answered``: each replica here met the writes alone, without
    the answers another minted (which an exchange would bring)."""
    return [
        {k: v for k, v in entry.items() if k != "answered"} for entry in list_conflicts(replica)
    ]


def test_three_concurrent_writes_are_one_conflict_in_every_arrival_order(
    make_replica: ReplicaFactory,
) -> None:
    record = "00000000-0000-4000-8000-0000000000cc"
    create = ChangeSet(
        "00000000-0000-4000-8000-000000000000",
        1,
        "z",
        100,
        Kind.EDIT,
        (Change("ticket", record, Op.CREATE, (PropChange("status", None, "new"),)),),
    ).encode()
    writes = [
        _edit(f"00000000-0000-4000-8000-00000000000{i}", 200 + i, record, "new", value)
        for i, value in enumerate(["open", "stalled", "closed"], start=1)
    ]
    lists = []
    for n, order in enumerate(itertools.permutations(writes)):
        replica = make_replica(f"r{n}")
        for body in [create, *order]:  # one batch each: every arrival order met
            integrate(replica, [body])
        lists.append(_listed(replica))
    assert all(entries == lists[0] for entries in lists)
    [conflict] = lists[0]
    [prop] = conflict["props"]
    assert prop["base"] == "new"
    assert sorted(c["value"] for c in prop["choices"]) == ["closed", "open", "stalled"]
    assert prop["now"] == "closed" and prop["how"] == "larger stamp won"


def test_a_write_that_saw_the_winner_ends_the_conflict_and_a_late_one_rejoins_it(
    make_replica: ReplicaFactory,
) -> None:
    """Writes in stamp order: new -> open and new -> stalled clash; closed, written from
    stalled, saw the winner and clashes with nobody; a late write from new, stamped
    after all of them, clashes again (with closed), whenever it arrives."""
    record = "00000000-0000-4000-8000-0000000000dd"
    z = "00000000-0000-4000-8000-000000000000"
    create = ChangeSet(
        z, 1, "z", 100, Kind.EDIT,
        (Change("ticket", record, Op.CREATE, (PropChange("status", None, "new"),)),),
    ).encode()  # fmt: skip
    a = _edit("00000000-0000-4000-8000-00000000000a", 200, record, "new", "open")
    b = _edit("00000000-0000-4000-8000-00000000000b", 210, record, "new", "stalled")
    c = _edit("00000000-0000-4000-8000-00000000000c", 220, record, "stalled", "closed")
    d = _edit("00000000-0000-4000-8000-00000000000d", 230, record, "new", "blocked")
    lists = []
    for n, order in enumerate(itertools.permutations([a, b, c, d])):
        if order.index(b) > order.index(c):
            continue  # c was written after its author saw b: causal delivery
        replica = make_replica(f"r{n}")
        for body in [create, *order]:
            integrate(replica, [body])
        lists.append(_listed(replica))
    assert all(entries == lists[0] for entries in lists)
    groups = sorted(
        (p["base"], sorted(ch["value"] for ch in p["choices"]))
        for entry in lists[0]
        for p in entry["props"]
    )
    assert groups == [("new", ["open", "stalled"]), ("stalled", ["blocked", "closed"])]


def test_a_replica_from_before_the_list_was_kept_fills_it_from_its_log(tmp_path: Path) -> None:
    """Schema 4 keeps which changesets wrote each record; a replica of schema 3 is
    migrated in one transaction: that index and its conflict list are filled from its
    log."""
    path = tmp_path / "old"
    with Replica.init(path) as replica:
        ticket = replica.create("ticket", {"status": "new"})
        for n, value in enumerate(["open", "stalled"], start=1):
            integrate(
                replica, [_edit(f"00000000-0000-4000-8000-00000000000{n}", 1, ticket, "new", value)]
            )
        expected = list_conflicts(replica)
    assert len(expected) == 1
    conn = sqlite3.connect(path / "replica.db")
    with conn:
        conn.execute("DROP TABLE record_changes")
        conn.execute("DELETE FROM conflicts")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    with Replica.open(path) as replica:
        assert list_conflicts(replica) == expected
        assert replica.main.conn.execute("PRAGMA user_version").fetchone()[0] == 4


def test_the_issue_reproduction_over_a_node_lists_one_conflict_everywhere(
    net: Transport,  # noqa: F811
    make_replica: ReplicaFactory,
    cloned: Cloner,  # noqa: F811
) -> None:
    """The same five replicas, each pull made over HTTP (a node serving the sender, or
    the sender pushing to a node serving the receiver)."""
    a = make_replica("a")
    ticket = a.create("ticket", {"p": "0", "q": "0"})
    b, c, x, y = (cloned(a, name) for name in "bcxy")
    a.update("ticket", ticket, {"p": "1"})
    b.update("ticket", ticket, {"q": "1"})
    c.update("ticket", ticket, {"p": "2", "q": "2"})
    for sender in (a, b, c):
        net.transfer(x, sender)
    for sender in (a, c, b):
        net.transfer(y, sender)
    everyone = [a, b, c, x, y]
    for _ in range(2):
        for replica in everyone:
            if replica is not y:
                net.transfer(replica, y)
                net.transfer(y, replica)
    assert len({r.main.digest() for r in everyone}) == 1
    listed = [list_conflicts(r) for r in everyone]
    assert all(entries == listed[0] for entries in listed)
    [conflict] = listed[0]
    assert [p["name"] for p in conflict["props"]] == ["p", "q"]
