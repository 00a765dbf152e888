"""The wire, sans-IO: frames, messages and transfer streams, and what they refuse."""

from __future__ import annotations

import hashlib
import tracemalloc

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_prophet.model import Change, ChangeSet, Kind, Op, PropChange
from p2p_prophet.wire import (
    Batch,
    BatchEnd,
    Changeset,
    Counts,
    Error,
    ErrorCode,
    FrameDecoder,
    Hello,
    Limits,
    PeerError,
    ProtocolError,
    Receipt,
    TransferReader,
    Vectors,
    Witness,
    decode,
    encode,
    encode_batch,
    encode_end,
    frame,
)

ORIGIN = "00000000-0000-4000-8000-000000000001"
HELLO = Hello(
    "00000000-0000-4000-8000-0000000000d0",
    "00000000-0000-4000-8000-0000000000a1",
    "00000000-0000-4000-8000-0000000000a2",
    b"\x01" * 8,
    b"\x02" * 8,
)


def changeset(seq: int, origin: str = ORIGIN) -> bytes:
    return ChangeSet(
        origin,
        seq,
        "alice@laptop",
        1000 + seq,
        Kind.EDIT,
        (
            Change(
                "ticket",
                "00000000-0000-4000-8000-00000000000%x" % (seq % 16),
                Op.CREATE,
                (PropChange("summary", None, f"ticket {seq}"),),
            ),
        ),
    ).encode()


def rows(bodies: list[bytes]) -> list[tuple[bytes, bytes, bytes | None]]:
    return [(hashlib.sha256(b).digest(), b, None) for b in bodies]


def stream(*batches: tuple[bool, list[bytes]]) -> bytes:
    return b"".join(encode_batch(rows(b), resolution=r) for r, b in batches) + encode_end()


def read_all(data: bytes, chunk: int = 1, **kw: object) -> list[object]:
    reader = TransferReader(**kw)  # type: ignore[arg-type]
    events: list[object] = []
    for i in range(0, len(data), chunk):
        events.extend(reader.feed(data[i : i + chunk]))
    reader.close()
    return events


# -- frames ------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=70_000), max_size=5), st.integers(1, 5000))
@settings(max_examples=50)
def test_frames_come_out_whole_however_the_bytes_are_cut(contents: list[bytes], cut: int) -> None:
    data = b"".join(frame(c) for c in contents)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(data), cut):
        out.extend(decoder.feed(data[i : i + cut]))
    decoder.close()
    assert out == contents


def test_an_oversized_frame_is_refused_from_its_head_alone() -> None:
    decoder = FrameDecoder(Limits(max_frame_bytes=1000))
    with pytest.raises(ProtocolError) as err:
        decoder.feed(bytes([0x5A]) + (10**9).to_bytes(4, "big"))  # 5 bytes: a 1 GB claim
    assert err.value.code is ErrorCode.TOO_LARGE and "1000000000" in str(err.value)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x82\x01\x02", "byte string"),  # an array where a frame should be
        (b"\x5f\x41\x00\xff", "definite-length"),  # indefinite-length byte string
    ],
)
def test_what_is_not_a_frame_is_malformed(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why) as err:
        FrameDecoder().feed(data)
    assert err.value.code is ErrorCode.MALFORMED


def test_a_frame_cut_short_is_truncated() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"hello")[:-1]) == []
    with pytest.raises(ProtocolError) as err:
        decoder.close()
    assert err.value.code is ErrorCode.TRUNCATED


# -- messages ----------------------------------------------------------------------------

MESSAGES = [
    HELLO,
    Vectors({ORIGIN: 3}, {}, b"\x01" * 8, (Witness(ORIGIN, 2, b"\x07" * 8),)),
    Changeset(hashlib.sha256(changeset(1)).digest(), changeset(1)),
    Changeset(hashlib.sha256(changeset(1)).digest(), changeset(1), resolution=True),
    BatchEnd(12, last=True),
    Error(ErrorCode.WRONG_DATABASE, "another database"),
    Receipt(Counts(1, 2, 3, 4, 5, 6), Counts(7, 8, 9, 10, 11, 12)),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: object) -> None:
    data = encode(message)  # type: ignore[arg-type]
    [content] = FrameDecoder().feed(data)
    assert decode(content) == message


