"""Synchronous-rounds gossip: the textbook model, to check our gossip against the literature.

This is not the simulator of ``run.py`` (real replicas, real syncs, virtual time). It
models one thing only: who holds a single update, as rounds go by, under one of four
protocols. Everything is driven by one ``random.Random``, so a seed fixes the run.

The model
=========

There are ``n`` peers, ``0 … n-1``. Before round 1 exactly one peer, the origin, holds
the update. A **contact** is one peer choosing one **neighbour** uniformly at random: any
other peer on the complete graph (``neighbours=None``), else one entry of its adjacency
list (a neighbour listed twice is twice as likely). A peer with no neighbours makes no
contact. Every contact counts as one message, whatever it carries.

A **round** is one contact by each peer the protocol lets send, all made against the
state at the start of the round (synchronous rounds):

``push``
    Every peer that held the update at the start of the round contacts one neighbour,
    which then holds it. Several pushes to one peer in a round inform it once.
``pull``
    Every peer that did not hold the update at the start of the round contacts one
    neighbour, and holds it afterwards if that neighbour held it at the start of the
    round.
``push-pull``
    Every peer contacts one neighbour; after the exchange both hold the update if either
    held it at the start of the round.
``rumor``
    Rumor mongering with feedback and coin (Demers et al.). The origin starts
    *infective*. Every peer infective at the start of the round pushes to one neighbour.
    If that neighbour did not hold the update, it does now and becomes infective. If it
    already held it (the feedback), the sender loses interest, that is stops being
    infective, with probability ``1/k`` (the coin).

In every protocol a peer informed during round ``r`` first sends in round ``r + 1``.

**Contacts within a rumor round are taken one after another**, in the order the senders
became infective, and each sees the state the contacts before it left. So a push to a
peer informed earlier in the *same* round is old news, and tosses the coin. This is the
papers' model: Demers et al. derive the residue from the accounting "every contact
either informs a susceptible peer or finds one that knew", with the state at the moment
of the contact, and with this rule that accounting holds exactly, contact by contact.
Since a contact's outcome depends only on how many peers are still uninformed, not on who
sends it, the sequence of outcomes has the same law as the continuous-time chain behind
their equations; the rounds only group the contacts. (Taking "knew" from the state at
the start of the round instead lets two senders who hit one uninformed peer both count it
as news, so senders lose interest less often and the residue comes out lower.)

When it ends
============

``push``, ``pull`` and ``push-pull`` end when every peer the update can ever reach
holds it: all ``n`` on a connected graph. On a graph given by ``neighbours`` that set is
worked out beforehand (peers reachable from the origin along the edges, in the direction
the protocol moves the update), because a round that informs nobody is not the end by
itself: pushes and pulls can miss for many rounds and then succeed. ``rumor`` ends when
no infective peer is left that can make a contact. Every protocol also ends after
``max_rounds`` rounds, however far it got.

References
==========

- B. Pittel, "On spreading a rumor", SIAM J. Appl. Math. 47(1), 1987: push on the
  complete graph informs everyone after ``log2(n) + ln(n) + O(1)`` rounds.
- R. Karp, C. Schindelhauer, S. Shenker, B. Vöcking, "Randomized rumor spreading",
  FOCS 2000: push-pull informs everyone after ``log3(n) + O(log log n)`` rounds.
- A. Demers, D. Greene, C. Hauser, W. Irish, J. Larson, S. Shenker, H. Sturgis,
  D. Swinehart, D. Terry, "Epidemic algorithms for replicated database maintenance",
  PODC 1987: rumor mongering; with feedback and coin the residue ``s`` solves
  ``s = exp(-(k + 1)(1 - s))``.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["push", "pull", "push-pull", "rumor"]
PROTOCOLS: tuple[Protocol, ...] = ("push", "pull", "push-pull", "rumor")


@dataclass(frozen=True)
class Spread:
    """One run of :func:`spread`.

    ``rounds`` is the number of rounds played: up to the round after which no change is
    possible (everyone reachable informed; for ``rumor``, nobody infective left), or
    ``max_rounds``. ``informed[r]`` is the number of peers holding the update after
    round ``r``; ``informed[0] == 1`` (the origin, before round 1) and
    ``len(informed) == rounds + 1``. ``messages`` is the number of contacts made.
    """

    rounds: int
    informed: list[int]
    messages: int
    n: int

    @property
    def residue(self) -> float:
        """The fraction of the ``n`` peers never informed."""
        return 1.0 - self.informed[-1] / self.n


def spread(
    n: int,
    protocol: Protocol,
    rng: random.Random,
    *,
    k: int = 1,
    neighbours: Sequence[Sequence[int]] | None = None,
    origin: int = 0,
    max_rounds: int = 10_000,
) -> Spread:
    """Spread one update from ``origin`` among ``n`` peers in synchronous rounds.

    The rules are the module's. ``neighbours=None`` is the complete graph, with no
    ``n × n`` structure; otherwise ``neighbours[p]`` lists the peers ``p`` may contact
    (an undirected graph lists each edge at both ends). ``k`` is the rumor's coin: a
    sender who finds the peer already informed loses interest with probability ``1/k``;
    other protocols ignore it. The run is a function of ``rng``'s state and the
    arguments only.

    Raises ``ValueError`` for an unknown protocol, ``n < 1``, ``k < 1``,
    ``max_rounds < 0``, an origin outside ``range(n)``, or ``neighbours`` that does not
    have ``n`` lists of peers in ``range(n)`` other than the list's owner.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if max_rounds < 0:
        raise ValueError(f"max_rounds must be at least 0, not {max_rounds}")
    if not 0 <= origin < n:
        raise ValueError(f"origin {origin} is not a peer of range({n})")
    if neighbours is not None:
        _check_graph(n, neighbours)

    if protocol == "rumor":
        return _rumor(n, rng, k, neighbours, origin, max_rounds)
    return _spread(n, protocol, rng, neighbours, origin, max_rounds)


