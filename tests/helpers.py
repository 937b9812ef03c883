"""Test helpers that talk to a running appliance over its real bus."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import zmq

from edgecount import bus
from edgecount_core.messages import Health

ROOT = Path(__file__).resolve().parents[1]


def edgecount(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgecount", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


class HealthWatcher:
    """Collects the heartbeats every service publishes."""

    def __init__(self, runtime_dir: Path, services: tuple[str, ...] = bus.SERVICES) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sub = bus.Subscriber(self.ctx, runtime_dir, [(s, (bus.HEALTH,)) for s in services],
                                  structlog.get_logger())
        self.latest: dict[str, Health] = {}

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got = self.sub.recv(50)
            if got and isinstance(got[1], Health):
                self.latest[got[1].service] = got[1]

    def wait_for(self, cond: Callable[[dict[str, Health]], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump(0.2)
            if cond(self.latest):
                return
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: "
                             f"{ {k: (v.pid, v.state) for k, v in self.latest.items()} }")

    def close(self) -> None:
        self.sub.close()
        self.ctx.term()


def write_run_config(path: Path, runtime_dir: Path, clip: Path, **extra: str) -> Path:
    """A fast-reacting appliance configuration looping over the clip."""
    text = f"""
[runtime]
dir = "{runtime_dir}"
state_dir = "{runtime_dir / 'state'}"

[capture]
source = "{clip}"
realtime = true
loop = true

[inference]
model = "{extra.get('model', 'ssd_mobilenet_v1_coco_quant')}"
threads = 1

[[lines]]
name = "v"
a = [0.5, 0.2]
b = [0.5, 1.0]

[watchdog]
heartbeat_s = 0.2
hang_timeout_s = {extra.get('hang', '3')}
startup_grace_s = 20
backoff_initial_s = 0.2
backoff_max_s = 1
restart_budget = {extra.get('budget', '10')}
restart_window_s = 60
"""
    path.write_text(text)
    return path


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=20)


def start_appliance(cfg: Path, stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[Any]:
    """`edgecount run` in its own process group (so a test can kill the whole tree)."""
    return subprocess.Popen([sys.executable, "-m", "edgecount", "run", "--config", str(cfg)], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
                            text=stderr is subprocess.PIPE)


def stop_appliance(proc: subprocess.Popen[Any], timeout: float = 30) -> str:
    """Stop it as systemd would (SIGTERM), killing the group if it hangs; returns its stderr if piped."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            stop_group(proc)
    return stderr or ""
