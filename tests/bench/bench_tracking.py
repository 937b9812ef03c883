"""Our tracker + counter side by side with the peers on the same PETS09 detections (issue 4).

Peers: Roboflow's ``trackers`` (ByteTrackTracker, OCSORTTracker) with
``supervision``'s LineZone counting the same lines (bottom-centre anchor, as
ours). Benchmark-only dependencies: ``pip install -e '.[peers]'``. Prints
numbers; asserts nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench_sweep import detect_clip, run_peer  # a sibling script: tests/bench is on sys.path

from edgecount.assets.obtain import AssetStore
from edgecount.detection.detector import TFLiteDetector
from edgecount.runtime.settings import load_config
from edgecount.tools.evaluate import count_error, mot_metrics, track_offline
from edgecount_core.groundtruth import parse_mot, true_line_counts

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("yolox_nano", "ssd_mobilenet_v1_coco_quant")


def detections(store: AssetStore, model: str, clip: Path) -> list[tuple[Any, Any]]:
    return detect_clip(TFLiteDetector(store.fetch_model(model), threads=2, min_score=0.05), clip)


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
        results["ByteTrack"] = run_peer(lambda: ByteTrackTracker(frame_rate=10.0), dets, lines, 768, 576)[:3]
        results["OC-SORT"] = run_peer(lambda: OCSORTTracker(frame_rate=10.0), dets, lines, 768, 576)[:3]
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
