"""Everything one camera's detections go through to become counts.

Tracker, tracklet linker and counting engine are always chained in this
order; the counter service, the offline evaluation and the benchmarks all
call :meth:`CameraCounter.step` (or :meth:`CameraCounter.count` on tracks
recorded from the tracker) so the chain is written once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.counting import DEFAULT_BAND, CountEvent, CountingEngine, ZoneChange, foot_points
from edgecount_core.geometry import Line, Polygon
from edgecount_core.linking import Link, LinkConfig, TrackletLinker
from edgecount_core.tracker import Tracker, TrackerConfig

__all__ = ["CameraCounter", "Step"]


@attrs.frozen
class Step:
    """What one frame produced."""

    rows: npt.NDArray[np.float64]
    """The tracker's confirmed tracks ``(n, 6)``: raw track_id, x1, y1, x2, y2, score."""
    ended: list[int]
    """Raw track ids the tracker gave up."""
    ids: list[int]
    """The id each row is counted under (the joined id of its person)."""
    crossings: list[CountEvent]
    zone_changes: list[ZoneChange]
    links: list[Link]


class CameraCounter:
    """Tracker, linker and counting engine of one camera."""

    def __init__(
        self,
        lines: Sequence[Line],
        zones: Sequence[Polygon] = (),
        tracker: TrackerConfig | None = None,
        link: LinkConfig | None = None,
        band: float = DEFAULT_BAND,
    ) -> None:
        self.tracker = Tracker(tracker)
        self.linker = TrackletLinker(link)
        self.engine = CountingEngine(lines, zones, band=band)

    def to_state(self) -> dict[str, Any]:
        """The three parts' state, each versioned on its own (:mod:`edgecount_core.saved_state`)."""
        return {"tracker": self.tracker.to_state(), "linker": self.linker.to_state(), "engine": self.engine.to_state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take up ``state`` under this counter's configuration; raises (changing nothing) if a part is unreadable."""
        tracker = Tracker.from_state(state["tracker"], self.tracker.cfg)
        linker = TrackletLinker.from_state(state["linker"], self.linker.cfg)
        e = self.engine
        engine = CountingEngine.from_state(state["engine"], e.lines, e.zones, band=e.band)
        self.tracker, self.linker, self.engine = tracker, linker, engine

    def step(
        self, boxes: npt.ArrayLike, scores: npt.ArrayLike, ts: float, seq: int, width: int, height: int,
        features: npt.ArrayLike | None = None,
    ) -> Step:
        """Track, link and count one frame of detections (``features``: their colours, if measured)."""
        out = self.tracker.update(boxes, scores, ts, features)
        return self.count(out.rows, out.ended, ts, seq, width, height)

    def count(
        self, rows: npt.NDArray[np.float64], ended: Sequence[int], ts: float, seq: int, width: int, height: int
    ) -> Step:
        """Link and count one frame of tracker output (rows ``id, x1, y1, x2, y2, ...``), e.g. recorded tracks."""
        points, finished, links = self.linker.update(foot_points(rows), ts, ended)
        crossings, changes = self.engine.update(width, height, points, ts, seq, ended=finished)
        return Step(rows=rows, ended=list(ended), ids=[p.track_id for p in points], crossings=crossings,
                    zone_changes=changes, links=links)
