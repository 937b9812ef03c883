"""Messages: round trips, and every malformed payload is rejected with MessageError only."""

from __future__ import annotations

import contextlib

import attrs
import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount_core.colours import FEATURE_SIZE
from edgecount_core.messages import (
    CountRecord,
    Crossing,
    Detections,
    EndOfStream,
    FrameReady,
    Health,
    LogTail,
    Marker,
    MessageError,
    Tracks,
    Watermark,
    ZoneEvent,
    decode,
    encode,
)

ints = st.integers(min_value=0, max_value=2**62)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
names = st.text(min_size=1, max_size=20)

messages = st.one_of(
    st.builds(FrameReady, seq=ints, slot=st.integers(0, 255), ts=floats, width=st.integers(1, 4096),
              height=st.integers(1, 4096), ring=ints, resend=st.booleans()),
    st.builds(Crossing, event_id=names, line=names, direction=st.sampled_from(["in", "out"]), ts=floats,
              track_id=ints, seq=ints, event_seq=ints),
    st.builds(ZoneEvent, event_id=names, zone=names, kind=st.sampled_from(["enter", "exit"]), ts=floats,
              track_id=ints, occupancy=st.integers(0, 100), event_seq=ints, dwell_s=floats),
    st.builds(CountRecord, record_id=names, kind=st.sampled_from(["line", "zone", "event"]), name=names,
              bucket_start=floats, bucket_s=st.floats(min_value=1e-3, max_value=1e6), n_in=st.integers(0, 10**6),
              n_out=st.integers(0, 10**6),
              log_seq=ints),
    st.builds(LogTail, service=names, last_seq=ints),
    st.builds(Health, service=names, pid=st.integers(1, 2**22), ts=floats,
              state=st.sampled_from(["starting", "ok", "degraded", "stopping"]),
              stats=st.dictionaries(names, st.one_of(st.integers(-10**9, 10**9), floats, names, st.booleans()),
                                    max_size=5)),
    st.builds(Marker, token=names, origin_ts=floats),
    st.builds(Watermark, ts=floats, seq=ints),
    st.builds(EndOfStream, last_seq=ints, stats=st.dictionaries(names, st.integers(0, 10**6), max_size=4),
              counter_events_upto=st.none() | ints, privacy_records_upto=st.none() | ints,
              confirmed=st.none() | st.dictionaries(names, ints, max_size=3)),
)


@given(messages)
def test_every_message_round_trips(msg) -> None:
    assert decode(encode(msg)) == msg


@given(st.integers(0, 30), st.integers(1, 10**6))
def test_detections_round_trip_with_arrays(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 700, (n, 4)).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    d = Detections.from_arrays(seq=1, ts=1.0, width=768, height=576, boxes=boxes, scores=scores,
                               classes=np.zeros(n))
    back = decode(encode(d))
    assert isinstance(back, Detections)
    np.testing.assert_array_equal(back.box_array(), boxes.reshape(-1, 4))
    np.testing.assert_array_equal(back.score_array(), scores)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_message_error(raw: bytes) -> None:
    with contextlib.suppress(MessageError):
        decode(raw)


@settings(max_examples=300)
@given(messages, st.sampled_from(["drop", "retype", "extra", "version"]), st.data())
def test_corrupted_fields_are_rejected(msg, how: str, data) -> None:
    body = msgpack.unpackb(encode(msg), raw=False)
    fields = [k for k in body if k not in ("type", "v")]
    if how == "drop":
        required = {f.name for f in attrs.fields(type(msg)) if f.default is attrs.NOTHING}
        droppable = [f for f in fields if f in required]
        if not droppable:
            return
        del body[data.draw(st.sampled_from(droppable))]
    elif how == "retype":
        body[data.draw(st.sampled_from(fields))] = [1, 2, 3]
    elif how == "extra":
        body["surprise"] = 1
    else:
        body["v"] = body["v"] + data.draw(st.integers(1, 5))
    with pytest.raises(MessageError):
        decode(msgpack.packb(body, use_bin_type=True))


@given(st.integers(0, 12), st.integers(1, 10**6))
def test_detections_carry_colours_or_none(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 700, (n, 4))
    colours = rng.uniform(0, 1, (n, FEATURE_SIZE)).astype(np.float32)
    with_colours = decode(encode(Detections.from_arrays(seq=1, ts=1.0, width=768, height=576, boxes=boxes,
                                                        scores=np.ones(n), classes=np.zeros(n), features=colours)))
    without = decode(encode(Detections.from_arrays(seq=1, ts=1.0, width=768, height=576, boxes=boxes,
                                                   scores=np.ones(n), classes=np.zeros(n))))
    assert isinstance(with_colours, Detections) and isinstance(without, Detections)
    assert without.feature_array() is None
    got = with_colours.feature_array()
    if n:
        assert got is not None
        np.testing.assert_array_equal(got, colours)


