"""Start stages from a fork server that has already imported what they share, so they share its memory.

Every stage would otherwise load Python, NumPy, pydantic, ZeroMQ, structlog, OpenCV and the TFLite
runtime on its own. The watchdog asks multiprocessing's fork server, which imported them once, to fork
each stage: the pages of those modules stay shared (copy-on-write) between all stages, which lowers the
appliance's total PSS (measured in ``tests/bench/bench_footprint.py``). A stage forked this way behaves
as one started with ``python -m edgecount.stages``: its own process, logs to its own file, dies with
the supervisor. :class:`StageProcess` gives it the ``subprocess.Popen`` interface the watchdog uses.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

# Imported once in the fork server. Nothing here may start a thread or open a socket at import.
PRELOAD = ["numpy", "cv2", "sqlite3", "paho.mqtt.client", "ai_edge_litert.interpreter",
           "edgecount.stages.capture", "edgecount.stages.inference", "edgecount.stages.counter",
           "edgecount.stages.privacy", "edgecount.stages.uplink", "edgecount.runtime.preload"]

_context: Any = None


def context() -> Any:
    global _context
    if _context is None:
        # BLAS and OpenCV thread pools must not exist in the server: threads do not survive a fork.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


# The stages are started by name, across the process boundary, as `python -m edgecount.stages` is:
# the runtime never imports them.
STAGE_ENTRY = "edgecount.stages.__main__"


def _run(name: str, config: str, runtime_dir: str, log_path: str | None, watchdog_pid: int) -> None:
    """The forked stage: its own log file on stdout/stderr, stdin from /dev/null, then the stage's loop."""
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    entry = import_module(STAGE_ENTRY)
    sys.exit(entry.run_forked(name, config, runtime_dir, watchdog_pid))


class StageProcess:
    """A forked stage with the part of the ``subprocess.Popen`` interface the watchdog uses."""

    def __init__(self, name: str, config: Path, runtime_dir: Path, log_path: Path | None) -> None:
        self._proc = context().Process(target=_run, name=f"edgecount-{name}",
                                       args=(name, str(config), str(runtime_dir),
                                             str(log_path) if log_path else None, os.getpid()))
        self._proc.start()
        self.pid: int = int(self._proc.pid)

    @property
    def returncode(self) -> int | None:
        code = self._proc.exitcode
        return None if code is None else int(code)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired(f"edgecount stage {self.pid}", timeout or 0.0)
        return int(self._proc.exitcode)

    def send_signal(self, sig: int) -> None:
        if self._proc.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
