"""Child process of test_pull_crash.py: pulls SOURCE into DEST until killed.

Prints ``batch N`` after each integrated batch (its transaction has committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from p2p_prophet.store import Replica
from p2p_prophet.sync import transfer
from p2p_prophet.sync.integrate import IntegrationResult


def main(dest: str, source: str, batch_size: int) -> None:
    receiver, sender = Replica.open(Path(dest)), Replica.open(Path(source))
    batches = 0

    def progress(_: IntegrationResult) -> None:
        nonlocal batches
        batches += 1
        print("batch", batches, flush=True)

    print("ready", flush=True)
    transfer(receiver, sender, batch_size=batch_size, progress=progress)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
