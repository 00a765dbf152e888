"""A progress bar for long transfers (rich), on stderr, only where a person watches."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress

from p2p_prophet.net.client import Progress

# Below this many changesets a transfer is over before a bar would be worth drawing.
SHOW_FROM = 1000


@contextmanager
def transfer_bar(enabled: bool) -> Iterator[Callable[[Progress], None] | None]:
    """Yield a progress callback for :class:`Peer`, or None when ``enabled`` is false or
    stderr is not a terminal (scripts, ``--json``, CI)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("changesets"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[size]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(p: Progress) -> None:
        if p.total < SHOW_FROM:
            return
        if p.direction not in tasks:
            if not tasks:
                bar.start()
            tasks[p.direction] = bar.add_task(p.direction + "ing", total=p.total, rate="", size="")
        task_id = tasks[p.direction]
        elapsed = bar.tasks[task_id].elapsed or 0.0
        rate = f"{p.done / elapsed:,.0f}/s" if elapsed > 0.2 else ""
        bar.update(task_id, completed=p.done, total=p.total, rate=rate, size=decimal(p.bytes))

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


@contextmanager
def simulation_bar(enabled: bool = True) -> Iterator[Callable[[float, float, float], None] | None]:
    """Yield a progress callback for the simulator (simulated seconds, fraction of
    (peer, changeset) pairs held, the run's limit), or None off a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = RichProgress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.fields[held]} held"),
        TextColumn("{task.fields[simulated]} simulated"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("simulating", total=1.0, held="", simulated="")

    def update(simulated: float, held: float, limit: float) -> None:
        bar.update(task, completed=held, held=f"{held:.1%}", simulated=f"{simulated:,.0f} s")

    bar.start()
    try:
        yield update
    finally:
        bar.stop()
