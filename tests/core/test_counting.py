"""Counting geometry: crossings, hysteresis, segment extent, frame edges (property-based)."""

from __future__ import annotations

import itertools
import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgecount_core.counting import CountingEngine, LineCounter, TrackPoint
from edgecount_core.geometry import Line, PixelLine

W, H = 768, 576
# A person 100 px tall: a band of 0.06 of their height is 6 px.
PERSON_H = 100.0


def _line(ax: float, ay: float, bx: float, by: float) -> PixelLine:
    return Line("l", (ax, ay), (bx, by)).to_pixels(W, H)


def _walk(counter: LineCounter, pts: list[tuple[float, float]], tid: int = 1) -> list[str]:
    out = []
    for i, p in enumerate(pts):
        ev = counter.update(tid, p, ts=i * 0.1, seq=i, height=PERSON_H)
        if ev is not None:
            out.append(ev.direction)
    return out


def _offset_point(line: PixelLine, t: float, d: float) -> tuple[float, float]:
    """The point at fraction t along A->B, d pixels to the right-hand (positive) side."""
    ax, ay = line.a
    bx, by = line.b
    L = line.length
    nx, ny = -(by - ay) / L, (bx - ax) / L  # unit normal with positive signed distance
    return (ax + t * (bx - ax) + d * nx, ay + t * (by - ay) + d * ny)


segments = st.tuples(*(st.floats(0.05, 0.95) for _ in range(4))).filter(
    lambda s: math.hypot((s[2] - s[0]) * W, (s[3] - s[1]) * H) > 80)


@settings(max_examples=200)
@given(segments, st.integers(1, 12), st.booleans(), st.floats(0.2, 0.8), st.floats(10, 40))
def test_k_alternating_crossings_count_exactly(seg, k: int, start_left: bool, t: float, depth: float) -> None:
    line = _line(*seg)
    assume(line.reachable_depth() > depth + 1)
    counter = LineCounter(line, band=0.06)
    side = -1 if start_left else 1
    pts = [_offset_point(line, t, side * depth)]
    for _ in range(k):
        side = -side
        pts.append(_offset_point(line, t, side * depth / 2))
        pts.append(_offset_point(line, t, side * depth))
    got = _walk(counter, pts)
    first = "in" if start_left else "out"
    second = "out" if start_left else "in"
    expected = [first if i % 2 == 0 else second for i in range(k)]
    assert got == expected
    assert counter.n_in == expected.count("in") and counter.n_out == expected.count("out")


@settings(max_examples=200)
@given(segments, st.lists(st.floats(-5.9, 5.9), min_size=2, max_size=60), st.floats(0.1, 0.9),
       st.sampled_from([-30.0, 30.0]))
def test_jitter_inside_the_band_never_counts(seg, jitter: list[float], t: float, start: float) -> None:
    line = _line(*seg)
    assume(line.reachable_depth() > 40)
    counter = LineCounter(line, band=0.06)
    pts = [_offset_point(line, t, start)] + [_offset_point(line, t, j) for j in jitter]
    assert _walk(counter, pts) == []


@given(st.floats(1.0, 20.0), st.sampled_from(["top", "bottom", "left", "right"]), st.floats(0.1, 0.9))
def test_lines_at_the_frame_edge_still_count(offset_px: float, edge: str, t: float) -> None:
    """A line a few pixels from the border, crossed by a foot point that reaches the border.

    Boxes are clipped to the frame, so the far side of such a line is at most
    ``offset_px`` deep: the band must shrink to let it count.
    """
    if edge in ("top", "bottom"):
        y = offset_px / H if edge == "top" else 1 - offset_px / H
        line, border = _line(0.0, y, 1.0, y), (t * W, 0.0 if edge == "top" else float(H))
        inner = (t * W, H / 2)
    else:
        x = offset_px / W if edge == "left" else 1 - offset_px / W
        line, border = _line(x, 0.0, x, 1.0), (0.0 if edge == "left" else float(W), t * H)
        inner = (W / 2, t * H)
    counter = LineCounter(line, band=0.06)
    got = _walk(counter, [inner, border, inner])
    assert sorted(got) == ["in", "out"]


