"""Child process of test_crash.py: applies workload batches until it is killed.

Prints ``mid B`` halfway through batch B (after rows of the batch have gone to SQLite)
and ``committed B`` after batch B's transaction commits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workload import EDITS_PER_BATCH, ExpectedState, apply, batch_edits

from p2p_prophet.store import Replica


def main(path: str, batches: int) -> None:
    replica = Replica.open(Path(path))
    done = replica.main.ticket(replica.uuid) // EDITS_PER_BATCH
    state = ExpectedState()
    for b in range(done):  # replay the oracle to where the replica is
        for _ in batch_edits(b, state):
            pass
    print("ready", done, flush=True)
    for b in range(done, batches):
        with replica.edits() as batch:
            for i, edit in enumerate(batch_edits(b, state)):
                apply(batch, edit)
                if i == EDITS_PER_BATCH // 2:
                    batch.flush()
                    print("mid", b, flush=True)
        print("committed", b, flush=True)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
