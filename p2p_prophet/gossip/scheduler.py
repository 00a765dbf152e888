"""Who to talk to and when: anti-entropy and rumor mongering, as a sans-IO state machine.

Two reasons to contact a peer (docs/gossip.md):

* **Anti-entropy.**  Every ``interval`` seconds, give or take ``jitter`` (a fraction of the
  interval, drawn anew each round so that nodes started together drift apart), exchange
  with one random eligible peer.  Over time everyone meets everyone: this is what makes
  convergence certain.
* **Rumor mongering** (Demers et al. 1987, feedback and coin).  A node with news -- a
  local edit, or changesets newly integrated from a peer -- tells ``fanout`` random peers
  at once, and again every ``rumor_interval`` while the rumor is hot.  Each exchange that
  finds the peer already had everything ("old news") makes the node lose interest with
  probability ``1/k``.  This is what makes convergence fast.

A peer advertising our own digest is skipped (it holds what we hold); failing peers back
off (:class:`PeerTable`); at most ``max_concurrent`` exchanges run at once.

The caller drives it: :meth:`Scheduler.contacts` says whom to contact now,
:meth:`Scheduler.finished` takes each exchange's outcome, :meth:`Scheduler.next_wakeup`
says when to ask again.  Time and randomness come from the caller, so a run is a
function of the seed and the clock: the simulator replays it exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from p2p_prophet.gossip.peers import Peer, PeerTable


@dataclass(frozen=True)
class GossipConfig:
    interval: float = 5.0  # seconds between anti-entropy exchanges
    jitter: float = 0.25  # each interval is drawn from interval * [1 - jitter, 1 + jitter]
    fanout: int = 2  # peers told at once about news
    k: int = 2  # lose interest in a rumor with probability 1/k on each "old news"
    rumor_interval: float = 0.1  # seconds between rounds of a hot rumor
    max_concurrent: int = 4  # exchanges in flight at once
    backoff_base: float = 1.0  # first wait after a failed exchange, doubling to the cap
    backoff_cap: float = 300.0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.rumor_interval <= 0:
            raise ValueError("gossip intervals must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError("gossip jitter is a fraction in [0, 1)")
        if self.fanout < 1 or self.k < 1 or self.max_concurrent < 1:
            raise ValueError("gossip fanout, k and max_concurrent must be at least 1")


class Reason(StrEnum):
    ANTI_ENTROPY = "anti-entropy"
    RUMOR = "rumor"


@dataclass(frozen=True)
class Contact:
    """Exchange with ``peer`` now, for ``reason``."""

    peer: str
    reason: Reason


@dataclass(frozen=True)
class Outcome:
    """How an exchange went.  ``sent``: changesets the peer lacked and got from us (zero
    means our news was old news to it); ``received``: changesets we lacked and got."""

    ok: bool
    sent: int = 0
    received: int = 0


@dataclass
class Scheduler:
    config: GossipConfig
    rng: random.Random
    now: float = 0.0
    our_digest: bytes | None = None
    peers: PeerTable = field(init=False)
    rumor_hot: bool = False
    rumor_due: float = 0.0
    anti_entropy_due: float = field(init=False)
    rounds: int = 0  # anti-entropy rounds started
    welcome: list[str] = field(default_factory=list)  # new peers, to meet at once

    def __post_init__(self) -> None:
        self.peers = PeerTable(self.rng, self.config.backoff_base, self.config.backoff_cap)
        self.start(self.now)

    # -- events ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The driver's clock starts at ``now``: the first anti-entropy round comes a
        random fraction of an interval later (nodes started together do not all knock
        at once)."""
        self.now = now
        self.anti_entropy_due = now + self.config.interval * self.rng.random()

    def add_peer(self, peer_id: str, digest: bytes | None = None) -> None:
        """A peer appeared (given, or discovered).  A new one is met at once, not at the
        next anti-entropy round: a node that just started, or just found a peer, should
        not wait an interval to catch up."""
        if peer_id not in self.peers:
            self.welcome.append(peer_id)
        self.peers.add(peer_id, digest)

    def news(self, now: float) -> None:
        """We have something others may lack (a local edit, changesets just integrated):
        make the rumor hot and tell peers at once (a rumor already hot keeps its pace)."""
        if not self.rumor_hot:
            self.rumor_due = now
        self.rumor_hot = True

    def finished(self, contact: Contact, outcome: Outcome, now: float) -> None:
        """An exchange ended (well or not)."""
        peer = self.peers.peers.get(contact.peer)
        if peer is not None:
            peer.in_flight = False
            if outcome.ok:
                self.peers.succeeded(peer, now)
                peer.sent += outcome.sent
                peer.received += outcome.received
            else:
                self.peers.failed(peer, now)
        if not outcome.ok:
            return
        if outcome.received:
            self.news(now)  # what we just learned is news for the others
        elif (
            contact.reason is Reason.RUMOR
            and outcome.sent == 0
            and self.rng.random() < 1 / self.config.k
        ):
            # Old news, and the coin of Demers et al.'s feedback variant came up.
            self.rumor_hot = False

    def abandon(self, contact: Contact) -> None:
        """An exchange was cancelled (the node stopping, a simulated laptop going to
        sleep): free its slot without judging the peer."""
        peer = self.peers.peers.get(contact.peer)
        if peer is not None:
            peer.in_flight = False

    # -- decisions ---------------------------------------------------------------------------

    def contacts(self, now: float) -> list[Contact]:
        """Whom to contact now (marked in flight until :meth:`finished`)."""
        config = self.config
        slots = self._free_slots()
        chosen: list[Contact] = []
        if self.rumor_hot and now >= self.rumor_due and slots > 0:
            eligible = self.peers.eligible(now, self.our_digest)
            if not eligible and not self._anyone_busy_or_waiting(now):
                self.rumor_hot = False  # everyone holds what we hold: nobody left to tell
            else:
                for peer in self._pick(eligible, min(config.fanout, slots)):
                    chosen.append(self._start(peer, Reason.RUMOR))
                self.rumor_due = now + config.rumor_interval
                slots -= len(chosen)
        if self.welcome and slots > 0:
            ready = {p.id: p for p in self.peers.eligible(now, self.our_digest)}
            for peer_id in list(self.welcome):
                if slots == 0:
                    break
                self.welcome.remove(peer_id)
                if peer_id in ready:  # else gone, busy, or holding what we hold
                    chosen.append(self._start(ready[peer_id], Reason.ANTI_ENTROPY))
                    slots -= 1
        if now >= self.anti_entropy_due:
            self.anti_entropy_due = now + config.interval * (
                1 + config.jitter * (2 * self.rng.random() - 1)
            )
            self.rounds += 1
            if slots > 0:
                picked = self._pick(self.peers.eligible(now, self.our_digest), 1)
                chosen.extend(self._start(p, Reason.ANTI_ENTROPY) for p in picked)
        return chosen

    def next_wakeup(self, now: float) -> float:
        """When :meth:`contacts` may next have something to say (without new events)."""
        times = [self.anti_entropy_due]
        if self.welcome and self._free_slots() > 0:
            times.append(now + 1e-3)  # soon, not "now": the driver may not spin
        if self.rumor_hot and self._free_slots() > 0:
            # With every slot taken the rumor waits for an exchange to end (the caller
            # asks again then), not for its deadline: that would be a busy loop.
            times.append(max(self.rumor_due, now))
            retry = self.peers.next_retry(now)
            if retry is not None:
                times.append(retry)
        return min(times)

    # -- helpers -----------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self.config.max_concurrent - sum(p.in_flight for p in self.peers.peers.values())

    def _anyone_busy_or_waiting(self, now: float) -> bool:
        return any(p.in_flight or p.retry_at > now for p in self.peers.peers.values())

    def _pick(self, peers: list[Peer], n: int) -> list[Peer]:
        # Sorted first so that the choice depends only on the seed, not on dict order.
        peers = sorted(peers, key=lambda p: p.id)
        return self.rng.sample(peers, min(n, len(peers)))

    def _start(self, peer: Peer, reason: Reason) -> Contact:
        peer.in_flight = True
        return Contact(peer.id, reason)