def test_crossing_beyond_the_segment_ends_does_not_count() -> None:
    line = _line(0.4, 0.4, 0.6, 0.4)  # short horizontal segment
    counter = LineCounter(line, band=0.04)
    x = 0.9 * W  # far to the right of B
    assert _walk(counter, [(x, 0.3 * H), (x, 0.5 * H)]) == []
    # A->B points right; walking down the screen goes from its left to its right: "in".
    assert _walk(counter, [(0.5 * W, 0.3 * H), (0.5 * W, 0.5 * H)], tid=2) == ["in"]


def test_in_is_left_to_right_looking_from_a_to_b() -> None:
    # A at the top, B at the bottom: looking from A to B (downwards on screen), the
    # left-hand side is screen-right. Walking from screen-right to screen-left is "in".
    line = _line(0.5, 0.1, 0.5, 0.9)
    assert line.signed_distance((0.7 * W, H / 2)) < 0
    assert _walk(LineCounter(line), [(0.7 * W, H / 2), (0.3 * W, H / 2)]) == ["in"]


def test_hidden_track_keeps_its_side_until_ended() -> None:
    eng = CountingEngine([Line("v", (0.5, 0.0), (0.5, 1.0))])
    right, left = (0.8 * W, H / 2), (0.2 * W, H / 2)
    eng.update(W, H, [TrackPoint(7, right, PERSON_H)], ts=0.0, seq=1)
    eng.update(W, H, [], ts=0.1, seq=2)  # hidden, not ended
    crossings, _ = eng.update(W, H, [TrackPoint(7, left, PERSON_H)], ts=0.2, seq=3)
    assert [c.direction for c in crossings] == ["in"]
    eng.update(W, H, [], ts=0.3, seq=4, ended=[7])
    crossings, _ = eng.update(W, H, [TrackPoint(7, right, PERSON_H)], ts=0.4, seq=5)
    assert crossings == []  # a new life of the id starts without a side


def test_zone_occupancy_entries_exits_and_dwell() -> None:
    from edgecount_core.geometry import Polygon

    eng = CountingEngine([], [Polygon("z", ((0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)))])
    outside, inside = (0.1 * W, 0.1 * H), (0.5 * W, 0.5 * H)
    eng.update(W, H, [TrackPoint(1, outside, PERSON_H)], ts=0.0, seq=1)
    _, ch = eng.update(W, H, [TrackPoint(1, inside, PERSON_H)], ts=1.0, seq=2)
    assert [c.kind for c in ch] == ["enter"] and eng.zone_counters[0].occupancy == 1
    _, ch = eng.update(W, H, [TrackPoint(1, outside, PERSON_H)], ts=4.0, seq=3)
    assert [c.kind for c in ch] == ["exit"] and ch[0].dwell_s == 3.0
    assert eng.zone_counters[0].occupancy == 0


# -- scale and rate invariance -------------------------------------------------------------------

def _chord(t0: float, t1: float) -> Line:
    """A line across the whole frame between two points of its border (perimeter fractions t0, t1)."""
    def border(t: float) -> tuple[float, float]:
        t = t % 4.0
        side, f = int(t), t - int(t)
        return [(f, 0.0), (1.0, f), (1.0 - f, 1.0), (0.0, 1.0 - f)][side]
    return Line("c", border(t0), border(t1))


def _trajectory(waypoints: list[tuple[float, float]], speed: float, height: float, pause: int) -> list[
        tuple[float, float]]:
    """Foot points at 10 fps: straight walks between waypoints (pixels), ``pause`` frames still at each."""
    pts: list[tuple[float, float]] = []
    for (ax, ay), (bx, by) in itertools.pairwise(waypoints):
        pts += [(ax, ay)] * pause
        steps = max(1, math.ceil(math.hypot(bx - ax, by - ay) / (speed * height * 0.1)))
        pts += [(ax + (bx - ax) * k / steps, ay + (by - ay) * k / steps) for k in range(steps)]
    pts += [waypoints[-1]] * pause
    return pts


def _count(line: Line, pts: list[tuple[float, float]], height: float, w: float, h: float,
           step: int = 1) -> list[str]:
    eng = CountingEngine([line])
    got: list[str] = []
    for seq, i in enumerate(range(0, len(pts), step), 1):
        crossings, _ = eng.update(int(w), int(h), [TrackPoint(1, pts[i], height)], ts=i * 0.1, seq=seq)
        got += [c.direction for c in crossings]
    return got


