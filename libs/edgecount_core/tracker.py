"""A ByteTrack-class multi-object tracker driven by real timestamps.

Per frame:

1. every track's Kalman state is predicted to the frame's timestamp;
2. confirmed and lost tracks are matched to high-confidence detections by IoU;
3. tracks still unmatched are matched to the low-confidence detections (the
   ByteTrack step that keeps a partly hidden person alive);
4. tentative tracks get a chance at the remaining high detections; those that
   miss are dropped;
5. lost tracks are recovered by position and size when the prediction drifted
   too far for any overlap (long occlusions, dropped frames);
6. remaining confident detections start tentative tracks.

When the detections come with their colours (:mod:`edgecount_core.colours`),
every association in steps 2, 3 and 5 also weighs how alike the track's and
the detection's colours are, among the pairs motion already allows: two
people who pass each other then keep their own ids instead of swapping. A
track learns its colours only from detections nobody else overlaps.

A detection whose bottom edge a nearer person's box covers ends at that
person, not at the feet (:func:`edgecount_core.occlusion.feet_hidden`): the
track keeps the height it knows instead, so a walker passing behind another
does not seem to jump up the image and across the lines there. Likewise a
box drawn round two people (it holds the predicted centres of two tracks)
is wider than the person a track follows: the track keeps its own size and
goes where its motion takes it within the box, so two walkers who pass each
other come out of the overlap with their own ids.

Time-outs are in seconds, not frames, so a pipeline that drops frames keeps
its tracks. Only confirmed tracks are reported; tentative ones never count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.assignment import linear_assignment
from edgecount_core.colours import FEATURE_SIZE, similarity
from edgecount_core.occlusion import feet_hidden
from edgecount_core.saved_state import opened

__all__ = ["Track", "Tracker", "TrackerConfig", "TrackerOutput", "iou_matrix"]

F64 = npt.NDArray[np.float64]


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
    """Pairwise IoU of boxes ``[x1, y1, x2, y2]``: shape ``(len(a), len(b))``."""
    aa = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    bb = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if aa.shape[0] == 0 or bb.shape[0] == 0:
        return np.zeros((aa.shape[0], bb.shape[0]))
    ix1 = np.maximum(aa[:, None, 0], bb[None, :, 0])
    iy1 = np.maximum(aa[:, None, 1], bb[None, :, 1])
    ix2 = np.minimum(aa[:, None, 2], bb[None, :, 2])
    iy2 = np.minimum(aa[:, None, 3], bb[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (aa[:, 2] - aa[:, 0]) * (aa[:, 3] - aa[:, 1])
    area_b = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: F64 = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    return out


@attrs.frozen
class TrackerConfig:
    """Thresholds of the tracker; times in seconds."""

    # Defaults for float YOLOX-nano scores, checked on the tuning half of the sweep lines over PETS09-S2L1
    # and its perturbed copies (tests/bench/bench_sweep.py; README "Counting accuracy"). Models whose
    # scores run lower (the int8 YOLOX, the SSD) set their own in their configuration.
    high_score: float = 0.6
    low_score: float = 0.1
    new_track_score: float = 0.7
    match_iou: float = 0.3
    low_match_iou: float = 0.4
    tentative_match_iou: float = 0.3
    tentative_gate: float = 0.15
    tentative_gate_per_s: float = 1.0
    """A new track's next detection may be this far (in its heights) plus this much per second away.

    New tracks have no velocity yet, so overlap alone would lose every walker at a low frame rate."""
    min_hits: int = 2
    confirm_s: float = 0.2
    """A track is confirmed once matched ``min_hits`` times over at least this long (a time, not a frame count)."""
    max_lost_s: float = 1.5
    recovery_distance: float = 0.5
    """Lost-track recovery gate: centre distance in units of the track's height."""
    process_noise: float = 1.0 / 20.0
    velocity_noise: float = 1.0 / 160.0
    measurement_noise: float = 1.0 / 20.0
    reference_dt: float = 0.1
    colour_weight: float = 2.0
    """Weight of colour dissimilarity (1 - Bhattacharyya coefficient) added to every association cost.

    Only where the motion gates already allow the pair: colours choose between people, never add one.
    0 ignores colours."""
    colour_momentum: float = 0.95
    """Share of a track's colours kept at each update; the rest comes from the new detection if nobody overlaps it."""
    complete_hidden_feet: bool = True
    """A detection whose bottom edge a nearer person covers keeps the track's height (its feet are behind them)."""
    wide_box_ratio: float = 1.0
    """A box holding two tracks' predicted centres and this many times wider than the track is two people.

    When one walker passes close behind another the detector often draws one box round both; the track
    that takes it would jump to the pair's middle, lose its velocity and come out of the overlap with
    the wrong person. The track keeps its own size and goes on where its motion takes it, within the
    box. 0 turns it off."""


