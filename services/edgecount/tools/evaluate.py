"""Tracking and counting quality against MOTChallenge ground truth.

Metrics come from ``trackeval`` (the MOTChallenge/HOTA reference code): it
supports numpy 2 and adds HOTA, whereas ``motmetrics`` 1.4 still calls the
removed ``np.asfarray``. The data handed to it is prepared as MOTChallenge's
own evaluation does: ground-truth boxes marked ``conf = 0`` are "don't care",
and tracker boxes that match them (IoU >= 0.5) are removed before scoring.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.assignment import linear_assignment
from edgecount_core.camera import CameraCounter
from edgecount_core.counting import CountEvent
from edgecount_core.groundtruth import GroundTruth
from edgecount_core.tracker import iou_matrix

F64 = npt.NDArray[np.float64]


def _relabel(ids: Iterable[int]) -> dict[int, int]:
    return {v: i for i, v in enumerate(sorted(set(ids)))}


def mot_metrics(gt: GroundTruth, hyp: Mapping[int, F64], frames: int) -> dict[str, float]:
    """MOTA, IDF1, HOTA and ID switches of tracker output ``hyp`` (frame -> rows id,x1,y1,x2,y2)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    gt_ids_t: list[npt.NDArray[np.int64]] = []
    tr_ids_t: list[npt.NDArray[np.int64]] = []
    sims: list[F64] = []
    all_gt: set[int] = set()
    all_tr: set[int] = set()
    per_frame = []
    for f in range(1, frames + 1):
        g = gt.boxes_at(f, evaluated_only=False)
        keep_g = gt.rows[(gt.rows[:, 0] == f)][:, 6] > 0
        t = np.asarray(hyp.get(f, np.zeros((0, 5))), dtype=np.float64).reshape(-1, 5)
        ignored = g[~keep_g]
        if len(ignored) and len(t):
            iou = iou_matrix(ignored[:, 1:5], t[:, 1:5])
            r, c = linear_assignment(-iou)
            drop = {int(ci) for ri, ci in zip(r, c, strict=True) if iou[ri, ci] >= 0.5}
            t = t[[i for i in range(len(t)) if i not in drop]]
        g = g[keep_g]
        per_frame.append((g, t))
        all_gt.update(g[:, 0].astype(int).tolist())
        all_tr.update(t[:, 0].astype(int).tolist())
    gmap, tmap = _relabel(all_gt), _relabel(all_tr)
    for g, t in per_frame:
        gt_ids_t.append(np.array([gmap[int(i)] for i in g[:, 0]], dtype=np.int64))
        tr_ids_t.append(np.array([tmap[int(i)] for i in t[:, 0]], dtype=np.int64))
        sims.append(iou_matrix(g[:, 1:5], t[:, 1:5]))
    data: dict[str, Any] = {
        "num_timesteps": frames, "num_gt_ids": len(gmap), "num_tracker_ids": len(tmap),
        "num_gt_dets": int(sum(len(x) for x in gt_ids_t)),
        "num_tracker_dets": int(sum(len(x) for x in tr_ids_t)),
        "gt_ids": gt_ids_t, "tracker_ids": tr_ids_t, "similarity_scores": sims,
    }
    quiet = {"PRINT_CONFIG": False}
    hota = HOTA(quiet).eval_sequence(data)
    clear = CLEAR(quiet).eval_sequence(data)
    ident = Identity(quiet).eval_sequence(data)
    return {"MOTA": float(clear["MOTA"]), "IDF1": float(ident["IDF1"]), "HOTA": float(np.mean(hota["HOTA"])),
            "IDSW": int(clear["IDSW"]), "MT": int(clear["MT"]), "ML": int(clear["ML"]),
            "recall": float(clear["CLR_Re"]), "precision": float(clear["CLR_Pr"])}


def count_error(true: Mapping[str, Mapping[str, int]], counted: Mapping[str, Mapping[str, int]],
                ranges: Mapping[str, Mapping[str, tuple[int, int]]] | None = None) -> dict[str, Any]:
    """Total absolute count error over every line and direction, relative to the true total.

    ``ranges`` (:func:`edgecount_core.groundtruth.true_count_ranges`) adds the tolerant figure: a count
    anywhere between the fewest and most crossings a correct counter may report (crossings within
    0.02 of a segment's end are ambiguous) is off by nothing, one outside by its distance to that range.
    Without it the tolerant figure equals the strict one.
    """
    abs_err = tol_err = total = 0
    per_line = {}
    for name, t in true.items():
        c = counted.get(name, {"in": 0, "out": 0})
        e = abs(c["in"] - t["in"]) + abs(c["out"] - t["out"])
        tol = e
        if ranges is not None and name in ranges:
            tol = sum(max(0, lo - c[d], c[d] - hi) for d, (lo, hi) in ranges[name].items())
        per_line[name] = {"true_in": t["in"], "true_out": t["out"], "in": c["in"], "out": c["out"], "abs_error": e,
                          "tolerant_error": tol}
        abs_err += e
        tol_err += tol
        total += t["in"] + t["out"]
    return {"abs_error": abs_err, "tolerant_error": tol_err, "true_total": total,
            "relative_error": abs_err / total if total else 0.0,
            "tolerant_relative_error": tol_err / total if total else 0.0, "lines": per_line}


