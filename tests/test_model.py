"""Canonical encoding of changesets: round trips, byte stability, strict validation."""

from __future__ import annotations

import math
import uuid as uuidlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p_prophet.errors import MalformedChangeSet
from p2p_prophet.model import (
    INT_MAX,
    INT_MIN,
    Change,
    ChangeSet,
    InvalidValue,
    Kind,
    Op,
    PropChange,
    Stamp,
    canonical,
    check_value,
    same_value,
)

uuids = st.uuids().map(str)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT_MIN, INT_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
stamps = st.builds(Stamp, st.integers(0, INT_MAX), uuids)
prop_changes = st.builds(PropChange, names, values, values, st.none() | stamps)


@st.composite
def changes(draw: st.DrawFn) -> Change:
    props = draw(st.lists(prop_changes, max_size=5, unique_by=lambda p: p.name))
    return Change(draw(names), draw(uuids), draw(st.sampled_from(Op)), tuple(props))


@st.composite
def changesets(draw: st.DrawFn) -> ChangeSet:
    kind = draw(st.sampled_from(Kind))
    origin_seq = None if kind is Kind.NULLIFICATION else draw(st.integers(1, INT_MAX))
    return ChangeSet(
        origin=draw(uuids),
        origin_seq=origin_seq,
        creator=draw(st.text(max_size=30)),
        created=draw(st.integers(0, INT_MAX)),
        kind=kind,
        changes=tuple(draw(st.lists(changes(), max_size=4))),
    )


@given(changesets())
def test_encoding_round_trips(cs: ChangeSet) -> None:
    body = cs.encode()
    assert ChangeSet.decode(body) == cs
    assert ChangeSet.decode(body).encode() == body


@given(changesets())
def test_encoding_is_deterministic_and_id_is_hash_of_body(cs: ChangeSet) -> None:
    rebuilt = ChangeSet.from_cbor_obj(cbor2.loads(cs.encode()))
    assert rebuilt.encode() == cs.encode()
    assert rebuilt.id == cs.id
    assert len(cs.id) == 32


def test_encoding_is_byte_stable_across_machines() -> None:
    # A fixed changeset and the bytes every implementation must produce for it
    # (docs/model.md).  If this changes, every changeset id in every replica changes.
    cs = ChangeSet(
        origin="00000000-0000-4000-8000-000000000001",
        origin_seq=7,
        creator="alice@laptop",
        created=(1_700_000_000_000 << 16) | 3,
        kind=Kind.EDIT,
        changes=(
            Change(
                "ticket",
                "00000000-0000-4000-8000-00000000000a",
                Op.UPDATE,
                (
                    PropChange("done", False, True),
                    PropChange("estimate", None, 1.5),
                    PropChange("status", "open", "stalled"),
                ),
            ),
        ),
    )

    def text(s: str) -> bytes:  # CBOR major type 3, lengths below 256
        b = s.encode()
        return (bytes([0x60 + len(b)]) if len(b) < 24 else bytes([0x78, len(b)])) + b

    expected = b"".join(
        [
            b"\x87",  # array(7)
            b"\x01",  # format version 1
            text("00000000-0000-4000-8000-000000000001"),
            b"\x07",  # origin_seq
            text("alice@laptop"),
            b"\x1b" + ((1_700_000_000_000 << 16) | 3).to_bytes(8, "big"),  # created: uint64
            text("edit"),
            b"\x81\x84",  # changes: array(1) of array(4)
            text("ticket"),
            text("00000000-0000-4000-8000-00000000000a"),
            text("update"),
            b"\x83",  # props: array(3), each array(3)
            b"\x83" + text("done") + b"\xf4\xf5",  # false -> true
            b"\x83" + text("estimate") + b"\xf6\xf9\x3e\x00",  # null -> 1.5 as float16
            b"\x83" + text("status") + text("open") + text("stalled"),
        ]
    )
    assert cs.encode() == expected