def test_a_hello_of_an_unknown_version_says_so_before_anything_else() -> None:
    content = cbor2.dumps([0, 99, "whatever a newer version sends"])
    with pytest.raises(ProtocolError, match="version 99") as err:
        decode(content)
    assert err.value.code is ErrorCode.UNSUPPORTED_VERSION


def test_a_changeset_whose_id_does_not_match_its_body_is_refused() -> None:
    body = changeset(1)
    content = cbor2.dumps([2, hashlib.sha256(body + b"x").digest(), body])
    with pytest.raises(ProtocolError, match="does not match") as err:
        decode(content)
    assert err.value.code is ErrorCode.INVALID_CHANGESET


@pytest.mark.parametrize(
    "content",
    [
        b"\xff",  # not CBOR
        cbor2.dumps({"type": 0}),  # not an array
        cbor2.dumps([42]),  # unknown type
        cbor2.dumps([4, -1, False]),  # negative count
        cbor2.dumps([4, 1, 1]),  # last is not a boolean
        cbor2.dumps([1, {"not-a-uuid": 1}, {}, bytes(8), []]),
        cbor2.dumps([1, {ORIGIN: 0}, {}, bytes(8), []]),  # zero ticket
        cbor2.dumps([1, {}, {}, b"", [[ORIGIN, 1, b"short"]]]),
        cbor2.dumps([1, {ORIGIN: 1}, {}, bytes(7), []]),  # heads not 8 bytes per origin
        cbor2.dumps([1, {ORIGIN: 1}, {}, "heads", []]),  # heads not bytes
        cbor2.dumps([1, {}, {}, []]),  # a version 2 VECTORS (no heads)
        b"\xc2\x41\x01",  # a tag (bignum)
        b"\x9f\xff",  # indefinite-length array
        cbor2.dumps([1, [[[[[1]]]]], {}, []]),  # nested too deep
        cbor2.dumps([0, 3, "a", "b", "c", b"", b""]),  # bad uuids and digests
        cbor2.dumps([4, 0, True]) + b"\xff",  # bytes after the message
    ],
)
def test_malformed_messages_are_refused(content: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(content)
    assert err.value.code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE)


def test_a_vector_beyond_the_limit_is_too_large() -> None:
    vector = {f"00000000-0000-4000-8000-{i:012x}": 1 for i in range(11)}
    with pytest.raises(ProtocolError) as err:
        decode(cbor2.dumps([1, vector, {}, bytes(88), []]), Limits(max_vector_entries=10))
    assert err.value.code is ErrorCode.TOO_LARGE


# -- transfer streams ----------------------------------------------------------------------


def test_a_stream_gives_whole_batches_in_order_then_ends() -> None:
    res = [changeset(1, "00000000-0000-4000-8000-0000000000e5")]
    main = [changeset(i) for i in range(1, 6)]
    events = read_all(stream((True, res), (False, main[:3]), (False, main[3:])), chunk=7)
    assert [(type(e).__name__, getattr(e, "resolution", None)) for e in events] == [
        ("Batch", True),
        ("Batch", False),
        ("Batch", False),
        ("Ended", None),
    ]
    batches = [e for e in events if isinstance(e, Batch)]
    assert [body for b in batches[1:] for _, body, _ in b.changesets] == main
    assert batches[1].changesets[0][0].origin_seq == 1  # decoded and validated


def test_a_stream_cut_between_batches_is_truncated_not_complete() -> None:
    data = stream((False, [changeset(1)]), (False, [changeset(2)]))
    cut = data[: -len(encode_end())]
    reader = TransferReader()
    events = reader.feed(cut)
    assert len(events) == 2 and reader.changesets == 2
    with pytest.raises(ProtocolError, match="after 2 whole batches") as err:
        reader.close()
    assert err.value.code is ErrorCode.TRUNCATED


