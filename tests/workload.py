"""A deterministic edit workload, replayable in pure Python as an oracle.

Batch ``b`` of :func:`batches` always holds the same edits (creates, updates, deletes),
and :class:`ExpectedState` tracks what the live records must be after any number of
whole batches, without using the store at all.
"""

from __future__ import annotations

import hashlib
import random
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import cbor2

from p2p_prophet.model import Value
from p2p_prophet.store import EditBatch

EDITS_PER_BATCH = 10_000


@dataclass
class ExpectedState:
    records: dict[str, dict[str, Value]] = field(default_factory=dict)

    def digest(self) -> str:
        """The documented digest: CBOR sequence of [type, uuid, [[name, value]...]]."""
        h = hashlib.sha256()
        for uuid in sorted(self.records):
            props = sorted(self.records[uuid].items())
            h.update(cbor2.dumps(["ticket", uuid, [list(p) for p in props]], canonical=True))
        return h.hexdigest()


Edit = tuple[str, str, dict[str, Value]]  # (op, uuid, props)


def batch_edits(b: int, state: ExpectedState) -> Iterator[Edit]:
    """The edits of batch ``b``, applied to ``state`` as they are yielded."""
    rng = random.Random(b)
    live = sorted(state.records)
    for i in range(EDITS_PER_BATCH):
        roll = rng.random()
        if roll < 0.7 or len(live) < 10:
            uuid = str(uuidlib.UUID(int=(b << 64) | i, version=4))
            props: dict[str, Value] = {"summary": f"task {b}.{i}", "n": i, "done": False}
            state.records[uuid] = dict(props)
            live.append(uuid)
            yield ("create", uuid, props)
        elif roll < 0.92:
            uuid = live[rng.randrange(len(live))]
            props = {"n": b * EDITS_PER_BATCH + i, "done": rng.random() < 0.5}
            state.records[uuid].update(props)
            yield ("update", uuid, props)
        else:
            uuid = live.pop(rng.randrange(len(live)))
            del state.records[uuid]
            yield ("delete", uuid, {})


def apply(batch: EditBatch, edit: Edit) -> None:
    op, uuid, props = edit
    if op == "create":
        batch.create("ticket", props, uuid=uuid)
    elif op == "update":
        # "n" is unique per edit, so every update writes a changeset.
        assert batch.update("ticket", uuid, props) is not None
    else:
        batch.delete("ticket", uuid)
