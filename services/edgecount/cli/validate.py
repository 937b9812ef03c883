"""``edgecount validate``: the technician's count at the door against the device's, live or from a tally file.

Exit codes: 0 ``PASS``, 1 ``CHECK`` (or the comparison failed), 2 a bad tally file or option, 3 the
appliance is not running (live comparisons only).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgecount.cli.common import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE, config_path, err, out
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.settings import load_config, runtime_dir
from edgecount_core.config import Config, ConfigError
from edgecount_core.validation import (
    DEFAULT_MIN_CROSSINGS,
    DEFAULT_TARGET,
    DEFAULT_TOLERANCE_S,
    DIRECTIONS,
    Report,
    TallyError,
    parse_tally,
)

REDRAW_S = 0.5


def cmd_validate(args: argparse.Namespace) -> int:
    from edgecount.stages.crossing_journal import JournalError
    from edgecount.tools.validate import ValidationError

    cfg = load_config(config_path(args))
    camera = args.camera or (cfg.camera_names()[0] if len(cfg.camera_names()) == 1 else "")
    if camera not in cfg.camera_names():
        err.print(f"[red]name the camera to validate:[/] --camera {' | '.join(cfg.camera_names())}")
        return EXIT_USAGE
    if args.tolerance <= 0 or not 0 < args.target <= 1:
        err.print("[red]--tolerance must be above 0 s and --target between 0 and 1[/] (e.g. --target 0.95)")
        return EXIT_USAGE
    try:
        if args.clip is not None:
            return _from_clip(cfg, args)
        if args.tally is not None:
            return _from_file(cfg, args, camera)
        return _live(cfg, args, camera)
    except (ValidationError, JournalError) as exc:
        err.print(f"[red]validate:[/] {exc}")
        return EXIT_FAILED


def _read_tally(path: str, lines: list[str] | None) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TallyError(f"cannot read it: {exc}") from None
    return parse_tally(text, lines)


def _from_clip(cfg: Config, args: argparse.Namespace) -> int:
    from edgecount.assets.obtain import AssetError
    from edgecount.cli.common import line_args, with_progress
    from edgecount.detection.interpreter import DetectorError
    from edgecount.runtime import logs
    from edgecount.tools.replay import ReplayError
    from edgecount.tools.validate import validate_clip

    if args.tally is None:
        err.print("[red]a clip is compared with a tally file:[/] edgecount validate CLIP --tally FILE")
        return EXIT_USAGE
    try:
        lines = line_args(args) or None
        names = [ln.name for ln in (lines or cfg.lines)]
        tally = _read_tally(args.tally, names)
    except (ConfigError, TallyError) as exc:
        err.print(f"[red]{args.tally if isinstance(exc, TallyError) else '--line'}:[/] {exc}")
        return EXIT_USAGE
    try:
        report, _ = with_progress("validate", args.json, lambda progress: validate_clip(
            cfg, args.clip, tally, lines, tolerance_s=args.tolerance, target=args.target,
            min_crossings=args.min_crossings, progress=progress,
            logger=logs.configure("validate", level="info" if args.verbose else "warning")), unit="frames")
    except (ReplayError, AssetError, DetectorError) as exc:
        err.print(f"[red]validate failed:[/] {exc}")
        return EXIT_FAILED
    return _finish(report, args, clock=False)


def _from_file(cfg: Config, args: argparse.Namespace, camera: str) -> int:
    from edgecount.tools.validate import line_names, save_result, validate_file

    try:
        tally = _read_tally(args.tally, line_names(cfg, camera))
    except TallyError as exc:
        err.print(f"[red]{args.tally}:[/] {exc}")
        return EXIT_USAGE
    now = time.time()
    report = validate_file(cfg, tally, camera=camera, tolerance_s=args.tolerance, target=args.target,
                           min_crossings=args.min_crossings, now=now)
    save_result(cfg, report, f"tally file {args.tally}", now)
    return _finish(report, args, clock=True)


def _live(cfg: Config, args: argparse.Namespace, camera: str) -> int:
    from edgecount.tools.validate import KEY_PAIRS, LiveTally, line_names, save_result

    names = line_names(cfg, camera)
    if not names:
        err.print("[red]no counting lines to validate:[/] add one with edgecount lines set")
        return EXIT_USAGE
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        err.print("[red]live validation needs a terminal[/] (keys in, table out); from a script, use --tally FILE")
        return EXIT_USAGE
    if not RuntimePaths(runtime_dir(cfg)).bus("counter").exists():
        err.print(f"[red]the appliance is not running[/] (no {RuntimePaths(runtime_dir(cfg)).bus('counter')}): "
                  "start it (systemctl start edgecount) and validate again")
        return EXIT_NOT_RUNNING
    if len(names) > len(KEY_PAIRS):
        err.print(f"[yellow]tallying the first {len(KEY_PAIRS)} lines only[/] ({', '.join(names[len(KEY_PAIRS):])} "
                  "not): one person can watch no more")
    tally = LiveTally(names[:len(KEY_PAIRS)], time.time())
    deadline = tally.started + args.minutes * 60 if args.minutes else None
    _key_loop(cfg, camera, tally, deadline)
    end = time.time()
    # The counter decides a crossing a few frames after the feet pass, and the technician may press late.
    err.print(f"waiting {args.tolerance:g} s for the device's last crossings ...")
    time.sleep(args.tolerance)
    from edgecount.tools.validate import device_crossings
    from edgecount_core.validation import compare

    device = device_crossings(cfg, tally.started - args.tolerance, end + args.tolerance, camera)
    report = compare(tally.presses, device, tally.lines, tolerance_s=args.tolerance, window=(tally.started, end),
                     target=args.target, min_crossings=args.min_crossings)
    save_result(cfg, report, "live tally", end)
    return _finish(report, args, clock=True)


def _key_loop(cfg: Config, camera: str, tally: Any, deadline: float | None) -> None:
    """Keys in, the live table out, until ``q`` or the deadline; the terminal is restored however it ends."""
    import termios
    import tty

    from edgecount.tools.validate import device_crossings

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    resized = [True]

    def on_resize(_sig: int, _frame: Any) -> None:
        resized[0] = True

    # Wrapping, unlike the shared console: the table fits whatever size the terminal has now.
    screen = Console(file=sys.stdout, highlight=False)
    old_handler = signal.signal(signal.SIGWINCH, on_resize)
    tty.setcbreak(fd)
    next_draw = 0.0
    try:
        while True:
            now = time.time()
            if deadline is not None and now >= deadline:
                return
            if resized[0] or now >= next_draw:
                resized[0] = False
                device = device_crossings(cfg, tally.started, now, camera)
                _draw(screen, tally, device, now, deadline)
                next_draw = now + REDRAW_S
            try:
                ready, _, _ = select.select([fd], [], [], 0.1)
            except InterruptedError:  # a resize while waiting
                continue
            if not ready:
                continue
            for key in os.read(fd, 64).decode("utf-8", errors="ignore").lower():
                if key == "q":
                    return
                if tally.press(key, time.time()):
                    next_draw = 0.0
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_handler)


def _draw(screen: Console, tally: Any, device: list[Any], now: float, deadline: float | None) -> None:
    elapsed = now - tally.started
    left = "" if deadline is None else f", {_clock(max(0.0, deadline - now))} left"
    t = Table(title=f"validation: {_clock(elapsed)} elapsed{left}",
              caption="press the key as each person crosses · u takes the last press back · q finishes")
    for col in ("line", "key", "direction", "you", "device", "difference"):
        t.add_column(col, justify="left" if col in ("line", "direction") else "right")
    keys = {v: k for k, v in tally.keys.items()}
    for name in tally.lines:
        for d in DIRECTIONS:
            mine = tally.count(name, d)
            theirs = sum(1 for c in device if c.line == name and c.direction == d)
            t.add_row(name, keys[(name, d)], d, str(mine), str(theirs), f"{theirs - mine:+d}")
    screen.file.write("\x1b[H\x1b[2J")  # home and clear: redrawn in place, at the new size after a resize
    screen.print(t)
    screen.file.flush()


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def _when(t: float, clock: bool) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if clock else f"{t:.1f} s"


def _finish(report: Report, args: argparse.Namespace, clock: bool) -> int:
    rc = EXIT_OK if report.verdict == "PASS" else EXIT_FAILED
    if args.json:
        print(json.dumps(report.to_json()))
        return rc
    t = Table(title=f"validation: device against tally (±{report.tolerance_s:g} s)")
    for col in ("line", "direction", "tally", "device", "matched", "missed", "extra"):
        t.add_column(col, justify="left" if col in ("line", "direction") else "right")
    for ln in report.lines:
        for d, r in ln.directions.items():
            t.add_row(ln.name, d, str(r.tally), str(r.device), str(r.matched), str(r.missed), str(r.extra))
    t.add_row("total", "", str(report.tally), str(report.device), str(report.matched), str(report.missed),
              str(report.extra), end_section=True)
    out.print(t)
    lo, hi = report.ci95
    out.print(f"count accuracy {report.count_accuracy:.1%} (target {report.target:.0%})   event accuracy "
              f"{report.event_accuracy:.1%}, 95 % interval {lo:.1%} – {hi:.1%}")
    for ln in report.lines:
        for d, r in ln.directions.items():
            if r.missed_at:
                out.print(f"  missed  {ln.name} {d}: " + ", ".join(_when(x, clock) for x in r.missed_at))
            if r.extra_at:
                out.print(f"  extra   {ln.name} {d}: " + ", ".join(_when(x, clock) for x in r.extra_at))
    colour = "green" if report.verdict == "PASS" else "yellow"
    out.print(f"[bold {colour}]{report.verdict}[/]")
    for cause in report.causes:
        out.print(f"  - {cause}")
    return rc


def register(sub: Any) -> None:
    """Add ``validate`` to the ``edgecount`` parser."""
    v = sub.add_parser("validate", help="compare a hand tally with the device's counts (live, a file, or a clip)",
                       description="Without a file: tally live, one key per crossing, while the device counts. "
                       "With --tally FILE (time,line,direction): compare it with the device over the file's "
                       "times, or with CLIP replayed through the pipeline.")
    v.add_argument("clip", nargs="?", help="a recorded video (or asset:NAME) the tally was counted on")
    v.add_argument("--tally", metavar="FILE", help="CSV time,line,direction (ISO-8601 clock times, or seconds "
                   "from the clip's start)")
    v.add_argument("--line", action="append", metavar="NAME:AX,AY,BX,BY", help="with CLIP: the lines to count")
    v.add_argument("--config", "-c")
    v.add_argument("--camera", help="the camera to validate (when there are several)")
    v.add_argument("--minutes", type=float, default=0, help="live: stop after this long (default: at q)")
    v.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S,
                   help=f"seconds a tallied and a device crossing may be apart (default {DEFAULT_TOLERANCE_S:g})")
    v.add_argument("--target", type=float, default=DEFAULT_TARGET,
                   help=f"count accuracy for PASS (default {DEFAULT_TARGET})")
    v.add_argument("--min-crossings", type=int, default=DEFAULT_MIN_CROSSINGS,
                   help=f"fewest tallied crossings for PASS (default {DEFAULT_MIN_CROSSINGS})")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_validate)

