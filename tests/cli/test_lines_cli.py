"""Placing lines (issue 31): `lines list`, `flip`, `remove`, which way counts as in, errors in plain words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecount.cli import main
from edgecount_core.counting import LineCounter
from edgecount_core.geometry import Line

CONFIG = """# the shop door
[[lines]]
name = "door"   # over the mat
a = [0.1, 0.7]
b = [0.9, 0.7]

[[lines]]
name = "aisle"
a = [0.5, 0.2]
b = [0.5, 1.0]
"""

STEP = {"right": (1, 0), "down-right": (1, 1), "down": (0, 1), "down-left": (-1, 1), "left": (-1, 0),
        "up-left": (-1, -1), "up": (0, -1), "up-right": (1, -1)}


def _lines(capfd: pytest.CaptureFixture[str], cfg: Path) -> dict[str, dict[str, object]]:
    capfd.readouterr()
    assert main(["lines", "list", "--config", str(cfg), "--json"]) == 0
    return {r["name"]: r for r in json.loads(capfd.readouterr().out)["lines"]}


def test_list_flip_remove_keep_the_file_and_say_which_way_is_in(tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    (cfg := tmp_path / "c.toml").write_text(CONFIG)
    lines = _lines(capfd, cfg)
    assert (lines["door"]["in"], lines["aisle"]["in"]) == ("down", "left")
    assert main(["lines", "flip", "door", "--config", str(cfg)]) == 0
    assert "now counts as out" in capfd.readouterr().out
    lines = _lines(capfd, cfg)
    assert lines["door"]["a"] == [0.9, 0.7] and lines["door"]["in"] == "up"
    assert main(["lines", "remove", "aisle", "--config", str(cfg)]) == 0
    assert set(_lines(capfd, cfg)) == {"door"}
    text = cfg.read_text()
    assert "# the shop door" in text and "# over the mat" in text  # the technician's comments survive
    assert main(["lines", "remove", "aisle", "--config", str(cfg)]) == 2
    assert "no line 'aisle' (lines: door)" in capfd.readouterr().err
    assert main(["lines", "list", "--config", str(cfg)]) == 0
    assert "walking up" in capfd.readouterr().out


def test_set_says_which_way_counts_as_in(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (cfg := tmp_path / "c.toml").write_text(CONFIG)
    assert main(["lines", "set", "gate", "0.2,0.2,0.2,0.9", "--config", str(cfg)]) == 0
    assert "people walking left on screen count as in" in capfd.readouterr().out


@pytest.mark.parametrize("name,coords,needle", [
    ("front door", "0.1,0.5,0.9,0.5", "no spaces"),
    ("door", "0.1,0.5,0.1,0.5", "two different ends"),
    ("door", "0.1,0.5,1.4,0.5", "0,0 is the top left"),
])
def test_line_errors_are_plain_words_naming_the_fix(tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str,
                                                    coords: str, needle: str) -> None:
    (cfg := tmp_path / "c.toml").write_text(CONFIG)
    assert main(["lines", "set", name, coords, "--config", str(cfg)]) == 2
    text = " ".join(capfd.readouterr().err.split())
    assert needle in text and "pydantic" not in text and "validation error" not in text
    assert cfg.read_text() == CONFIG


@given(st.tuples(st.floats(0.05, 0.95), st.floats(0.05, 0.95)), st.tuples(st.floats(0.05, 0.95),
                                                                              st.floats(0.05, 0.95)))
def test_walking_the_stated_way_counts_in_and_flipping_reverses_it(a: tuple[float, float],
                                                                    b: tuple[float, float]) -> None:
    from hypothesis import assume

    assume(abs(a[0] - b[0]) + abs(a[1] - b[1]) > 0.2)
    line = Line("x", a, b)
    for ln, expected in ((line, "in"), (line.flipped(), "out")):
        dx, dy = STEP[line.in_heading()]
        mid = ((a[0] + b[0]) / 2 * 1000, (a[1] + b[1]) / 2 * 1000)
        counter = LineCounter(ln.to_pixels(1000, 1000), band=0.02)
        got = []
        for k in range(-30, 31):  # a walk of 60 steps of 10 px through the segment's middle, 100 px tall
            ev = counter.update(1, (mid[0] + dx * 10 * k, mid[1] + dy * 10 * k), k * 0.1, k + 31, 100.0)
            if ev is not None:
                got.append(ev.direction)
        # The heading is the nearest of 8: for a line within 22.5 degrees of it the walk still crosses.
        assert got == [expected]
