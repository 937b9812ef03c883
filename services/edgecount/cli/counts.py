"""What was counted: the device's count history and live crossings."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from edgecount.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    config_path,
    err,
    out,
)
from edgecount.runtime import logs
from edgecount.runtime.settings import load_config, runtime_dir, state_dir
from edgecount_core.config import ConfigError


def cmd_counts(args: argparse.Namespace) -> int:
    import sqlite3
    import time as _time

    from edgecount.tools.doctor import state_dir_problem
    from edgecount.tools.history import totals_since

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
    names = [f"line:{ln.name}" for ln in cfg.lines] + [f"zone:{z.name}" for z in cfg.zones]
    try:
        result = totals_since(db, windows, names)
    except sqlite3.Error as exc:
        err.print(f"[red]cannot read the count history:[/] {db}: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    t = Table(title="counts (lines: in/out, zones: entries/exits)")
    t.add_column("line/zone")
    for label in result:
        t.add_column(label, justify="right")
    for n in sorted({k for v in result.values() for k in v}):
        t.add_row(n, *(f"{result[lbl][n]['in']} / {result[lbl][n]['out']}" for lbl in result))
    out.print(t)
    return EXIT_OK


def _parse_since(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ConfigError(f"--since {text!r}: use a duration such as 30m, 2h or 1d") from None


def cmd_events(args: argparse.Namespace) -> int:
    import time as _time

    import zmq as _zmq

    from edgecount.runtime import bus
    from edgecount_core.messages import Crossing, ZoneEvent

    cfg = load_config(config_path(args))
    rd = runtime_dir(cfg)
    if not (rd / "counter.sock").exists():
        err.print(f"[red]the appliance is not running[/] (no {rd / 'counter.sock'})")
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
    ct.add_argument("--since", help="a duration instead: 30m, 2h, 1d")
    ct.add_argument("--json", action="store_true")
    ct.set_defaults(func=cmd_counts)

    evs = sub.add_parser("events", help="crossings and zone changes as they happen (on the device only)")
    evs.add_argument("--config", "-c")
    evs.add_argument("--follow", "-f", action="store_true")
    evs.add_argument("--wait", type=float, default=10.0, help="without --follow, listen this many seconds")
    evs.add_argument("--json", action="store_true")
    evs.set_defaults(func=cmd_events)