def test_malformed_colours_are_rejected() -> None:
    box = np.array([[1.0, 2.0, 30.0, 90.0]])
    good = Detections.from_arrays(seq=1, ts=0.0, width=64, height=96, boxes=box, scores=[0.9], classes=[0],
                                  features=np.full((1, FEATURE_SIZE), 0.5))
    with pytest.raises(MessageError, match="per box"):
        decode(encode(attrs.evolve(good, features=good.features[:-4])))
    negative = np.full((1, FEATURE_SIZE), 0.5, dtype="<f4")
    negative[0, 3] = -0.1
    with pytest.raises(MessageError, match="must lie in"):
        decode(encode(attrs.evolve(good, features=negative.tobytes())))
    nan = np.full((1, FEATURE_SIZE), np.nan, dtype="<f4")
    with pytest.raises(MessageError, match="must lie in"):
        decode(encode(attrs.evolve(good, features=nan.tobytes())))


def test_unknown_type_and_inconsistent_arrays_are_rejected() -> None:
    with pytest.raises(MessageError, match="unknown message type"):
        decode(msgpack.packb({"type": "selfie", "v": 1}))
    bad = Detections(seq=1, ts=0.0, width=1, height=1, boxes=b"\0" * 16, scores=b"", classes=b"")
    with pytest.raises(MessageError, match="disagree"):
        decode(encode(bad))
    with pytest.raises(MessageError, match="multiple"):
        decode(encode(Tracks(seq=1, ts=0.0, width=1, height=1, rows=b"\0" * 7)))
    with pytest.raises(MessageError, match="direction"):
        decode(encode(Crossing(event_id="x", line="l", direction="sideways", ts=0.0, track_id=1, seq=1,
                               event_seq=1)))


def _raw(**fields: object) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


@pytest.mark.parametrize("payload", [
    _raw(type="frame", v=1, seq=1, slot=0, ts=float("nan"), width=10, height=10, ring=1),
    _raw(type="frame", v=1, seq=1, slot=0, ts=float("inf"), width=10, height=10, ring=1),
    _raw(type="frame", v=1, seq=-1, slot=0, ts=1.0, width=10, height=10, ring=1),
    _raw(type="frame", v=1, seq=2**63, slot=0, ts=1.0, width=10, height=10, ring=1),
    _raw(type="frame", v=1, seq=2**64 - 1, slot=0, ts=1.0, width=10, height=10, ring=1),
    _raw(type="frame", v=1, seq=1, slot=0, ts=1.0, width=-640, height=480, ring=1),
    _raw(type="frame", v=1, seq=1, slot=0, ts=1.0, width=0, height=480, ring=1),
    _raw(type="detections", v=1, seq=1, ts=1.0, width=640, height=-1),
    _raw(type="tracks", v=1, seq=1, ts=1.0, width=640, height=480, ended=[-3]),
    _raw(type="record", v=1, record_id="r", kind="line", name="x", bucket_start=0.0, bucket_s=0.0, n_in=1, n_out=0),
    _raw(type="watermark", v=1, ts=float("-inf"), seq=1),
    _raw(type="eos", v=1, last_seq=5, stats={"frames": [1, 2]}),
    _raw(type="eos", v=1, last_seq=5, stats={"fps": float("nan")}),
    _raw(type="eos", v=1, last_seq=5, confirmed={"mqtt": -1}),
    _raw(type="eos", v=1, last_seq=5, confirmed={"mqtt": "7"}),
    _raw(type="eos", v=1, last_seq=5, privacy_records_upto=-3),
    _raw(type="health", v=1, service="x", pid=1, ts=1.0, state="ok", stats={"x": {"nested": 1}}),
])
def test_well_typed_but_out_of_range_is_rejected(payload: bytes) -> None:
    with pytest.raises(MessageError):
        decode(payload)


@given(st.dictionaries(st.sampled_from(["seq", "slot", "ts", "width", "height", "ring", "channels"]),
                       st.one_of(st.integers(-2**63, 2**64 - 1), st.floats(), st.booleans()), min_size=7))
def test_any_frame_announcement_decodes_to_a_valid_one_or_message_error(fields: dict) -> None:
    try:
        msg = decode(_raw(type="frame", v=1, **fields))
    except MessageError:
        return
    assert isinstance(msg, FrameReady)
    assert 0 <= msg.seq < 2**63 and 1 <= msg.width <= 65535 and 1 <= msg.height <= 65535
    assert np.isfinite(msg.ts)
