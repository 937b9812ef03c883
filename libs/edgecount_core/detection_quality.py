"""Person-detection quality against ground truth: precision, recall and AP at IoU 0.5.

Ground-truth boxes flagged as not evaluated (MOTChallenge ``conf = 0``) are
"don't care": a detection on one is neither a hit nor a false alarm.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.tracker import iou_matrix

__all__ = ["DetectionQuality", "detection_quality"]

F64 = npt.NDArray[np.float64]


@attrs.frozen
class DetectionQuality:
    precision: float
    recall: float
    ap50: float
    gt_boxes: int
    detections: int


def detection_quality(gt: Mapping[int, tuple[F64, F64]], det: Mapping[int, tuple[F64, F64]],
                      score_threshold: float = 0.5, iou: float = 0.5) -> DetectionQuality:
    """``gt``: frame -> (evaluated boxes, ignored boxes); ``det``: frame -> (boxes, scores)."""
    records: list[tuple[float, int]] = []  # (score, 1 = true positive / 0 = false positive)
    n_gt = 0
    for frame, (g, ignored) in gt.items():
        g = np.asarray(g, dtype=np.float64).reshape(-1, 4)
        n_gt += len(g)
        boxes, scores = det.get(frame, (np.zeros((0, 4)), np.zeros(0)))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        taken = np.zeros(len(g), dtype=bool)
        m = iou_matrix(boxes[order], g) if len(g) else np.zeros((len(order), 0))
        ign = iou_matrix(boxes[order], np.asarray(ignored, dtype=np.float64).reshape(-1, 4))
        for k, i in enumerate(order):
            best = -1
            if m.shape[1]:
                cand = np.where(~taken, m[k], -1.0)
                j = int(np.argmax(cand))
                if cand[j] >= iou:
                    best = j
            if best >= 0:
                taken[best] = True
                records.append((float(scores[i]), 1))
            elif ign.shape[1] and float(ign[k].max()) >= iou:
                continue
            else:
                records.append((float(scores[i]), 0))
    if not records or n_gt == 0:
        return DetectionQuality(0.0, 0.0, 0.0, n_gt, len(records))
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records])
    fp = np.cumsum([1 - r[1] for r in records])
    rec = tp / n_gt
    prec = tp / np.maximum(tp + fp, 1)
    # All-points interpolated AP (precision made monotone from the right).
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mrec = np.concatenate([[0.0], rec, [rec[-1]]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    ap = float(np.sum((mrec[1:] - mrec[:-1]) * mprec[1:]))
    at = [r for r in records if r[0] >= score_threshold]
    tp_t = sum(r[1] for r in at)
    return DetectionQuality(precision=tp_t / len(at) if at else 0.0, recall=tp_t / n_gt, ap50=ap,
                            gt_boxes=n_gt, detections=len(records))
