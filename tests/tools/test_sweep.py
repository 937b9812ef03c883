"""The sweep evaluation's own parts: generated lines, their split, perturbed copies and their ground truth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecount.tools.sweep import VARIANTS, make_variant, split_lines, sweep_lines, transform_truth
from edgecount_core.groundtruth import GroundTruth, true_line_counts


def test_at_least_30_lines_of_every_family_split_in_two_disjoint_halves() -> None:
    lines = sweep_lines()
    assert len(lines) >= 30 and len({ln.name for ln in lines}) == len(lines)
    tune, held = split_lines(lines)
    assert {ln.name for ln in tune}.isdisjoint(ln.name for ln in held)
    assert len(tune) + len(held) == len(lines)
    # Both halves hold vertical, horizontal, diagonal, beside-the-standing-person and edge lines.
    for half in (tune, held):
        assert {ln.name[0] for ln in half} == {"v", "h", "d", "s", "e"}
    kinds = {("v" if ln.a[0] == ln.b[0] else "h" if ln.a[1] == ln.b[1] else "d") for ln in lines}
    assert kinds == {"v", "h", "d"}
    lengths = {round(np.hypot(ln.b[0] - ln.a[0], ln.b[1] - ln.a[1]), 2) for ln in lines}
    assert len(lengths) >= 5


def _gt() -> GroundTruth:
    # Two people: one walking right across x = 100..300 over frames 1..9, one standing at x = 50.
    rows = [[f, 1, 100 + 25 * (f - 1) - 10, 50, 20, 60, 1] for f in range(1, 10)]
    rows += [[f, 2, 40, 50, 20, 60, 1] for f in range(1, 10)]
    return GroundTruth(np.array(rows, dtype=np.float64))


def test_mirrored_and_scaled_truth_count_the_same_crossings() -> None:
    from edgecount_core.geometry import Line

    gt = _gt()
    line = [Line("v", (0.5, 0.0), (0.5, 1.0))]
    base = true_line_counts(gt, line, 400, 200)
    assert base == {"v": {"in": 0, "out": 1}}
    mirrored, _ = transform_truth(gt, VARIANTS["mirrored"], 400)
    assert true_line_counts(mirrored, line, 400, 200) == {"v": {"in": 1, "out": 0}}  # direction flips
    half, _ = transform_truth(gt, VARIANTS["half_res"], 400)
    assert true_line_counts(half, line, 200, 100) == base
    assert np.allclose(half.rows[:, 2:6], gt.rows[:, 2:6] / 2)


def test_dropped_frames_renumber_the_truth_but_keep_every_frame_for_true_counts() -> None:
    gt = _gt()
    full, kept = transform_truth(gt, VARIANTS["every_3rd"], 400)
    assert np.array_equal(full.rows[:, 0], gt.rows[:, 0])
    assert sorted(set(kept.rows[:, 0].astype(int))) == [1, 2, 3]  # frames 1, 4, 7
    assert np.allclose(kept.rows[kept.rows[:, 0] == 2][:, 2:6], gt.rows[gt.rows[:, 0] == 4][:, 2:6])


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(12):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[10:30, 2 * i: 2 * i + 8] = 230  # a bright block moving right
        w.write(frame)
    w.release()
    return path


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_readable_video_of_the_expected_shape(clip: Path, tmp_path: Path, name: str) -> None:
    v = VARIANTS[name]
    out, fps, size = make_variant(clip, v, tmp_path)
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == len(range(0, 12, v.step))
    assert size == (round(64 * v.scale), round(48 * v.scale)) == (frames[0].shape[1], frames[0].shape[0])
    assert fps == pytest.approx(10.0 / v.step)
    first = cv2.resize(frames[0], (64, 48))
    bright = np.argwhere(first.mean(axis=2) > 150)[:, 1]
    if v.dark:
        # Dusk: the block (230 on 40) loses most of its contrast and its brightness.
        assert int(first.max()) - int(first.min()) < 0.4 * (230 - 40)
        assert first.max() < 0.6 * 230
    elif v.mirror:
        assert bright.min() > 64 - 12  # the block starts at the right edge
    else:
        assert bright.max() < 12
