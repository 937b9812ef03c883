"""Edge TPU configured but absent: the service runs the CPU model, flagged degraded, no crash loop."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..helpers import ROOT, HealthWatcher, start_appliance, stop_appliance, write_run_config

pytestmark = pytest.mark.slow


def test_absent_edgetpu_falls_back_to_cpu_degraded(runtime_dir: Path, pets09_clip: Path, ssd_model) -> None:
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    text = cfg.read_text().replace(
        'model = "ssd_mobilenet_v1_coco_quant"',
        'model = "/nonexistent/ssd_mobilenet_v1_coco_quant_postprocess_edgetpu.tflite"\n'
        'device = "usb"\nfallback_model = "ssd_mobilenet_v1_coco_quant"')
    cfg.write_text(text)
    proc = start_appliance(cfg, stderr=subprocess.PIPE)
    try:
        watcher = HealthWatcher(runtime_dir, ("inference", "counter"))
        watcher.wait_for(lambda h: "inference" in h and int(h["inference"].stats.get("processed", 0)) > 20, 90,
                         "inference running on the fallback")
        first_pid = watcher.latest["inference"].pid
        time.sleep(3)
        watcher.pump(1.0)
        h = watcher.latest["inference"]
        watcher.close()
        assert h.state == "degraded" and h.stats["degraded"] is True
        assert h.stats["backend"] == "cpu" and h.stats["model"] == "ssd_mobilenet_v1_coco_quant"
        assert "libedgetpu" in str(h.stats["degraded_reason"])
        assert h.pid == first_pid  # no crash loop

        status = json.loads(subprocess.run([sys.executable, "-m", "edgecount", "status", "--json", "--config",
                                            str(cfg)], capture_output=True, text=True, cwd=ROOT).stdout)
        inf = next(s for s in status["services"] if s["service"] == "inference")
        assert inf["state"] == "degraded" and inf["restarts"] == 0
        doctor = subprocess.run([sys.executable, "-m", "edgecount", "doctor", "--json", "--config", str(cfg)],
                                capture_output=True, text=True, cwd=ROOT)
        assert doctor.returncode == 1
        tpu = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "edge tpu")
        assert tpu["status"] == "fail" and "libedgetpu" in tpu["detail"] and tpu["fix"]
    finally:
        err = stop_appliance(proc)
    assert err.count("inference.edgetpu_unavailable") <= 1  # logged once, not per frame
