"""Counting accuracy per scene over the sweep lines and perturbed copies, on cached detections.

For each shipped configuration (the Edge TPU one runs its CPU twin here),
each scene (PETS09-S2L1, TUD-Stadtmitte, and any ``--scene NAME=VIDEO,GT``)
and each perturbed copy of it, the video is run through the configuration's
detector once (cached under the cache directory), then through our tracker,
linker and counter, and through the peers on the same detections: Roboflow
``trackers`` OC-SORT and ByteTrack, each counted by supervision's
``LineZone`` and by the plain crossing rule (the foot point changing sides
within the segment, no band). Reports the held-out half of the sweep lines,
strict and tolerant (a crossing within 0.02 of a segment's end may be
counted or not), and whether ours beats every peer in every scene. The
whole-pipeline figures come from ``edgecount eval --sweep``; this is the fast
loop for tuning (PETS09's tuning lines only) and for the side-by-side.

    python tests/bench/bench_sweep.py [--configs a.toml,b.toml] [--scenes pets09,tud,NAME=VIDEO,GT]
                                      [--variants original,mirrored]
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

from edgecount.assets.obtain import AssetStore
from edgecount.detection.model_files import resolve_model, startup_model
from edgecount.detection.tiling import configured_detector
from edgecount.runtime.settings import load_config
from edgecount.tools.evaluate import count_error, mot_metrics, track_offline
from edgecount.tools.scenes import Scene, load_scenes, parse_scene
from edgecount.tools.sweep import VARIANTS, make_variant, split_lines, summarise, sweep_lines, transform_truth
from edgecount_core.colours import FEATURE_SIZE, describe
from edgecount_core.config import Config
from edgecount_core.counting import CountingEngine, foot_points
from edgecount_core.groundtruth import true_count_ranges, true_line_counts

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


PEERS = {
    # name: (tracker factory taking the frame rate, lowest score handed to it)
    "OC-SORT": (lambda fps: __import__("trackers").OCSORTTracker(frame_rate=fps, high_conf_det_threshold=0.3), 0.3),
    "ByteTrack": (lambda fps: __import__("trackers").ByteTrackTracker(frame_rate=fps, track_activation_threshold=0.5),
                  0.1),
}
"""The peers as the accuracy issue measured them: OC-SORT on detections from 0.3, ByteTrack activating at 0.5."""


def run_peer(make: Any, dets: list[tuple[Any, Any, Any]], lines: list[Any], w: int, h: int,
             min_score: float = 0.0) -> tuple[dict[int, Any], dict[str, Any], float, dict[str, Any]]:
    """A peer tracker on our lines: its tracks, supervision LineZone's counts, ms per frame, plain-rule counts."""
    import supervision as sv

    tracker = make()
    zones = [sv.LineZone(start=sv.Point(ln.a[0] * w, ln.a[1] * h), end=sv.Point(ln.b[0] * w, ln.b[1] * h),
                         triggering_anchors=[sv.Position.BOTTOM_CENTER]) for ln in lines]
    # The plain crossing rule: our counting engine with no hysteresis band.
    plain = CountingEngine(lines, band=0.0)
    hyp: dict[int, Any] = {}
    spent = 0.0
    for i, (boxes, scores, _colours) in enumerate(dets):
        keep = scores >= min_score
        d = sv.Detections(xyxy=boxes[keep].astype(np.float32).reshape(-1, 4),
                          confidence=scores[keep].astype(np.float32), class_id=np.zeros(int(keep.sum()), dtype=int))
        t0 = time.perf_counter()
        tracked = tracker.update(d)
        for z in zones:
            z.trigger(tracked)
        spent += time.perf_counter() - t0
        if tracked.tracker_id is not None and len(tracked):
            ok = tracked.tracker_id >= 0
            hyp[i + 1] = np.column_stack([tracked.tracker_id[ok], tracked.xyxy[ok]])
            plain.update(w, h, foot_points(hyp[i + 1]), i, i + 1)
    # supervision's "in" for a line A->B is our "out": a walk left to right across a line from top to bottom
    # is supervision's in_count and our "out" (README, "Counting convention").
    counts = {ln.name: {"in": z.out_count, "out": z.in_count} for ln, z in zip(lines, zones, strict=True)}
    return hyp, counts, spent / max(1, len(dets)) * 1000.0, plain.totals()


