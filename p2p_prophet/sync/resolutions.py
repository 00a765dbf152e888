"""The resolution database: answers to conflicts, keyed by fingerprint (P7).

``resolutions.db`` is a replica of its own.  Each answer is a record of type
``resolution`` whose uuid is derived from the conflict's fingerprint, so two replicas that
answer the same conflict write the same record; its properties are the fingerprint, the
conflicted record's type and uuid, and ``answer``: canonical JSON of
``[[name, value, hlc, origin], ...]``, the value each property ends with (long text by its
digest) and the stamp of the write that put it there.  Answers sync like any changeset,
resolutions first, so a replica that meets a conflict already answered elsewhere reuses
the answer instead of minting another resolution.
"""

from __future__ import annotations

import hashlib
import json
import uuid as uuidlib
from collections.abc import Iterable, Mapping

from p2p_prophet.model import Stamp, Value
from p2p_prophet.store.database import Database
from p2p_prophet.store.edit import EditBatch
from p2p_prophet.store.replica import Replica

RESOLUTION_TYPE = "resolution"

Answer = dict[str, tuple[Value, Stamp]]


def fingerprint_uuid(fingerprint: str) -> str:
    """The uuid of the resolution record for a fingerprint (its first 128 bits)."""
    return str(uuidlib.UUID(bytes=bytes.fromhex(fingerprint)[:16]))


# Longer text is recorded by its digest: the stamp already names the winning write, and
# the answer must stay within one text value whatever the size of the values it names.
MAX_ANSWER_TEXT = 256


def encode_answer(answer: Mapping[str, tuple[Value, Stamp]]) -> str:
    """Canonical JSON of ``[[name, value, hlc, origin], ...]``; a text value over
    ``MAX_ANSWER_TEXT`` characters is recorded as ``"sha256:<hex of its UTF-8>"``."""
    items = [
        [name, _recorded(value), s.hlc, s.origin] for name, (value, s) in sorted(answer.items())
    ]
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def _recorded(value: Value) -> Value:
    if isinstance(value, str) and len(value) > MAX_ANSWER_TEXT:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


def decode_answer(text: str) -> Answer:
    return {name: (value, Stamp(hlc, origin)) for name, value, hlc, origin in json.loads(text)}


def lookup(resolutions: Database, fingerprint: str) -> Answer | None:
    """The recorded answer for ``fingerprint``, or None."""
    row = resolutions.find_record(RESOLUTION_TYPE, fingerprint_uuid(fingerprint))
    if row is None or not row.live:
        return None
    stored = resolutions.props(row.rid).get("answer")
    if stored is None or not isinstance(stored.value, str):
        return None
    return decode_answer(stored.value)


def record(
    replica: Replica, answers: Iterable[tuple[str, str, str, Answer]], *, overwrite: bool = False
) -> int:
    """Record ``(fingerprint, type, uuid, answer)`` entries in one resdb transaction.

    An entry whose fingerprint is already answered is left alone unless ``overwrite`` (a
    person's choice replaces the policy's).  Returns how many were written.
    """
    written = 0
    resdb = replica.resolutions
    with resdb.transaction():
        replica.observe_persisted_clock()
        # A signed replica's one signer seals these too: the key derives the resolution
        # database's origin as well as the main one's.
        batch = EditBatch(
            resdb, resdb.get_meta("replica_uuid"), replica.creator, replica.clock, replica.signer
        )
        for fingerprint, rtype, ruuid, answer in answers:
            ruid = fingerprint_uuid(fingerprint)
            batch.flush()
            row = resdb.find_record(RESOLUTION_TYPE, ruid)
            props: dict[str, Value] = {
                "fingerprint": fingerprint,
                "record_type": rtype,
                "record_uuid": ruuid,
                "answer": encode_answer(answer),
            }
            if row is None:
                batch.create(RESOLUTION_TYPE, props, uuid=ruid)
            elif overwrite and row.live:
                if batch.update(RESOLUTION_TYPE, ruid, props) is None:
                    continue
            else:
                continue
            written += 1
        batch.flush()
        resdb.set_meta("hlc", replica.clock.last)
    return written