_EYE8 = np.eye(8)
_H = np.eye(4, 8)


class Track:
    """One tracked person: a constant-velocity Kalman filter on ``[cx, cy, w, h]``."""

    __slots__ = ("born", "cov", "feature", "hits", "last_box", "last_seen", "mean", "score", "state", "track_id")

    def __init__(self, track_id: int, box: F64, score: float, ts: float, cfg: TrackerConfig,
                 feature: F64 | None = None) -> None:
        self.track_id = track_id
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        w, h = box[2] - box[0], box[3] - box[1]
        self.mean: F64 = np.array([cx, cy, w, h, 0, 0, 0, 0], dtype=np.float64)
        p, v = 2 * cfg.process_noise * h, 10 * cfg.velocity_noise * h
        self.cov: F64 = np.diag(np.square([p, p, p, p, v, v, v, v])).astype(np.float64)
        self.hits = 1
        self.score = score
        self.last_seen = ts
        self.born = ts
        self.last_box: F64 = box.astype(np.float64)
        self.state = "tentative"
        self.feature: F64 | None = None if feature is None else feature.copy()

    def predict(self, dt: float, cfg: TrackerConfig) -> None:
        if dt <= 0:
            return
        f = _EYE8.copy()
        f[:4, 4:] = np.eye(4) * (dt / cfg.reference_dt)
        h = max(self.mean[3], 1.0)
        scale = dt / cfg.reference_dt
        p, v = cfg.process_noise * h, cfg.velocity_noise * h
        q = np.diag(np.square([p, p, p, p, v, v, v, v]) * scale)
        self.mean = f @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], 1.0)
        self.cov = f @ self.cov @ f.T + q

    def update(self, box: F64, score: float, ts: float, cfg: TrackerConfig, feature: F64 | None = None,
               feet_covered: bool = False, shared: bool = False) -> None:
        """Take a detection; ``feet_covered`` when a nearer person covers its bottom edge (the box ends at them),
        ``shared`` when the box holds another track too (:meth:`Tracker._holds_two`)."""
        if feet_covered:
            # Only the top of the box is the person's: keep the height the track knows, so the foot point
            # does not jump up to wherever the person in front begins.
            box = box.copy()
            box[3] = max(box[3], box[1] + self.mean[3])
        if shared and box[2] - box[0] > cfg.wide_box_ratio * self.mean[2]:
            # Two people in one box: the track's own size, where its prediction is, moved inside the box.
            box = box.copy()
            for lo, hi, c, size in ((0, 2, self.mean[0], self.mean[2]), (1, 3, self.mean[1], self.mean[3])):
                half = size / 2
                centre = min(max(c, box[lo] + half), box[hi] - half) if box[hi] - box[lo] > size else c
                box[lo], box[hi] = centre - half, centre + half
            feature = None
        if feature is not None:
            m = cfg.colour_momentum
            self.feature = feature.copy() if self.feature is None else m * self.feature + (1 - m) * feature
        z = np.array(
            [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]]
        )
        r_std = cfg.measurement_noise * max(z[3], 1.0)
        r = np.diag(np.square([r_std, r_std, r_std, r_std]))
        s = _H @ self.cov @ _H.T + r
        k = np.linalg.solve(s, _H @ self.cov).T
        self.mean = self.mean + k @ (z - _H @ self.mean)
        self.cov = (_EYE8 - k @ _H) @ self.cov
        self.hits += 1
        self.score = score
        self.last_seen = ts
        self.last_box = box.astype(np.float64)
        confirmable = self.hits >= cfg.min_hits and ts - self.born >= cfg.confirm_s - 1e-6
        if (self.state == "tentative" and confirmable) or self.state == "lost":
            self.state = "confirmed"

    def to_state(self) -> dict[str, Any]:
        return {"id": self.track_id, "mean": self.mean.tolist(), "cov": self.cov.ravel().tolist(),
                "hits": self.hits, "score": self.score, "last_seen": self.last_seen, "born": self.born,
                "last_box": self.last_box.tolist(), "state": self.state,
                "feature": None if self.feature is None else self.feature.tolist()}

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> Track:
        t = cls.__new__(cls)
        t.track_id, t.hits, t.state = int(d["id"]), int(d["hits"]), str(d["state"])
        t.score, t.last_seen, t.born = float(d["score"]), float(d["last_seen"]), float(d["born"])
        t.mean = np.asarray(d["mean"], dtype=np.float64).reshape(8)
        t.cov = np.asarray(d["cov"], dtype=np.float64).reshape(8, 8)
        t.last_box = np.asarray(d["last_box"], dtype=np.float64).reshape(4)
        t.feature = None if d["feature"] is None else np.asarray(d["feature"], dtype=np.float64).reshape(-1)
        return t

    @property
    def box(self) -> F64:
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@attrs.frozen
class TrackerOutput:
    """Confirmed tracks updated in this frame and the ids ended since the last one."""

    rows: F64
    """``(n, 6)``: track_id, x1, y1, x2, y2, score."""
    ended: list[int]


