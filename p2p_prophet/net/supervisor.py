"""Keeping a node's background tasks running through the faults of a long life.

A node runs for days among strangers and faults: its disk fills, it runs out of file
descriptors for a moment, an interface vanishes under mDNS, another process holds the
replica's write lock.  None of that may stop it.  :func:`supervised` runs one background
task (the status file, mDNS, the gossip loop, the watch on the replica) and, when it
fails with an error of its environment, logs one line and starts it again after a delay
that doubles from :data:`FIRST_DELAY` up to :data:`MAX_DELAY` seconds, back to the first
once the task has run for :data:`MAX_DELAY` without failing.  An error of any other kind
(``TypeError``, ``AssertionError``...) is a bug and is raised, as it should be.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable

import trio

from p2p_prophet.errors import ProphetError

log = logging.getLogger("p2p_prophet.node")

FIRST_DELAY = 0.5
MAX_DELAY = 60.0

# What the environment throws at a long-running process: the operating system
# (EMFILE, ENOSPC, EACCES, ENODEV...), SQLite's view of the same (full, locked, I/O,
# damaged), and our own errors for people (a damaged replica, a refused peer).
ENVIRONMENT_ERRORS = (OSError, ProphetError, sqlite3.OperationalError, sqlite3.DatabaseError)
# ...but not these, which SQLite raises for misuse: a closed connection, the wrong thread.
BUGS = (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.NotSupportedError)


async def supervised(
    name: str,
    task: Callable[[], Awaitable[object]],
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> None:
    """Run ``task()`` until it returns, starting it again after each failure of its
    environment (module doc).  ``name`` says what it is in the log."""
    delay = first_delay
    while True:
        started = trio.current_time()
        try:
            await task()
            return
        except Exception as exc:
            failure = _environmental(exc)
            if failure is None:
                raise
        if trio.current_time() - started >= max_delay:
            delay = first_delay  # it ran well for a while: this is a new episode
        log.warning("%s failed: %s; starting it again in %g s", name, _describe(failure), delay)
        await trio.sleep(delay)
        delay = min(delay * 2, max_delay)


def _environmental(exc: BaseException) -> BaseException | None:
    """The first of the errors ``exc`` holds (itself, or those of a nursery's group), if
    every one of them is an error of the environment; else None."""
    leaves: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        else:
            leaves.append(current)
    if all(isinstance(e, ENVIRONMENT_ERRORS) and not isinstance(e, BUGS) for e in leaves):
        return leaves[0]
    return None


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    return str(exc) or type(exc).__name__
