"""The limits that keep a peer from making us allocate, loop or wait without bound.

Every decoder takes a :class:`Limits`; the defaults fit every changeset the model lets a
replica create (``MAX_CHANGESET_BYTES``), so a limit never stops honest traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2p_prophet.model import MAX_CHANGESET_BYTES


@dataclass(frozen=True)
class Limits:
    # One frame holds one message; the largest is a changeset with its id and seal
    # (34 + 98 bytes with their heads, well within the 1,024 to spare).
    max_frame_bytes: int = MAX_CHANGESET_BYTES + 1024
    # Messages nest at most 3 deep (VECTORS > witnesses > witness); bodies are opaque.
    max_depth: int = 3
    # Origins in one vector: every replica that ever edited the database.
    max_vector_entries: int = 1 << 16
    # Witnesses name forked origins (sync/forks.py), at most 256 in one message.
    max_witnesses: int = 256
    # What a receiver holds in memory before integrating: one batch (bodies and seals).
    # Senders cut batches at 4 MiB, or make one changeset a batch of its own
    # (sync/plan.py), so no honest batch is larger than the largest changeset and its
    # seal; the margin is for the seal and frame heads.
    max_batch_changesets: int = 10_000
    max_batch_bytes: int = MAX_CHANGESET_BYTES + (64 << 10)
    # A request that is not a stream (hello and vectors) is read whole.
    max_request_bytes: int = 8 << 20
    # Text in ERROR messages.
    max_message_chars: int = 4096


DEFAULT_LIMITS = Limits()