def _check_graph(n: int, neighbours: Sequence[Sequence[int]]) -> None:
    if len(neighbours) != n:
        raise ValueError(f"neighbours has {len(neighbours)} lists for {n} peers")
    for p, listed in enumerate(neighbours):
        for q in listed:
            if not 0 <= q < n or q == p:
                raise ValueError(f"peer {p} lists {q}, not another peer of range({n})")


def _reach(
    n: int, protocol: Protocol, neighbours: Sequence[Sequence[int]] | None, origin: int
) -> int:
    """How many peers the update can ever reach from ``origin``."""
    if neighbours is None:
        return n
    # The update moves p -> q when p pushes to q, and q -> p when p pulls from q.
    flows: list[list[int]] = [[] for _ in range(n)]
    for p, listed in enumerate(neighbours):
        for q in listed:
            if protocol in ("push", "push-pull"):
                flows[p].append(q)
            if protocol in ("pull", "push-pull"):
                flows[q].append(p)
    seen = [False] * n
    seen[origin] = True
    stack = [origin]
    while stack:
        for q in flows[stack.pop()]:
            if not seen[q]:
                seen[q] = True
                stack.append(q)
    return sum(seen)


def _spread(
    n: int,
    protocol: Protocol,
    rng: random.Random,
    neighbours: Sequence[Sequence[int]] | None,
    origin: int,
    max_rounds: int,
) -> Spread:
    """push, pull and push-pull: every decision reads ``has``, the state at the start
    of the round; the round's newly informed peers are applied at its end."""
    has = [False] * n
    has[origin] = True
    holders = [origin]
    informed = [1]
    messages = 0
    target = _reach(n, protocol, neighbours, origin)
    rounds = 0
    while len(holders) < target and rounds < max_rounds:
        rounds += 1
        newly: list[int] = []
        if protocol == "push":
            for p in holders:
                q = _contact(p, n, neighbours, rng)
                if q is None:
                    continue
                messages += 1
                if not has[q]:
                    newly.append(q)
        else:
            for p in range(n):
                if protocol == "pull" and has[p]:
                    continue
                q = _contact(p, n, neighbours, rng)
                if q is None:
                    continue
                messages += 1
                if has[q] and not has[p]:
                    newly.append(p)
                elif has[p] and not has[q]:
                    newly.append(q)
        for q in newly:
            if not has[q]:  # several contacts may inform one peer
                has[q] = True
                holders.append(q)
        informed.append(len(holders))
    return Spread(rounds=rounds, informed=informed, messages=messages, n=n)


def _rumor(
    n: int,
    rng: random.Random,
    k: int,
    neighbours: Sequence[Sequence[int]] | None,
    origin: int,
    max_rounds: int,
) -> Spread:
    """Rumor mongering, feedback and coin: contacts in a round are taken one after the
    other and each sees the state the ones before it left (see the module)."""
    has = [False] * n
    has[origin] = True
    count = 1
    infective = [origin]
    informed = [1]
    messages = 0
    rounds = 0
    while rounds < max_rounds and _can_send(infective, n, neighbours):
        rounds += 1
        staying: list[int] = []
        newly: list[int] = []
        for p in infective:
            q = _contact(p, n, neighbours, rng)
            if q is None:
                staying.append(p)  # no neighbour: nothing to tell, no feedback
                continue
            messages += 1
            if not has[q]:
                has[q] = True
                count += 1
                newly.append(q)
                staying.append(p)
            elif rng.randrange(k) != 0:
                staying.append(p)
        infective = staying + newly
        informed.append(count)
    return Spread(rounds=rounds, informed=informed, messages=messages, n=n)


