"""Line-crossing and zone counters fed with confirmed tracks.

A track's side of a line only changes once its foot point leaves a band
around the line, so a person standing on the line and the jitter of their box
never produce counts. The band is a fraction of the person's own box height,
never a number of pixels: a camera at another resolution, or a person farther
away, gets the same decision (and nothing depends on the frame rate: only
positions are compared). A side change is counted only when the move from the
last point on the old side to the first point on the new side meets the line
within the segment A-B (with a small margin).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from edgecount_core.geometry import Line, PixelLine, PixelPolygon, Point, Polygon, bottom_centre
from edgecount_core.saved_state import opened

__all__ = ["DEFAULT_BAND", "DEFAULT_EXTENT_MARGIN", "CountEvent", "CountingEngine", "LineCounter", "TrackPoint",
           "ZoneChange", "ZoneCounter", "foot_points"]


DEFAULT_BAND = 0.1
"""Half-width of the hysteresis band, in units of the person's box height."""

DEFAULT_EXTENT_MARGIN = 0.05
"""How far beyond a segment's ends a crossing still counts, as a share of the segment's length."""


@attrs.frozen
class TrackPoint:
    """A confirmed track's foot point at one moment, with its box height (the person's scale)."""

    track_id: int
    point: Point
    height: float


def foot_points(rows: Iterable[Sequence[Any]]) -> list[TrackPoint]:
    """Rows ``id, x1, y1, x2, y2, ...`` (tracker output or ground truth) as each track's foot point."""
    return [TrackPoint(int(r[0]), bottom_centre(r[1], r[2], r[3], r[4]), float(r[4] - r[2])) for r in rows]


@attrs.frozen
class CountEvent:
    line: str
    direction: str
    track_id: int
    ts: float
    seq: int

    @property
    def event_id(self) -> str:
        return f"{self.line}:{self.seq}:{self.track_id}:{self.direction}"


@attrs.frozen
class ZoneChange:
    zone: str
    kind: str
    track_id: int
    ts: float
    seq: int
    occupancy: int
    dwell_s: float

    @property
    def event_id(self) -> str:
        return f"{self.zone}:{self.seq}:{self.track_id}:{self.kind}"


@attrs.define
class _SideState:
    side: int  # -1, +1, or 0 while unknown (first seen inside the band)
    anchor: Point  # last point seen clearly on ``side`` (the first point while ``side`` is 0)
    leaning: int = 0  # while ``side`` is 0: the side of the line the first point was on, however close


class LineCounter:
    """Counts crossings of one line by many tracks."""

    def __init__(self, line: PixelLine, band: float = DEFAULT_BAND,
                 extent_margin: float = DEFAULT_EXTENT_MARGIN) -> None:
        self.line = line
        # A band wider than the frame lets a person reach on one side could never be left.
        self.max_band_px = max(0.0, 0.45 * line.reachable_depth())
        self.band = band
        self.extent_margin = extent_margin
        self.n_in = 0
        self.n_out = 0
        self._state: dict[int, _SideState] = {}

    def _side(self, p: Point, height: float) -> tuple[int, int]:
        """The side ``p`` is clearly on (0 inside the band), and the side it leans to (0 exactly on the line)."""
        band = min(self.band * max(height, 0.0), self.max_band_px)
        d = float(self.line.signed_distance(p))
        leaning = int(d > 0) - int(d < 0)
        return (leaning if abs(d) > band else 0), leaning

    def update(self, track_id: int, p: Point, ts: float, seq: int, height: float) -> CountEvent | None:
        """Feed one foot point of ``track_id`` whose box is ``height`` pixels tall."""
        side, leaning = self._side(p, height)
        state = self._state.get(track_id)
        if state is None:
            self._state[track_id] = _SideState(side=side, anchor=p, leaning=leaning if side == 0 else 0)
            return None
        if side == 0:
            return None
        # A track first seen inside the band (a big, close person is confirmed a few frames after they
        # appear, often already near the line) counts when it leaves the band on the side it did not lean to.
        previous = state.side or state.leaning
        if previous == 0 or side == previous:
            state.side, state.anchor, state.leaning = side, p, 0
            return None
        t = self.line.crossing_parameter(state.anchor, p)
        state.leaning = 0
        state.side, state.anchor = side, p
        if t is None or not (-self.extent_margin <= t <= 1.0 + self.extent_margin):
            return None
        direction = "in" if previous < 0 < side else "out"
        if direction == "in":
            self.n_in += 1
        else:
            self.n_out += 1
        return CountEvent(line=self.line.name, direction=direction, track_id=track_id, ts=ts, seq=seq)

    def forget(self, track_ids: Iterable[int]) -> None:
        for tid in track_ids:
            self._state.pop(tid, None)

    def to_state(self) -> list[Any]:
        return [self.n_in, self.n_out,
                [[tid, s.side, list(s.anchor), s.leaning] for tid, s in self._state.items()]]

    def restore(self, state: Sequence[Any]) -> None:
        n_in, n_out, sides = state
        self.n_in, self.n_out = int(n_in), int(n_out)
        self._state = {int(tid): _SideState(int(side), (float(a[0]), float(a[1])), int(leaning))
                       for tid, side, a, leaning in sides}


@attrs.define
class _ZoneState:
    inside: bool
    since: float


