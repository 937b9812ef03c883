"""``edgecount bench models``: which model runs best on this device, measured on real frames.

Each model runs in a fresh child process (so its peak resident memory is its
own) over frames spread evenly across PETS09: latency at 1 thread, then
throughput at 1 and at all threads, CPU use, and person-detection quality
against the MOTChallenge ground truth.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecount.assets.obtain import AssetStore
from edgecount.detection.detector import Detector, TFLiteDetector
from edgecount.detection.interpreter import probe_edgetpu
from edgecount.detection.tiling import TiledDetector, parse_tiles
from edgecount_core.detection_quality import detection_quality
from edgecount_core.groundtruth import parse_mot


def load_frames(clip: Path, n: int) -> tuple[list[int], list[np.ndarray]]:
    cap = cv2.VideoCapture(str(clip))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 795)
    wanted = set(np.linspace(0, total - 1, min(n, total)).astype(int).tolist())
    idx, frames = [], []
    i = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i in wanted:
            idx.append(i + 1)  # ground-truth frames are 1-based
            frames.append(f)
        i += 1
    cap.release()
    return idx, frames


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _measure(files: Any, device: str, frames: list[np.ndarray], tiles: str) -> dict[str, Any]:
    cols, rows = parse_tiles(tiles)
    out: dict[str, Any] = {}
    # The frames under test are already in memory: what the model adds is the peak above this.
    before = _rss_mb()
    dets: list[Any] = []
    for threads in sorted({1, os.cpu_count() or 1}):
        model = TFLiteDetector(files, threads=threads, device=device, min_score=0.05)
        det: Detector = TiledDetector(model, cols, rows) if (cols, rows) != (1, 1) else model

        def run(frame: np.ndarray, d: Detector = det) -> Any:
            return d.detect(frame)[0]

        run(frames[0])  # warm-up
        lat = []
        c0, w0 = time.process_time(), time.perf_counter()
        dets = []
        for f in frames:
            t0 = time.perf_counter()
            dets.append(run(f))
            lat.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - w0
        out[f"fps_{threads}t"] = len(frames) / wall
        if threads == 1:
            out["median_ms"] = float(np.median(lat))
            out["p95_ms"] = float(np.percentile(lat, 95))
        out["cpu_pct"] = 100.0 * (time.process_time() - c0) / wall
        out["threads_all"] = threads
    out["dets"] = [(d.boxes.astype(np.float64), d.scores.astype(np.float64)) for d in dets]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["model_rss_mb"] = out["peak_rss_mb"] - before
    return out


def _child(files: Any, device: str, clip: str, n: int, tiles: str, q: Any) -> None:
    try:
        _, frames = load_frames(Path(clip), n)
        q.put(_measure(files, device, frames, tiles))
    except Exception as exc:
        q.put({"error": f"{type(exc).__name__}: {exc}"})


def bench_models(store: AssetStore, names: list[str], n_frames: int, tiles: list[str],
                 progress: Any = None) -> list[dict[str, Any]]:
    clip = store.fetch_clip("pets09")
    gt = parse_mot(store.fetch_clip("pets09_gt").read_text())
    idx, _ = load_frames(clip, n_frames)
    gtmap = {}
    for f in idx:
        b = gt.boxes_at(f, evaluated_only=False)
        keep = gt.rows[gt.rows[:, 0] == f][:, 6] > 0
        gtmap[f] = (b[keep][:, 1:5], b[~keep][:, 1:5])
    ctx = mp.get_context("spawn")
    rows: list[dict[str, Any]] = []
    jobs = []
    for name in names:
        entry = store.entry("models", name)
        if not entry.sha256:
            rows.append({"model": name, "backend": "-", "error": "no pinned sha256 (Edge TPU model): supply the file"})
            continue
        files = store.fetch_model(name)
        backends = ["cpu"]
        if entry.cpu_model and probe_edgetpu("usb") is None:
            backends = ["edgetpu"]
        for backend in backends:
            for t in tiles:
                jobs.append((name, files, backend, t))
    for k, (name, files, backend, t) in enumerate(jobs):
        if progress:
            progress(k, len(jobs), f"{name} ({backend}, tiles {t})")
        q = ctx.Queue()
        p = ctx.Process(target=_child, args=(files, "usb" if backend == "edgetpu" else "cpu", str(clip),
                                             n_frames, t, q))
        p.start()
        res = q.get()
        p.join()
        row: dict[str, Any] = {"model": name, "backend": backend, "tiles": t,
                               "size_mb": round(files.model.stat().st_size / 2**20, 2)}
        if "error" in res:
            row["error"] = res["error"]
        else:
            dq = detection_quality(gtmap, dict(zip(idx, res.pop("dets"), strict=True)))
            row.update({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in res.items()})
            row.update({"precision": round(dq.precision, 3), "recall": round(dq.recall, 3), "ap50": round(dq.ap50, 3),
                        "frames": len(idx)})
        rows.append(row)
    if progress:
        progress(len(jobs), len(jobs), "done")
    if probe_edgetpu("usb") is not None:
        rows.append({"model": "(edge tpu)", "backend": "edgetpu", "error": "no Edge TPU on this device"})
    return rows