def _can_send(infective: list[int], n: int, neighbours: Sequence[Sequence[int]] | None) -> bool:
    if neighbours is None:
        return bool(infective) and n > 1
    return any(neighbours[p] for p in infective)


def _contact(
    p: int, n: int, neighbours: Sequence[Sequence[int]] | None, rng: random.Random
) -> int | None:
    """The neighbour ``p`` contacts, or ``None`` when it has none."""
    if neighbours is None:
        if n < 2:
            return None
        q = rng.randrange(n - 1)
        return q + 1 if q >= p else q
    listed = neighbours[p]
    if not listed:
        return None
    return listed[rng.randrange(len(listed))]


# The theory figures.


def pittel_push_rounds(n: int) -> float:
    """``log2(n) + ln(n)``: Pittel's rounds for push to inform all ``n`` peers of the
    complete graph, without its ``O(1)`` term. Raises ``ValueError`` for ``n < 1``."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    return math.log2(n) + math.log(n)


def demers_residue(k: int) -> float:
    """The root in ``(0, 1)`` of ``s = exp(-(k + 1)(1 - s))``: Demers et al.'s residue
    for rumor mongering with feedback and coin, as ``n`` grows without bound.

    Found by fixed-point iteration from 0, which climbs monotonically to the smallest
    root (the other root is 1); to within 1e-12. Raises ``ValueError`` for ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    s = 0.0
    for _ in range(10_000):
        following = math.exp(-(k + 1) * (1.0 - s))
        if abs(following - s) < 1e-15:
            return following
        s = following
    raise AssertionError("unreachable: the iteration contracts by (k+1)s < 1 near the root")


@dataclass(frozen=True)
class Reference:
    """A figure from the literature that our acceptance criterion states.

    For ``push`` and ``push-pull`` it is the mean number of rounds until all ``n`` peers
    of the complete graph are informed (``k`` is ``None``); for ``rumor``, the residue
    at coin ``k`` as ``n`` grows (``n`` is ``None``)."""

    protocol: Protocol
    n: int | None
    k: int | None
    figure: float
    source: str


THEORY: tuple[Reference, ...] = (
    Reference("push-pull", 100, None, 6.5, "Karp et al. 2000"),
    Reference("push-pull", 1000, None, 9.0, "Karp et al. 2000"),
    Reference("push", 100, None, 12.0, "Pittel 1987"),
    Reference("push", 1000, None, 18.0, "Pittel 1987"),
    Reference("rumor", None, 1, 0.20, "Demers et al. 1987"),
    Reference("rumor", None, 2, 0.06, "Demers et al. 1987"),
)


def reference(protocol: Protocol, n: int, k: int = 1) -> float:
    """The figure to compare a run of ``protocol`` with: the :data:`THEORY` entry if
    there is one, else ``pittel_push_rounds(n)`` for push and ``demers_residue(k)`` for
    rumor. Raises ``ValueError`` when there is none (pull; push-pull at an ``n`` the
    table does not list)."""
    for ref in THEORY:
        if ref.protocol == protocol and (ref.n == n if ref.k is None else ref.k == k):
            return ref.figure
    if protocol == "push":
        return pittel_push_rounds(n)
    if protocol == "rumor":
        return demers_residue(k)
    raise ValueError(f"no reference figure for {protocol} at n={n}")


def samples(protocol: Protocol, n: int, k: int, seeds: int, seed0: int = 0) -> list[float]:
    """What ``seeds`` runs on the complete graph measure, run ``i`` seeded with
    ``random.Random(seed0 + i)``: its rounds, or its residue for ``rumor``."""
    measured: list[float] = []
    for i in range(seeds):
        run = spread(n, protocol, random.Random(seed0 + i), k=k)
        measured.append(run.residue if protocol == "rumor" else float(run.rounds))
    return measured


def theory_check(
    protocol: Protocol, n: int, k: int = 1, seeds: int = 200, seed0: int = 0
) -> tuple[float, float]:
    """``(mean measured, reference)``: the mean of :func:`samples` and
    :func:`reference` for the same case. Raises ``ValueError`` as they do, and for
    ``seeds < 1``."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, not {seeds}")
    figure = reference(protocol, n, k)
    return statistics.fmean(samples(protocol, n, k, seeds, seed0)), figure
