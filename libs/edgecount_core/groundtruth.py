"""MOTChallenge ground truth: parsing, and true line counts from its trajectories."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.counting import (
    DEFAULT_EXTENT_MARGIN,
    CountEvent,
    CountingEngine,
    LineCounter,
    TrackPoint,
    foot_points,
)
from edgecount_core.geometry import Line

__all__ = ["END_TOLERANCE", "GroundTruth", "parse_mot", "true_count_ranges", "true_line_counts", "true_line_events"]

END_TOLERANCE = 0.02
"""How close (normalised) to a segment's end a crossing is ambiguous: the annotated foot point is uncertain
by about that much, so such a crossing may be counted or not."""


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
            row = [float(p) for p in parts[:7]]
        except ValueError:
            raise ValueError(f"ground truth line {n}: non-numeric field") from None
        if not all(np.isfinite(row)):
            raise ValueError(f"ground truth line {n}: a field is NaN or infinite")
        if row[0] < 1 or row[0] != int(row[0]):
            raise ValueError(f"ground truth line {n}: frame {parts[0].strip()} is not a frame number (1, 2, ...)")
        rows.append(row)
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
    for f, pts, ended in _walk(gt, frames):
        crossings, _ = engine.update(width, height, pts, ts=f / fps, seq=f, ended=ended)
        events += crossings
    return engine.totals(), events


def _walk(gt: GroundTruth, frames: Iterable[int] | None) -> Iterator[tuple[int, list[TrackPoint], list[int]]]:
    """Every frame's annotated foot points, and the identities whose last annotated frame was the one before."""
    seen_last: dict[int, int] = {}
    frame_ids = sorted(set(gt.rows[:, 0].astype(int))) if frames is None else list(frames)
    all_ids = set(gt.rows[:, 1].astype(int))
    for f in frame_ids:
        pts = foot_points(gt.boxes_at(f, evaluated_only=False))
        for p in pts:
            seen_last[p.track_id] = f
        present = {p.track_id for p in pts}
        yield f, pts, [i for i in all_ids if seen_last.get(i) == f - 1 and i not in present]


def true_count_ranges(
    gt: GroundTruth, lines: Sequence[Line], width: int, height: int, band: float = 0.02,
    tolerance: float = END_TOLERANCE, frames: Iterable[int] | None = None,
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per line and direction, the fewest and most crossings a correct counter may report.

    A crossing whose point lies within ``tolerance`` (normalised) of a segment's end, or of where the
    counter stops counting beyond it (its 5 % margin), is ambiguous: the low end of the range leaves all
    of them out, the high end counts all of them.
    """
    bounds: dict[str, tuple[LineCounter, LineCounter]] = {}
    for ln in lines:
        pixels = ln.to_pixels(width, height)
        share = tolerance / max(float(np.hypot(ln.b[0] - ln.a[0], ln.b[1] - ln.a[1])), 1e-9)
        bounds[ln.name] = (LineCounter(pixels, band, extent_margin=-share),
                           LineCounter(pixels, band, extent_margin=DEFAULT_EXTENT_MARGIN + share))
    for f, pts, ended in _walk(gt, frames):
        for pair in bounds.values():
            for counter in pair:
                counter.forget(ended)
                for p in pts:
                    counter.update(p.track_id, p.point, 0.0, f, p.height)
    return {name: {"in": (narrow.n_in, wide.n_in), "out": (narrow.n_out, wide.n_out)}
            for name, (narrow, wide) in bounds.items()}
