"""P1–P3 under random workloads: random edits and conflicts on 3–6 replicas, random pulls.

After a final all-pairs exchange every digest is equal (P1), every log obeys the prefix
invariant (P2), and re-running any pull, or re-integrating anything already held, changes
nothing (P3).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_prophet.model import ChangeSet, Kind
from p2p_prophet.store import Replica
from p2p_prophet.store.history import refresh_conflicts
from p2p_prophet.sync import clone, integrate, integrate_resolutions, transfer
from p2p_prophet.sync.human import list_conflicts

VALUES = st.one_of(st.sampled_from(["open", "stalled", "closed", ""]), st.integers(0, 3), st.none())
PROPS = st.sampled_from(["status", "owner", "prio"])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[tuple]]:  # type: ignore[type-arg]
    n = draw(st.integers(3, 6))
    replica = st.integers(0, n - 1)
    record = st.integers(0, 5)  # a few hot records make conflicts common
    action = st.one_of(
        st.tuples(st.just("update"), replica, record, st.dictionaries(PROPS, VALUES, min_size=1)),
        st.tuples(st.just("create"), replica, st.dictionaries(PROPS, VALUES)),
        st.tuples(st.just("delete"), replica, record),
        st.tuples(st.just("pull"), replica, replica),
        st.tuples(st.just("pull"), replica, replica),
    )
    return n, draw(st.lists(action, min_size=1, max_size=30))


def check_prefix_invariant(replica: Replica) -> None:
    for db in (replica.main, replica.resolutions):
        seen: dict[str, list[int]] = {}
        for row in db.changesets_after(0, 10**9):
            if row.origin_seq is None:
                assert row.kind == "nullification" and row.origin == db.get_meta("replica_uuid")
                continue
            seen.setdefault(row.origin, []).append(row.origin_seq)
        tickets = db.tickets()
        assert set(seen) == {o for o, k in tickets.items() if k > 0}
        for origin, seqs in seen.items():
            assert seqs == list(range(1, tickets[origin] + 1))


def listed_rows(replica: Replica) -> list[tuple[str, str, str, bytes]]:
    """The conflicts listed, without the local seq of their latest write."""
    return sorted((f, t, u, body) for f, t, u, _, body in replica.main.conflicts())


def record_keys(replica: Replica) -> dict[int, tuple[str, str]]:
    keys = {}
    for rec in [*replica.main.live_records(), *replica.main.removed_records("ticket")]:
        row = replica.main.find_record(rec.type, rec.uuid)
        assert row is not None
        keys[row.rid] = (rec.type, rec.uuid)
    return keys


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_random_workloads_converge(scenario: tuple[int, list[tuple]]) -> None:  # type: ignore[type-arg]
    n, actions = scenario
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = Replica.init(root / "r0")
        base = [first.create("ticket", {"status": "new", "prio": 0}) for _ in range(6)]
        replicas = [first] + [clone(first, root / f"r{i}")[0] for i in range(1, n)]
        try:
            for action in actions:
                kind, who = action[0], replicas[action[1]]
                if kind == "pull":
                    if action[1] != action[2]:
                        transfer(who, replicas[action[2]])
                    continue
                live = {r.uuid for r in who.main.live_records()}
                if kind == "create":
                    base.append(who.create("ticket", action[2]))
                elif base[action[2]] in live:
                    if kind == "update":
                        who.update("ticket", base[action[2]], action[3])
                    else:
                        who.delete("ticket", base[action[2]])

            # Final all-pairs exchange, twice: the second pass carries the resolutions
            # minted during the first.
            for _ in range(2):
                for a in replicas:
                    for b in replicas:
                        if a is not b:
                            transfer(a, b)

            digests = {r.main.digest() for r in replicas}
            assert len(digests) == 1  # P1
            # ... and they say the same things: the same conflicts, fingerprints and
            # choices, whatever order each met the writes in; and the list kept as
            # writes arrived is the one computed afresh from all of them.
            listed = [list_conflicts(r) for r in replicas]
            assert all(entries == listed[0] for entries in listed)
            for r in replicas:
                kept = listed_rows(r)
                with r.main.transaction():
                    refresh_conflicts(r.main, record_keys(r))
                assert listed_rows(r) == kept
            assert len({tuple(sorted(r.main.tickets().items())) for r in replicas}) == 1
            for r in replicas:
                check_prefix_invariant(r)  # P2
                state = (r.main.digest(), r.main.latest_seq(), r.resolutions.latest_seq())
                for other in replicas:
                    if other is not r:
                        assert transfer(r, other).changesets.received == 0
                # P3: re-integrating everything already held changes nothing.
                sent = [row.body for row in r.main.changesets_after(0, 10**9) if row.origin_seq]
                assert integrate(r, sent).integrated == 0
                answers = [row.body for row in r.resolutions.changesets_after(0, 10**9)]
                assert integrate_resolutions(r, answers).integrated == 0
                assert (r.main.digest(), r.main.latest_seq(), r.resolutions.latest_seq()) == state
                # Before fix-ups never leave their replica.
                for row in r.main.changesets_after(0, 10**9):
                    if ChangeSet.decode(row.body).kind is Kind.NULLIFICATION:
                        assert row.origin == r.uuid
        finally:
            for r in replicas:
                r.close()
