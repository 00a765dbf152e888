"""The peer table: who we know, what they advertise, and who is failing; sans-IO.

Time is whatever the caller says it is (``now``, seconds); nothing here reads a clock,
so the same table runs a real node and a simulated one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class PeerState(StrEnum):
    IDLE = "idle"
    EXCHANGING = "exchanging"
    BACKING_OFF = "backing-off"


@dataclass
class Peer:
    """What we know of one peer."""

    id: str  # an address the transport understands (a URL for the network node)
    digest: bytes | None = None  # its advertised vector digest, if it advertises one
    failures: int = 0  # consecutive failed exchanges
    retry_at: float = 0.0  # not contacted before this time (backoff)
    last_exchange: float | None = None  # when the last exchange with it finished well
    in_flight: bool = False
    sent: int = 0  # changesets it got from us, over all exchanges
    received: int = 0  # changesets we got from it

    def state(self, now: float) -> PeerState:
        if self.in_flight:
            return PeerState.EXCHANGING
        if now < self.retry_at:
            return PeerState.BACKING_OFF
        return PeerState.IDLE


@dataclass
class PeerTable:
    """Known peers, with exponential backoff for those that fail.

    After ``n`` consecutive failures a peer waits ``base * 2**(n-1)`` seconds (at most
    ``cap``), scaled by a random factor in [0.5, 1.5) so that many nodes do not retry a
    peer in lockstep; one good exchange clears it.
    """

    rng: random.Random
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    peers: dict[str, Peer] = field(default_factory=dict)

    def add(self, peer_id: str, digest: bytes | None = None) -> Peer:
        """Add a peer (or update its advertised digest); returns it."""
        peer = self.peers.get(peer_id)
        if peer is None:
            peer = self.peers[peer_id] = Peer(peer_id)
        if digest is not None:
            peer.digest = digest
        return peer

    def remove(self, peer_id: str) -> None:
        self.peers.pop(peer_id, None)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self.peers

    def __len__(self) -> int:
        return len(self.peers)

    def eligible(self, now: float, our_digest: bytes | None) -> list[Peer]:
        """Peers worth contacting now: idle, not backing off, and not advertising our
        own digest (those already hold exactly what we hold)."""
        return [
            p
            for p in self.peers.values()
            if p.state(now) is PeerState.IDLE
            and (our_digest is None or p.digest is None or p.digest != our_digest)
        ]

    def failed(self, peer: Peer, now: float) -> float:
        """Record a failed exchange; returns the time before which it is not retried."""
        peer.failures += 1
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (peer.failures - 1))
        peer.retry_at = now + delay * self.rng.uniform(0.5, 1.5)
        return peer.retry_at

    def succeeded(self, peer: Peer, now: float) -> None:
        peer.failures = 0
        peer.retry_at = 0.0
        peer.last_exchange = now

    def next_retry(self, now: float) -> float | None:
        """The earliest time a backing-off peer becomes eligible again."""
        pending = [p.retry_at for p in self.peers.values() if p.retry_at > now]
        return min(pending) if pending else None
