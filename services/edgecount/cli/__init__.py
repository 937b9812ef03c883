"""The ``edgecount`` command line: parsing and rendering only; the work is done by tools and the runtime.

One module per command group; each adds its commands with ``register(sub)``.
"""

from __future__ import annotations

import argparse
import sys

from edgecount import __version__
from edgecount.cli import appliance, counts, models, pipeline, setup
from edgecount.cli.common import EXIT_OK, EXIT_USAGE, err
from edgecount_core.config import ConfigError

GROUPS = (appliance, pipeline, models, counts, setup)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgecount", description="People counting on the edge.")
    p.add_argument("--version", action="version", version=f"edgecount {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    try:
        rc: int = args.func(args)
        return rc
    except ConfigError as exc:
        err.print(f"[red]invalid configuration[/]\n{exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