class ZoneCounter:
    """Occupancy, entries, exits and dwell time of one polygon zone."""

    def __init__(self, zone: PixelPolygon, band: float = DEFAULT_BAND) -> None:
        self.zone = zone
        self.band = band
        self.entries = 0
        self.exits = 0
        self._state: dict[int, _ZoneState] = {}

    @property
    def occupancy(self) -> int:
        return sum(1 for s in self._state.values() if s.inside)

    def update(self, track_id: int, p: Point, ts: float, seq: int, height: float) -> ZoneChange | None:
        depth = self.zone.signed_depth(p)
        band = self.band * max(height, 0.0)
        state = self._state.get(track_id)
        if state is None:
            if abs(depth) > band or depth > 0:
                self._state[track_id] = _ZoneState(inside=depth > 0, since=ts)
            return None
        if not state.inside and depth > band:
            state.inside, state.since = True, ts
            self.entries += 1
            return ZoneChange(self.zone.name, "enter", track_id, ts, seq, self.occupancy, 0.0)
        if state.inside and depth < -band:
            dwell = ts - state.since
            state.inside, state.since = False, ts
            self.exits += 1
            return ZoneChange(self.zone.name, "exit", track_id, ts, seq, self.occupancy, dwell)
        return None

    def forget(self, track_ids: Iterable[int], ts: float, seq: int) -> list[ZoneChange]:
        """Tracks that ended: those inside leave the zone (their dwell ends now)."""
        out: list[ZoneChange] = []
        for tid in track_ids:
            state = self._state.pop(tid, None)
            if state is not None and state.inside:
                self.exits += 1
                out.append(
                    ZoneChange(self.zone.name, "exit", tid, ts, seq, self.occupancy, ts - state.since)
                )
        return out

    def to_state(self) -> list[Any]:
        return [self.entries, self.exits, [[tid, s.inside, s.since] for tid, s in self._state.items()]]

    def restore(self, state: Sequence[Any]) -> None:
        entries, exits, inside = state
        self.entries, self.exits = int(entries), int(exits)
        self._state = {int(tid): _ZoneState(bool(ins), float(since)) for tid, ins, since in inside}


class CountingEngine:
    """All lines and zones of one camera, bound to its frame size on the first frame."""

    STATE_VERSION = 1

    def __init__(
        self,
        lines: Sequence[Line],
        zones: Sequence[Polygon] = (),
        band: float = DEFAULT_BAND,
    ) -> None:
        self.lines = list(lines)
        self.zones = list(zones)
        self.band = band
        self._size: tuple[int, int] | None = None
        self.line_counters: list[LineCounter] = []
        self.zone_counters: list[ZoneCounter] = []

    def _bind(self, width: int, height: int) -> None:
        self._size = (width, height)
        self.line_counters = [LineCounter(ln.to_pixels(width, height), self.band) for ln in self.lines]
        self.zone_counters = [ZoneCounter(z.to_pixels(width, height), self.band) for z in self.zones]

    def update(
        self,
        width: int,
        height: int,
        tracks: Sequence[TrackPoint],
        ts: float,
        seq: int,
        ended: Iterable[int] = (),
    ) -> tuple[list[CountEvent], list[ZoneChange]]:
        """Feed one frame: the confirmed tracks seen in it and the ids the tracker ended.

        A track missing from ``tracks`` but not ended (hidden for a moment) keeps
        its side of every line, so it is counted when it reappears across it.
        """
        if self._size != (width, height):
            # A resolution change invalidates every pixel position; start clean.
            self._bind(width, height)
        crossings: list[CountEvent] = []
        changes: list[ZoneChange] = []
        gone = list(ended)
        for zc in self.zone_counters:
            changes.extend(zc.forget(gone, ts, seq))
        for lc in self.line_counters:
            lc.forget(gone)
        for t in tracks:
            for lc in self.line_counters:
                ev = lc.update(t.track_id, t.point, ts, seq, t.height)
                if ev is not None:
                    crossings.append(ev)
            for zc in self.zone_counters:
                ch = zc.update(t.track_id, t.point, ts, seq, t.height)
                if ch is not None:
                    changes.append(ch)
        return crossings, changes

    def to_state(self) -> dict[str, Any]:
        """Each line's and zone's sides and totals with its geometry, and the frame size they are bound to."""
        return {"v": self.STATE_VERSION, "size": None if self._size is None else list(self._size),
                "lines": [[lc.line.name, [*lc.line.a, *lc.line.b], lc.to_state()] for lc in self.line_counters],
                "zones": [[zc.zone.name, [c for p in zc.zone.points for c in p], zc.to_state()]
                          for zc in self.zone_counters]}

    @classmethod
    def from_state(cls, state: Any, lines: Sequence[Line], zones: Sequence[Polygon] = (),
                   band: float = DEFAULT_BAND) -> CountingEngine:
        """The engine for ``lines`` and ``zones`` as saved.

        A line or zone that is new, or was moved since, starts empty: sides taken against the old
        geometry would count a crossing nobody made. The others keep every track's side.
        """
        d = opened(state, "counting engine", cls.STATE_VERSION)
        engine = cls(lines, zones, band=band)
        if d["size"] is None:
            return engine
        engine._bind(int(d["size"][0]), int(d["size"][1]))
        saved_lines = {(name, tuple(geom)): st for name, geom, st in d["lines"]}
        for lc in engine.line_counters:
            line_state = saved_lines.get((lc.line.name, (*lc.line.a, *lc.line.b)))
            if line_state is not None:
                lc.restore(line_state)
        saved_zones = {(name, tuple(geom)): st for name, geom, st in d["zones"]}
        for zc in engine.zone_counters:
            zone_state = saved_zones.get((zc.zone.name, tuple(c for p in zc.zone.points for c in p)))
            if zone_state is not None:
                zc.restore(zone_state)
        return engine

    def totals(self) -> dict[str, dict[str, int]]:
        out = {lc.line.name: {"in": lc.n_in, "out": lc.n_out} for lc in self.line_counters}
        for ln in self.lines:
            out.setdefault(ln.name, {"in": 0, "out": 0})
        return out
