"""Path-to-path replication throughput.

Prints changesets/s for a clone of 100,000 changesets (one create of 3 properties each)
and for an incremental pull of 1,000 more, with the bare-SQLite ceiling beside them: the
very rows the clone wrote (log, records, properties) inserted by plain ``executemany``
into tables with no indexes.

With ``--signed`` the source and the clone are signed replicas (docs/security.md, Signed
changesets): the source's changesets are chained and sealed as they are made (not
timed), and the clone checks every link and one signature per run, as a signed receiver
does.  Compare the two figures for the cost of signing on the receiving side.

Usage: python bench/pull.py [--n 100000] [--incremental 1000] [--signed]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from local_edits import rows_ceiling
from machine import describe

from p2p_prophet.security import Identity
from p2p_prophet.store import Replica
from p2p_prophet.sync import clone, transfer


def fill(replica: Replica, n: int, offset: int = 0) -> None:
    with replica.edits() as batch:
        for i in range(offset, offset + n):
            batch.create("ticket", {"status": "open", "summary": f"ticket {i}", "priority": i % 5})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--incremental", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument(
        "--signed", action="store_true", help="signed source and clone (chains and seals)"
    )
    parser.add_argument("--quick", action="store_true", help="small figures, for CI")
    args = parser.parse_args()
    if args.quick:
        args.n, args.incremental = 2_000, 100
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source_id = Identity.generate() if args.signed else None
        dest_id = Identity.generate() if args.signed else None
        source = Replica.init(root / "source", identity=source_id)
        fill(source, args.n)

        start = time.perf_counter()
        dest, _ = clone(source, root / "dest", batch_size=args.batch, identity=dest_id)
        clone_s = time.perf_counter() - start
        assert dest.main.digest() == source.main.digest()
        assert dest.signed == args.signed

        fill(source, args.incremental, offset=args.n)
        start = time.perf_counter()
        result = transfer(dest, source, batch_size=args.batch)
        pull_s = time.perf_counter() - start
        assert result.changesets.integrated == args.incremental
        assert dest.main.digest() == source.main.digest()

        dest.close()
        source.close()
        probe = root / "probe"
        probe.mkdir()
        # Ceiling: the rows the clone and the pull wrote, into bare tables.
        ceiling_s = rows_ceiling(probe, root / "dest")
        total = args.n + args.incremental

    clone_rate = args.n / clone_s
    ceiling_rate = total / ceiling_s
    print(f"machine: {describe()}")
    print(f"path-to-path, batches of {args.batch}, {'signed' if args.signed else 'plain'}")
    print(
        f"  clone of {args.n:,} changesets     {clone_s:8.2f} s  {clone_rate:>9,.0f} changesets/s"
    )
    print(
        f"  incremental pull of {args.incremental:,}   {pull_s:8.3f} s  "
        f"{args.incremental / pull_s:>9,.0f} changesets/s"
    )
    print(f"  bare executemany ceiling           {ceiling_rate:>20,.0f} changesets/s")
    print(f"  clone / ceiling                    {clone_rate / ceiling_rate:>20.2f}")


if __name__ == "__main__":
    main()