def track_offline(
    detections: Sequence[tuple[F64, F64, F64 | None]], fps: float, width: int, height: int, camera: CameraCounter,
    counted: dict[int, CountedFrame] | None = None,
) -> tuple[dict[int, F64], dict[str, dict[str, int]], float]:
    """Run a camera's tracker and counter over cached detections; returns hyp, counts, ms per frame.

    Each frame is ``(boxes, scores, colours)``, colours None when they were not measured.

    ``counted``, when given, receives every frame's tracks and crossings (for :func:`classify_count_errors`).
    """
    import time

    hyp: dict[int, F64] = {}
    spent = 0.0
    for i, (boxes, scores, colours) in enumerate(detections):
        ts = i / fps
        t0 = time.perf_counter()
        out = camera.step(boxes, scores, ts, i + 1, width, height, colours)
        spent += time.perf_counter() - t0
        hyp[i + 1] = out.rows[:, :5]
        if counted is not None:
            counted[i + 1] = CountedFrame(boxes=out.rows[:, 1:5], ids=out.ids, events=out.crossings)
    return hyp, camera.engine.totals(), spent / max(1, len(detections)) * 1000.0


def plot_counts(counts: Mapping[str, Any], path: Path, title: str = "") -> None:
    """A PNG of true against counted ``in`` and ``out`` per line (evaluation only: needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a device or in CI
    import matplotlib.pyplot as plt

    lines = list(counts["lines"])
    x = np.arange(len(lines))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(lines) + 2), 4.5), dpi=100)
    width = 0.2
    for k, (key, label, hatch) in enumerate((("true_in", "true in", ""), ("in", "counted in", "//"),
                                             ("true_out", "true out", ""), ("out", "counted out", "//"))):
        ax.bar(x + (k - 1.5) * width, [counts["lines"][n][key] for n in lines], width, label=label, hatch=hatch,
               color="tab:blue" if "in" in key else "tab:orange", alpha=1.0 if key.startswith("true") else 0.6)
    ax.set_xticks(x, lines, rotation=30, ha="right")
    ax.set_ylabel("people")
    ax.set_title(title or f"true vs counted: {counts['abs_error']} of {counts['true_total']} off "
                          f"({counts['relative_error']:.1%})")
    ax.legend(ncols=2, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


ERROR_CLASSES = ("missed detection", "track break at the line", "counted twice (ID switch)",
                 "jitter near the line", "false detection", "tracked, not counted")


@attrs.frozen
class CountedFrame:
    """One frame of the counter's work: its tracks (under the ids it counted with) and its crossings."""

    boxes: F64
    """``(n, 4)`` x1, y1, x2, y2."""
    ids: list[int]
    """The id each box was counted under (joined id when tracklets are linked)."""
    events: list[CountEvent]


def classify_count_errors(
    gt: GroundTruth, truth_events: Sequence[CountEvent], counted: Mapping[int, CountedFrame], fps: float,
    window_s: float = 2.0,
) -> dict[str, int]:
    """How many counts each kind of mistake cost: every true crossing left unmatched, every counted one extra.

    Crossings are matched per line and direction within ``window_s``. A missed crossing is a *missed
    detection* when the person was found in fewer than half the frames around it, a *track break* when
    different tracks covered them before and after, *tracked, not counted* otherwise; an extra count
    is *counted twice* when the person (IoU >= 0.5 at that frame) did cross there once, *jitter* when
    they did not, a *false detection* when no annotated person was there.
    """
    win = max(1, round(window_s * fps))
    out = dict.fromkeys(ERROR_CLASSES, 0)
    hyp_events = [(seq, ev) for seq, fr in counted.items() for ev in fr.events]
    used: set[int] = set()
    unmatched_truth: list[CountEvent] = []
    for te in sorted(truth_events, key=lambda e: e.seq):
        best, best_dt = -1, win + 1
        for k, (seq, ev) in enumerate(hyp_events):
            if k in used or ev.line != te.line or ev.direction != te.direction:
                continue
            dt = abs(seq - te.seq)
            if dt < best_dt:
                best, best_dt = k, dt
        if best >= 0:
            used.add(best)
        else:
            unmatched_truth.append(te)
    empty = np.zeros((0, 4))

    def person_box(pid: int, f: int) -> F64 | None:
        r = gt.rows[(gt.rows[:, 0] == f) & (gt.rows[:, 1] == pid)]
        return None if not len(r) else np.array([r[0, 2], r[0, 3], r[0, 2] + r[0, 4], r[0, 3] + r[0, 5]])

    for te in unmatched_truth:
        covered = 0
        present = 0
        before: set[int] = set()
        after: set[int] = set()
        for f in range(te.seq - win, te.seq + win + 1):
            box = person_box(te.track_id, f)
            if box is None:
                continue
            present += 1
            fr = counted.get(f)
            boxes = fr.boxes if fr is not None else empty
            if len(boxes):
                iou = iou_matrix(box[None], boxes)[0]
                j = int(np.argmax(iou))
                if iou[j] >= 0.5:
                    covered += 1
                    assert fr is not None
                    (before if f < te.seq else after).add(fr.ids[j])
        if present == 0 or covered < 0.5 * present:
            out["missed detection"] += 1
        elif before and after and not (before & after):
            out["track break at the line"] += 1
        else:
            # One track followed the person through the crossing, yet the counter decided otherwise: the
            # detected feet differ from the annotated ones near the band or a segment's end.
            out["tracked, not counted"] += 1
    crossed = {(te.track_id, te.line) for te in truth_events}
    for k, (seq, ev) in enumerate(hyp_events):
        if k in used:
            continue
        fr = counted[seq]
        j = fr.ids.index(ev.track_id) if ev.track_id in fr.ids else -1
        rows = gt.rows[gt.rows[:, 0] == seq]
        person = -1
        if j >= 0 and len(rows):
            g = np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]])
            iou = iou_matrix(fr.boxes[j][None], g)[0]
            if iou.max() >= 0.5:
                person = int(rows[int(np.argmax(iou)), 1])
        if person < 0:
            out["false detection"] += 1
        elif (person, ev.line) in crossed:
            out["counted twice (ID switch)"] += 1
        else:
            out["jitter near the line"] += 1
    return out
