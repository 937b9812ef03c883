"""``python -m edgecount.svc NAME --config F --runtime-dir D``: start one service process."""

from __future__ import annotations

import sys
from importlib import import_module

ENTRY = {
    "capture": "edgecount.capture:Capture",
    "inference": "edgecount.inference:Inference",
    "counter": "edgecount.counter:Counter",
    "privacy": "edgecount.privacy:Privacy",
    "uplink": "edgecount.uplink:Uplink",
}


def main(argv: list[str] | None = None) -> int:
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
