"""The synchronous-rounds model (sim/rounds.py) against the literature: Pittel's push,
Karp et al.'s push-pull, Demers et al.'s rumor residue; and the model's own rules, each
checked on plain data: who sends in a round, along which edges, and when a run ends."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import networkx as nx
import pytest

from p2p_prophet.sim.rounds import (
    PROTOCOLS,
    THEORY,
    Protocol,
    Spread,
    demers_residue,
    pittel_push_rounds,
    reference,
    samples,
    spread,
    theory_check,
)

SEEDS = 200


def adjacency(graph: nx.Graph) -> list[list[int]]:
    return [sorted(graph.neighbors(p)) for p in range(graph.number_of_nodes())]


def within(measured: float, figure: float, tolerance: float = 0.15) -> bool:
    return abs(measured - figure) <= tolerance * figure


# The figures of the literature.


@pytest.mark.parametrize(("protocol", "figure"), [("push-pull", 6.5), ("push", 12.0)])
def test_rounds_to_inform_100_peers_match_the_literature(protocol: Protocol, figure: float) -> None:
    mean, ref = theory_check(protocol, 100, seeds=SEEDS)
    assert ref == figure
    assert within(mean, figure), f"{protocol}: mean {mean:.2f} rounds, theory {figure}"


@pytest.mark.parametrize(("k", "figure"), [(1, 0.20), (2, 0.06)])
def test_the_rumor_residue_at_1000_peers_matches_demers(k: int, figure: float) -> None:
    mean, ref = theory_check("rumor", 1000, k=k, seeds=SEEDS)
    assert ref == figure
    assert within(mean, figure), f"k={k}: mean residue {mean:.4f}, theory {figure}"


def test_demers_residue_solves_its_equation() -> None:
    assert demers_residue(1) == pytest.approx(0.2032, abs=1e-4)
    assert demers_residue(2) == pytest.approx(0.0595, abs=1e-4)
    for k in (1, 2, 3, 10):
        s = demers_residue(k)
        assert 0 < s < 1
        assert s == pytest.approx(math.exp(-(k + 1) * (1 - s)), abs=1e-12)
    assert demers_residue(3) < demers_residue(2) < demers_residue(1)
    with pytest.raises(ValueError):
        demers_residue(0)


def test_pittel_is_log2_plus_ln() -> None:
    assert pittel_push_rounds(1024) == pytest.approx(10 + math.log(1024))
    assert pittel_push_rounds(1) == 0
    with pytest.raises(ValueError):
        pittel_push_rounds(0)


def test_the_reference_is_the_table_then_the_closed_form() -> None:
    assert reference("push", 1000) == 18.0
    assert reference("push", 64) == pytest.approx(pittel_push_rounds(64))
    assert reference("rumor", 50, k=2) == 0.06
    assert reference("rumor", 50, k=3) == pytest.approx(demers_residue(3))
    assert {(ref.protocol, ref.n, ref.k) for ref in THEORY} >= {("push-pull", 1000, None)}
    with pytest.raises(ValueError):
        reference("pull", 100)
    with pytest.raises(ValueError):
        theory_check("push-pull", 500, seeds=1)


# Determinism.


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_same_seed_gives_the_same_spread(protocol: Protocol) -> None:
    first = spread(300, protocol, random.Random(7), k=2)
    again = spread(300, protocol, random.Random(7), k=2)
    assert first == again
    others = {str(spread(300, protocol, random.Random(seed), k=2)) for seed in range(10)}
    assert len(others) > 1


def test_samples_are_seeded_from_seed0() -> None:
    assert samples("push", 50, 1, 5, seed0=40) == [
        float(spread(50, "push", random.Random(40 + i)).rounds) for i in range(5)
    ]
    assert samples("rumor", 50, 1, 3, seed0=9) == [
        spread(50, "rumor", random.Random(9 + i)).residue for i in range(3)
    ]


# The rules of a round, on the complete graph.


def check_shape(run: Spread) -> None:
    assert run.informed[0] == 1
    assert len(run.informed) == run.rounds + 1
    assert all(a <= b for a, b in itertools.pairwise(run.informed))


def test_push_each_holder_sends_once_and_the_newly_informed_wait_a_round() -> None:
    for seed in range(50):
        run = spread(200, "push", random.Random(seed))
        check_shape(run)
        assert run.informed[-1] == 200
        assert run.informed[1] == 2  # the origin alone sends in round 1
        # A peer informed in round r does not send in r: holders at most double.
        assert all(b <= 2 * a for a, b in itertools.pairwise(run.informed))
        assert run.messages == sum(run.informed[:-1])


def test_pull_each_uninformed_peer_asks_once() -> None:
    for seed in range(50):
        run = spread(200, "pull", random.Random(seed))
        check_shape(run)
        assert run.informed[-1] == 200
        assert run.messages == sum(200 - held for held in run.informed[:-1])


def test_push_pull_every_peer_contacts_once_a_round() -> None:
    for seed in range(50):
        run = spread(200, "push-pull", random.Random(seed))
        check_shape(run)
        assert run.informed[-1] == 200
        assert run.messages == 200 * run.rounds


def test_a_push_to_a_peer_told_earlier_in_the_round_is_old_news() -> None:
    # At k=1 every contact either informs a new peer or ends its sender's interest, so
    # m informed peers cost exactly (m - 1) + m contacts. Counting a second push to a
    # peer informed this round as news would leave some contacts with neither effect.
    for seed in range(100):
        run = spread(500, "rumor", random.Random(seed), k=1)
        check_shape(run)
        assert run.messages == 2 * run.informed[-1] - 1


def test_a_rumor_ends_when_nobody_is_infective() -> None:
    runs = [spread(500, "rumor", random.Random(seed), k=2) for seed in range(50)]
    for run in runs:
        check_shape(run)
        assert run.rounds < 10_000
        assert run.residue == 1 - run.informed[-1] / 500
    # Senders lose interest only on old news, so the last rounds inform nobody.
    assert any(run.informed[-1] == run.informed[-2] for run in runs)
    assert statistics.fmean(run.residue for run in runs) > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_single_peer_has_nothing_to_do(protocol: Protocol) -> None:
    run = spread(1, protocol, random.Random(0))
    assert run == Spread(rounds=0, informed=[1], messages=0, n=1)
    assert run.residue == 0


def test_max_rounds_stops_a_run_short() -> None:
    run = spread(1000, "push", random.Random(0), max_rounds=3)
    assert run.rounds == 3
    assert run.informed[-1] <= 8
    assert run.residue > 0.99


# Contacts go only along edges.


def test_pull_from_the_centre_of_a_star_takes_one_round() -> None:
    star = adjacency(nx.star_graph(49))  # peer 0 is the centre
    for protocol in ("pull", "push-pull"):
        run = spread(50, protocol, random.Random(1), neighbours=star)
        assert run.rounds == 1
        assert run.informed == [1, 50]
        assert run.messages == (49 if protocol == "pull" else 50)


def test_a_leaf_of_a_star_can_only_tell_the_centre() -> None:
    star = adjacency(nx.star_graph(49))
    for seed in range(20):
        run = spread(50, "push", random.Random(seed), neighbours=star, origin=7)
        assert run.informed[1] == 2
        assert run.informed[-1] == 50


@pytest.mark.parametrize("protocol", ["push", "pull", "push-pull"])
def test_on_a_line_the_update_moves_one_hop_a_round_at_most(protocol: Protocol) -> None:
    line = adjacency(nx.path_graph(30))
    stalled = False
    for seed in range(20):
        run = spread(30, protocol, random.Random(seed), neighbours=line)
        assert all(held <= r + 1 for r, held in enumerate(run.informed))
        assert run.informed[-1] == 30
        assert run.rounds >= 29
        stalled = stalled or any(a == b for a, b in itertools.pairwise(run.informed))
    # Rounds that inform nobody happen along the way and do not end the run.
    assert stalled


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_update_never_crosses_to_another_component(protocol: Protocol) -> None:
    two = adjacency(nx.disjoint_union(nx.complete_graph(20), nx.cycle_graph(15)))
    for seed in range(20):
        run = spread(35, protocol, random.Random(seed), neighbours=two, k=2)
        assert run.informed[-1] <= 20
        assert run.residue >= 15 / 35
        assert run.rounds < 10_000  # it ended because nothing more could change
        if protocol != "rumor":
            assert run.informed[-1] == 20
            assert run.informed[-2] < 20  # and no round was played after that


def test_direction_matters_on_a_directed_graph() -> None:
    # 0 lists 1 and 1 lists 2: push carries the update 0 -> 1 -> 2, pull cannot move it
    # (1 would pull from 2, 2 from nobody), and push-pull carries it either way.
    chain = [[1], [2], []]
    assert spread(3, "push", random.Random(0), neighbours=chain).informed == [1, 2, 3]
    assert spread(3, "pull", random.Random(0), neighbours=chain) == Spread(0, [1], 0, 3)
    backwards = [[], [0], [1]]
    assert spread(3, "pull", random.Random(0), neighbours=backwards).informed == [1, 2, 3]
    assert spread(3, "push", random.Random(0), neighbours=backwards).rounds == 0
    assert spread(3, "push-pull", random.Random(0), neighbours=backwards).informed[-1] == 3


def test_an_isolated_origin_spreads_nothing() -> None:
    # Peers 1 and 2 talk to each other, but nobody to 0 and 0 to nobody.
    lonely: list[list[int]] = [[], [2], [1]]
    for protocol in PROTOCOLS:
        run = spread(3, protocol, random.Random(0), neighbours=lonely)
        assert run == Spread(rounds=0, informed=[1], messages=0, n=3)


# Bad arguments.


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"k": 0},
        {"max_rounds": -1},
        {"origin": 5},
        {"neighbours": [[1], [0]]},
        {"neighbours": [[1], [0], [2], [0], [0]]},
        {"neighbours": [[1], [0], [9], [0], [0]]},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"n": 5, "k": 1, "max_rounds": 10, "origin": 0} | kwargs
    with pytest.raises(ValueError):
        spread(rng=random.Random(0), protocol="push", **args)  # type: ignore[arg-type]


def test_an_unknown_protocol_raises_value_error() -> None:
    with pytest.raises(ValueError):
        spread(5, "flood", random.Random(0))  # type: ignore[arg-type]
