"""Our tracker + counter side by side with the peers on the same PETS09 detections (issue 4).

Peers: Roboflow's ``trackers`` (ByteTrackTracker, OCSORTTracker) with
``supervision``'s LineZone counting the same lines (bottom-centre anchor, as
ours). Benchmark-only dependencies: ``pip install -e '.[peers]'``. Prints
numbers; asserts nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecount.detection.detector import TFLiteDetector
from edgecount.runtime.assets import AssetStore
from edgecount.runtime.settings import load_config
from edgecount.tools.evaluate import count_error, mot_metrics, track_offline
from edgecount_core.groundtruth import parse_mot, true_line_counts

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("yolox_nano", "ssd_mobilenet_v1_coco_quant")


def detections(store: AssetStore, model: str, clip: Path) -> list[tuple[Any, Any]]:
    det = TFLiteDetector(store.fetch_model(model), threads=2, min_score=0.05)
    cap = cv2.VideoCapture(str(clip))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        d, _ = det.detect(frame)
        out.append((d.boxes.astype(np.float64), d.scores.astype(np.float64)))
    return out


def run_peer(make: Any, dets: list[tuple[Any, Any]], lines: list[Any]) -> tuple[dict[int, Any], dict[str, Any], float]:
    import supervision as sv

    tracker = make()
    zones = [sv.LineZone(start=sv.Point(ln.a[0] * 768, ln.a[1] * 576), end=sv.Point(ln.b[0] * 768, ln.b[1] * 576),
                         triggering_anchors=[sv.Position.BOTTOM_CENTER]) for ln in lines]
    hyp: dict[int, Any] = {}
    spent = 0.0
    for i, (boxes, scores) in enumerate(dets):
        d = sv.Detections(xyxy=boxes.astype(np.float32).reshape(-1, 4), confidence=scores.astype(np.float32),
                          class_id=np.zeros(len(scores), dtype=int))
        t0 = time.perf_counter()
        tracked = tracker.update(d)
        for z in zones:
            z.trigger(tracked)
        spent += time.perf_counter() - t0
        if tracked.tracker_id is not None and len(tracked):
            keep = tracked.tracker_id >= 0
            hyp[i + 1] = np.column_stack([tracked.tracker_id[keep], tracked.xyxy[keep]])
    counts = {ln.name: {"in": z.in_count, "out": z.out_count} for ln, z in zip(lines, zones, strict=True)}
    return hyp, counts, spent / len(dets) * 1000.0


def main() -> int:
    try:
        from trackers import ByteTrackTracker, OCSORTTracker
    except ImportError:
        print("peers not installed: pip install -e '.[peers]'", file=sys.stderr)
        return 2
    cfg = load_config(ROOT / "config" / "demo.toml")
    lines = cfg.geometry_lines()
    store = AssetStore.for_config(cfg)
    clip = store.fetch_clip("pets09")
    gt = parse_mot(store.fetch_clip("pets09_gt").read_text())
    truth = true_line_counts(gt, lines, 768, 576)
    rows = []
    crossings = sum(v["in"] + v["out"] for v in truth.values())
    print(f"# tracking side by side on PETS09-S2L1, {len(lines)} lines, {crossings} true crossings", flush=True)
    print(f"{'model':28} {'tracker':10} {'MOTA':>6} {'IDF1':>6} {'HOTA':>6} {'IDSW':>5} {'count err':>10} "
          f"{'ms/frame':>9}")
    for model in MODELS:
        dets = detections(store, model, clip)
        ours_hyp, ours_counts, ours_ms = track_offline(dets, 10.0, 768, 576, cfg.camera_counter())
        results = {"edgecount": (ours_hyp, ours_counts, ours_ms)}
        results["ByteTrack"] = run_peer(lambda: ByteTrackTracker(frame_rate=10.0), dets, lines)
        results["OC-SORT"] = run_peer(lambda: OCSORTTracker(frame_rate=10.0), dets, lines)
        for name, (hyp, counts, ms) in results.items():
            m = mot_metrics(gt, hyp, len(dets))
            ce = count_error(truth, counts)
            rows.append({"model": model, "tracker": name, **m, "count_error": ce["relative_error"],
                         "count_abs_error": ce["abs_error"], "ms_per_frame": ms})
            print(f"{model:28} {name:10} {m['MOTA']:6.3f} {m['IDF1']:6.3f} {m['HOTA']:6.3f} {m['IDSW']:5d} "
                  f"{ce['relative_error']:9.1%} {ms:9.3f}", flush=True)
        for peer in ("ByteTrack", "OC-SORT"):
            print(f"  {model}: {peer} takes {results[peer][2] / ours_ms:.2f}x our time per frame")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
