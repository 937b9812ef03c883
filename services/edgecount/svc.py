"""``python -m edgecount.svc NAME --config F --runtime-dir D``: start one service process."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from importlib import import_module

ENTRY = {
    "capture": "edgecount.capture:Capture",
    "inference": "edgecount.inference:Inference",
    "counter": "edgecount.counter:Counter",
    "privacy": "edgecount.privacy:Privacy",
    "uplink": "edgecount.uplink:Uplink",
}


def _die_with_parent() -> None:
    """Ask the kernel to stop us when the watchdog dies (even by SIGKILL), so no orphan
    keeps publishing beside the services a restarted watchdog starts."""
    expected = os.environ.get("EDGECOUNT_WATCHDOG_PID")
    if not expected or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != expected:
        raise SystemExit(0)  # the watchdog died before the prctl took effect


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ENTRY:
        print(f"usage: python -m edgecount.svc {{{','.join(ENTRY)}}} --config F --runtime-dir D",
              file=sys.stderr)
        return 2
    module, cls = ENTRY[args[0]].split(":")
    from edgecount.service import main_for

    return main_for(getattr(import_module(module), cls), args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
