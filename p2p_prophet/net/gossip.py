"""The gossip loop: drives the sans-IO :class:`Scheduler` with trio's clock.

Each contact the scheduler asks for runs as its own task in the loop's nursery, so a slow
peer never holds up the others; the scheduler's concurrency bound keeps their number
small.  The loop sleeps until the scheduler's next wake-up or until something happens
(news, an exchange ending, a peer appearing), whichever comes first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

from p2p_prophet.gossip import Contact, Outcome, Scheduler
from p2p_prophet.net.client import SyncResult

log = logging.getLogger("p2p_prophet.gossip")

Exchange = Callable[[str], Awaitable[Outcome]]


def outcome_of(result: SyncResult) -> Outcome:
    """A sync's result as the scheduler's feedback: what the peer took from us (none:
    old news) and what we took from it (some: news for the others)."""
    return Outcome(
        ok=True,
        sent=result.pushed.changesets.integrated + result.pushed.resolutions.integrated,
        received=result.pulled.changesets.integrated + result.pulled.resolutions.integrated,
    )


class GossipLoop:
    """Runs ``exchange(peer_id)`` whenever ``scheduler`` says so, until cancelled.

    ``exchange`` must return an :class:`Outcome` and never raise for a peer's failure
    (an ``Outcome(ok=False)`` says it failed); anything it raises is a bug and stops the
    loop.
    """

    def __init__(self, scheduler: Scheduler, exchange: Exchange) -> None:
        self.scheduler = scheduler
        self.exchange = exchange
        self._wake = trio.Event()
        self.contacts: list[tuple[float, Contact]] = []  # the last few, for `peers`
        self.in_flight = 0
        self.max_in_flight = 0

    def poke(self) -> None:
        """Something changed (news, a peer): reconsider now."""
        self._wake.set()

    def news(self) -> None:
        self.scheduler.news(trio.current_time())
        self.poke()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.scheduler.start(trio.current_time())
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                now = trio.current_time()
                for contact in self.scheduler.contacts(now):
                    nursery.start_soon(self._one, contact)
                self._wake = trio.Event()
                with trio.move_on_at(self.scheduler.next_wakeup(trio.current_time())):
                    await self._wake.wait()

    async def _one(self, contact: Contact) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.contacts.append((trio.current_time(), contact))
        del self.contacts[:-200]
        started = time.perf_counter()
        try:
            outcome = await self.exchange(contact.peer)
        except trio.Cancelled:
            self.scheduler.abandon(contact)
            raise
        finally:
            self.in_flight -= 1
        log.info(
            "%s with %s: %s, sent %d, received %d changesets, %.0f ms",
            contact.reason,
            contact.peer,
            "ok" if outcome.ok else "failed",
            outcome.sent,
            outcome.received,
            (time.perf_counter() - started) * 1000,
        )
        self.scheduler.finished(contact, outcome, trio.current_time())
        self.poke()
