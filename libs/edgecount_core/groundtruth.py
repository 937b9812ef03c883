"""MOTChallenge ground truth: parsing, and true line counts from its trajectories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.counting import CountEvent, CountingEngine, foot_points
from edgecount_core.geometry import Line

__all__ = ["GroundTruth", "parse_mot", "true_line_counts", "true_line_events"]


@attrs.frozen
class GroundTruth:
    """Rows ``frame, id, x, y, w, h, conf`` (frame 1-based), sorted by frame."""

    rows: npt.NDArray[np.float64]

    def frames(self) -> int:
        return int(self.rows[:, 0].max()) if self.rows.size else 0

    def boxes_at(self, frame: int, evaluated_only: bool = True) -> npt.NDArray[np.float64]:
        sel = self.rows[:, 0] == frame
        if evaluated_only:
            sel &= self.rows[:, 6] > 0
        r = self.rows[sel]
        return np.column_stack([r[:, 1], r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]])


def parse_mot(text: str) -> GroundTruth:
    rows = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split(",")
        if len(parts) < 7:
            raise ValueError(f"ground truth line {n}: expected at least 7 comma-separated fields")
        try:
            rows.append([float(p) for p in parts[:7]])
        except ValueError:
            raise ValueError(f"ground truth line {n}: non-numeric field") from None
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return GroundTruth(arr[np.lexsort((arr[:, 1], arr[:, 0]))])


def true_line_counts(
    gt: GroundTruth, lines: Sequence[Line], width: int, height: int, fps: float = 10.0,
    band: float = 0.02, frames: Iterable[int] | None = None,
) -> dict[str, dict[str, int]]:
    """Count line crossings of the ground-truth trajectories, with the counter's convention.

    Every annotated box counts (also those MOTChallenge marks as not evaluated:
    a partly hidden person still crosses the line).
    """
    return true_line_events(gt, lines, width, height, fps, band, frames)[0]


def true_line_events(
    gt: GroundTruth, lines: Sequence[Line], width: int, height: int, fps: float = 10.0,
    band: float = 0.02, frames: Iterable[int] | None = None,
) -> tuple[dict[str, dict[str, int]], list[CountEvent]]:
    """:func:`true_line_counts` and each true crossing (``seq`` is the frame, ``track_id`` the person)."""
    events: list[CountEvent] = []
    engine = CountingEngine(lines, band=band)
    seen_last: dict[int, int] = {}
    frame_ids = sorted(set(gt.rows[:, 0].astype(int))) if frames is None else list(frames)
    all_ids = set(gt.rows[:, 1].astype(int))
    for f in frame_ids:
        b = gt.boxes_at(f, evaluated_only=False)
        pts = foot_points(b)
        for p in pts:
            seen_last[p.track_id] = f
        # An identity leaves for good after its last annotated frame.
        ended = [i for i in all_ids if seen_last.get(i) == f - 1 and i not in {p.track_id for p in pts}]
        crossings, _ = engine.update(width, height, pts, ts=f / fps, seq=f, ended=ended)
        events += crossings
    return engine.totals(), events
