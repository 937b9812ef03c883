"""The technician's commands, driven in a real terminal (pexpect) against a running appliance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pexpect
import pytest

from ..helpers import ROOT, HealthWatcher, start_appliance, stop_appliance, write_run_config

pytestmark = pytest.mark.slow


def _term(args: list[str], cfg: Path) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "edgecount", *args, "--config", str(cfg)], cwd=str(ROOT),
                         dimensions=(50, 200), encoding="utf-8", timeout=60, env={"TERM": "xterm-256color",
                         **{k: v for k, v in __import__("os").environ.items()}})


def test_technician_session(runtime_dir: Path, pets09_clip: Path, ssd_model, machine_load: str) -> None:
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    started = time.time()
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
        t.expect("never validated at this site")
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0

        t = _term(["doctor"], cfg)
        t.expect("edgecount doctor")
        for check in ("config", "camera", "edge tpu", "shared memory", "broker", "clock", "disk", "restarts",
                      "lines"):
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
        # Memory per service and in all (PSS: shared pages split between the processes mapping them).
        assert all(float(s_["pss_mb"]) > 0 for s_ in status["services"])
        assert status["device"]["total_pss_mb"] > sum(float(s_["pss_mb"]) for s_ in status["services"])
        # `edgecount run` is single-threaded when it forks the stages' server, so the server shares its memory.
        assert status["device"]["fork_server"] == "fork"
        counter = next(s_ for s_ in status["services"] if s_["service"] == "counter")
        assert "line.v.people_s_since_count" in counter["stats"]  # what doctor's lines check reads

        # A stage killed behind the watchdog's back: doctor names it and the cause, not only a passing camera.
        pid = next(s_["pid"] for s_ in status["services"] if s_["service"] == "privacy")
        os.kill(pid, signal.SIGKILL)
        watcher = HealthWatcher(runtime_dir)
        watcher.wait_for(lambda h: "privacy" in h and h["privacy"].pid != pid, 120, "privacy restarted")
        watcher.close()
        res = subprocess.run([sys.executable, "-m", "edgecount", "doctor", "--json", "--config", str(cfg)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        restarts = next(c for c in json.loads(res.stdout)["checks"] if c["name"] == "restarts")
        assert restarts["status"] == "warn" and "privacy exited with status -9" in restarts["detail"], restarts

        # Validation reads the running counter's own crossing times: a tally over the minutes it ran.
        watcher = HealthWatcher(runtime_dir)
        watcher.wait_for(lambda h: "counter" in h and int(h["counter"].stats.get("events", 0)) > 0, 120,
                         "a first crossing")
        watcher.close()
        stamp = [datetime.fromtimestamp(t).astimezone().isoformat() for t in (started, time.time())]
        (tally := runtime_dir / "tally.csv").write_text(f"time,line,direction\n{stamp[0]},v,in\n{stamp[1]},v,out\n")
        res = subprocess.run([sys.executable, "-m", "edgecount", "validate", "--tally", str(tally), "--json",
                              "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60)
        report = json.loads(res.stdout)
        assert res.returncode == 1 and report["verdict"] == "CHECK" and report["device"] >= 1, res.stderr
        res = subprocess.run([sys.executable, "-m", "edgecount", "status", "--json", "--config", str(cfg)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert json.loads(res.stdout)["validation"]["verdict"] == "CHECK"

        t = _term(["logs", "counter", "-n", "50"], cfg)
        t.expect("counter.state_restored")  # the restarted counter picked up its state
        t.expect(pexpect.EOF)
        t.close()
        # The whole stream: the watchdog's restart sits among its services' lines, in time order (issue 31).
        res = subprocess.run([sys.executable, "-m", "edgecount", "logs", "--json", "-n", "400", "--config", str(cfg)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        records = [json.loads(line) for line in res.stdout.splitlines()]
        assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)
        asked = [i for i, r in enumerate(records) if r["event"] == "watchdog.restart_requested"]
        restored = [i for i, r in enumerate(records) if r["event"] == "counter.state_restored"]
        assert asked and restored and asked[-1] < restored[-1], res.stdout[-3000:]
        # Every figure a heartbeat carried is declared (an undeclared one is left out, and said so once).
        service_logs = list((runtime_dir / "state" / "logs").glob("*.log*"))
        undeclared = [line for f in service_logs
                      for line in f.read_text(errors="replace").splitlines() if "health.undeclared_figure" in line]
        assert len(service_logs) >= 5 and undeclared == []

        shot = runtime_dir / "preview.jpg"
        t = _term(["preview", "--out", str(shot)], cfg)
        t.expect(r"wrote .*preview\.jpg from the running appliance: 1 lines, 0 zones, \d+ people \(pixelated\)")
        t.expect(r"where feet were seen: (\d+) sightings")  # the counter's grid, written every 10 s
        assert int(t.match.group(1)) > 0
        t.expect(pexpect.EOF)
        t.close()
        assert t.exitstatus == 0
        import cv2

        img = cv2.imread(str(shot))
        assert img is not None and img.shape[:2] == (576, 768)
        assert b"Exif" not in shot.read_bytes()[:4096]  # no metadata travels with it

        t = _term(["lines", "set", "door", "0.1,0.7,0.9,0.7"], cfg)
        t.expect("line door set")
        t.expect("reloaded: counter, privacy, uplink")
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


# -- issue 19: no tracebacks, no library noise, in every state the device can be in ----------------------
FORBIDDEN = ("Traceback", "Exception ignored", "[video4linux2", "INFO: Created TensorFlow Lite")


def _state_configs(tmp: Path, pets09_clip: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    from ..helpers import free_port

    rt = tmp / "rt"
    base = f'[runtime]\ndir = "{rt}"\nstate_dir = "{tmp / "state"}"\n'
    states = {
        "no_edgetpu": base + '[inference]\ndevice = "usb"\nmodel = "ssd_mobilenet_v1_coco_quant_edgetpu"\n',
        "camera_absent": base + '[capture]\nsource = "/dev/video9"\n',
        "broker_unreachable": base + f'[uplink]\nsinks = ["jsonl", "mqtt"]\n[uplink.mqtt]\nhost = "127.0.0.1"\n'
                                     f'port = {free_port()}\n',
        "unreadable_state": f'[runtime]\ndir = "{rt}"\nstate_dir = "{tmp / "a-file"}/state"\n',
        "offline": base + '[assets]\nallow_download = false\n',
    }
    (tmp / "a-file").write_text("not a directory")
    out = {}
    for name, text in states.items():
        cfg = tmp / f"{name}.toml"
        cfg.write_text(text + '[[lines]]\nname = "v"\na = [0.5, 0.2]\nb = [0.5, 1.0]\n')
        env: dict[str, str] = {}
        if name == "offline":
            env = {"EDGECOUNT_ASSET_MIRROR": "", "EDGECOUNT_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp / "empty")}
        out[name] = (cfg, env)
    return out


# (state, command, exit code, a phrase the technician must see)
CASES = [
    ("no_edgetpu", ["doctor"], 1, "unavailable"),
    ("no_edgetpu", ["bench", "models", "--frames", "3", "--tiles", "2x2"], 0, "no Edge TPU on this device"),
    ("no_edgetpu", ["status"], 3, "not running"),
    ("camera_absent", ["doctor"], 1, "no such device /dev/video9"),
    ("camera_absent", ["preview", "--out", "PREVIEW"], 1, "no such device /dev/video9"),
    ("broker_unreachable", ["doctor"], 1, "broker"),
    ("broker_unreachable", ["restart", "counter"], 3, "not running"),
    ("broker_unreachable", ["events", "--wait", "1"], 3, "not running"),
    ("broker_unreachable", ["record", "--out", "REC", "--seconds", "1"], 3, "not running"),
    ("unreadable_state", ["counts"], 1, "cannot read the count history"),
    ("unreadable_state", ["logs"], 1, "no log files"),
    ("unreadable_state", ["doctor"], 1, "disk"),
    ("offline", ["models", "fetch", "ssd_mobilenet_v1_coco_quant"], 1, "could not obtain"),
    ("offline", ["replay", "asset:pets09"], 1, "replay failed"),
    ("offline", ["bench", "models", "--frames", "3"], 1, "bench failed"),
    ("offline", ["models", "list"], 0, "ssd_mobilenet_v1_coco_quant"),
]


def test_no_tracebacks_or_library_noise_in_any_state(tmp_path: Path, pets09_clip: Path, ssd_model) -> None:
    import os

    states = _state_configs(tmp_path, pets09_clip)
    failures = []
    for state, args, code, phrase in CASES:
        cfg, env = states[state]
        argv = [a.replace("PREVIEW", str(tmp_path / "p.jpg")).replace("REC", str(tmp_path / "rec")) for a in args]
        t = pexpect.spawn(sys.executable, ["-m", "edgecount", *argv, "--config", str(cfg)], cwd=str(ROOT),
                          dimensions=(50, 250), encoding="utf-8", timeout=300,
                          env={**os.environ, "TERM": "xterm-256color", **env})
        t.expect(pexpect.EOF)
        text = t.before or ""
        t.close()
        seen = [f for f in FORBIDDEN if f in text]
        said = phrase.lower() in text.lower()
        if seen or t.exitstatus != code or not said:
            failures.append(f"[{state}] edgecount {' '.join(args)}: exit {t.exitstatus} (want {code}), "
                            f"noise {seen}, phrase {phrase!r} {'ok' if said else 'missing'}\n{text[-1500:]}")
    assert not failures, "\n\n".join(failures)
