"""The supervisor: starts every service, watches heartbeats, restarts the failed or hung.

Modelled on the ZeroMQ guide's Paranoid Pirate: a service is alive only while
its heartbeats arrive. A service that exits, or stays silent longer than
``hang_timeout_s`` (``startup_grace_s`` before its first heartbeat), is killed
and restarted after an exponential backoff. More than ``restart_budget``
restarts within ``restart_window_s`` means something is persistently wrong:
the watchdog then stops everything and exits non-zero, so systemd can
escalate. Under systemd it sends ``READY=1`` once every service is up and
``WATCHDOG=1`` while it and its services are alive and responsive. A camera
that is down is not a fault of the device: capture reports ``degraded`` and
reconnects with its back-off, the watchdog keeps petting systemd (a reboot would
not bring the camera back) and says so in ``STATUS=``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import zmq

from edgecount.runtime import bus, logs
from edgecount.runtime.backoff import Backoff
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.segments import reclaim_stale_segments
from edgecount.supervisor.control import ControlServer
from edgecount.supervisor.launcher import Launcher, Process
from edgecount.supervisor.memory import oom_kills, pss_mb, total_pss_mb
from edgecount.supervisor.metrics import Figures
from edgecount.supervisor.reports import SupervisorReports
from edgecount_core.config import Config
from edgecount_core.messages import Health


def exit_cause(rc: int, ooms_before: int | None, ooms_now: int | None) -> str:
    """Why a stage ended, for ``doctor`` and the log: its status, and for SIGKILL whether the kernel's
    out-of-memory killer took someone in our cgroup meanwhile (``None``: the kernel does not say)."""
    cause = f"exited with status {rc}"
    if rc != -signal.SIGKILL:
        return cause
    if ooms_before is not None and ooms_now is not None and ooms_now > ooms_before:
        return cause + " (killed by the kernel: out of memory)"
    return cause + " (SIGKILL: the out-of-memory killer, or someone's kill -9)"


@attrs.define
class Supervised:
    """One stage as the supervisor sees it: its process, its last heartbeat, its restarts."""

    name: str
    proc: Process | None = None
    started_at: float = 0.0
    last_heartbeat: float = 0.0
    health: Health | None = None
    restarts: deque[float] = attrs.field(factory=deque)
    total_restarts: int = 0
    next_start: float = 0.0
    backoff: Backoff = attrs.field(factory=lambda: Backoff(0.0, 0.0))
    state: str = "stopped"
    last_exit: int | None = None
    history: deque[tuple[float, str]] = attrs.field(factory=lambda: deque(maxlen=100))
    """Wall time and cause of its recent restarts (``doctor`` reports the last hour's)."""

    def restart_wait(self, now: float, window_s: float, budget: int) -> float | None:
        """Count a restart at ``now``: the back-off before it, or ``None`` when ``budget`` restarts within
        ``window_s`` are used up (something is persistently wrong)."""
        while self.restarts and now - self.restarts[0] > window_s:
            self.restarts.popleft()
        if len(self.restarts) >= budget:
            return None
        self.restarts.append(now)
        self.total_restarts += 1
        return self.backoff.next()

    @property
    def pid(self) -> int | None:
        """The running process's pid (``None`` when there is none)."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def kill(self, log: Any) -> bool:
        """SIGKILL and wait up to 5 s: whether it is gone. One not reported dead (stuck in the kernel, a slow
        fork server) is no reason for the supervisor to die too: its replacement waits until it is."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        self.proc.kill()
        try:
            self.proc.wait(timeout=5)
            return True
        except subprocess.TimeoutExpired:
            log.error("watchdog.kill_unconfirmed", child=self.name, pid=self.proc.pid,
                      action="the replacement starts once it is gone")
            return False

    def stop(self, timeout_s: float, log: Any) -> bool:
        """SIGTERM, SIGKILL after ``timeout_s``: whether it is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return self.kill(log)

    def status(self, now: float) -> dict[str, Any]:
        pid = self.pid
        return {"service": self.name, "state": self.state, "pid": pid, "pss_mb": pss_mb(pid) if pid else None,
                "uptime_s": round(now - self.started_at, 1) if self.started_at else 0.0,
                "restarts": self.total_restarts, "last_exit": self.last_exit,
                "restarts_last_hour": [{"at": round(t, 1), "reason": why} for t, why in self.history
                                       if time.time() - t <= 3600],
                "stats": dict(self.health.stats) if self.health else {}}


class Watchdog:
    def __init__(self, cfg: Config, config_path: Path, runtime_dir: Path,
                 services: tuple[str, ...], log_dir: Path | None = None,
                 logger: Any = None, preload: Sequence[str] = (), figures: Figures | None = None) -> None:
        """``preload`` and ``figures``: what the fork server imports and what the heartbeats report, handed
        over by the caller (``stages.preload_modules()``, ``figures_by_stage()``): no stage is imported here."""
        self.cfg = cfg
        self.config_path = config_path
        self.runtime_dir = bus.ensure_runtime_dir(runtime_dir)
        self.log_dir = log_dir
        self.log = logger or logs.configure("watchdog")
        self.reports = SupervisorReports(cfg, self.log, log_dir, figures or {})
        w = cfg.watchdog
        self.children = {name: Supervised(name=name, backoff=Backoff(w.backoff_initial_s, w.backoff_max_s))
                         for name in services}
        # Before the first ZeroMQ socket starts its threads: the fork server is forked from us (forkserver.py).
        self.launcher = Launcher(config_path, self.runtime_dir, log_dir, w.fork_server, self.log, preload)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sub = bus.Subscriber(self.ctx, self.runtime_dir,
                                  [(s, (bus.HEALTH,)) for s in services], self.log)
        self.failed: str | None = None
        self.oom_seen = oom_kills()  # the out-of-memory kills counted so far in our cgroup (None: unknown)
        self.stopping = False
        self.started_wall = time.time()
        self.control = ControlServer(self.ctx, self.runtime_dir)  # the technician's CLI talks to us here

    # -- processes ----------------------------------------------------------------------
    def _spawn(self, child: Supervised) -> None:
        child.proc = self.launcher.start(child.name)
        child.started_at = time.monotonic()
        child.last_heartbeat = 0.0
        child.health = None
        child.state = "starting"
        self.log.info("watchdog.started", child=child.name, pid=child.proc.pid)

    def start_all(self) -> None:
        self.cleanup_stale()
        for child in self.children.values():
            self._spawn(child)

    def cleanup_stale(self) -> None:
        """Remove what killed processes left behind: every frame ring no live capture holds (also those of
        earlier runs in other runtime directories, e.g. a killed replay), this instance's sockets, and the replay
        time origins of its last run (kept only across restarts of one capture within a run)."""
        for seg in reclaim_stale_segments():
            self.log.warning("watchdog.removed_stale_segment", path=str(seg))
        for name in self.children:
            for path in RuntimePaths(self.runtime_dir).leftovers(name):
                path.unlink(missing_ok=True)

    def _schedule_restart(self, child: Supervised, why: str) -> None:
        child.history.append((time.time(), why))
        now, w = time.monotonic(), self.cfg.watchdog
        wait = child.restart_wait(now, w.restart_window_s, w.restart_budget)
        if wait is None:
            self.failed = f"{child.name}: {len(child.restarts)} restarts within {w.restart_window_s:.0f}s ({why})"
            child.state = "failed"
            self.log.error("watchdog.budget_exhausted", child=child.name, reason=why)
            return
        child.next_start = now + wait
        child.state = "backoff"
        self.log.warning("watchdog.restart_scheduled", child=child.name, reason=why,
                         in_s=round(wait, 2), restarts=child.total_restarts)

    def check(self) -> None:
        now = time.monotonic()
        w = self.cfg.watchdog
        for child in self.children.values():
            if child.state == "failed":
                continue
            if child.state == "backoff":
                if now >= child.next_start and child.proc is not None and child.proc.poll() is None:
                    child.proc.kill()  # killed but not yet gone: two of one stage must never run
                    child.next_start = now + 1.0
                elif now >= child.next_start:
                    self._spawn(child)
                continue
            assert child.proc is not None
            rc = child.proc.poll()
            if rc is not None:
                child.last_exit = rc
                ooms = oom_kills() if rc == -signal.SIGKILL else self.oom_seen
                self._schedule_restart(child, exit_cause(rc, self.oom_seen, ooms))
                self.oom_seen = ooms
                continue
            silent_for = now - (child.last_heartbeat or child.started_at)
            limit = w.hang_timeout_s if child.last_heartbeat else w.startup_grace_s
            if silent_for > limit:
                self.log.error("watchdog.hung", child=child.name, pid=child.proc.pid,
                               silent_s=round(silent_for, 1))
                child.kill(self.log)
                child.last_exit = child.proc.returncode
                self._schedule_restart(child, f"no heartbeat for {silent_for:.0f}s")
            elif child.backoff.attempts and child.last_heartbeat and now - child.started_at > 60:
                # A healthy run of a while resets the backoff.
                child.backoff.reset()

    def poll(self, timeout_ms: int = 200) -> Health | None:
        got = self.sub.recv(timeout_ms)
        last = None
        while got is not None:
            _, msg = got
            if isinstance(msg, Health) and msg.service in self.children:
                child = self.children[msg.service]
                if child.proc is not None and msg.pid == child.proc.pid:
                    child.last_heartbeat = time.monotonic()
                    child.health = msg
                    child.state = msg.state
                last = msg
            got = self.sub.recv(0)
        self._serve_control()
        self.check()
        self.reports.tick(self.all_up(), self.failed is not None, self.device_state()[1], self.status)
        return last

    def _serve_control(self) -> None:
        self.control.serve(self._control)

    def _control(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "state":  # what the uplink's health needs each minute, without the per-process figures
            state, degraded = self.device_state()
            return {"ok": True, "state": state, "degraded": degraded}
        if cmd == "status":
            state, degraded = self.device_state()
            return {"ok": True, "services": self.status(), "pid": os.getpid(), "state": state,
                    "pss_mb": pss_mb(os.getpid()), "total_pss_mb": total_pss_mb(os.getpid()),
                    "fork_server": self.launcher.mode,
                    "degraded": degraded,
                    "uptime_s": round(time.time() - self.started_wall, 1), "ready": self.all_up(),
                    "runtime_dir": str(self.runtime_dir)}
        if cmd == "restart":
            name = req.get("service")
            child = self.children.get(str(name))
            if child is None:
                return {"ok": False, "error": f"no service {name!r}; services: {', '.join(self.children)}"}
            if not child.stop(8.0, self.log):
                return {"ok": False, "error": f"{child.name} (pid {child.pid}) does not die; its replacement "
                        "starts once it is gone"}
            child.total_restarts += 1
            child.history.append((time.time(), "restarted on request (edgecount restart, lines set)"))
            self.log.info("watchdog.restart_requested", child=child.name)
            self._spawn(child)
            return {"ok": True, "service": child.name, "pid": child.proc.pid if child.proc else None}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def device_state(self) -> tuple[str, list[str]]:
        """``ok`` or ``degraded``, and which services are degraded (a camera down, the Edge TPU missing)."""
        degraded = [c.name for c in self.children.values() if c.state == "degraded"]
        return ("degraded" if degraded else "ok"), degraded

    def all_up(self) -> bool:
        return all(c.state in ("ok", "degraded") for c in self.children.values())

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (0) or until the restart budget runs out (1)."""
        def stop(signum: int, _frame: Any) -> None:
            self.stopping = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.start_all()
        try:
            while not self.stopping and self.failed is None:
                self.poll(200)
        finally:
            self.reports.stopping()
            self.stop_all()
        if self.failed:
            self.log.error("watchdog.giving_up", reason=self.failed)
            return 1
        return 0

    def stop_all(self, timeout_s: float = 8.0) -> None:
        procs = [c.proc for c in self.children.values() if c.proc is not None and c.proc.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.warning("watchdog.kill_on_stop", pid=p.pid)
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.log.error("watchdog.kill_unconfirmed", pid=p.pid)
        for c in self.children.values():
            c.state = "stopped"
        self.cleanup_stale()
        self.launcher.close()
        self.sub.close()
        self.control.close()
        RuntimePaths(self.runtime_dir).control.unlink(missing_ok=True)
        self.ctx.term()

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [c.status(now) for c in self.children.values()]

