"""A child process's ties to its supervisor: die when it dies, and carry a name a technician recognises.

Shared by the stages and the fork server they are forked from (runtime.forkserver).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie does not: only its parent's wait is missing."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def die_with_supervisor(parent_pid: int) -> None:
    """Ask the kernel to stop us when our parent (the watchdog, or its fork server) dies, even by SIGKILL,
    so no orphan keeps publishing beside the services a restarted watchdog starts."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if not alive(parent_pid) or os.getppid() == 1:
        raise SystemExit(0)  # the supervisor died before the prctl took effect


def name_process(name: str) -> None:
    """Show a forked process under its own name in ``top`` and ``ps -o comm`` (its command line stays its
    parent's): at most 15 characters, Linux only."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)  # PR_SET_NAME


def process_name(pid: int) -> str:
    """The name a process carries in ``ps -o comm`` (``ec-forkserver``, ``ec-counter``); empty if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
