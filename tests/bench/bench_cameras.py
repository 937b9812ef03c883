"""Several cameras on one device (issue 15). Prints numbers; asserts nothing.

For 1, 2 and 4 cameras, each playing the PETS09 clip live at its 10 fps (a realtime file source looping), with
the default CPU model (YOLOX-nano, 2 threads) and with the int8 SSD: after a warm-up, over a fixed window,
frames processed per camera per second (counted from the counter's acknowledgements), the share of announced
frames inference skipped (newest frame wins), end-to-end latency from capture to the counter's commit
(p50/p95, from the frame's capture time to its ``tracks`` acknowledgement), CPU of all processes, their
total PSS, and the CPU a frame costs besides the detector.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import zmq
from bench_footprint import ROOT, cpu_s, status

from edgecount.runtime import bus
from edgecount.runtime.settings import to_toml
from edgecount.supervisor.memory import descendants, smaps_mb
from edgecount_core.messages import Tracks

WARMUP_S, WINDOW_S = 20.0, 20.0
MODELS = {"YOLOX-nano, 2 threads": ("yolox_nano", 2), "int8 SSD, 2 threads": ("ssd_mobilenet_v1_coco_quant", 2)}


def _per_camera(st: dict[str, Any], key: str, cams: list[str]) -> dict[str, int]:
    inf = next((s["stats"] for s in st.get("services", []) if s["service"] == "inference"), {})
    if len(cams) == 1:
        return {cams[0]: int(inf.get(key, 0))}
    return {c: int(inf.get(f"camera.{c}.{key}", 0)) for c in cams}


def _published(st: dict[str, Any]) -> dict[str, int]:
    return {s["stats"].get("camera", "main"): int(s["stats"].get("published", 0))
            for s in st.get("services", []) if s["service"].startswith("capture")}


def measure(label: str, model: str, threads: int, n: int) -> dict[str, Any]:
    runtime = Path(tempfile.mkdtemp(prefix="eccam-", dir="/tmp"))
    demo = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    cams = [f"cam{i + 1}" for i in range(n)]
    data: dict[str, Any] = {
        "runtime": {"dir": str(runtime), "state_dir": str(runtime / "state")},
        "capture": {"realtime": True, "loop": True},
        "inference": {"model": model, "threads": threads},
        "watchdog": {"metrics_dir": ""},
        "cameras": [{"name": c, "source": "asset:pets09", "lines": demo.get("lines", [])} for c in cams]}
    if n == 1:  # one camera: today's single-camera file, as shipped
        data["capture"]["source"] = "asset:pets09"
        data["lines"] = data.pop("cameras")[0]["lines"]
        cams = ["main"]
    cfg = runtime / "c.toml"
    cfg.write_text(to_toml(data))
    proc = subprocess.Popen([sys.executable, "-m", "edgecount", "run", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        time.sleep(WARMUP_S)
        st = status(cfg)
        if not st.get("services"):
            raise RuntimeError(f"{label}: the appliance did not come up (is the asset mirror set?)")
        pids = {"watchdog": proc.pid} | {s["service"]: s["pid"] for s in st["services"] if s["pid"]}
        known = set(pids.values())
        for k, extra in enumerate(p for p in descendants(proc.pid) if p not in known):
            pids[f"helper{k + 1}"] = extra
        sub = bus.Subscriber(ctx, runtime, [("counter", (bus.TRACKS,))], structlog.get_logger(), hwm=100000)
        cpu0 = {k: cpu_s(p) for k, p in pids.items()}
        done0, skip0, pub0 = _per_camera(st, "processed", cams), _per_camera(st, "skipped", cams), _published(st)
        t0 = time.monotonic()
        latencies: list[float] = []
        acked = dict.fromkeys(cams, 0)  # the counter acknowledges every frame it committed, once
        while time.monotonic() - t0 < WINDOW_S:
            got = sub.recv(100)
            if got is not None and isinstance(got[1], Tracks):
                latencies.append((time.time() - got[1].ts) * 1000.0)
                acked[got[1].camera] = acked.get(got[1].camera, 0) + 1
        elapsed = time.monotonic() - t0
        sub.close()
        st = status(cfg)
        done, skip, pub = _per_camera(st, "processed", cams), _per_camera(st, "skipped", cams), _published(st)
        spent = {k: cpu_s(p) - cpu0[k] for k, p in pids.items() if Path(f"/proc/{p}").exists()}
        cpu = sum(spent.values())
        pss = sum(smaps_mb(p)["pss"] for p in pids.values() if Path(f"/proc/{p}").exists())
        per_cam_fps = [acked[c] / elapsed for c in cams]
        announced = sum(pub.get(c, 0) - pub0.get(c, 0) for c in cams)
        skipped = sum(skip[c] - skip0[c] for c in cams)
        lat = np.asarray(latencies) if latencies else np.zeros(1)
        frames = sum(done[c] - done0[c] for c in cams)
        # What a frame costs besides the detector (capture's decode, tracking, the bus, the watchdog): the
        # figure that, with an accelerator's published latency, says how many cameras a board carries.
        rest_ms = 1000 * sum(v for k, v in spent.items() if k != "inference") / max(frames, 1)
        return {"model": label, "cameras": n, "fps_per_camera_min": round(min(per_cam_fps), 2),
                "fps_per_camera_max": round(max(per_cam_fps), 2),
                "skipped_share": round(skipped / announced, 3) if announced else 0.0,
                "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
                "cpu_pct": round(100 * cpu / elapsed, 1), "pss_mb": round(pss, 1),
                "cpu_ms_per_frame_besides_inference": round(rest_ms, 2)}
    finally:
        ctx.term()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(runtime, ignore_errors=True)


def main() -> None:
    wanted = sys.argv[1:]
    rows = []
    for label, (model, threads) in MODELS.items():
        if wanted and not any(w in label for w in wanted):
            continue
        for n in (1, 2, 4):
            rows.append(measure(label, model, threads, n))
    print(f"\ncameras of the PETS09 clip live at 10 fps each ({WINDOW_S:.0f} s window after {WARMUP_S:.0f} s warm-up)")
    print(f"{'model':24} {'cams':>4} {'fps/cam':>13} {'skipped':>8} {'lat p50':>8} {'lat p95':>8} {'CPU %':>7} "
          f"{'PSS MB':>7} {'ms/frame w/o inference':>23}")
    for r in rows:
        fps = f"{r['fps_per_camera_min']:.1f}-{r['fps_per_camera_max']:.1f}"
        print(f"{r['model']:24} {r['cameras']:>4} {fps:>13} {100 * r['skipped_share']:7.1f}% "
              f"{r['latency_ms_p50']:7.0f}  {r['latency_ms_p95']:7.0f}  {r['cpu_pct']:7.1f} {r['pss_mb']:7.1f} "
              f"{r['cpu_ms_per_frame_besides_inference']:23.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
