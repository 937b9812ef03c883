"""Bad input on the bus: a service logs it, counts it, and keeps working."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import zmq

from edgecount.runtime import bus
from edgecount_core.messages import Detections, Health, Tracks, encode


def test_counter_survives_garbage_and_keeps_counting(runtime_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[runtime]\nstate_dir = "{tmp_path}"\n[watchdog]\nheartbeat_s = 0.2\n'
                   '[[lines]]\nname = "v"\na = [0.5, 0.0]\nb = [0.5, 1.0]\n')
    ctx: zmq.Context[Any] = zmq.Context()
    fake_inference = bus.Publisher(ctx, runtime_dir, "inference")  # we play the upstream service
    listener = bus.Subscriber(ctx, runtime_dir, [("counter", (bus.TRACKS, bus.HEALTH, bus.CROSSING))],
                              structlog.get_logger())
    proc = subprocess.Popen([sys.executable, "-m", "edgecount.stages", "counter", "--config", str(cfg),
                             "--runtime-dir", str(runtime_dir)], stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the counter is connected (its heartbeats reach us, ours reach it).
        deadline = time.monotonic() + 20
        tracks: list[Tracks] = []
        health: Health | None = None
        seq = 0
        garbage = [b"\xc1", b"\x93\x01\x02", encode(Tracks(seq=1, ts=0, width=1, height=1))[:-3],
                   b"\x82\xa4type\xaadetections\xa1v\x63", os.urandom(64)]
        while time.monotonic() < deadline and len(tracks) < 30:
            for g in garbage:
                fake_inference.sock.send_multipart([bus.DETECTIONS, g])
            fake_inference.sock.send_multipart([bus.DETECTIONS])  # wrong number of frames
            seq += 1
            x = 100 + 10 * seq  # one person walking right across the vertical line
            fake_inference.send(bus.DETECTIONS, Detections.from_arrays(
                seq=seq, ts=seq * 0.1, width=768, height=576,
                boxes=np.array([[x, 200, x + 40, 320]]), scores=np.array([0.9]), classes=np.array([0])))
            got = listener.recv(30)
            while got is not None:
                if isinstance(got[1], Tracks):
                    tracks.append(got[1])
                elif isinstance(got[1], Health):
                    health = got[1]
                got = listener.recv(0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert len(tracks) >= 30
        assert any(t.row_array().shape[0] == 1 for t in tracks)  # the person is tracked
        time.sleep(0.5)
        got = listener.recv(100)
        while got is not None:
            if isinstance(got[1], Health):
                health = got[1]
            got = listener.recv(100)
        assert health is not None and int(health.stats["bad_messages"]) >= 6 * 10
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
        fake_inference.close()
        listener.close()
        ctx.term()
    assert proc.returncode == 0
    assert "bus.bad_message" in stderr and "not msgpack" in stderr
