"""Each counting mistake lands in its class (the closing notes of issue 13 rest on these)."""

from __future__ import annotations

import numpy as np

from edgecount.tools.evaluate import CountedFrame, classify_count_errors
from edgecount_core.counting import CountEvent
from edgecount_core.groundtruth import GroundTruth

FPS = 10.0


def _gt(frames: range, pid: int = 1, x0: float = 100.0, dx: float = 10.0) -> list[list[float]]:
    return [[f, pid, x0 + dx * (f - 1), 100.0, 40.0, 100.0, 1.0] for f in frames]


def _box(f: int, x0: float = 100.0, dx: float = 10.0) -> list[float]:
    x = x0 + dx * (f - 1)
    return [x, 100.0, x + 40.0, 200.0]


def _frames(ids_by_frame: dict[int, int], events: dict[int, list[CountEvent]] | None = None) -> dict[int, CountedFrame]:
    out = {}
    for f in range(1, 31):
        tid = ids_by_frame.get(f)
        boxes = np.array([_box(f)]) if tid is not None else np.zeros((0, 4))
        out[f] = CountedFrame(boxes=boxes, ids=[tid] if tid is not None else [], events=(events or {}).get(f, []))
    return out


TRUE = [CountEvent("v", "out", 1, 1.5, 15)]
GT = GroundTruth(np.array(_gt(range(1, 31)), dtype=np.float64))


def test_a_matched_crossing_is_no_error() -> None:
    counted = _frames(dict.fromkeys(range(1, 31), 7), {16: [CountEvent("v", "out", 7, 1.6, 16)]})
    assert sum(classify_count_errors(GT, TRUE, counted, FPS).values()) == 0


def test_a_person_never_detected_is_a_missed_detection() -> None:
    got = classify_count_errors(GT, TRUE, _frames({}), FPS)
    assert got["missed detection"] == 1 and sum(got.values()) == 1


def test_two_tracks_either_side_of_the_crossing_are_a_track_break() -> None:
    ids = {f: (7 if f < 15 else 9) for f in range(1, 31)}
    got = classify_count_errors(GT, TRUE, _frames(ids), FPS)
    assert got["track break at the line"] == 1 and sum(got.values()) == 1


def test_one_track_through_the_crossing_without_a_count() -> None:
    got = classify_count_errors(GT, TRUE, _frames(dict.fromkeys(range(1, 31), 7)), FPS)
    assert got["tracked, not counted"] == 1 and sum(got.values()) == 1


def test_extra_counts_are_doubles_jitter_or_false_detections() -> None:
    # The person crossed once; the tracker counted them once right, once more later (a second tracklet).
    events = {16: [CountEvent("v", "out", 7, 1.6, 16)], 27: [CountEvent("v", "out", 7, 2.7, 27)]}
    got = classify_count_errors(GT, TRUE, _frames(dict.fromkeys(range(1, 31), 7), events), FPS)
    assert got["counted twice (ID switch)"] == 1 and sum(got.values()) == 1
    # Nobody crossed line "h", yet the tracked person was counted on it: jitter.
    events = {16: [CountEvent("v", "out", 7, 1.6, 16), CountEvent("h", "in", 7, 1.6, 16)]}
    got = classify_count_errors(GT, TRUE, _frames(dict.fromkeys(range(1, 31), 7), events), FPS)
    assert got["jitter near the line"] == 1 and sum(got.values()) == 1
    # A count by a track on no annotated person.
    ghost = _frames(dict.fromkeys(range(1, 31), 7), {16: [CountEvent("v", "out", 7, 1.6, 16)]})
    ghost[20] = CountedFrame(boxes=np.array([_box(20), [600.0, 300.0, 640.0, 400.0]]), ids=[7, 8],
                             events=[CountEvent("v", "in", 8, 2.0, 20)])
    got = classify_count_errors(GT, TRUE, ghost, FPS)
    assert got["false detection"] == 1 and sum(got.values()) == 1
