"""People hidden behind people: how much a nearer box hides, and where a partly hidden walker's feet stay."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from edgecount_core.occlusion import feet_hidden, hidden_fraction
from edgecount_core.tracker import Tracker, TrackerConfig


def test_the_nearer_person_hides_part_of_the_farther_one_and_not_the_other_way_round() -> None:
    near = [100.0, 100.0, 200.0, 400.0]   # feet at y = 400
    far = [150.0, 80.0, 230.0, 320.0]     # feet at y = 320: behind
    got = hidden_fraction([near, far])
    assert got[0] == 0.0
    # The near box covers x 150..200 of 150..230 and y 100..320 of 80..320.
    assert abs(got[1] - (50 * 220) / (80 * 240)) < 1e-9
    assert feet_hidden([near, far]).tolist() == [False, True]
    assert feet_hidden([near, [300.0, 80.0, 380.0, 320.0]]).tolist() == [False, False]  # apart


boxes = st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(1, 200), st.floats(1, 400)),
                 min_size=0, max_size=8).map(
    lambda bs: np.array([[x, y, x + w, y + h] for x, y, w, h in bs], dtype=np.float64).reshape(-1, 4))


@given(boxes, st.floats(0.1, 10.0))
def test_hidden_share_is_bounded_and_the_same_at_any_scale(b: np.ndarray, k: float) -> None:
    got = hidden_fraction(b)
    assert got.shape == (len(b),) and np.all((got >= 0) & (got <= 1))
    assert np.allclose(hidden_fraction(b * k), got, atol=1e-6)
    assert np.array_equal(feet_hidden(b * k), feet_hidden(b))


def _walker(x: float, h: float = 240.0) -> list[float]:
    return [x, 460.0 - h, x + 0.4 * h, 460.0]


NEAR = [330.0, 200.0, 420.0, 500.0]   # A, nearer the camera (feet at 500), standing


def _feet_of_walker_behind(cfg: TrackerConfig) -> list[float]:
    """B walks right behind A: while A covers the middle of B's legs, the detector's box of B ends at B's knees."""
    tr = Tracker(cfg)
    feet_y = []
    for i in range(30):
        x = 150 + 10 * i
        b = _walker(x)
        covered = NEAR[0] < x + 48 < NEAR[2]
        if covered:
            b = [b[0], b[1], b[2], 380.0]   # the lower legs are behind A
        out = tr.update(np.array([NEAR, b]), np.array([0.9, 0.8 if covered else 0.9]), ts=i / 25)
        feet_y += [float(r[4]) for r in out.rows if abs(r[1] - NEAR[0]) > 1.0]  # B's row, not A's
    return feet_y


def test_a_walker_passing_behind_another_keeps_their_feet_where_they_are() -> None:
    feet_y = _feet_of_walker_behind(TrackerConfig())
    assert len(feet_y) >= 15
    assert max(abs(y - 460.0) for y in feet_y) < 0.15 * 240, feet_y
    # Without the completion the same walk reports feet far above the ground.
    assert max(abs(y - 460.0) for y in _feet_of_walker_behind(TrackerConfig(complete_hidden_feet=False))) > 0.2 * 240


def _walk_past(cfg: TrackerConfig) -> tuple[list[float], tuple[bool, bool]]:
    """A walks right, B walks left; while they pass the detector draws one box round both, then two again.

    Returns how far the track shown is from its own walker in each frame of the shared box, and whether
    A's and B's tracks each end on their own walker."""
    tr = Tracker(cfg)
    h, w = 240.0, 90.0
    first: dict[str, int] = {}
    off: list[float] = []
    kept = (False, False)
    for i in range(40):
        ax, bx = 100.0 + 12 * i, 560.0 - 8 * i      # centres; they meet around frame 23
        a = [ax - w / 2, 460 - h, ax + w / 2, 460.0]
        b = [bx - w / 2, 455 - h, bx + w / 2, 455.0]
        together = abs(ax - bx) < 1.2 * w
        boxes = np.array([[min(a[0], b[0]), b[1], max(a[2], b[2]), 460.0]] if together else [a, b])
        out = tr.update(boxes, np.full(len(boxes), 0.9), ts=i / 25)
        centre = {int(r[0]): (r[1] + r[3]) / 2 for r in out.rows}
        if i == 8:
            first = {"A": min(centre, key=lambda k: abs(centre[k] - ax)),
                     "B": min(centre, key=lambda k: abs(centre[k] - bx))}
        if together:
            off += [abs(centre[k] - (ax if k == first["A"] else bx)) for k in centre]
        if i == 39:
            kept = (min(centre, key=lambda k: abs(centre[k] - ax)) == first["A"],
                    min(centre, key=lambda k: abs(centre[k] - bx)) == first["B"])
    return off, kept


def test_two_walkers_who_pass_inside_one_box_keep_their_ids_and_places() -> None:
    off, kept = _walk_past(TrackerConfig())
    assert kept == (True, True)
    assert len(off) >= 8 and max(off) < 0.1 * 90, off
    # Following the box round both, the track is pulled to the pair's middle (on TUD-Stadtmitte this is
    # where a track came out of the overlap with the other walker: README, "Counting accuracy").
    off_plain, _ = _walk_past(TrackerConfig(wide_box_ratio=0.0))
    assert max(off_plain) > 0.3 * 90, off_plain
