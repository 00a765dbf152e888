"""Merge-ticket vectors: for each origin, the highest origin_seq a replica has integrated.

By the prefix invariant (P2) a vector says exactly which changesets a replica holds: all of
origin ``o``'s changesets ``1..vector[o]`` and none after.  Comparing two vectors therefore
tells each side what the other lacks, without listing a single changeset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from p2p_prophet.model import canonical

Vector = Mapping[str, int]

DIGEST_BYTES = 8


def vector_digest(vector: Vector) -> str:
    """A short digest of a vector (16 hex digits): equal vectors, equal digests.

    Zero tickets are left out, so "never heard of origin X" and "ticket 0 for X" agree.
    """
    items = sorted((origin, seq) for origin, seq in vector.items() if seq > 0)
    return hashlib.sha256(canonical(items)).digest()[:DIGEST_BYTES].hex()


def lacking(mine: Vector, theirs: Vector) -> dict[str, int]:
    """The origins where ``mine`` is ahead, mapped to ``theirs``' ticket for them.

    These are the ranges ``theirs[o]+1 .. mine[o]`` the other side lacks.
    """
    return {o: theirs.get(o, 0) for o, k in mine.items() if k > theirs.get(o, 0)}


def count_lacking(mine: Vector, theirs: Vector) -> int:
    """How many changesets ``theirs`` lacks from ``mine``."""
    return sum(k - theirs.get(o, 0) for o, k in mine.items() if k > theirs.get(o, 0))


def dominates(a: Vector, b: Vector) -> bool:
    """True if ``a`` holds everything ``b`` holds."""
    return all(a.get(o, 0) >= k for o, k in b.items())


def heads_digest(heads: Mapping[str, tuple[int, bytes]]) -> bytes:
    """A short digest (8 bytes) of a vector and the id of the last changeset of each
    origin it counts.

    Equal digests mean equal vectors, and so (P2) the same changesets -- unless one
    replica lost changesets it had shared and renumbered new ones under the same numbers.
    The head ids tell those apart too, so two such replicas never look in sync and the
    exchange's history check gets its chance to stop them.
    """
    items = sorted((origin, seq, id_) for origin, (seq, id_) in heads.items() if seq > 0)
    return hashlib.sha256(canonical(items)).digest()[:DIGEST_BYTES]
