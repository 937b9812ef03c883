"""On-site validation's comparison (edgecount_core.validation): tally files, pairing, accuracies, verdicts."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount_core.validation import (
    TallyError,
    TimedCrossing,
    compare,
    match,
    parse_tally,
    wilson_interval,
)


def _crossings(n: int, seed: int, line: str = "door") -> list[TimedCrossing]:
    rnd = random.Random(seed)
    t = 0.0
    out = []
    for _ in range(n):
        t += rnd.uniform(5.0, 20.0)  # people at least 5 s apart: each tally has one right partner
        out.append(TimedCrossing(t, line, rnd.choice(("in", "out"))))
    return out


@pytest.mark.parametrize("removed,invented", [(0, 0), (3, 0), (0, 4), (5, 7)])
def test_known_removed_and_invented_crossings_are_exactly_the_misses_and_extras(removed: int, invented: int) -> None:
    truth = _crossings(60, seed=removed * 10 + invented)
    rnd = random.Random(1)
    jitter = [TimedCrossing(c.t + rnd.uniform(-1.5, 1.5), c.line, c.direction) for c in truth]
    gone = set(rnd.sample(range(len(truth)), removed))
    device = [c for i, c in enumerate(jitter) if i not in gone]
    # Invented crossings land between people, further than the tolerance from any real one.
    made = [TimedCrossing(truth[i].t + 3.0, "door", "in") for i in rnd.sample(range(len(truth) - 1), invented)]
    report = compare(truth, device + made, ["door"])
    assert report.missed == removed
    assert report.extra == invented
    assert report.matched == len(truth) - removed
    assert sorted(itertools.chain(*(d.missed_at for d in report.lines[0].directions.values()))) == \
        sorted(truth[i].t for i in gone)


def test_optimal_pairing_beats_greedy() -> None:
    # Greedy pairs tally 10.0 with device 9.0 (nearest) and leaves 8.5 unpaired; the optimum pairs both.
    assert sorted(match([8.5, 10.0], [9.0, 11.5], 2.0)) == [(0, 0), (1, 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 600, allow_nan=False), max_size=25),
       st.lists(st.floats(0, 600, allow_nan=False), max_size=25), st.floats(0.1, 5.0), st.randoms())
def test_pairing_does_not_depend_on_order_and_respects_the_tolerance(tally: list[float], device: list[float],
                                                                     tol: float, rnd: random.Random) -> None:
    pairs = match(tally, device, tol)
    assert all(abs(tally[i] - device[j]) <= tol for i, j in pairs)
    assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
    shuffled_t, shuffled_d = tally[:], device[:]
    rnd.shuffle(shuffled_t)
    rnd.shuffle(shuffled_d)
    assert len(match(shuffled_t, shuffled_d, tol)) == len(pairs)
    # No unpaired tally has an unpaired device crossing within reach: the pairing is maximal at least.
    free_t = [t for i, t in enumerate(tally) if i not in {i for i, _ in pairs}]
    free_d = [d for j, d in enumerate(device) if j not in {j for _, j in pairs}]
    assert not any(abs(t - d) <= tol for t in free_t for d in free_d)


def test_wilson_interval_shows_what_few_crossings_cannot_prove() -> None:
    lo, hi = wilson_interval(30, 30)
    assert 0.88 < lo < 0.89 and hi == 1.0
    lo, hi = wilson_interval(98, 100)
    assert 0.92 < lo < 0.94 and 0.99 < hi <= 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_accuracies_and_verdict() -> None:
    truth = _crossings(60, seed=3)
    report = compare(truth, truth[:-2], ["door"])
    assert report.count_accuracy == pytest.approx(58 / 60)
    assert report.event_accuracy == pytest.approx(58 / 60)
    assert report.verdict == "PASS" and report.causes == []
    few = compare(truth[:20], truth[:20], ["door"])
    assert few.verdict == "CHECK" and "only 20 crossings" in few.causes[0]
    extras = compare(truth, truth + [TimedCrossing(c.t + 3.0, "door", "out") for c in truth[:10]], ["door"])
    assert extras.verdict == "CHECK" and any("no tally nearby" in c for c in extras.causes)
    swapped = [TimedCrossing(c.t, c.line, "out" if c.direction == "in" else "in") for c in truth]
    flipped = compare(truth, swapped, ["door"])
    assert any("swapped" in c and "lines flip door" in c for c in flipped.causes)
    data = extras.to_json()
    assert set(data["lines"]["door"]["in"]) >= {"tally", "device", "matched", "missed", "extra"}
    assert data["verdict"] == "CHECK" and len(data["ci95"]) == 2


def test_device_crossings_outside_the_counting_window_are_never_extras() -> None:
    tally = [TimedCrossing(100.0, "door", "in")]
    device = [TimedCrossing(98.5, "door", "in"), TimedCrossing(50.0, "door", "in"), TimedCrossing(100.5, "door", "in")]
    r = compare(tally, device, ["door"], window=(100.0, 100.0)).lines[0].directions["in"]
    assert (r.matched, r.missed, r.extra, r.device) == (1, 0, 0, 1)


def test_parse_tally_both_clocks() -> None:
    t = parse_tally("time,line,direction\n12.5,door,in\n3,door,OUT\n\n", lines=["door"])
    assert not t.absolute and [c.t for c in t.crossings] == [3.0, 12.5]
    a = parse_tally("line,direction,time\ndoor,in,2026-12-04T10:15:03+00:00\n")
    assert a.absolute and a.crossings[0].t == 1796379303.0


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("time,line,direction\n", "no crossing"),
    ("when,line,direction\n1,door,in\n", "row 1"),
    ("time,line,direction\n1,door,in\n2,window,in\n", "row 3: unknown line 'window'"),
    ("time,line,direction\n1,door,in\nnoon,door,in\n", "row 3: time 'noon'"),
    ("time,line,direction\n1,door,sideways\n", "row 2: direction 'sideways'"),
    ("time,line,direction\n1,door\n", "row 2: expected 3 fields"),
    ("time,line,direction\n1,door,in\n2026-12-04T10:00:00,door,in\n", "row 3: mixes"),
    ("time,line,direction\n-4,door,in\n", "row 2"),
    ("time,line,direction\nnan,door,in\n", "row 2"),
])
def test_bad_tally_files_name_the_row(text: str, needle: str) -> None:
    with pytest.raises(TallyError, match=needle):
        parse_tally(text, lines=["door"])
