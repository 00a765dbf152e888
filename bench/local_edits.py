"""Local edit throughput: 10,000 single-record creates of 3 properties each.

Prints edits/s batched (one transaction) and unbatched (one transaction per edit), and
two ceilings from plain ``executemany`` into bare SQLite tables with no indexes:

* rows ceiling: the very rows our store wrote for the batched run (the log row, the
  record row and 3 property rows per edit), read back and inserted into bare tables;
* flat ceiling: one row per record, ``(type, uuid, status, summary, priority)``, into
  one bare table.

Usage: python bench/local_edits.py [--n 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe

from p2p_prophet.store import Replica


def props(i: int) -> dict[str, str | int]:
    return {"status": "open", "summary": f"ticket number {i}", "priority": i % 5}


def batched(root: Path, n: int) -> float:
    with Replica.init(root / "batched") as replica:
        start = time.perf_counter()
        with replica.edits() as batch:
            for i in range(n):
                batch.create("ticket", props(i))
        return time.perf_counter() - start


def unbatched(root: Path, n: int) -> float:
    with Replica.init(root / "unbatched") as replica:
        start = time.perf_counter()
        for i in range(n):
            replica.create("ticket", props(i))
        return time.perf_counter() - start


def bare(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # the store's own setting
    return conn


def rows_ceiling(root: Path, source: Path) -> float:
    src = sqlite3.connect(source / "replica.db")
    log = src.execute("SELECT * FROM changesets").fetchall()
    records = src.execute("SELECT * FROM records").fetchall()
    prop_rows = src.execute("SELECT * FROM props").fetchall()
    src.close()
    conn = bare(root / "rows-ceiling.db")
    conn.execute("CREATE TABLE changesets (seq, origin, origin_seq, kind, id, created, body, seal)")
    conn.execute("CREATE TABLE records (rid, type, uuid, ch, co, dh, do)")
    conn.execute("CREATE TABLE props (rid, name, value, hlc, origin)")
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO changesets VALUES (?, ?, ?, ?, ?, ?, ?, ?)", log)
    conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", records)
    conn.executemany("INSERT INTO props VALUES (?, ?, ?, ?, ?)", prop_rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def flat_ceiling(root: Path, source: Path) -> float:
    with Replica.open(source) as replica:
        rows = [
            (r.type, r.uuid, r.props["status"], r.props["summary"], r.props["priority"])
            for r in replica.main.live_records()
        ]
    conn = bare(root / "flat-ceiling.db")
    conn.execute("CREATE TABLE records (type, uuid, status, summary, priority)")
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def median_rate(n: int, repeat: int, run: Callable[[Path], float]) -> float:
    rates = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            rates.append(n / run(Path(tmp)))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small figures, for CI")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeat = 300, 1
    n = args.n

    def with_source(ceiling: Callable[[Path, Path], float]) -> Callable[[Path], float]:
        def run(root: Path) -> float:
            batched(root, n)
            return ceiling(root, root / "batched")

        return run

    rate_batched = median_rate(n, args.repeat, lambda root: batched(root, n))
    rate_unbatched = median_rate(n, args.repeat, lambda root: unbatched(root, n))
    rate_rows = median_rate(n, args.repeat, with_source(rows_ceiling))
    rate_flat = median_rate(n, args.repeat, with_source(flat_ceiling))

    print(f"machine: {describe()}")
    print(f"{n:,} creates of 3 properties each, median of {args.repeat} runs")
    print(f"  batched (one transaction)        {rate_batched:>11,.0f} edits/s")
    print(f"  unbatched (one per edit)         {rate_unbatched:>11,.0f} edits/s")
    print(f"  rows ceiling (same rows, bare)   {rate_rows:>11,.0f} edits/s")
    print(f"  flat ceiling (1 row per record)  {rate_flat:>11,.0f} edits/s")
    print(f"  batched / rows ceiling           {rate_batched / rate_rows:>11.2f}")
    print(f"  batched / flat ceiling           {rate_batched / rate_flat:>11.2f}")
    print(f"  batched / unbatched              {rate_batched / rate_unbatched:>11.2f}")


if __name__ == "__main__":
    main()
