"""Counting accuracy over the sweep lines and perturbed copies, on cached detections (issue 13).

For each shipped configuration (the Edge TPU one runs its CPU twin here), the
clip and its perturbed copies are run through the configuration's detector
once (cached under the cache directory), then through our tracker, linker and
counter, and through the peers (Roboflow ``trackers`` + supervision
``LineZone``, if installed) on the same detections. Reports the held-out
half of the sweep lines and, for ours, the effect of tracklet linking.
The whole-pipeline figures come from ``edgecount eval --sweep``; this is the
fast loop for tuning (tune lines only) and for the side-by-side.

    python tests/bench/bench_sweep.py [--configs a.toml,b.toml] [--variants original,mirrored]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecount.detection.models import resolve_model, startup_model
from edgecount.detection.tiling import configured_detector
from edgecount.runtime.assets import AssetStore
from edgecount.runtime.settings import load_config
from edgecount.tools.evaluate import count_error, mot_metrics, track_offline
from edgecount.tools.sweep import VARIANTS, make_variant, split_lines, summarise, sweep_lines, transform_truth
from edgecount_core.colours import FEATURE_SIZE, describe
from edgecount_core.config import Config
from edgecount_core.groundtruth import parse_mot, true_line_counts

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("config/edgecount.toml", "config/edgetpu.toml")


def cpu_config(cfg: Config, store: AssetStore) -> Config:
    """The configuration with the model it runs without an accelerator (an Edge TPU one runs its fallback)."""
    if cfg.inference.device == "cpu":
        return cfg
    data = cfg.model_dump(mode="json")
    data["inference"].update(device="cpu", model=startup_model(cfg, store))
    return Config.model_validate(data)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecount" / "sweep"
    base.mkdir(parents=True, exist_ok=True)
    return base


def detections(cfg: Config, store: AssetStore, video: Path) -> list[tuple[Any, Any, Any]]:
    inf = cfg.inference
    files = resolve_model(inf.model, store)
    key = hashlib.sha256(json.dumps([str(files.model), inf.min_score, inf.tiles, inf.tile_overlap, inf.resize,
                                     video.name, video.stat().st_size, "colours", FEATURE_SIZE]).encode()
                         ).hexdigest()[:16]
    path = cache_dir() / f"dets-{key}.npz"
    if path.exists():
        z = np.load(path)
        return [(z[f"b{i}"], z[f"s{i}"], z[f"c{i}"]) for i in range(int(z["n"]))]
    out = detect_clip(configured_detector(inf, files, "cpu"), video)
    arrays = {f"{kind}{i}": a for i, frame in enumerate(out) for kind, a in zip("bsc", frame, strict=True)}
    np.savez(path, n=len(out), **arrays)
    return out


def detect_clip(det: Any, video: Path) -> list[tuple[Any, Any, Any]]:
    """Every frame's detections (boxes, scores, colours) of a video, as the inference service sends them."""
    cap = cv2.VideoCapture(str(video))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        d, _ = det.detect(frame)
        out.append((d.boxes.astype(np.float64), d.scores.astype(np.float64), describe(frame, d.boxes)))
    cap.release()
    return out


def run_peer(make: Any, dets: list[tuple[Any, Any, Any]], lines: list[Any], w: int, h: int) -> tuple[
        dict[int, Any], dict[str, Any], float]:
    """A peer tracker with supervision's LineZone on our lines: its tracks, counts and ms per frame."""
    import supervision as sv

    tracker = make()
    zones = [sv.LineZone(start=sv.Point(ln.a[0] * w, ln.a[1] * h), end=sv.Point(ln.b[0] * w, ln.b[1] * h),
                         triggering_anchors=[sv.Position.BOTTOM_CENTER]) for ln in lines]
    hyp: dict[int, Any] = {}
    spent = 0.0
    for i, (boxes, scores, _colours) in enumerate(dets):
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
    # supervision's "in" for a line A->B is our "out": a walk left to right across a line from top to bottom
    # is supervision's in_count and our "out" (README, "Counting convention").
    counts = {ln.name: {"in": z.out_count, "out": z.in_count} for ln, z in zip(lines, zones, strict=True)}
    return hyp, counts, spent / max(1, len(dets)) * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    lines = sweep_lines()
    tune, held = split_lines(lines)
    try:
        from trackers import OCSORTTracker as peer_tracker
    except ImportError:
        peer_tracker = None
        print("# peers not installed (pip install -e '.[peers]'): ours only", file=sys.stderr)
    rows = []
    print(f"# {len(lines)} sweep lines: tune on {len(tune)}, report the {len(held)} held out; "
          "error = |counted - true| summed over lines and directions / true crossings", flush=True)
    print(f"{'configuration':22} {'variant':11} {'tracker':14} {'held-out':>9} {'worst':>9} {'tune':>7} "
          f"{'IDF1':>6} {'no-link':>8}")
    for cfg_name in args.configs.split(","):
        base = load_config(ROOT / cfg_name)
        store = AssetStore.for_config(base)
        cfg = cpu_config(base, store)
        clip = store.fetch_clip("pets09")
        gt = parse_mot(store.fetch_clip("pets09_gt").read_text())
        for vname in args.variants.split(","):
            v = VARIANTS[vname]
            video = clip if vname == "original" else cache_dir() / f"{clip.stem}-{v.name}.avi"
            if not video.exists():
                video, _, _ = make_variant(clip, v, cache_dir())
            cap = cv2.VideoCapture(str(video))
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            cap.release()
            fps = 10.0 / v.step
            full, kept = transform_truth(gt, v, 768)
            truth = true_line_counts(full, lines, w, h, fps=10.0)
            t0 = time.perf_counter()
            dets = detections(cfg, store, video)
            det_s = time.perf_counter() - t0
            results: dict[str, tuple[dict[int, Any] | None, dict[str, Any]]] = {}
            hyp, counts, _ = track_offline(dets, fps, w, h, cfg.camera_counter(lines))
            results["edgecount"] = (hyp, counts)
            data = cfg.model_dump(mode="json")
            data["counting"]["link_gap_s"] = 0.0
            _, nolink, _ = track_offline(dets, fps, w, h, Config.model_validate(data).camera_counter(lines))
            if peer_tracker is not None:
                results["OC-SORT+LineZone"] = (None, run_peer(lambda m=peer_tracker, r=fps: m(frame_rate=r), dets,
                                                              lines, w, h)[1])
            for tname, (thyp, tcounts) in results.items():
                ce = count_error(truth, tcounts)
                s_held, s_tune = summarise(ce, [ln.name for ln in held]), summarise(ce, [ln.name for ln in tune])
                idf1 = mot_metrics(kept, thyp, len(dets))["IDF1"] if thyp is not None else float("nan")
                nl = (summarise(count_error(truth, nolink), [ln.name for ln in held])["relative_error"]
                      if tname == "edgecount" else float("nan"))
                rows.append({"config": cfg_name, "model": cfg.inference.model, "variant": vname, "tracker": tname,
                             "held_out": s_held, "tune": s_tune, "IDF1": idf1, "held_out_without_linking": nl,
                             "detect_s": det_s})
                print(f"{Path(cfg_name).stem:22} {vname:11} {tname:14} {s_held['relative_error']:8.1%} "
                      f"{s_held['worst_abs_error']:3d}/{s_held['worst_true']:<3d}  {s_tune['relative_error']:6.1%} "
                      f"{idf1:6.3f} {nl:7.1%}", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
