"""Footprint of the running appliance (issue 14). Prints numbers; asserts nothing.

For each shipped configuration, the appliance runs the PETS09 clip live at its 10 fps (`edgecount run`,
a realtime file source looping), and after a warm-up, over a fixed window: per process (the watchdog and
each service) PSS and RSS from ``/proc/<pid>/smaps_rollup`` and CPU from ``/proc/<pid>/stat``; and the sum.
PSS splits shared pages between the processes that map them, so the total counts each page once.
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

from edgecount.supervisor.lifetime import process_name
from edgecount.supervisor.memory import descendants, smaps_mb

ROOT = Path(__file__).resolve().parents[2]
WARMUP_S, WINDOW_S = 25.0, 20.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status(cfg: Path) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "edgecount", "status", "--json", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    return dict(json.loads(res.stdout)) if res.stdout.strip() else {}


def measure(name: str, base: Path, fork_server: bool, model: str = "") -> list[dict[str, Any]]:
    runtime = Path(tempfile.mkdtemp(prefix="ecfp-", dir="/tmp"))
    data = tomllib.loads(base.read_text())
    if model:
        data.setdefault("inference", {})["model"] = model
    data["runtime"] = {"dir": str(runtime), "state_dir": str(runtime / "state")}
    data.setdefault("capture", {}).update(realtime=True, loop=True, source="asset:pets09")
    data.setdefault("watchdog", {}).update(metrics_dir="", fork_server=fork_server)
    name = f"{name}{' fork server' if fork_server else ' exec'}"
    from edgecount.runtime.settings import to_toml

    cfg = runtime / "c.toml"
    cfg.write_text(to_toml(data))
    proc = subprocess.Popen([sys.executable, "-m", "edgecount", "run", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(WARMUP_S)
        st = status(cfg)
        if not st.get("services"):
            raise RuntimeError(f"{name}: the appliance did not come up (is the asset mirror set?)")
        pids = {"watchdog": proc.pid} | {s["service"]: s["pid"] for s in st.get("services", []) if s["pid"]}
        # Anything else the watchdog started (the fork server the services come from) counts too.
        known = set(pids.values())
        for k, extra in enumerate(p for p in descendants(proc.pid) if p not in known):
            name = process_name(extra)
            pids[name.removeprefix("ec-") if name.startswith("ec-") else f"helper{k + 1}"] = extra
        before = {k: cpu_s(p) for k, p in pids.items()}
        frames_before = next((int(s["stats"].get("processed", 0)) for s in st["services"]
                              if s["service"] == "inference"), 0)
        t0 = time.monotonic()
        time.sleep(WINDOW_S)
        elapsed = time.monotonic() - t0
        st = status(cfg)
        frames = next((int(s["stats"].get("processed", 0)) for s in st["services"]
                       if s["service"] == "inference"), 0) - frames_before
        rows = []
        for k, p in pids.items():
            mem = smaps_mb(p)
            rows.append({"config": name, "process": k, "pss_mb": round(mem["pss"], 1), "rss_mb": round(mem["rss"], 1),
                         "cpu_pct": round(100 * (cpu_s(p) - before[k]) / elapsed, 1)})
        rows.append({"config": name, "process": "TOTAL", "pss_mb": round(sum(r["pss_mb"] for r in rows), 1),
                     "rss_mb": round(sum(r["rss_mb"] for r in rows), 1),
                     "cpu_pct": round(sum(r["cpu_pct"] for r in rows), 1), "fps": round(frames / elapsed, 1)})
        return rows
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(runtime, ignore_errors=True)


def main() -> None:
    shipped = ROOT / "config" / "edgecount.toml"
    configs = {"edgecount.toml (YOLOX-nano)": (shipped, ""),
               "edgecount.toml, int8 SSD": (shipped, "ssd_mobilenet_v1_coco_quant"),
               "edgetpu.toml (CPU fallback)": (ROOT / "config" / "edgetpu.toml", "")}
    wanted = sys.argv[1:]
    rows = []
    for name, (path, model) in configs.items():
        if not wanted or any(w in name for w in wanted):
            for fork_server in (False, True):  # each service a fresh interpreter, then forked from one
                rows += measure(name, path, fork_server, model)
    print(f"\nfootprint at the clip's 10 fps, live ({WINDOW_S:.0f} s window after {WARMUP_S:.0f} s warm-up)")
    print(f"{'configuration':42} {'process':11} {'PSS MB':>8} {'RSS MB':>8} {'CPU %':>7}")
    for r in rows:
        extra = f"   {r['fps']} fps processed" if "fps" in r else ""
        print(f"{r['config']:42} {r['process']:11} {r['pss_mb']:8.1f} {r['rss_mb']:8.1f} {r['cpu_pct']:7.1f}{extra}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
