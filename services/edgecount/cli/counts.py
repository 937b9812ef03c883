"""What was counted: the device's count history and live crossings."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from typing import Any

from rich.table import Table

from edgecount.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    config_path,
    err,
    out,
)
from edgecount.runtime import logs
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.settings import load_config, runtime_dir, state_dir
from edgecount_core.config import ConfigError


def cmd_counts(args: argparse.Namespace) -> int:
    import sqlite3
    import time as _time

    from edgecount.tools.doctor import state_dir_problem
    from edgecount.tools.history import series_name, totals_by_camera
    from edgecount_core.messages import DEFAULT_CAMERA

    cfg = load_config(config_path(args))
    db = state_dir(cfg) / "uplink.db"
    problem = state_dir_problem(db.parent)
    if problem:
        err.print(f"[red]cannot read the count history:[/] {problem} (runtime.state_dir)")
        return EXIT_FAILED
    if not db.exists():
        err.print(f"[yellow]no counts yet ({db} does not exist)[/]")
        return EXIT_FAILED
    now = _time.time()
    local = _time.localtime(now)
    midnight = _time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    since = now - _parse_since(args.since) if args.since else None
    windows = {"today": midnight, "last hour": now - 3600}
    if since is not None:
        windows = {f"since {args.since}": since}
    names = {cam: [f"line:{ln.name}" for ln in view.lines] + [f"zone:{z.name}" for z in view.zones]
             for cam in cfg.camera_names() for view in (cfg.for_camera(cam),)}
    if args.chart:
        flat = [series_name(cam, n) for cam, ns in names.items() for n in ns]
        return _chart(db, now - (_parse_since(args.since) if args.since else 86400.0), now,
                      _parse_since(args.by), flat, args.json)
    try:
        by_camera = totals_by_camera(db, windows, names)
    except sqlite3.Error as exc:
        err.print(f"[red]cannot read the count history:[/] {db}: {exc}")
        return EXIT_FAILED
    if args.json:
        # A single-camera file keeps its output as it was; with [[cameras]] the counts group by camera.
        print(json.dumps({"cameras": by_camera} if cfg.cameras else by_camera.get(DEFAULT_CAMERA, {})))
        return EXIT_OK
    t = Table(title="counts (lines: in/out, zones: entries/exits)")
    if cfg.cameras:
        t.add_column("camera")
    t.add_column("line/zone")
    labels = list(windows)
    for label in labels:
        t.add_column(label, justify="right")
    for cam, result in by_camera.items():
        for n in sorted({k for v in result.values() for k in v}):
            cells = [f"{result[lbl][n]['in']} / {result[lbl][n]['out']}" if n in result[lbl] else "0 / 0"
                     for lbl in labels]
            t.add_row(*([cam] if cfg.cameras else []), n, *cells)
    out.print(t)
    return EXIT_OK


def _chart(db: Any, since: float, until: float, by_s: float, names: list[str], as_json: bool) -> int:
    """In and out per line (entries and exits per zone) over time, drawn in the terminal by plotext."""
    import sqlite3
    import time as _time

    import plotext as plt

    from edgecount.tools.history import series

    if by_s <= 0 or (until - since) / by_s > 2000:
        err.print("[red]--by[/]: use a bin that gives at most 2000 points, e.g. --since 24h --by 15m")
        return EXIT_USAGE
    try:
        data = series(db, since, until, by_s, names)
    except sqlite3.Error as exc:
        err.print(f"[red]cannot read the count history:[/] {db}: {exc}")
        return EXIT_FAILED
    if as_json:
        print(json.dumps(data))
        return EXIT_OK
    labels = [_time.strftime("%d/%m/%Y %H:%M", _time.localtime(t)) for t in data["bins"]]
    plt.clear_figure()
    plt.date_form("d/m/Y H:M")
    width, height = shutil.get_terminal_size((100, 30))
    plt.plot_size(min(width, 160), max(12, min(height - 4, 30)))
    for name, s in sorted(data["series"].items()):
        plt.plot(labels, s["in"], label=f"{name} in", marker="braille")
        plt.plot(labels, s["out"], label=f"{name} out", marker="braille")
    plt.title(f"people per {by_s / 60:g} min")
    chart = plt.build()
    print(chart if sys.stdout.isatty() else plt.uncolorize(chart))  # no colour codes in a pipe or a file
    return EXIT_OK


def _parse_since(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:  # nan, inf and negative durations parse as floats too
        raise ConfigError(f"--since {text!r}: use a duration such as 30m, 2h or 1d")
    return seconds


def cmd_events(args: argparse.Namespace) -> int:
    import time as _time

    import zmq as _zmq

    from edgecount.runtime import bus
    from edgecount_core.messages import Crossing, ZoneEvent

    cfg = load_config(config_path(args))
    rd = runtime_dir(cfg)
    if not RuntimePaths(rd).bus("counter").exists():
        err.print(f"[red]the appliance is not running[/] (no {RuntimePaths(rd).bus('counter')})")
        return EXIT_NOT_RUNNING
    ctx: _zmq.Context[Any] = _zmq.Context()
    sub = bus.Subscriber(ctx, rd, [("counter", (bus.CROSSING, bus.ZONE))], logs.configure("cli", level="error"))
    deadline = None if args.follow else _time.monotonic() + args.wait
    try:
        while deadline is None or _time.monotonic() < deadline:
            got = sub.recv(200)
            if got is None:
                continue
            msg = got[1]
            when = _time.strftime("%H:%M:%S", _time.localtime(msg.ts)) if hasattr(msg, "ts") else ""
            if isinstance(msg, Crossing):
                row: dict[str, object] = {"time": when, "line": msg.line, "direction": msg.direction}
            elif isinstance(msg, ZoneEvent):
                row = {"time": when, "zone": msg.zone, "kind": msg.kind, "occupancy": msg.occupancy}
            else:
                continue
            if cfg.cameras:
                row = {"camera": msg.camera, **row}
            print(json.dumps(row) if args.json else "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        ctx.term()
    return EXIT_OK


def register(sub: Any) -> None:
    """Add this module's commands to the ``edgecount`` parser."""
    ct = sub.add_parser("counts", help="counts per line/zone: today and the last hour")
    ct.add_argument("--config", "-c")
    ct.add_argument("--since", help="a duration instead: 30m, 2h, 1d (with --chart: default 24h)")
    ct.add_argument("--chart", action="store_true", help="in/out per line over time, drawn in the terminal")
    ct.add_argument("--by", default="15m", help="with --chart: the time per point (default 15m)")
    ct.add_argument("--json", action="store_true", help="plain numbers (with --chart: the series)")
    ct.set_defaults(func=cmd_counts)

    evs = sub.add_parser("events", help="crossings and zone changes as they happen (on the device only)")
    evs.add_argument("--config", "-c")
    evs.add_argument("--follow", "-f", action="store_true")
    evs.add_argument("--wait", type=float, default=10.0, help="without --follow, listen this many seconds")
    evs.add_argument("--json", action="store_true")
    evs.set_defaults(func=cmd_events)
