"""Joining tracklets of one person before they are counted.

Most counting errors left after a good detector are broken tracks: the tracker
loses a person behind someone else and starts a new id when they reappear. If
the gap falls on a line, the crossing is never seen (the old id was on one
side, the new one starts on the other); if the new id starts back on the old
side, the person may be counted twice. The tracker cannot fix this alone: it
has to decide at once, while the counter may decide a moment late (counts
are reported per minute).

The linker sits between the tracker and the counting engine. When a new track
appears, it looks for a joined track that vanished at most ``max_gap_s`` ago,
whose foot point, carried forward at its last velocity, lands near the new
one (within a gate measured in the person's heights that widens with the
gap) and whose size matches. The new track then continues the old identity,
with its side of every line, so the person is counted once. A joined track
is finished (and the engine told to forget it) only when its latest tracklet
has ended and the gap has run out: a zone exit or a forgotten side is
decided up to ``max_gap_s`` late, never wrong for want of waiting.

Pure: time comes in with every call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from edgecount_core.counting import TrackPoint
from edgecount_core.saved_state import opened

__all__ = ["RESERVED_IDS", "Link", "LinkConfig", "TrackletLinker"]

RESERVED_IDS = 1 << 40


@attrs.frozen
class LinkConfig:
    """How far apart in time and space two tracklets may be and still be one person."""

    max_gap_s: float = 2.0
    """Longest time between the last sight of one tracklet and the first of the next; 0 turns linking off."""
    gate: float = 0.8
    """Largest distance from the predicted foot point, in the person's heights, at a gap of zero..."""
    gate_per_s: float = 0.4
    """...growing by this much per second of gap (the person may have turned or stopped)."""
    size_ratio: float = 1.5
    """Largest ratio between the two box heights."""
    max_speed: float = 1.5
    """Prediction speed cap in heights per second (a walking person covers about one height per second)."""


@attrs.frozen
class Link:
    """A new tracklet taken to continue an earlier one."""

    track_id: int
    joined_id: int
    gap_s: float
    distance: float
    """Distance from the predicted foot point, in the person's heights."""


@attrs.define
class _Joined:
    owner: int
    """Raw id of the latest tracklet."""
    point: tuple[float, float]
    height: float
    ts: float
    vx: float = 0.0
    vy: float = 0.0
    owner_ended: bool = False


