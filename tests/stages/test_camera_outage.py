"""A camera that goes away for minutes is `degraded`, never a reboot (issue 12, item 1).

Against a real RTSP camera (GStreamer's RTSP server from Debian, serving the PETS09 clip) and a stand-in
for systemd's notify socket: the stream first stalls without closing (the server frozen), then the server
is stopped for longer than WatchdogSec plus a start-limit window, then it comes back. Throughout, the
supervisor keeps pinging the watchdog, no service is restarted, status and doctor say the camera is
unavailable, and counting resumes by itself.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import pytest

from ..helpers import ROOT, HealthWatcher, edgecount, free_port, start_appliance, stop_appliance, write_run_config

pytestmark = pytest.mark.slow

WATCHDOG_S = 10.0  # the unit's WatchdogSec, scaled down for the test
OUTAGE_S = WATCHDOG_S + 15.0  # longer than WatchdogSec plus a start-limit window
SERVER = ROOT / "tests" / "rtsp" / "serve_clip.py"


def _gst_ready() -> bool:
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")
    return subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True).returncode == 0


class RtspCamera:
    def __init__(self, clip: Path, port: int) -> None:
        self.clip, self.port = clip, port
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["/usr/bin/python3", str(SERVER), str(self.clip), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=10)


class NotifySocket:
    """What systemd sees: every datagram the service sends to $NOTIFY_SOCKET, with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self) -> list[float]:
        return [t for t, m in self.messages if "WATCHDOG=1" in m.split("\n")]

    def statuses(self) -> list[str]:
        return [line.removeprefix("STATUS=") for _, m in self.messages for line in m.split("\n")
                if line.startswith("STATUS=")]

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


def _status(cfg: Path) -> dict:
    res = edgecount("status", "--json", "--config", str(cfg), timeout=60)
    return json.loads(res.stdout)


def test_camera_outage_is_degraded_not_a_reboot(runtime_dir: Path, pets09_clip: Path, ssd_model) -> None:
    if not _gst_ready():
        pytest.fail("GStreamer's RTSP server is missing (`just test-deps` installs python3-gi, "
                    "gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-good)")
    mjpeg = runtime_dir / "pets09.avi"  # RTP/JPEG needs JPEG frames: re-encode the clip once, losslessly enough
    src = cv2.VideoCapture(str(pets09_clip))
    out = cv2.VideoWriter(str(mjpeg), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    while True:
        ok, frame = src.read()
        if not ok:
            break
        out.write(frame)
    out.release()
    camera = RtspCamera(mjpeg, free_port())
    camera.start()
    notify = NotifySocket(runtime_dir / "notify.sock")
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, camera.url, hang="5", budget="3", grace="30",
                           capture="reconnect_initial_s = 0.5\nreconnect_max_s = 2.0\nopen_timeout_s = 2.0\n"
                                   "read_timeout_s = 2.0")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC=str(int(WATCHDOG_S * 1e6)))
    proc = start_appliance(cfg, env=env)
    watcher = HealthWatcher(runtime_dir)
    try:
        watcher.wait_for(lambda h: len(h) == 5 and int(h["counter"].stats.get("processed", 0)) > 20, 120,
                         "counting from the RTSP camera")
        assert any("READY=1" in m for _, m in notify.messages)
        outage_start = time.monotonic()

        camera.signal(signal.SIGSTOP)  # the stream stalls without closing
        watcher.wait_for(lambda h: h["capture"].state == "degraded", 30, "capture noticing the stalled stream")
        camera.stop()  # then the camera is gone altogether
        seen_down = False
        while time.monotonic() - outage_start < OUTAGE_S:
            st = _status(cfg)
            cap = next(s for s in st["services"] if s["service"] == "capture")
            if cap["state"] == "degraded" and float(cap["stats"].get("source_down_s", 0)) > 0:
                seen_down = True
                assert st["device"]["state"] == "degraded" and "capture" in st["device"]["degraded"]
            time.sleep(2)
        assert seen_down, "status never showed the camera as unavailable"
        doctor = json.loads(edgecount("doctor", "--json", "--config", str(cfg), timeout=120).stdout)
        camera_check = next(c for c in doctor["checks"] if c["name"] == "camera")
        assert camera_check["status"] == "fail" and "unavailable" in camera_check["detail"]

        processed_before = int(watcher.latest["counter"].stats.get("processed", 0))
        camera.start()  # the camera returns: counting resumes by itself
        watcher.wait_for(lambda h: h["capture"].state == "ok"
                         and int(h["counter"].stats.get("processed", 0)) > processed_before + 20, 90,
                         "counting to resume after the camera came back")
        outage_end = time.monotonic()
        st = _status(cfg)
        assert {s["service"]: s["restarts"] for s in st["services"]} == dict.fromkeys(
            ("capture", "inference", "counter", "privacy", "uplink"), 0), "restart budget was spent on the camera"
        assert int(next(s for s in st["services"] if s["service"] == "capture")["stats"]["reconnects"]) >= 1
        pings = [t for t in notify.pings() if outage_start - 5 <= t <= outage_end]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert pings and max(gaps) < WATCHDOG_S / 2, f"watchdog pings stopped for {max(gaps):.1f} s"
        statuses = notify.statuses()
        assert "degraded: capture" in statuses and statuses[-1] == "counting"
    finally:
        watcher.close()
        stop_appliance(proc)
        camera.stop()
        notify.close()
