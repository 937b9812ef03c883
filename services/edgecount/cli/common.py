"""What every command shares: the consoles, exit codes, the configuration path and progress bars.

Exit codes: 0 ok, 1 a check or the pipeline failed, 2 usage or configuration
error, 3 the appliance is not running.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgecount_core.config import LineSection, parse_line_arg

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3

# Piped output keeps whole table rows (no 80-column wrapping) so scripts and logs stay readable.
out = Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, highlight=False, width=None if sys.stderr.isatty() else 200)

DEFAULT_CONFIG = Path("/etc/edgecount/edgecount.toml")
T = TypeVar("T")


def config_path(args: argparse.Namespace) -> str | None:
    """--config, else $EDGECOUNT_CONFIG, else the installed /etc/edgecount/edgecount.toml."""
    if getattr(args, "config", None):
        return str(args.config)
    if os.environ.get("EDGECOUNT_CONFIG"):
        return os.environ["EDGECOUNT_CONFIG"]
    return str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None


def line_args(args: argparse.Namespace) -> list[LineSection]:
    """The --line options, parsed (ConfigError on a malformed one)."""
    return [parse_line_arg(s) for s in args.line or []]


ProgressFn = Callable[..., None]


def with_progress(label: str, quiet: bool, work: Callable[[ProgressFn | None], T], unit: str = "") -> T:
    """Run ``work(progress)`` with a progress bar on a terminal; ``work(None)`` when quiet or piped.

    ``progress(done, total, what=None)`` moves the bar (``what`` renames it, e.g. the model measured).
    """
    if quiet or not err.is_terminal:
        return work(None)
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns += [TextColumn(unit), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)
        def update(done: int, total: int | None, what: str | None = None) -> None:
            bar.update(task, completed=done, total=total or None)
            if what:
                bar.update(task, description=what)

        return work(update)
