"""Counter state: explicit, versioned, and kind to open tracks across an upgrade.

Before: the counter pickled its tracker, linker and engine objects (format 5), so every private attribute was
storage format and a new build threw open tracks away. Now each part writes its own plain map.
"""

from __future__ import annotations

import pickle

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount.stages.counter_state import CameraState, encode_state, restore
from edgecount_core.camera import CameraCounter
from edgecount_core.frames import FramePosition
from edgecount_core.geometry import Line
from edgecount_core.saved_state import StateMismatch

W, H = 640, 480
LINES = [Line("door", (0.5, 0.0), (0.5, 1.0)), Line("aisle", (0.0, 0.6), (1.0, 0.6))]


def _frames(seed: int, n: int = 60, people: int = 4) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """People walking across both lines at 10 fps, with box jitter and the odd missed detection."""
    rng = np.random.default_rng(seed)
    start = rng.uniform([40, 60], [200, 200], size=(people, 2))
    vel = rng.uniform([25, 10], [45, 25], size=(people, 2))
    out = []
    for i in range(n):
        ts = 1000.0 + i / 10
        boxes, scores = [], []
        for p in range(people):
            if rng.random() < 0.05:
                continue
            cx, foot = start[p] + vel[p] * i / 2 + rng.normal(0, 1.5, 2)
            h = 120 + 20 * p
            boxes.append([cx - h / 5, foot - h + 100, cx + h / 5, foot + 100])
            scores.append(0.8)
        out.append((np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores), ts))
    return out


def _state(counter: CameraCounter, seq: int = 0) -> CameraState:
    return CameraState("main", counter, FramePosition(live=False), last_ts=0.0, processed=seq)


def _run(counter: CameraCounter, frames: list[tuple[np.ndarray, np.ndarray, float]], first: int = 0) -> list[str]:
    events = []
    for i, (boxes, scores, ts) in enumerate(frames):
        step = counter.step(boxes, scores, ts, first + i, W, H)
        events += [f"{c.line}:{c.direction}:{c.track_id}:{c.seq}" for c in step.crossings]
    return events


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 59))
def test_a_restart_anywhere_counts_exactly_as_an_unbroken_run(seed: int, cut: int) -> None:
    frames = _frames(seed)
    unbroken = _run(CameraCounter(LINES), frames)
    before = CameraCounter(LINES)
    events = _run(before, frames[:cut])
    raw = encode_state(_state(before, cut))
    after = _state(CameraCounter(LINES))
    assert restore(after, raw) == ""
    events += _run(after.counter, frames[cut:], first=cut)
    assert events == unbroken
    assert len(unbroken) > 0  # the walk crosses lines, or the comparison would prove little


def _legacy_pickle(counter: CameraCounter) -> bytes:
    line_key = [(ln.name, ln.a, ln.b) for ln in counter.engine.lines]
    return pickle.dumps((5, counter, line_key, 3, 30, 1003.0, 30), protocol=pickle.HIGHEST_PROTOCOL)


def test_open_tracks_survive_the_upgrade_from_a_pickled_state() -> None:
    frames = _frames(7)
    before = CameraCounter(LINES)
    events = _run(before, frames[:30])
    assert before.tracker.tracks, "people are in view at the cut"
    cs = _state(CameraCounter(LINES))
    assert restore(cs, _legacy_pickle(before)) == ""
    assert [t.track_id for t in cs.counter.tracker.tracks] == [t.track_id for t in before.tracker.tracks]
    assert (cs.position.ring, cs.position.seq, cs.processed) == (3, 30, 30)
    events += _run(cs.counter, frames[30:], first=30)
    assert events == _run(CameraCounter(LINES), frames)
    assert msgpack.unpackb(encode_state(cs))["v"] == 6  # written back in the new form


def test_a_pickle_naming_anything_but_counting_classes_is_refused() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os
            return os.system, ("true",)

    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        restore(_state(CameraCounter(LINES)), pickle.dumps((5, Evil()), protocol=pickle.HIGHEST_PROTOCOL))


def test_a_part_in_another_format_is_named_and_nothing_is_half_restored() -> None:
    before = CameraCounter(LINES)
    _run(before, _frames(3)[:20])
    saved = msgpack.unpackb(encode_state(_state(before, 20)))
    saved["counter"]["linker"]["v"] = 99
    cs = _state(CameraCounter(LINES))
    fresh_tracker = cs.counter.tracker
    with pytest.raises(StateMismatch, match="linker state format 99"):
        restore(cs, msgpack.packb(saved))
    assert cs.counter.tracker is fresh_tracker and cs.processed == 0


def test_an_older_envelope_is_set_aside_with_its_reason() -> None:
    assert restore(_state(CameraCounter(LINES)), msgpack.packb({"v": 7})) == "state format 7, this build uses 6"


def test_moving_one_line_keeps_the_tracks_and_the_other_lines_sides() -> None:
    frames = _frames(11)
    before = CameraCounter(LINES)
    _run(before, frames[:25])
    moved = [LINES[0], Line("aisle", (0.0, 0.7), (1.0, 0.7))]
    cs = _state(CameraCounter(moved))
    assert restore(cs, encode_state(_state(before, 25))) == ""
    assert len(cs.counter.tracker.tracks) == len(before.tracker.tracks)
    door_before, aisle_before = before.engine.to_state()["lines"]
    door_after, aisle_after = cs.counter.engine.to_state()["lines"]
    assert door_after == door_before
    assert aisle_after[2] == [0, 0, []] and aisle_before[2][2], "the moved line starts empty"
