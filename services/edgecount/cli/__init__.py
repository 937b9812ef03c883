"""The ``edgecount`` command line: parsing and rendering only; the work is done by tools and the runtime.

One module per command group; each adds its commands with ``register(sub)``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from edgecount import __version__
from edgecount.cli import appliance, counts, evaluation, models, pipeline, setup, update, validate
from edgecount.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, err
from edgecount.cli.terminal import native_output_to_log, report_unexpected
from edgecount_core.config import ConfigError

GROUPS = (appliance, pipeline, evaluation, validate, models, counts, setup, update)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgecount", description="People counting on the edge.")
    p.add_argument("--version", action="version", version=f"edgecount {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in GROUPS:
        group.register(sub)
    _add_verbose(p)
    return p


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """Every command takes --verbose: native libraries' output and debug logs on the terminal too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not any(isinstance(a, argparse._SubParsersAction) for a in child._actions) and \
                        "--verbose" not in child._option_string_actions:
                    child.add_argument("--verbose", "-v", action="store_true",
                                       help="also show native libraries' output and debug logs")
                _add_verbose(child)


def _command(args: argparse.Namespace) -> str:
    words = [args.cmd] + [str(getattr(args, k)) for k in ("models_cmd", "bench_cmd", "lines_cmd", "config_cmd")
                          if getattr(args, k, None)]
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    # `run` keeps the real stderr: under systemd its services log there (the journal).
    quiet = contextlib.nullcontext() if args.cmd == "run" else native_output_to_log(bool(args.verbose))
    try:
        with quiet:
            rc: int = args.func(args)
        return rc
    except ConfigError as exc:
        err.print(f"[red]invalid configuration[/]\n{exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, never a traceback
        print(report_unexpected(exc, _command(args)), file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
