"""Lines you can see (issue 31): a labelled grid, each line in its own colour with its direction, and where
feet were seen, as an aggregate only."""

from __future__ import annotations

import numpy as np
import pytest

from edgecount.tools.preview import LINE_COLOURS, draw
from edgecount_core.config import parse_config
from edgecount_core.foot_heat import FootHeat

CFG = parse_config({"lines": [{"name": "door", "a": [0.1, 0.5], "b": [0.9, 0.5]},
                              {"name": "aisle", "a": [0.3, 0.1], "b": [0.3, 0.9]}]})
NONE = np.zeros((0, 4), np.float32)


def _has(img: np.ndarray, colour: tuple[int, int, int], region: tuple[slice, slice]) -> bool:
    return bool((np.abs(img[region].astype(int) - colour).sum(axis=2) < 30).any())


def test_each_line_has_its_colour_and_an_arrow_to_its_in_side() -> None:
    img = np.full((480, 640, 3), 90, np.uint8)
    draw(img, CFG, NONE, np.zeros(0, np.float32), redact=True)
    door, aisle = LINE_COLOURS[0], LINE_COLOURS[1]
    assert _has(img, door, (slice(238, 242), slice(400, 560)))  # along door (y = 0.5), right of the arrow
    assert _has(img, aisle, (slice(330, 420), slice(190, 194)))  # along aisle (x = 0.3)
    # door runs left to right: "in" is down the picture. Its arrow's head (the wings beside the shaft) is below
    # the line, its plain tail above.
    assert _has(img, door, (slice(255, 268), slice(306, 314)))
    assert not _has(img, door, (slice(212, 225), slice(306, 314)))
    # aisle runs top to bottom: "in" is to the left.
    assert _has(img, aisle, (slice(228, 235), slice(163, 178)))
    assert not _has(img, aisle, (slice(228, 235), slice(206, 221)))
    # The grid: a light line at every tenth of the frame.
    assert (img[:, 64] > 180).all(axis=1).mean() > 0.5


def test_feet_seen_are_drawn_as_an_aggregate() -> None:
    heat = FootHeat()
    for k in range(100):
        heat.add(1000.0 + k, [(0.75, 0.85)])  # many feet at one place
    grid = heat.grid()
    assert grid.sum() == 100 and grid[int(0.85 * 27), int(0.75 * 48)] == 100
    plain = np.full((270, 480, 3), 90, np.uint8)
    hot = plain.copy()
    draw(hot, parse_config({}), NONE, np.zeros(0, np.float32), redact=True, heat=grid)
    draw(plain, parse_config({}), NONE, np.zeros(0, np.float32), redact=True)
    cell = (slice(int(0.85 * 270) - 2, int(0.85 * 270) + 2), slice(int(0.75 * 480) + 2, int(0.75 * 480) + 6))
    assert (hot[cell] != plain[cell]).any()
    far = (slice(20, 24), slice(100, 104))
    assert (hot[far] == plain[far]).all()


def test_the_grid_forgets_what_is_older_than_its_window() -> None:
    heat = FootHeat(window_s=600.0)
    heat.add(0.0, [(0.5, 0.5)])
    heat.add(30.0, [(0.5, 0.5)])
    heat.add(900.0, [(0.1, 0.1)])
    assert heat.grid().sum() == 1
    with pytest.raises(ValueError):
        FootHeat.from_json({"rows": 2, "cols": 2, "counts": [[1, -1], [0, 0]]})
    assert FootHeat.from_json(heat.to_json(900.0)).sum() == 1
