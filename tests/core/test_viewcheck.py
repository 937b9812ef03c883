"""The technician's view check: people overlapping at a line, and their size, judged per line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecount.cli import main
from edgecount_core.geometry import Line
from edgecount_core.viewcheck import FLAT_SHARE, MIN_PEOPLE, ViewSurvey

W, H = 640, 480
LINE = Line("door", (0.5, 0.0), (0.5, 1.0))


def _person(cx: float, feet: float, h: float) -> list[float]:
    return [cx - 0.2 * h, feet - h, cx + 0.2 * h, feet]


def _survey(frames: list[list[list[float]]]) -> ViewSurvey:
    s = ViewSurvey([LINE])
    for boxes in frames:
        s.add(np.array(boxes).reshape(-1, 4), np.full(len(boxes), 0.9), W, H)
    return s


def test_people_walking_apart_make_a_good_view_and_groups_a_flat_one() -> None:
    apart = [[_person(300 + i, 400, 150), _person(330 - i, 250, 100)] for i in range(40)]
    assert _survey(apart).report()[0].verdict == "ok"
    # Pairs at head height: the farther walker half behind the nearer one, right at the line.
    pairs = [[_person(320, 420, 200), _person(340, 380, 170)] for _ in range(40)]
    view = _survey(pairs).report()[0]
    assert view.verdict == "flat" and view.overlap_share >= FLAT_SHARE
    assert "mount the camera higher" in view.advice and "walk apart" in view.advice


def test_too_few_people_small_people_and_people_cut_off_are_said_plainly() -> None:
    few = _survey([[_person(320, 400, 150)]] * (MIN_PEOPLE - 1)).report()[0]
    assert few.verdict == "unknown" and "busy time" in few.advice
    small = _survey([[_person(320, 300, 20)]] * MIN_PEOPLE).report()[0]
    assert small.verdict == "small" and small.median_height < 0.06
    tall = _survey([[_person(320, 480, 470)]] * MIN_PEOPLE).report()[0]
    assert tall.verdict == "tall"
    far_from_line = _survey([[_person(100, 400, 150)]] * 100).report()[0]
    assert far_from_line.sightings == 0  # feet 1.5 heights from the line: not at it


@given(st.lists(st.tuples(st.floats(0, W), st.floats(1, H), st.floats(5, 300), st.floats(0, 1)), max_size=10),
       st.integers(1, 4))
def test_the_survey_never_fails_and_is_the_same_at_any_resolution(people: list[tuple[float, float, float, float]],
                                                                   k: int) -> None:
    boxes = np.array([_person(cx, feet, h) for cx, feet, h, _ in people]).reshape(-1, 4)
    scores = np.array([s for *_, s in people])
    a, b = ViewSurvey([LINE]), ViewSurvey([LINE])
    for _ in range(3):
        a.add(boxes, scores, W, H)
        b.add(boxes * k, scores, W * k, H * k)
    ra, rb = a.report()[0], b.report()[0]
    assert (ra.sightings, ra.overlap_share, ra.verdict) == (rb.sightings, rb.overlap_share, rb.verdict)
    assert 0.0 <= ra.overlap_share <= 1.0


def test_doctor_view_judges_a_street_level_clip_line_by_line(tud_clip: Path, yolox_model, tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "street.toml"
    cfg.write_text(f'[runtime]\ndir = "{tmp_path / "run"}"\nstate_dir = "{tmp_path / "state"}"\n'
                   f'[capture]\nsource = "{tud_clip}"\n[inference]\nmodel = "yolox_nano"\n'
                   '[[lines]]\nname = "street"\na = [0.666, 0.0]\nb = [0.666, 1.0]\n'
                   '[[lines]]\nname = "sky"\na = [0.0, 0.05]\nb = [1.0, 0.05]\n')
    rc = main(["doctor", "--view", "--seconds", "7", "--config", str(cfg), "--json"])
    report = json.loads(capfd.readouterr().out)
    views = {c["name"]: c for c in report["checks"] if c["name"].startswith("view at")}
    assert set(views) == {"view at street", "view at sky"}
    # 7 s of the 25 fps clip: pairs walk through the street line; nobody walks in the sky.
    assert "overlapping" in views["view at street"]["detail"] and "175 frames" in views["view at street"]["detail"]
    assert views["view at sky"]["status"] == "warn" and "busy time" in views["view at sky"]["fix"]
    assert rc == (1 if any(c["status"] == "fail" for c in report["checks"]) else 0)
