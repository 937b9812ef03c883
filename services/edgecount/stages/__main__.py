"""``python -m edgecount.stages NAME --config F --runtime-dir D``: run one stage as its own process.

The watchdog starts every stage this way; the stage class comes from the topology table.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys


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
    if not _alive(parent_pid) or os.getppid() == 1:
        raise SystemExit(0)  # the supervisor died before the prctl took effect


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _die_with_parent() -> None:
    expected = os.environ.get("EDGECOUNT_WATCHDOG_PID")
    if expected:
        die_with_supervisor(int(expected))


def run_forked(name: str, config: str, runtime_dir: str, watchdog_pid: int) -> int:
    """A stage forked by the watchdog's fork server (runtime.forkserver): default signals, die with the
    supervisor, then the stage's loop."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    die_with_supervisor(watchdog_pid)
    from edgecount.stages import split_process
    from edgecount.stages.base import main_for

    return main_for(split_process(name)[0].load(), ["--config", config, "--runtime-dir", runtime_dir], name)


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    from edgecount.stages import NAMES, split_process
    from edgecount.stages.base import main_for

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        st, _ = split_process(args[0]) if args else (None, None)
    except ValueError:
        st = None
    if st is None:
        print(f"usage: python -m edgecount.stages {{{','.join(NAMES)}}}[@CAMERA] --config F --runtime-dir D",
              file=sys.stderr)
        return 2
    return main_for(st.load(), args[1:], args[0])


if __name__ == "__main__":
    raise SystemExit(main())