class TrackletLinker:
    """Maps the tracker's ids to joined ids (the first tracklet's id), one per person."""

    STATE_VERSION = 1

    def __init__(self, config: LinkConfig | None = None) -> None:
        self.cfg = config or LinkConfig()
        self._joined_of: dict[int, int] = {}
        self._joined: dict[int, _Joined] = {}
        self._retired: set[int] = set()
        # Ids for a retired tracklet the tracker re-finds: far above any id the tracker hands out.
        self._next_spare = RESERVED_IDS
        self.links: int = 0

    def to_state(self) -> dict[str, Any]:
        """Who is joined to whom, as plain data."""
        return {"v": self.STATE_VERSION, "joined_of": [[raw, jid] for raw, jid in self._joined_of.items()],
                "joined": [[jid, j.owner, list(j.point), j.height, j.ts, j.vx, j.vy, j.owner_ended]
                           for jid, j in self._joined.items()],
                "retired": sorted(self._retired), "next_spare": self._next_spare, "links": self.links}

    @classmethod
    def from_state(cls, state: Any, config: LinkConfig | None = None) -> TrackletLinker:
        d = opened(state, "linker", cls.STATE_VERSION)
        linker = cls(config)
        linker._joined_of = {int(raw): int(jid) for raw, jid in d["joined_of"]}
        linker._joined = {int(jid): _Joined(owner=int(owner), point=(float(pt[0]), float(pt[1])), height=float(h),
                                            ts=float(ts), vx=float(vx), vy=float(vy), owner_ended=bool(ended))
                          for jid, owner, pt, h, ts, vx, vy, ended in d["joined"]}
        linker._retired = {int(raw) for raw in d["retired"]}
        linker._next_spare, linker.links = int(d["next_spare"]), int(d["links"])
        return linker

    def update(
        self, points: Sequence[TrackPoint], ts: float, ended: Iterable[int] = ()
    ) -> tuple[list[TrackPoint], list[int], list[Link]]:
        """One frame: points under joined ids, joined ids finished now, and links made now."""
        cfg = self.cfg
        seen_now: set[int] = set()
        out: list[TrackPoint | None] = [None] * len(points)
        fresh: list[int] = []
        for i, tp in enumerate(points):
            jid = self._joined_of.get(tp.track_id)
            if jid is None:
                fresh.append(i)
                continue
            self._observe(jid, tp, ts)
            seen_now.add(jid)
            out[i] = TrackPoint(jid, tp.point, tp.height)

        links = self._link(points, fresh, ts, seen_now) if cfg.max_gap_s > 0 else []
        linked = {lk.track_id: lk.joined_id for lk in links}
        for i in fresh:
            tp = points[i]
            jid = linked.get(tp.track_id, -1)
            if jid >= 0:
                self._observe(jid, tp, ts)
            else:
                jid = tp.track_id
                if jid in self._retired:
                    jid, self._next_spare = self._next_spare, self._next_spare + 1
                self._joined[jid] = _Joined(owner=tp.track_id, point=tp.point, height=tp.height, ts=ts)
            self._joined_of[tp.track_id] = jid
            seen_now.add(jid)
            out[i] = TrackPoint(jid, tp.point, tp.height)

        for raw in ended:
            self._retired.discard(raw)
            jid = self._joined_of.pop(raw, None)
            if jid is not None and jid in self._joined and self._joined[jid].owner == raw:
                self._joined[jid].owner_ended = True
        finished = [jid for jid, j in self._joined.items()
                    if j.owner_ended and ts - j.ts >= cfg.max_gap_s and jid not in seen_now]
        for jid in finished:
            del self._joined[jid]
        return [tp for tp in out if tp is not None], finished, links

    def _observe(self, jid: int, tp: TrackPoint, ts: float) -> None:
        j = self._joined[jid]
        dt = ts - j.ts
        if dt > 0:
            # A light average: foot points jitter by a few pixels from frame to frame.
            vx, vy = (tp.point[0] - j.point[0]) / dt, (tp.point[1] - j.point[1]) / dt
            j.vx, j.vy = 0.7 * j.vx + 0.3 * vx, 0.7 * j.vy + 0.3 * vy
        j.point, j.height, j.ts = tp.point, tp.height, ts

    def _link(self, points: Sequence[TrackPoint], fresh: list[int], ts: float, seen_now: set[int]) -> list[Link]:
        cfg = self.cfg
        waiting = {jid: j for jid, j in self._joined.items()
                   if jid not in seen_now and 0 < ts - j.ts <= cfg.max_gap_s}
        if not waiting or not fresh:
            return []
        candidates: list[tuple[float, int, int, float]] = []
        for i in fresh:
            tp = points[i]
            for jid, j in waiting.items():
                h = max(j.height, 1.0)
                if not (1 / cfg.size_ratio <= max(tp.height, 1.0) / h <= cfg.size_ratio):
                    continue
                gap = ts - j.ts
                speed = math.hypot(j.vx, j.vy)
                scale = min(1.0, cfg.max_speed * h / speed) if speed > 0 else 1.0
                px, py = j.point[0] + j.vx * scale * gap, j.point[1] + j.vy * scale * gap
                dist = math.hypot(tp.point[0] - px, tp.point[1] - py) / h
                if dist <= cfg.gate + cfg.gate_per_s * gap:
                    candidates.append((dist, i, jid, gap))
        links: list[Link] = []
        used_points: set[int] = set()
        used_joined: set[int] = set()
        for dist, i, jid, gap in sorted(candidates):
            if i in used_points or jid in used_joined:
                continue
            used_points.add(i)
            used_joined.add(jid)
            old_owner = self._joined[jid].owner
            # The old tracklet is over for counting: if the tracker re-finds it, it starts afresh.
            self._joined_of.pop(old_owner, None)
            self._retired.add(old_owner)
            j = self._joined[jid]
            j.owner, j.owner_ended = points[i].track_id, False
            links.append(Link(track_id=points[i].track_id, joined_id=jid, gap_s=gap, distance=dist))
        self.links += len(links)
        return links
