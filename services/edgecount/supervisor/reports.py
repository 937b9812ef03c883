"""What the supervisor tells the world outside the appliance, every turn of its loop.

systemd: ``READY=1`` once every service heartbeats, ``WATCHDOG=1`` pings while the loop runs (it restarts
any service that stops heartbeating: that is what a ping vouches for), and ``STATUS=`` naming what is
degraded. node_exporter: the Prometheus textfile (no port is opened on the device). The disk: the
services' log files kept inside their budget. None of it decides anything about the services.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgecount.runtime.logfiles import bound_log_files
from edgecount.supervisor.metrics import Figures, render, samples, write_textfile
from edgecount.supervisor.sdnotify import SdNotify
from edgecount_core.config import Config

LOG_CHECK_EVERY_S = 30.0


class SupervisorReports:
    def __init__(self, cfg: Config, log: Any, log_dir: Path | None, figures: Figures) -> None:
        self.cfg = cfg
        self.figures = figures
        self.log = log
        self.log_dir = log_dir
        self.notify = SdNotify()
        self.ready_sent = False
        self._next_ping = 0.0
        self._next_metrics = 0.0
        self._next_log_check = 0.0
        self._metrics_warned = False
        self._status_sent = ""

    def tick(self, all_up: bool, failed: bool, degraded: Sequence[str],
             status_rows: Callable[[], Sequence[Mapping[str, Any]]]) -> None:
        """One turn: ``all_up`` (every service heartbeats), ``failed`` (the supervisor gives up), which
        services are ``degraded``, and the status rows the metrics are made of (asked only when due)."""
        self._systemd(all_up, failed, degraded)
        self._metrics(status_rows)
        self._bound_logs()

    def stopping(self) -> None:
        self.notify.send("STOPPING=1")

    def _systemd(self, all_up: bool, failed: bool, degraded: Sequence[str]) -> None:
        if not self.notify.enabled:
            return
        if not self.ready_sent and all_up:
            self.notify.send("READY=1\nSTATUS=counting")
            self.ready_sent = True
        if not self.ready_sent:
            return
        now = time.monotonic()
        # A camera outage is degraded, not a hang: the pings go on.
        if not failed and now >= self._next_ping:
            self.notify.send("WATCHDOG=1")
            self._next_ping = now + min(1.0, (self.notify.watchdog_s or 4.0) / 4)
        status = f"degraded: {', '.join(degraded)}" if degraded else "counting"
        if status != self._status_sent:
            self.notify.send(f"STATUS={status}")
            self._status_sent = status

    def _metrics(self, status_rows: Callable[[], Sequence[Mapping[str, Any]]]) -> None:
        w = self.cfg.watchdog
        now = time.monotonic()
        if not w.metrics_dir or now < self._next_metrics:
            return
        self._next_metrics = now + w.metrics_interval_s
        try:
            rows = samples(status_rows(), self.figures, now=time.time())
            write_textfile(Path(w.metrics_dir), render(rows, self.figures))
        except OSError as exc:
            if not self._metrics_warned:  # e.g. node_exporter not installed: say so once, carry on
                self.log.warning("watchdog.metrics_not_written", dir=w.metrics_dir, reason=str(exc))
                self._metrics_warned = True

    def _bound_logs(self) -> None:
        now = time.monotonic()
        if self.log_dir is None or now < self._next_log_check:
            return
        self._next_log_check = now + LOG_CHECK_EVERY_S
        for path in bound_log_files(self.log_dir):
            self.log.info("watchdog.log_rotated", file=str(path))