waypoint_lists = st.lists(st.tuples(st.floats(0.05, 0.95), st.floats(0.05, 0.95)), min_size=2, max_size=6)


@settings(max_examples=300)
@given(waypoint_lists, st.floats(0.0, 4.0), st.floats(0.0, 4.0), st.floats(30.0, 200.0),
       st.sampled_from([0.25, 0.5, 2.0, 4.0]))
def test_scaling_the_frame_and_the_trajectory_together_keeps_the_count(
        waypoints, t0: float, t1: float, height: float, k: float) -> None:
    """The same scene filmed at another resolution counts the same (the band follows the person's size).

    Powers of two scale exactly in binary floating point, so no tolerance hides a real difference.
    """
    assume(0.2 < abs(t1 - t0) < 3.8)  # the perimeter wraps at 4: 0 and 4 are the same corner
    line = _chord(t0, t1)
    assume(line.to_pixels(W, H).length > 50)
    pts = _trajectory([(x * W, y * H) for x, y in waypoints], 1.0, height, pause=1)
    base = _count(line, pts, height, W, H)
    scaled = _count(line, [(x * k, y * k) for x, y in pts], height * k, W * k, H * k)
    assert scaled == base


@settings(max_examples=300)
@given(waypoint_lists, st.floats(0.0, 4.0), st.floats(0.0, 4.0), st.floats(30.0, 200.0), st.floats(0.3, 2.0),
       st.sampled_from([2, 3]))
def test_dropping_frames_keeps_the_count(waypoints, t0: float, t1: float, height: float, speed: float,
                                         step: int) -> None:
    """Every second or third frame of a walk counts what every frame counts.

    Walks are straight between waypoints (a person does not turn back within one frame) and pause at
    each waypoint for ``step`` frames, so the sampled walk still reaches every waypoint; waypoints
    inside the band are excluded, there the person's path itself decides nothing.
    """
    assume(0.2 < abs(t1 - t0) < 3.8)  # the perimeter wraps at 4: 0 and 4 are the same corner
    line = _chord(t0, t1)
    px = line.to_pixels(W, H)
    assume(px.length > 50)
    wp = [(x * W, y * H) for x, y in waypoints]
    assume(all(abs(px.signed_distance(p)) > 0.08 * height + 1.0 for p in wp))
    pts = _trajectory(wp, speed, height, pause=step)
    assert _count(line, pts, height, W, H, step=step) == _count(line, pts, height, W, H)


@settings(max_examples=200)
@given(segments, st.floats(0.2, 0.8), st.floats(0.5, 5.0), st.booleans(), st.floats(20, 40))
def test_a_track_first_seen_inside_the_band_counts_when_it_leaves_on_the_other_side(
        seg, t: float, start: float, lean_left: bool, depth: float) -> None:
    # A close person is confirmed a few frames after they appear, often already near the line.
    line = _line(*seg)
    assume(line.reachable_depth() > depth + 1)
    counter = LineCounter(line, band=0.1)  # 10 px for a 100 px person
    lean = -1 if lean_left else 1
    pts = [_offset_point(line, t, lean * start), _offset_point(line, t, -lean * depth)]
    assert _walk(counter, pts) == ["in" if lean_left else "out"]


@given(segments, st.floats(0.2, 0.8), st.lists(st.floats(-9.0, 9.0), min_size=2, max_size=40), st.floats(20, 40))
def test_a_track_born_inside_the_band_is_not_counted_for_lingering_or_for_leaving_on_its_own_side(
        seg, t: float, jitter: list[float], depth: float) -> None:
    line = _line(*seg)
    assume(line.reachable_depth() > depth + 1)
    assume(abs(jitter[0]) >= 0.5)  # clearly on one side of the line, not lost to rounding
    lean = 1 if jitter[0] > 0 else -1
    counter = LineCounter(line, band=0.1)
    # Standing on the line (inside the 10 px band) never counts, whichever way the box jitters.
    assert _walk(counter, [_offset_point(line, t, d) for d in jitter]) == []
    fresh = LineCounter(line, band=0.1)
    # Walking off on the side it first leaned to is not a crossing either.
    assert _walk(fresh, [_offset_point(line, t, jitter[0]), _offset_point(line, t, lean * depth)]) == []
