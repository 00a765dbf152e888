"""Synchronous-rounds gossip against the literature: push, push-pull and rumor.

Runs each case of ``THEORY`` (p2p_prophet/sim/rounds.py) on the complete graph over many
seeds, run ``i`` seeded with ``random.Random(seed0 + i)``, and prints a markdown table:
the figure from the papers, the measured mean (± standard deviation), the deviation and
whether it is within the tolerance. Rumor cases run at ``--rumor-n`` peers (the residue
is an n → ∞ figure); the others at the table's own n.

Usage: python bench/sim_theory.py [--seeds 200] [--seed0 0] [--rumor-n 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe

from p2p_prophet.sim.rounds import THEORY, Reference, samples


def case(ref: Reference, rumor_n: int) -> tuple[str, int, int]:
    if ref.protocol == "rumor":
        assert ref.k is not None
        return f"rumor residue, k={ref.k}, n={rumor_n:,}", rumor_n, ref.k
    assert ref.n is not None
    return f"{ref.protocol} rounds, n={ref.n:,}", ref.n, 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--rumor-n", type=int, default=1000)
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--quick", action="store_true", help="few seeds, for CI")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rumor_n = 3, 100

    print(f"machine: {describe()}")
    print(f"{args.seeds} seeds per case from seed {args.seed0}, complete graph")
    print()
    print(f"| case | theory | measured mean (± std) | deviation % | within {args.tolerance:.0%}? |")
    print("|---|---|---|---|---|")
    start = time.perf_counter()
    for ref in THEORY:
        label, n, k = case(ref, args.rumor_n)
        measured = samples(ref.protocol, n, k, args.seeds, args.seed0)
        mean = statistics.fmean(measured)
        std = statistics.stdev(measured)
        deviation = (mean - ref.figure) / ref.figure
        ok = "yes" if abs(deviation) <= args.tolerance else "**no**"
        digits = 4 if ref.protocol == "rumor" else 2
        print(
            f"| {label} | {ref.figure:g} ({ref.source}) | {mean:.{digits}f} ± {std:.{digits}f} "
            f"| {deviation * 100:+.1f} | {ok} |"
        )
    print()
    print(f"wall time: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
