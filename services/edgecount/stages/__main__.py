"""``python -m edgecount.stages NAME --config F --runtime-dir D``: run one stage as its own process.

The watchdog starts every stage this way; the stage class comes from the topology table.
"""

from __future__ import annotations

import os
import signal
import sys

from edgecount.supervisor.lifetime import die_with_supervisor, name_process


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
    name_process(f"ec-{name}")
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