def _copy(scene: Scene, vname: str) -> tuple[Path, int, int]:
    v = VARIANTS[vname]
    video = scene.video if vname == "original" else cache_dir() / f"{scene.video.stem}-{v.name}.avi"
    if not video.exists():
        video, _, _ = make_variant(scene.video, v, cache_dir())
    cap = cv2.VideoCapture(str(video))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return video, w, h


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--scenes", default="pets09,tud", help="built-in names or NAME=VIDEO,GT, separated by ';'"
                    " or ','")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    lines = sweep_lines()
    tune, held = split_lines(lines)
    tn, hn = [ln.name for ln in tune], [ln.name for ln in held]
    try:
        import supervision  # noqa: F401
        import trackers  # noqa: F401
        peers = dict(PEERS)
    except ImportError:
        peers = {}
        print("# peers not installed (pip install -e '.[peers]'): ours only", file=sys.stderr)
    specs = [parse_scene(s) for s in (args.scenes.split(";") if "=" in args.scenes else args.scenes.split(","))]
    rows = []
    print(f"# {len(lines)} sweep lines in every scene: tuned on {len(tune)} of PETS09's, reported on the {len(held)}"
          " held out; error = |counted - true| summed over lines and directions / true crossings; tolerant: a "
          "crossing within 0.02 of a segment's end may be counted or not", flush=True)
    print(f"{'configuration':10} {'scene':7} {'variant':11} {'tracker':22} {'held-out':>9} {'tolerant':>9} "
          f"{'tune(tol)':>9} {'IDF1':>6}")
    for cfg_name in args.configs.split(","):
        base = load_config(ROOT / cfg_name)
        store = AssetStore.for_config(base)
        cfg = cpu_config(base, store)
        for scene in load_scenes(specs, store):
            for vname in args.variants.split(","):
                v = VARIANTS[vname]
                video, w, h = _copy(scene, vname)
                fps = scene.fps / v.step
                full, kept = transform_truth(scene.gt, v, scene.width)
                truth = true_line_counts(full, lines, w, h, fps=scene.fps)
                ranges = true_count_ranges(full, lines, w, h)
                dets = detections(cfg, store, video)
                results: dict[str, tuple[dict[int, Any] | None, dict[str, Any]]] = {}
                hyp, counts, _ = track_offline(dets, fps, w, h, cfg.camera_counter(lines))
                results["edgecount"] = (hyp, counts)
                for pname, (make, floor) in peers.items():
                    phyp, zone_counts, _, plain_counts = run_peer(lambda m=make, r=fps: m(r), dets, lines, w, h, floor)
                    results[f"{pname}+LineZone"] = (phyp, zone_counts)
                    results[f"{pname}+plain"] = (None, plain_counts)
                for tname, (thyp, tcounts) in results.items():
                    ce = count_error(truth, tcounts, ranges)
                    s_held, s_tune = summarise(ce, hn), summarise(ce, tn)
                    idf1 = mot_metrics(kept, thyp, len(dets))["IDF1"] if thyp is not None else float("nan")
                    rows.append({"config": cfg_name, "model": cfg.inference.model, "scene": scene.name,
                                 "tuned_scene": scene.tuned, "variant": vname, "tracker": tname, "held_out": s_held,
                                 "tune": s_tune, "IDF1": idf1})
                    print(f"{Path(cfg_name).stem:10} {scene.name:7} {vname:11} {tname:22} "
                          f"{s_held['relative_error']:8.1%} {s_held['tolerant_relative_error']:8.1%} "
                          f"{s_tune['tolerant_relative_error']:8.1%} {idf1:6.3f}", flush=True)
    print(verdict(rows))
    if args.json:
        print(json.dumps(rows))
    return 0


def verdict(rows: list[dict[str, Any]]) -> str:
    """Per configuration and scene: our tolerant held-out error over all copies against each peer's."""
    out = ["# tolerant held-out error summed over the copies, per scene (ours against the best peer)"]
    keys = sorted({(r["config"], r["scene"]) for r in rows})
    for cfg_name, scene in keys:
        totals: dict[str, list[int]] = {}
        for r in rows:
            if (r["config"], r["scene"]) == (cfg_name, scene):
                t = totals.setdefault(r["tracker"], [0, 0])
                t[0] += r["held_out"]["tolerant_error"]
                t[1] += r["held_out"]["true_total"]
        ours = totals.pop("edgecount")
        rate = ours[0] / max(1, ours[1])
        best = min(totals.items(), key=lambda kv: kv[1][0] / max(1, kv[1][1]), default=None)
        if best is None:
            out.append(f"{Path(cfg_name).stem:10} {scene:7} ours {rate:.1%} (no peers)")
            continue
        peer_rate = best[1][0] / max(1, best[1][1])
        word = "beats" if rate < peer_rate else "does NOT beat"
        out.append(f"{Path(cfg_name).stem:10} {scene:7} ours {rate:.1%} {word} the best peer, "
                   f"{best[0]} {peer_rate:.1%}")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
