"""The technician's commands, driven in a real terminal (pexpect) against a running appliance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from .helpers import ROOT, HealthWatcher, start_appliance, stop_appliance, write_run_config

pytestmark = pytest.mark.slow


def _term(args: list[str], cfg: Path) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "edgecount", *args, "--config", str(cfg)], cwd=str(ROOT),
                         dimensions=(50, 200), encoding="utf-8", timeout=60, env={"TERM": "xterm-256color",
                         **{k: v for k, v in __import__("os").environ.items()}})


def test_technician_session(runtime_dir: Path, pets09_clip: Path, ssd_model) -> None:
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    proc = start_appliance(cfg)
    try:
        watcher = HealthWatcher(runtime_dir)
        watcher.wait_for(lambda h: len(h) == 5 and int(h["counter"].stats.get("processed", 0)) > 20, 90,
                         "the appliance counting")
        watcher.close()

        t = _term(["status"], cfg)
        for service in ("capture", "inference", "counter", "privacy", "uplink"):
            t.expect(service)
            t.expect("ok")
        t.expect("disk free")
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0

        t = _term(["doctor"], cfg)
        t.expect("edgecount doctor")
        for check in ("config", "camera", "edge tpu", "shared memory", "broker", "clock", "disk"):
            t.expect(check)
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0  # every check passes or only warns here

        t = _term(["restart", "counter"], cfg)
        t.expect(r"restarted counter \(pid (\d+)\)")
        new_pid = int(t.match.group(1))
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0
        # The restarted counter logs its restored state before its first heartbeat: wait for that heartbeat
        # (however loaded the machine is), then read the log.
        watcher = HealthWatcher(runtime_dir)
        watcher.wait_for(lambda h: "counter" in h and h["counter"].pid == new_pid, 120, "the restarted counter")
        watcher.close()

        res = subprocess.run([sys.executable, "-m", "edgecount", "status", "--json", "--config", str(cfg)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        status = json.loads(res.stdout)
        assert status["running"] and {s["service"]: s["restarts"] for s in status["services"]}["counter"] == 1

        t = _term(["logs", "counter", "-n", "50"], cfg)
        t.expect("counter.state_restored")  # the restarted counter picked up its state
        t.expect(pexpect.EOF)
        t.close()

        shot = runtime_dir / "preview.jpg"
        t = _term(["preview", "--out", str(shot)], cfg)
        t.expect(r"wrote .*preview\.jpg from the running appliance: 1 lines, 0 zones, \d+ people \(pixelated\)")
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0
        import cv2

        img = cv2.imread(str(shot))
        assert img is not None and img.shape[:2] == (576, 768)
        assert b"Exif" not in shot.read_bytes()[:4096]  # no metadata travels with it

        t = _term(["lines", "set", "door", "0.1,0.7,0.9,0.7"], cfg)
        t.expect("line door set")
        t.expect("counter and privacy filter reloaded")
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0
        assert 'name = "door"' in cfg.read_text()
        t = _term(["lines", "set", "door", "0.1,0.7,1.9,0.7"], cfg)  # refused, file untouched
        t.expect("outside 0..1")
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 2 and "1.9" not in cfg.read_text()

        t = _term(["counts"], cfg)
        t.expect("today")
        t.expect("last hour")
        t.expect("line:door")
        t.expect("line:v")
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0
    finally:
        stop_appliance(proc)
    t = _term(["status"], cfg)
    t.expect("not running")
    t.expect(pexpect.EOF)
    t.close()
    assert t.exitstatus == 3
