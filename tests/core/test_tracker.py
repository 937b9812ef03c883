"""Tracker behaviour on synthetic scenes: confirmation, occlusion, dropped frames."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from edgecount_core.tracker import Tracker, TrackerConfig, iou_matrix


def _box(x: float, y: float = 200.0) -> list[float]:
    return [x, y, x + 40, y + 120]


def test_confirms_after_min_hits_and_keeps_the_id() -> None:
    tr = Tracker(TrackerConfig(min_hits=3))
    ids = []
    for i in range(10):
        out = tr.update(np.array([_box(100 + 8 * i)]), np.array([0.9]), ts=i * 0.1)
        ids.append(out.rows[:, 0].tolist())
    assert ids[0] == [] and ids[1] == []  # tentative tracks are never reported
    assert len({tuple(x) for x in ids[2:]}) == 1 and len(ids[2]) == 1


def test_occlusion_and_frame_drops_keep_identity() -> None:
    tr = Tracker()
    first = None
    t = 0.0
    for i in range(40):
        t = i * 0.1
        if 15 <= i < 25:  # hidden for one second
            out = tr.update(np.zeros((0, 4)), np.zeros(0), ts=t)
            continue
        if i >= 30 and i % 3:  # the pipeline drops two frames in three
            continue
        out = tr.update(np.array([_box(100 + 6 * i)]), np.array([0.9]), ts=t)
        if len(out.rows):
            first = first or int(out.rows[0, 0])
            assert int(out.rows[0, 0]) == first


def test_low_score_detections_keep_a_track_alive() -> None:
    tr = Tracker()
    for i in range(5):
        tr.update(np.array([_box(100 + 5 * i)]), np.array([0.9]), ts=i * 0.1)
    out = tr.update(np.array([_box(125)]), np.array([0.2]), ts=0.5)  # partly hidden: weak score
    assert len(out.rows) == 1
    out = tr.update(np.array([_box(400)]), np.array([0.2]), ts=0.6)  # weak and unrelated: no new track
    assert len(out.rows) == 0


def test_lost_tracks_end_after_max_lost_seconds() -> None:
    tr = Tracker(TrackerConfig(max_lost_s=1.0))
    for i in range(5):
        tr.update(np.array([_box(100)]), np.array([0.9]), ts=i * 0.1)
    assert tr.update(np.zeros((0, 4)), np.zeros(0), ts=1.0).ended == []
    assert len(tr.update(np.zeros((0, 4)), np.zeros(0), ts=1.6).ended) == 1


@given(st.lists(st.tuples(*(st.floats(0, 500) for _ in range(4))), min_size=1, max_size=8))
def test_iou_is_symmetric_and_bounded(raw) -> None:
    b = np.array([[min(x1, x2), min(y1, y2), max(x1, x2) + 1, max(y1, y2) + 1] for x1, y1, x2, y2 in raw])
    m = iou_matrix(b, b)
    np.testing.assert_allclose(m, m.T, atol=1e-9)
    assert (m >= 0).all() and (m <= 1 + 1e-9).all()
    np.testing.assert_allclose(np.diag(m), 1.0)
