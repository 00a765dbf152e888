"""The ready scenarios of simulations/, each over many seeds: do they all converge (P1),
and at what cost?

Each run is a separate process (`p2p-prophet simulate --seed N`), so peak RSS is per run.
Prints one row per scenario: converged runs, simulated convergence time, settle time
after the last edit, bytes per peer, redundant share, resolutions per conflict, wall time
and peak RSS (medians, with the range of convergence time), then the failures in full.

Usage: python bench/sim_scenarios.py [--seeds 20] [SCENARIO.toml ...]
       (default: every simulations/*.toml and simulations/theory/*.toml)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from machine import describe  # noqa: E402

ROOT = HERE.parent / "simulations"


def run(path: Path, seed: int) -> dict[str, Any]:
    script = Path(sys.executable).with_name("p2p-prophet")
    done = subprocess.run(
        [str(script), "simulate", str(path), "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"converged": False, "error": done.stderr.strip()[-500:]}
    if done.returncode != 0:
        report["error"] = done.stderr.strip()[-2000:]
    return report


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument(
        "--quick", action="store_true", help="one seed of ring-100.toml only, for CI"
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.scenarios = 1, [ROOT / "ring-100.toml"]
    paths = args.scenarios or sorted(ROOT.glob("*.toml")) + sorted(ROOT.glob("theory/*.toml"))
    print(describe())
    print(f"{args.seeds} seeds per scenario (1..{args.seeds})\n")
    print(
        "| scenario | peers | converged | convergence s (median, range) | settle s "
        "| KiB/peer | redundant | res./conflict | wall s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    failures = []
    started = time.perf_counter()
    for path in paths:
        reports = [run(path, seed) for seed in range(1, args.seeds + 1)]
        ok = sum(1 for r in reports if r.get("converged") and "error" not in r)
        failures += [(path.name, i + 1, r) for i, r in enumerate(reports) if "error" in r]
        if reports[0].get("mode") == "rounds":
            theory = reports[0].get("theory", {})
            print(
                f"| {path.stem} | {reports[0]['peers']} | theory: {theory.get('measure')} "
                f"{theory.get('measured')} vs {theory.get('reference')} "
                f"({theory.get('deviation', 0):+.1%}) | - | - | - | - | - "
                f"| {fmt(median([r.get('wall_s') for r in reports]), 2)} | - |"
            )
            continue
        times = [r.get("convergence_s") for r in reports if r.get("convergence_s") is not None]
        span = f"{min(times):,.1f}–{max(times):,.1f}" if times else "-"
        kib = median([r["bytes_per_peer"] / 1024 for r in reports if "bytes_per_peer" in r])
        print(
            f"| {path.stem} | {reports[0].get('peers', '?')} | {ok}/{len(reports)} "
            f"| {fmt(median(times))} ({span}) "
            f"| {fmt(median([r.get('settle_s') for r in reports]))} | {fmt(kib)} "
            f"| {fmt(median([r.get('redundant_ratio') for r in reports]), 3)} "
            f"| {fmt(median([r.get('resolutions_per_conflict') for r in reports]), 2)} "
            f"| {fmt(median([r.get('wall_s') for r in reports]))} "
            f"| {fmt(median([r.get('peak_rss_mb') for r in reports]), 0)} |",
            flush=True,
        )
    print(f"\ntotal wall time: {time.perf_counter() - started:,.0f} s")
    for name, seed, report in failures:
        print(f"\nFAILED {name} seed {seed}:\n{report['error']}")


if __name__ == "__main__":
    main()
