"""Conflicts as a person sees them: listing them, and resolving them by hand.

A person's choice is a new local edit with a fresh stamp, so it dominates both sides of
the conflict it answers (P6) and converges like any edit; it is also recorded in the
resolution database under the conflict's fingerprint, replacing the policy's answer.
"""

from __future__ import annotations

from typing import Any

import cbor2

from p2p_prophet.errors import InvalidValue, RecordNotFound
from p2p_prophet.model import Stamp, Value
from p2p_prophet.store.replica import Replica
from p2p_prophet.sync import resolutions as resdb


def list_conflicts(replica: Replica) -> list[dict[str, Any]]:
    """Every conflict listed (a function of the changesets held: the same on every
    replica holding the same ones, p2p_prophet/conflict.py), oldest first (by their
    latest write, then fingerprint), with each property's choices, the value it holds
    now, and how that value came to be."""
    db = replica.main
    entries = []
    for fingerprint, rtype, ruuid, _, body in sorted(db.conflicts(), key=_latest_write):
        _, kind, _, _, props = cbor2.loads(body)
        record = db.find_record(rtype, ruuid)
        stored = {} if record is None else db.props(record.rid)
        out_props = []
        for name, base, choices in props:
            stamps = [Stamp(h, o) for _, h, o in choices if h is not None]
            now = stored.get(name)
            if record is None or not record.live:
                how = "record deleted: delete wins"
                value: Value = None
            elif now is None:
                how, value = "absent", None
            elif now.stamp in stamps:
                how, value = "larger stamp won", now.value
            else:
                how, value = "a later edit or a person's choice", now.value
            out_props.append(
                {
                    "name": name,
                    "base": base,
                    "choices": [{"value": v, "hlc": h, "origin": o} for v, h, o in choices],
                    "now": value,
                    "how": how,
                }
            )
        entries.append(
            {
                "fingerprint": fingerprint,
                "kind": kind,
                "type": rtype,
                "uuid": ruuid,
                "answered": resdb.lookup(replica.resolutions, fingerprint) is not None,
                "props": out_props,
            }
        )
    return entries


def _latest_write(row: tuple[str, str, str, int, bytes]) -> tuple[int, str]:
    """A listed conflict's order: the stamp of its latest write, then its fingerprint
    (the local seq would differ from replica to replica)."""
    props = cbor2.loads(row[4])[4]
    return max(
        (h for _, _, choices in props for _, h, _ in choices if h is not None), default=0
    ), row[0]


def conflict_record(replica: Replica, prefix: str) -> tuple[str, str]:
    """The record of the conflict whose fingerprint starts with ``prefix``."""
    prefix = prefix.lower()
    rows = replica.main.conflicts_with_prefix(prefix)
    if not rows:
        raise RecordNotFound(f"no conflict with a fingerprint starting {prefix!r}")
    if len(rows) > 1:
        raise InvalidValue(f"{prefix!r} matches several conflicts; give more of the fingerprint")
    return rows[0][1], rows[0][2]


def resolve_conflict(
    replica: Replica, rtype: str, ruuid: str, choice: dict[str, Value]
) -> list[str]:
    """Record a person's choice for ``rtype ruuid``: a new edit with a fresh stamp, and an
    answer in the resolution database for every conflict of that record it covers.

    Returns the fingerprints answered.  Raises :class:`RecordNotFound` for an unknown
    record and :class:`ProphetError` for a deleted one (delete wins; create a new record).
    """
    row = replica.main.find_record(rtype, ruuid)
    if row is None:
        raise RecordNotFound(f"no {rtype} {ruuid}")
    if not row.live:
        raise InvalidValue(
            f"{rtype} {ruuid} was deleted, and a delete wins over concurrent updates; "
            "create a new record to bring its contents back"
        )
    replica.update(rtype, ruuid, choice)
    stored = replica.main.props(row.rid)
    answers = []
    for fingerprint, body in replica.main.conflicts_of(rtype, ruuid):
        names = [p[0] for p in cbor2.loads(body)[4]]
        if not any(n in choice for n in names):
            continue
        answer = {n: (stored[n].value, stored[n].stamp) for n in names if n in stored}
        answers.append((fingerprint, rtype, ruuid, answer))
    resdb.record(replica, answers, overwrite=True)
    return [a[0] for a in answers]