@pytest.mark.parametrize(
    "data, why",
    [
        (stream((False, [changeset(1)]), (True, [changeset(2)])), "resolutions go first"),
        (
            encode(Changeset(hashlib.sha256(changeset(1)).digest(), changeset(1), True))
            + encode(Changeset(hashlib.sha256(changeset(2)).digest(), changeset(2)))
            + encode(BatchEnd(2)),
            "mixes",
        ),
        (
            encode_batch(rows([changeset(1)]), resolution=False)[: -len(encode(BatchEnd(1)))]
            + encode(BatchEnd(5)),
            "counts 5",
        ),
        (encode_end() + encode_end(), "after the stream's last"),
        (encode(HELLO), "unexpected HELLO"),
    ],
)
def test_streams_that_break_the_grammar_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        read_all(data, chunk=len(data))


def test_a_changeset_body_that_is_not_a_changeset_is_refused_by_the_reader() -> None:
    body = cbor2.dumps([1, ORIGIN, 1, "c", 1, "edit", [["t", "nope", "create", []]]])
    data = encode(Changeset(hashlib.sha256(body).digest(), body)) + encode(BatchEnd(1, True))
    with pytest.raises(ProtocolError, match="changeset 1 of batch 1") as err:
        read_all(data, chunk=len(data))
    assert err.value.code is ErrorCode.INVALID_CHANGESET


def test_batches_beyond_the_limits_are_refused() -> None:
    data = stream((False, [changeset(i) for i in range(1, 5)]))
    for limits in (Limits(max_batch_changesets=3), Limits(max_batch_bytes=300)):
        with pytest.raises(ProtocolError) as err:
            read_all(data, chunk=len(data), limits=limits)
        assert err.value.code is ErrorCode.TOO_LARGE


def test_an_error_message_in_the_stream_is_the_peers_refusal() -> None:
    data = encode(Vectors({}, {})) + encode(Error(ErrorCode.UNAVAILABLE, "disk full"))
    with pytest.raises(PeerError, match="disk full") as err:
        read_all(data, chunk=3, preamble=(Vectors,))
    assert err.value.code is ErrorCode.UNAVAILABLE


def test_a_preamble_must_come_as_announced() -> None:
    with pytest.raises(ProtocolError, match="expected VECTORS, got HELLO"):
        read_all(encode(HELLO), preamble=(Vectors,))
    reader = TransferReader(preamble=(Hello, Vectors))
    assert reader.feed(encode(HELLO)) == [HELLO]
    with pytest.raises(ProtocolError, match="before it began"):
        reader.close()


# -- fuzzing -------------------------------------------------------------------------------

VALID = (
    encode(HELLO)
    + encode(Vectors({ORIGIN: 2}, {}, bytes(8)))
    + stream(
        (True, [changeset(1, "00000000-0000-4000-8000-0000000000e5")]),
        (False, [changeset(1), changeset(2)]),
    )
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


def _feed_everything(data: bytes) -> None:
    reader = TransferReader(preamble=(Hello, Vectors), limits=Limits(max_frame_bytes=4096))
    try:
        for i in range(0, len(data), 97):
            reader.feed(data[i : i + 97])
        reader.close()
    except ProtocolError:
        pass  # the one error decoding may raise; anything else fails the test


@given(st.binary(max_size=4096))
@settings(max_examples=1000)
def test_random_bytes_only_ever_raise_protocol_errors(data: bytes) -> None:
    _feed_everything(data)


@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.integers(0, len(VALID)),
)
@settings(max_examples=1000)
def test_mutated_streams_only_ever_raise_protocol_errors(
    edits: list[tuple[int, int]], cut: int
) -> None:
    _feed_everything(_mutate(VALID, edits)[:cut] if cut else _mutate(VALID, edits))


@given(st.binary(min_size=1, max_size=64), st.integers(0, 2**64 - 1))
@settings(max_examples=300)
def test_claims_of_huge_sizes_cost_no_memory(prefix: bytes, claim: int) -> None:
    """A frame or a CBOR item claiming a huge length allocates nothing for it."""
    hostile = [
        bytes([0x5B]) + claim.to_bytes(8, "big") + prefix,  # a frame claiming `claim` bytes
        frame(bytes([0x9B]) + claim.to_bytes(8, "big") + prefix),  # an array claiming items
        frame(bytes([0x82, 0x02, 0x5B]) + claim.to_bytes(8, "big") + prefix),
    ]
    tracemalloc.start()
    try:
        for data in hostile:
            _feed_everything(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # far below any claimed size: bounded by the bytes received
