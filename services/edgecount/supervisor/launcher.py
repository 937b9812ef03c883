"""How the supervisor starts a stage process: forked from the fork server, else a fresh interpreter.

The fork server shares the preloaded interpreter (and its pages) with every
stage; when it is off, or cannot fork (it died, it is being replaced), the stage
starts in a fresh interpreter instead, slower but the same. Either way the
stage's output is appended to its log file, and it is told which supervisor it
belongs to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from edgecount.supervisor.forkserver import ForkServer, ForkServerError, StageProcess

Process = subprocess.Popen[bytes] | StageProcess


class Launcher:
    """Starts stages by name; owns the fork server (if used) and the log files of fresh interpreters."""

    def __init__(self, config_path: Path, runtime_dir: Path, log_dir: Path | None, fork_server: bool,
                 log: Any, preload: Sequence[str] = ()) -> None:
        self.config_path = config_path
        self.runtime_dir = runtime_dir
        self.log_dir = log_dir
        self.log = log
        self._log_files: dict[str, IO[bytes]] = {}
        # Forked before the first ZeroMQ socket starts its threads, so it can share our memory (forkserver.py).
        self.fork_server: ForkServer | None = None
        if fork_server:
            self.fork_server = ForkServer(preload)
            self.fork_server.start()

    @property
    def mode(self) -> str:
        """How stages are started: the fork server's mode, or ``off``."""
        return self.fork_server.mode if self.fork_server is not None else "off"

    def start(self, name: str) -> Process:
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
        if self.fork_server is not None:
            try:
                return StageProcess(self.fork_server, name, self.config_path, self.runtime_dir, log_path)
            except ForkServerError as exc:
                self.log.error("watchdog.fork_server_failed", child=name, error=str(exc),
                               fallback="a fresh interpreter")
        argv = [sys.executable, "-m", "edgecount.stages", name, "--config", str(self.config_path),
                "--runtime-dir", str(self.runtime_dir)]
        out: IO[bytes] | None = None
        if log_path is not None:
            out = self._log_files.get(name) or self._log_files.setdefault(name, log_path.open("ab"))
        env = dict(os.environ, EDGECOUNT_WATCHDOG_PID=str(os.getpid()))
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)

    def close(self) -> None:
        """After every stage stopped: the log files, and the fork server."""
        for f in self._log_files.values():
            f.close()
        self._log_files.clear()
        if self.fork_server is not None:
            self.fork_server.close()
