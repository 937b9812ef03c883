"""Where feet were seen over the last minutes: what a technician needs to place a line where people walk.

A coarse grid (48 x 27 cells over the picture) of how many confirmed people's foot points fell in each
cell, per minute of stream time, summed over the last ``window_s``. Only these counts are kept: no
position, time or identity of anyone. ``edgecount preview`` draws it under the lines.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["FootHeat"]


@attrs.define
class FootHeat:
    cols: int = 48
    rows: int = 27
    window_s: float = 600.0
    slice_s: float = 60.0
    slices: deque[tuple[float, npt.NDArray[np.int32]]] = attrs.field(factory=deque)

    def add(self, ts: float, feet: Iterable[tuple[float, float]]) -> None:
        """Foot points in normalised coordinates (0..1), seen at stream time ``ts``."""
        start = ts - ts % self.slice_s
        if not self.slices or self.slices[-1][0] != start:
            self.slices.append((start, np.zeros((self.rows, self.cols), np.int32)))
        while self.slices and self.slices[0][0] <= ts - self.window_s - self.slice_s:
            self.slices.popleft()
        grid = self.slices[-1][1]
        for x, y in feet:
            if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0:
                grid[min(self.rows - 1, int(y * self.rows)), min(self.cols - 1, int(x * self.cols))] += 1

    def grid(self) -> npt.NDArray[np.int32]:
        out = np.zeros((self.rows, self.cols), np.int32)
        for _, g in self.slices:
            out += g
        return out

    def to_json(self, until: float) -> dict[str, Any]:
        return {"cols": self.cols, "rows": self.rows, "window_s": self.window_s, "until": until,
                "counts": self.grid().tolist()}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> npt.NDArray[np.int32]:
        """The grid a :meth:`to_json` wrote; ``ValueError`` when it is not one."""
        grid = np.asarray(data["counts"], dtype=np.int32)
        if grid.shape != (int(data["rows"]), int(data["cols"])) or (grid < 0).any():
            raise ValueError("not a foot grid")
        return grid
