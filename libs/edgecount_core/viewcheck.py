"""Is this camera view good for counting at these lines? Measured from detections, before counts are trusted.

Where the camera hangs is the largest factor a technician controls. Seen from
high above, walkers of a group stay apart; seen from head or chest height, the
nearer person hides the farther one exactly where they cross, and a counter
undercounts groups whatever its tracker does. This survey watches a stretch
of detections and reports, per counting line, how many people came near it,
how often they overlapped another person there, and how big they were, with a
plain verdict and what to change. Only these aggregates are kept: no box, no
track, no image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.geometry import Line
from edgecount_core.occlusion import cover_by_nearer

__all__ = [
    "FLAT_SHARE",
    "MIN_PEOPLE",
    "NEAR_LINE",
    "OVERLAP",
    "SMALL_HEIGHT",
    "TALL_HEIGHT",
    "WARN_SHARE",
    "LineView",
    "ViewSurvey",
]

NEAR_LINE = 0.5
"""A person is at a line when their feet are within this many of their own heights of the segment."""
OVERLAP = 0.3
"""A person overlaps another when one of the two hides at least this share of the other's box."""
FLAT_SHARE = 0.25
"""At least this share of the people at a line overlapping: the view is too flat, groups will be undercounted."""
WARN_SHARE = 0.10
"""At least this share: counts of groups will suffer; worth improving."""
MIN_PEOPLE = 30
"""Fewer person sightings at a line than this say nothing yet: survey at a busier time."""
SMALL_HEIGHT = 0.06
"""People smaller than this share of the frame height (median) are hard to detect and to place."""
TALL_HEIGHT = 0.8
"""People taller than this share of the frame height (median) are cut off at the edges: feet are guessed."""


@attrs.frozen
class LineView:
    """What the survey saw at one line."""

    line: str
    sightings: int
    """Person detections whose feet were near the line (one person seen in 30 frames counts 30 times)."""
    overlap_share: float
    """Share of those sightings in which the person overlapped another (hid them, or was hidden)."""
    median_height: float
    """Median person height there, as a share of the frame height."""
    verdict: str
    """``ok``, ``warn`` (groups will suffer), ``flat`` (too flat: groups undercounted), ``small``, ``tall``, or
    ``unknown`` (too few people seen)."""
    advice: str


@attrs.define
class _Tally:
    sightings: int = 0
    overlapping: int = 0
    heights: list[float] = attrs.Factory(list)


class ViewSurvey:
    """Accumulates detections of one camera; :meth:`report` judges each line."""

    def __init__(self, lines: Sequence[Line], min_score: float = 0.5) -> None:
        self.lines = list(lines)
        self.min_score = min_score
        self.frames = 0
        self._tally = {ln.name: _Tally() for ln in self.lines}

    def add(self, boxes: npt.ArrayLike, scores: npt.ArrayLike, width: int, height: int) -> None:
        """One frame's person boxes ``[x1, y1, x2, y2]`` (pixels) and scores, of a ``width`` x ``height`` frame."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        b = b[np.isfinite(b).all(axis=1) & (s >= self.min_score)]
        self.frames += 1
        if not len(b) or width <= 0 or height <= 0:
            return
        # Hidden by a nearer person (a row of the cover matrix), or hiding a farther one (a column).
        overlaps = cover_by_nearer(b) >= OVERLAP
        involved = overlaps.any(axis=1) | overlaps.any(axis=0)
        h = np.maximum(b[:, 3] - b[:, 1], 1.0)
        feet = np.column_stack([(b[:, 0] + b[:, 2]) / 2, b[:, 3]])
        for ln in self.lines:
            px = ln.to_pixels(width, height)
            near = _segment_distance(feet, px.a, px.b) <= NEAR_LINE * h
            t = self._tally[ln.name]
            t.sightings += int(near.sum())
            t.overlapping += int((near & involved).sum())
            t.heights.extend((h[near] / height).tolist())

    def report(self) -> list[LineView]:
        return [self._judge(ln.name, self._tally[ln.name]) for ln in self.lines]

    @staticmethod
    def _judge(name: str, t: _Tally) -> LineView:
        share = t.overlapping / t.sightings if t.sightings else 0.0
        med = float(np.median(t.heights)) if t.heights else 0.0
        if t.sightings < MIN_PEOPLE:
            verdict, advice = "unknown", (f"only {t.sightings} person sightings near the line (need {MIN_PEOPLE}): "
                                          "survey again at a busy time, or check the line lies where people walk")
        elif share >= FLAT_SHARE:
            verdict, advice = "flat", (f"people overlap in {share:.0%} of sightings here: the view is too flat and "
                                       "groups walking together will be undercounted; mount the camera higher and "
                                       "tilt it down, or move the line to where people walk apart")
        elif med < SMALL_HEIGHT:
            verdict, advice = "small", (f"people are only {med:.0%} of the frame height here: move the camera "
                                        "closer, zoom in, or set inference.tiles")
        elif med > TALL_HEIGHT:
            verdict, advice = "tall", (f"people fill {med:.0%} of the frame height here and their feet leave the "
                                       "picture: mount the camera higher or further away, or move the line "
                                       "farther from the camera")
        elif share >= WARN_SHARE:
            verdict, advice = "warn", (f"people overlap in {share:.0%} of sightings here: some groups will be "
                                       "undercounted; a higher mount or a line where people walk apart helps")
        else:
            verdict, advice = "ok", f"people overlap in {share:.0%} of sightings; {med:.0%} of the frame tall"
        return LineView(name, t.sightings, round(share, 3), round(med, 3), verdict, advice)


def _segment_distance(p: npt.NDArray[np.float64], a: tuple[float, float], b: tuple[float, float]) -> npt.NDArray[
        np.float64]:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    length2 = dx * dx + dy * dy
    if length2 <= 0 or not math.isfinite(length2):
        out: npt.NDArray[np.float64] = np.hypot(p[:, 0] - ax, p[:, 1] - ay)
        return out
    t = np.clip(((p[:, 0] - ax) * dx + (p[:, 1] - ay) * dy) / length2, 0.0, 1.0)
    dist: npt.NDArray[np.float64] = np.hypot(p[:, 0] - (ax + t * dx), p[:, 1] - (ay + t * dy))
    return dist
