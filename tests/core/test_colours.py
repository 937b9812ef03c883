"""Clothing colours: what they measure, and the tracker keeping two passers-by apart with them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount_core.colours import FEATURE_SIZE, describe, similarity
from edgecount_core.tracker import Tracker, TrackerConfig

BACKGROUND = (128, 128, 128)
# BGR: a red coat over blue jeans, and a green jacket over light trousers
RED_BLUE = ((30, 30, 200), (160, 60, 20))
GREEN_LIGHT = ((40, 170, 40), (200, 200, 200))


def _scene(people: list[tuple[list[float], tuple[tuple[int, int, int], tuple[int, int, int]]]],
           size: tuple[int, int] = (480, 640)) -> np.ndarray:
    frame = np.full((*size, 3), BACKGROUND, dtype=np.uint8)
    for (x1, y1, x2, y2), (top, legs) in people:
        mid = int(y1 + (y2 - y1) * 0.52)
        frame[int(y1):mid, int(x1):int(x2)] = top
        frame[mid:int(y2), int(x1):int(x2)] = legs
    return frame


def test_one_person_matches_itself_and_not_someone_else() -> None:
    a, b = [100.0, 100.0, 140.0, 220.0], [300.0, 100.0, 340.0, 220.0]
    frame = _scene([(a, RED_BLUE), (b, GREEN_LIGHT)])
    feats = describe(frame, [a, b])
    assert feats.shape == (2, FEATURE_SIZE)
    np.testing.assert_allclose(feats[:, : FEATURE_SIZE // 2].sum(axis=1), 1.0, rtol=1e-5)
    sim = similarity(feats, feats)
    np.testing.assert_allclose(np.diag(sim), 1.0, rtol=1e-5)
    assert sim[0, 1] < 0.2


def test_the_same_person_at_twice_the_size_has_the_same_colours() -> None:
    box = [100.0, 100.0, 140.0, 220.0]
    small = describe(_scene([(box, RED_BLUE)]), [box])
    big_box = [2 * v for v in box]
    big = describe(_scene([(big_box, RED_BLUE)], size=(960, 1280)), [big_box])
    assert similarity(small, big)[0, 0] > 0.95


def test_boxes_outside_or_empty_give_no_colours_and_never_veto() -> None:
    frame = _scene([])
    feats = describe(frame, [[10.0, 10.0, 10.5, 40.0], [5000.0, 5000.0, 5100.0, 5200.0]])
    assert not feats[0].any()
    assert feats[1].sum() > 0  # clamped to the frame edge: colours of what is there
    assert similarity(feats[:1], describe(frame, [[0.0, 0.0, 50.0, 100.0]]))[0, 0] == 1.0
    assert describe(frame, np.zeros((0, 4))).shape == (0, FEATURE_SIZE)
    grey = describe(frame[:, :, 0], [[0.0, 0.0, 50.0, 100.0]])  # a monochrome camera: brightness only
    assert grey.shape == (1, FEATURE_SIZE) and np.isclose(grey[0].sum(), 2.0)


@settings(max_examples=200)
@given(st.lists(st.lists(st.floats(0, 1), min_size=FEATURE_SIZE, max_size=FEATURE_SIZE), min_size=1, max_size=5),
       st.lists(st.lists(st.floats(0, 1), min_size=FEATURE_SIZE, max_size=FEATURE_SIZE), min_size=1, max_size=5))
def test_similarity_is_symmetric_and_bounded(a: list[list[float]], b: list[list[float]]) -> None:
    def norm(x: list[list[float]]) -> np.ndarray:
        arr = np.asarray(x).reshape(-1, 2, FEATURE_SIZE // 2)
        s = arr.sum(axis=2, keepdims=True)
        return np.where(s > 0, arr / np.where(s > 0, s, 1), 0).reshape(-1, FEATURE_SIZE)

    fa, fb = norm(a), norm(b)
    sab, sba = similarity(fa, fb), similarity(fb, fa)
    np.testing.assert_allclose(sab, sba.T, atol=1e-12)
    assert np.all(sab >= 0) and np.all(sab <= 1 + 1e-9)


def _colour(bin_: int) -> np.ndarray:
    f = np.zeros(FEATURE_SIZE)
    f[bin_] = f[FEATURE_SIZE // 2 + bin_] = 1.0
    return f


def _lane_swap(colour_weight: float) -> list[tuple[int, int]]:
    """Two people walk down, close up side by side, are hidden for half a second and come out swapped.

    Per frame, the ids over the red and the green person. The lanes are close enough that both pairings
    pass the overlap gate, so only the colours can tell which is which.
    """
    tr = Tracker(TrackerConfig(colour_weight=colour_weight))
    red, green = _colour(0), _colour(7)
    owners = []
    for i in range(30):
        y = 100.0 + 5 * i
        # apart at first (each box its own: the tracks learn their colours), then side by side
        red_x, green_x = (200.0, max(220.0, 300.0 - 10 * i)) if i < 12 else (220.0, 200.0)
        if 12 <= i < 17:  # behind a pillar: nothing detected
            tr.update(np.zeros((0, 4)), np.zeros(0), ts=i * 0.1, features=np.zeros((0, FEATURE_SIZE)))
            continue
        boxes = np.array([[red_x, y, red_x + 40, y + 120], [green_x, y, green_x + 40, y + 120]])
        out = tr.update(boxes, np.array([0.9, 0.9]), ts=i * 0.1, features=np.stack([red, green]))
        if len(out.rows) == 2:
            # the detection each reported track was updated with this frame
            last = {t.track_id: t.last_box[0] for t in tr.tracks}
            owner = {float(last[int(tid)]): int(tid) for tid in out.rows[:, 0]}
            owners.append((owner[red_x], owner[green_x]))
    return owners


def test_colours_keep_two_people_who_swap_lanes_out_of_sight_apart() -> None:
    with_colours = _lane_swap(2.0)
    assert len(with_colours) > 20 and len(set(with_colours)) == 1
    # Motion alone hands each id to whoever comes out in its lane: the ids swap (why colours are measured).
    assert len(set(_lane_swap(0.0))) == 2