def _assign(cost: F64, max_cost: float) -> tuple[list[tuple[int, int]], set[int], set[int]]:
    if cost.size == 0:
        return [], set(range(cost.shape[0])), set(range(cost.shape[1]))
    rows, cols = linear_assignment(cost)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= max_cost]
    mr = {r for r, _ in matches}
    mc = {c for _, c in matches}
    return (
        matches,
        set(range(cost.shape[0])) - mr,
        set(range(cost.shape[1])) - mc,
    )


def _centre_distance(ref: F64, cand: F64) -> tuple[F64, F64]:
    """Centre distances in units of each reference box's height, and the candidates' height ratios."""
    hs = np.maximum(ref[:, 3] - ref[:, 1], 1.0)
    dc = np.hypot(
        ((ref[:, None, 0] + ref[:, None, 2]) - (cand[None, :, 0] + cand[None, :, 2])) / 2,
        ((ref[:, None, 1] + ref[:, None, 3]) - (cand[None, :, 1] + cand[None, :, 3])) / 2,
    ) / hs[:, None]
    ratio = (cand[None, :, 3] - cand[None, :, 1]) / hs[:, None]
    return dc, ratio


class Tracker:
    """Associates per-frame detections into tracks. Not thread-safe; one per camera."""

    STATE_VERSION = 1

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.cfg = config or TrackerConfig()
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_ts: float | None = None

    def to_state(self) -> dict[str, Any]:
        """Open tracks and the next id as plain data (the configuration is not saved: it comes from the file)."""
        return {"v": self.STATE_VERSION, "next_id": self._next_id, "last_ts": self._last_ts,
                "tracks": [t.to_state() for t in self.tracks]}

    @classmethod
    def from_state(cls, state: Any, config: TrackerConfig | None = None) -> Tracker:
        d = opened(state, "tracker", cls.STATE_VERSION)
        tracker = cls(config)
        tracker._next_id = int(d["next_id"])
        tracker._last_ts = None if d["last_ts"] is None else float(d["last_ts"])
        tracker.tracks = [Track.from_state(t) for t in d["tracks"]]
        return tracker

    def _colour_cost(self, tracks: list[Track], colours: F64 | None, idx: npt.NDArray[np.intp]) -> F64:
        """Colour dissimilarity of tracks and detections ``idx``, weighted; 0 where either has no colours."""
        cost = np.zeros((len(tracks), idx.size))
        if colours is None or self.cfg.colour_weight <= 0:
            return cost
        known = [i for i, t in enumerate(tracks) if t.feature is not None]
        if known:
            sim = similarity(np.stack([tracks[i].feature for i in known]), colours[idx])  # type: ignore[misc]
            cost[known] = self.cfg.colour_weight * (1.0 - sim)
        return cost

    def _holds_two(self, det: F64) -> npt.NDArray[np.bool_]:
        """Detections round two known people: the predicted centres of two confirmed or lost tracks inside."""
        out = np.zeros(len(det), dtype=bool)
        known = [t.mean[:2] for t in self.tracks if t.state != "tentative"]
        if self.cfg.wide_box_ratio <= 0 or len(known) < 2 or not len(det):
            return out
        c = np.stack(known)
        inside = ((c[None, :, 0] > det[:, None, 0]) & (c[None, :, 0] < det[:, None, 2])
                  & (c[None, :, 1] > det[:, None, 1]) & (c[None, :, 1] < det[:, None, 3]))
        out[:] = inside.sum(axis=1) >= 2
        return out

    def _learnable(self, det: F64, sc: F64, colours: F64 | None) -> list[F64 | None]:
        """Each detection's colours if they are its own, None where another person's box overlaps it."""
        if colours is None:
            return [None] * len(det)
        overlap = iou_matrix(det, det)
        np.fill_diagonal(overlap, 0.0)
        shared = np.asarray((overlap[:, sc >= self.cfg.low_score] > 0.1).any(axis=1), dtype=bool)
        return [None if shared[i] else colours[i] for i in range(len(det))]

    def _match_new(self, tentative: list[Track], det: F64, sc: F64, idx: npt.NDArray[np.intp], ts: float,
                   matched_ids: set[int], learn: list[F64 | None],
                   feet: npt.NDArray[np.bool_]) -> tuple[list[Track], npt.NDArray[np.intp]]:
        cfg = self.cfg
        if not tentative or idx.size == 0:
            return tentative, idx
        dc, ratio = _centre_distance(np.stack([t.last_box for t in tentative]), det[idx])
        gate = np.array([cfg.tentative_gate + cfg.tentative_gate_per_s * (ts - t.last_seen) for t in tentative])
        cost = np.where((ratio > 0.7) & (ratio < 1.4) & (dc <= gate[:, None]), dc, 1e6)
        pairs, un_t, un_d = _assign(cost, 1e5)
        for ti, di in pairs:
            tentative[ti].update(det[idx[di]], float(sc[idx[di]]), ts, cfg, learn[idx[di]], bool(feet[idx[di]]))
            matched_ids.add(tentative[ti].track_id)
        return [tentative[i] for i in sorted(un_t)], idx[sorted(un_d)]

    def update(self, boxes: npt.ArrayLike, scores: npt.ArrayLike, ts: float,
               features: npt.ArrayLike | None = None) -> TrackerOutput:
        """One frame. ``features`` are the detections' colours (:func:`edgecount_core.colours.describe`)."""
        cfg = self.cfg
        det = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        colours = None if features is None else np.asarray(features, dtype=np.float64).reshape(len(det), FEATURE_SIZE)
        # Colours of a box another person overlaps are partly theirs: a track does not learn them.
        learn = self._learnable(det, sc, colours)
        dt = 0.0 if self._last_ts is None else max(0.0, ts - self._last_ts)
        self._last_ts = ts
        for t in self.tracks:
            t.predict(dt, cfg)

        # A box whose bottom edge a nearer person covers ends at them, not at the feet.
        candidates = sc >= cfg.low_score
        feet = np.zeros(len(det), dtype=bool)
        if cfg.complete_hidden_feet:
            feet[candidates] = feet_hidden(det[candidates])
        shared = self._holds_two(det)
        high = np.flatnonzero(sc >= cfg.high_score)
        low = np.flatnonzero((sc >= cfg.low_score) & (sc < cfg.high_score))
        pool = [t for t in self.tracks if t.state in ("confirmed", "lost")]
        tentative = [t for t in self.tracks if t.state == "tentative"]
        matched_ids: set[int] = set()

        def match(tracks: list[Track], idx: npt.NDArray[np.intp], min_iou: float) -> tuple[
            list[Track], npt.NDArray[np.intp]
        ]:
            if not tracks or idx.size == 0:
                return tracks, idx
            pred = np.stack([t.box for t in tracks])
            iou = iou_matrix(pred, det[idx])
            cost = np.where(iou >= min_iou, 1.0 - iou, 1e6) + self._colour_cost(tracks, colours, idx)
            pairs, un_t, un_d = _assign(cost, 1e5)
            for ti, di in pairs:
                tracks[ti].update(det[idx[di]], float(sc[idx[di]]), ts, cfg, learn[idx[di]], bool(feet[idx[di]]),
                                  bool(shared[idx[di]]))
                matched_ids.add(tracks[ti].track_id)
            return [tracks[i] for i in sorted(un_t)], idx[sorted(un_d)]

        # 1. confirmed + lost against confident detections
        rest_pool, rest_high = match(pool, high, cfg.match_iou)
        # 2. tracks that were visible last frame against the weak detections
        visible = [t for t in rest_pool if t.state == "confirmed"]
        still_lost = [t for t in rest_pool if t.state == "lost"]
        rest_visible, _ = match(visible, low, cfg.low_match_iou)
        # 3. tentative tracks against what is left of the confident detections, by distance
        rest_tentative, rest_high = self._match_new(tentative, det, sc, rest_high, ts, matched_ids, learn, feet)
        # 4. recover lost (or just-missed) tracks whose prediction drifted off the person
        orphans = still_lost + rest_visible
        if orphans and rest_high.size:
            cand = det[rest_high]
            dc, ratio = _centre_distance(np.stack([t.last_box for t in orphans]), cand)
            cost = np.where((ratio > 0.6) & (ratio < 1.6) & (dc <= cfg.recovery_distance), dc, 1e6)
            cost = cost + self._colour_cost(orphans, colours, rest_high)
            pairs, _un_t, un_d = _assign(cost, 1e5)
            for ti, di in pairs:
                orphans[ti].update(cand[di], float(sc[rest_high[di]]), ts, cfg, learn[rest_high[di]],
                                   bool(feet[rest_high[di]]), bool(shared[rest_high[di]]))
                matched_ids.add(orphans[ti].track_id)
            rest_high = rest_high[sorted(un_d)]

        ended: list[int] = []
        survivors: list[Track] = []
        dropped_tentative = {t.track_id for t in rest_tentative}
        for t in self.tracks:
            if t.track_id in matched_ids:
                survivors.append(t)
                continue
            if t.track_id in dropped_tentative:
                continue
            if t.state == "tentative":
                # born this frame
                survivors.append(t)
                continue
            if ts - t.last_seen > cfg.max_lost_s:
                ended.append(t.track_id)
                continue
            t.state = "lost"
            survivors.append(t)
        for di in rest_high:
            if sc[di] >= cfg.new_track_score:
                survivors.append(Track(self._next_id, det[di], float(sc[di]), ts, cfg, learn[di]))
                self._next_id += 1
        self.tracks = survivors

        out_rows = [
            [t.track_id, *t.box.tolist(), t.score]
            for t in self.tracks
            if t.state == "confirmed" and t.track_id in matched_ids
        ]
        rows: F64 = np.array(out_rows, dtype=np.float64).reshape(-1, 6)
        return TrackerOutput(rows=rows, ended=ended)
