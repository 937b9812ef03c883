"""Detection quality metrics and the tile grid (property-based)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from edgecount.detection.tiling import tile_grid
from edgecount_core.detection_quality import detection_quality

boxes = st.lists(st.tuples(st.floats(0, 600), st.floats(0, 400), st.floats(10, 100), st.floats(20, 150)),
                 min_size=1, max_size=6)


def _xyxy(raw: list[tuple[float, float, float, float]]) -> np.ndarray:
    return np.array([[x, y, x + w, y + h] for x, y, w, h in raw], dtype=np.float64)


@given(st.lists(boxes, min_size=1, max_size=5))
def test_perfect_detections_score_one(frames: list) -> None:
    gt = {i + 1: (_xyxy(b), np.zeros((0, 4))) for i, b in enumerate(frames)}
    det = {f: (g, np.full(len(g), 0.9)) for f, (g, _) in gt.items()}
    q = detection_quality(gt, det)
    assert q.precision == 1.0 and q.recall == 1.0 and abs(q.ap50 - 1.0) < 1e-9


@given(st.lists(boxes, min_size=1, max_size=5))
def test_no_detections_and_detections_on_ignored_regions(frames: list) -> None:
    gt = {i + 1: (np.zeros((0, 4)), _xyxy(b)) for i, b in enumerate(frames)}
    det = {f: (ign, np.full(len(ign), 0.9)) for f, (_, ign) in gt.items()}
    q = detection_quality(gt, det)
    assert q.detections == 0  # hits on "don't care" boxes are neither right nor wrong
    gt2 = {i + 1: (_xyxy(b), np.zeros((0, 4))) for i, b in enumerate(frames)}
    q2 = detection_quality(gt2, {})
    assert q2.recall == 0.0 and q2.ap50 == 0.0


def test_false_alarms_lower_precision_not_recall() -> None:
    g = np.array([[0, 0, 50, 100]], dtype=np.float64)
    det = {1: (np.array([[0, 0, 50, 100], [300, 300, 350, 400]], dtype=np.float64), np.array([0.9, 0.8]))}
    q = detection_quality({1: (g, np.zeros((0, 4)))}, det)
    assert q.recall == 1.0 and q.precision == 0.5 and abs(q.ap50 - 1.0) < 1e-9


@given(st.integers(64, 2000), st.integers(64, 2000), st.integers(1, 4), st.integers(1, 4), st.floats(0.0, 0.4))
def test_tiles_cover_the_frame_and_overlap(w: int, h: int, cols: int, rows: int, overlap: float) -> None:
    tiles = tile_grid(w, h, cols, rows, overlap)
    assert len(tiles) == cols * rows
    covered = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        covered[y0:y1, x0:x1] = True
    assert covered.all()