def test_the_local_sequence_number_is_not_part_of_the_identity() -> None:
    a = ChangeSet("00000000-0000-4000-8000-000000000001", 1, "a", 5, Kind.EDIT, ())
    # The same changeset stored at any local seq has the same body and id: the body
    # has no field for a local seq at all.
    assert "seq" not in ChangeSet.__dataclass_fields__
    assert ChangeSet.decode(a.encode()).id == a.id


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([2, "x", 1, "c", 1, "edit", []], "format version"),
        ([1, "not-a-uuid", 1, "c", 1, "edit", []], "origin"),
        ([1, "00000000-0000-4000-8000-000000000001", 0, "c", 1, "edit", []], "origin_seq"),
        ([1, "00000000-0000-4000-8000-000000000001", None, "c", 1, "edit", []], "origin_seq"),
        ([1, "00000000-0000-4000-8000-000000000001", 3, "c", 1, "nullification", []], "no origin"),
        ([1, "00000000-0000-4000-8000-000000000001", 1, "c", 1, "merge", []], "kind"),
        ([1, "00000000-0000-4000-8000-000000000001", 1, "c", -1, "edit", []], "created"),
        ([1, "00000000-0000-4000-8000-000000000001", 1, "c", 1, "edit", [["t"]]], "4 items"),
        (
            [
                1,
                "00000000-0000-4000-8000-000000000001",
                1,
                "c",
                1,
                "edit",
                [["t", "00000000-0000-4000-8000-000000000002", "create", [["a b", None, 1]]]],
            ],
            "property name",
        ),
        (
            [
                1,
                "00000000-0000-4000-8000-000000000001",
                1,
                "c",
                1,
                "edit",
                [["t", "00000000-0000-4000-8000-000000000002", "create", [["a", None, b"1"]]]],
            ],
            "not a property type",
        ),
        (
            [
                1,
                "00000000-0000-4000-8000-000000000001",
                1,
                "c",
                1,
                "edit",
                [["t", "00000000-0000-4000-8000-000000000002", "create", [["a", None, [1]]]]],
            ],
            "nesting depth",
        ),
        (
            [
                1,
                "00000000-0000-4000-8000-000000000001",
                1,
                "c",
                1,
                "edit",
                [
                    [
                        "t",
                        "00000000-0000-4000-8000-000000000002",
                        "create",
                        [["a", None, 1], ["a", None, 2]],
                    ]
                ],
            ],
            "twice",
        ),
        ({"origin": "x"}, "array of 7"),
    ],
)
def test_decoding_rejects_malformed_changesets(obj: object, message: str) -> None:
    with pytest.raises(MalformedChangeSet, match=message):
        ChangeSet.decode(canonical(obj))


def test_decoding_rejects_bytes_that_are_not_cbor_or_not_canonical() -> None:
    with pytest.raises(MalformedChangeSet, match="not valid CBOR"):
        ChangeSet.decode(b"\x9f\x01")
    cs = ChangeSet("00000000-0000-4000-8000-000000000001", 1, "c", 1, Kind.EDIT, ())
    # The same array with origin_seq written as a two-byte integer: valid CBOR and the
    # same value, but not canonical, so its hash would not be the changeset's id.
    body = cs.encode()
    non_canonical = body.replace(b"\x01\x61c", b"\x18\x01\x61c", 1)
    assert cbor2.loads(non_canonical) == cbor2.loads(body)
    with pytest.raises(MalformedChangeSet, match="canonical"):
        ChangeSet.decode(non_canonical)


def test_values_compare_strictly() -> None:
    assert same_value("open", "open")
    assert not same_value(True, 1)
    assert not same_value(1, 1.0)
    assert not same_value(0.0, -0.0)
    assert same_value(None, None)
    assert not same_value(None, "")


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1 << 63, [1], {"a": 1}, b"bytes"])
def test_values_outside_the_model_are_refused(bad: object) -> None:
    with pytest.raises(InvalidValue):
        check_value(bad)


def test_record_uuids_must_be_canonical() -> None:
    upper = str(uuidlib.uuid4()).upper()
    obj = [
        1,
        "00000000-0000-4000-8000-000000000001",
        1,
        "c",
        1,
        "edit",
        [["t", upper, "create", []]],
    ]
    with pytest.raises(MalformedChangeSet, match="canonical lowercase uuid"):
        ChangeSet.decode(canonical(obj))
