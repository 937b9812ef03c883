"""Setting the device up: preview, counting lines, configuration check."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from edgecount.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    config_path,
    err,
    out,
)
from edgecount.runtime.settings import load_config, runtime_dir
from edgecount_core.config import ConfigError, parse_line_arg
from edgecount_core.geometry import Line


def cmd_preview(args: argparse.Namespace) -> int:
    import cv2

    from edgecount.tools.preview import draw, foot_heat, from_appliance, from_camera

    full = load_config(config_path(args))
    camera = args.camera or full.camera_names()[0]
    if args.camera is None and len(full.camera_names()) > 1:
        err.print(f"[red]several cameras[/] ({', '.join(full.camera_names())}): say which with --camera NAME")
        return EXIT_USAGE
    try:
        cfg = full.for_camera(camera)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}[/]")
        return EXIT_USAGE
    got = from_appliance(full, runtime_dir(full), camera)
    source = "running appliance"
    if got is None:
        source = "camera (appliance not running)"
        try:
            got = from_camera(cfg)
        except Exception as exc:
            err.print(f"[red]preview failed:[/] {exc}")
            return EXIT_FAILED
    frame, boxes, scores = got
    redact = not args.unredacted
    heat = foot_heat(full, camera, time.time())
    people = draw(frame, cfg, boxes, scores, redact, heat=heat)
    if not cv2.imwrite(str(args.out), frame, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        err.print(f"[red]cannot write {args.out}[/]")
        return EXIT_FAILED
    out.print(f"wrote {args.out} from the {source}: {len(cfg.lines)} lines, {len(cfg.zones)} zones, "
              f"{people} people{' (pixelated)' if redact else ' (NOT redacted)'}")
    out.print(f"where feet were seen: {int(heat.sum())} sightings over the last minutes (coloured)" if heat is not None
              else "where feet were seen: not yet (the running appliance draws it after its first minutes)")
    return EXIT_OK


def cmd_lines_set(args: argparse.Namespace) -> int:
    from edgecount.tools.config_edit import set_line

    try:
        line = parse_line_arg(f"{args.name}:{args.coords}")
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    where = f" of camera {args.camera}" if args.camera else ""
    return _change_lines(args, lambda path: set_line(path, line, args.camera),
                         f"line {line.name}{where} set to A={line.a} B={line.b}; people walking "
                         f"{Line(line.name, line.a, line.b).in_heading()} on screen count as in")


def cmd_lines_flip(args: argparse.Namespace) -> int:
    from edgecount.tools.config_edit import flip_line

    return _change_lines(args, lambda path: flip_line(path, args.name, args.camera),
                         f"line {args.name} flipped: what it counted as in it now counts as out")


def cmd_lines_remove(args: argparse.Namespace) -> int:
    from edgecount.tools.config_edit import remove_line

    return _change_lines(args, lambda path: remove_line(path, args.name, args.camera),
                         f"line {args.name} removed (its counts so far stay in the history)")


def _change_lines(args: argparse.Namespace, edit: Callable[[Path], None], done: str) -> int:
    """Edit the configuration's lines, then have every stage that reads them read them again."""
    from edgecount.stages import reloaded_by
    from edgecount.supervisor.control import NotRunning, ask

    path = config_path(args)
    if path is None:
        err.print("[red]no configuration file[/]: pass --config FILE")
        return EXIT_USAGE
    try:
        edit(Path(path))
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    out.print(f"{done} ({path})")
    cfg = load_config(path)
    try:
        # Counts are durable before this; every stage that reads the lines at start reads them again (the uplink
        # too: Home Assistant gets the new line's entity).
        for service in reloaded_by("lines"):
            ask(runtime_dir(cfg), {"cmd": "restart", "service": service}, timeout_ms=20000)
        out.print(f"reloaded: {', '.join(reloaded_by('lines'))}")
    except NotRunning:
        out.print("the appliance is not running; the change applies at its next start")
    return EXIT_OK


def cmd_lines_list(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args))
    rows: list[dict[str, Any]] = [{"camera": cam, "name": ln.name, "a": list(ln.a), "b": list(ln.b),
             "in": Line(ln.name, ln.a, ln.b).in_heading()}
            for cam in cfg.camera_names() for ln in cfg.for_camera(cam).lines]
    if args.json:
        print(json.dumps({"lines": rows}))
        return EXIT_OK
    if not rows:
        out.print("[yellow]no counting lines[/]: add one with edgecount lines set NAME AX,AY,BX,BY")
        return EXIT_OK
    t = Table(title="counting lines (normalised: 0,0 top left, 1,1 bottom right)",
              caption="in: a person walking that way on screen; out: the other way (edgecount lines flip NAME)")
    for col in ("camera", "line", "A", "B", "in"):
        if col != "camera" or cfg.cameras:
            t.add_column(col)
    for r in rows:
        a, b = r["a"], r["b"]
        cells = [str(r["name"]), f"{a[0]:g},{a[1]:g}", f"{b[0]:g},{b[1]:g}", f"walking {r['in']}"]
        t.add_row(*([str(r["camera"])] if cfg.cameras else []), *cells)
    out.print(t)
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    """Exit 0 when ``run`` would start with the file (warnings allowed), 2 when it would refuse it."""
    from edgecount.assets.obtain import AssetError, AssetStore
    from edgecount.tools.config_check import config_mistakes, config_warnings

    try:
        cfg = load_config(args.file)
        store = AssetStore.for_config(cfg)
        errors = config_mistakes(cfg, store)
    except (ConfigError, AssetError) as exc:
        errors = str(exc).splitlines()
    if errors:
        if args.json:
            print(json.dumps({"ok": False, "errors": errors, "warnings": []}))
        else:
            err.print("[red]invalid configuration[/]\n" + "\n".join(errors))
        return EXIT_USAGE
    views = {cam: cfg.for_camera(cam) for cam in cfg.camera_names()}
    warnings = config_warnings(cfg, store)
    if args.json:
        report: dict[str, Any] = {"ok": True, "errors": [], "warnings": warnings,
                                  "lines": [ln.name for ln in cfg.lines], "zones": [z.name for z in cfg.zones]}
        if cfg.cameras:
            report["cameras"] = {cam: {"source": v.capture.source, "lines": [ln.name for ln in v.lines],
                                       "zones": [z.name for z in v.zones]} for cam, v in views.items()}
        print(json.dumps(report))
    else:
        per = ", ".join(f"{cam}: {len(v.lines)} lines, {len(v.zones)} zones" for cam, v in views.items())
        out.print(f"[green]ok[/] {args.file}: {per}, model {cfg.inference.model} on {cfg.inference.device}")
        for w in warnings:
            out.print(f"[yellow]warning:[/] {w}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add this module's commands to the ``edgecount`` parser."""
    pv = sub.add_parser("preview", help="write one frame with lines, zones and detections (people pixelated)")
    pv.add_argument("--out", required=True, type=Path)
    pv.add_argument("--unredacted", action="store_true",
                    help="do not pixelate people (stays on this device; never send such an image)")
    pv.add_argument("--config", "-c")
    pv.add_argument("--camera", help="which camera, with [[cameras]] (default: the only one)")
    pv.set_defaults(func=cmd_preview)

    ln = sub.add_parser("lines", help="counting lines")
    lsub = ln.add_subparsers(dest="lines_cmd", required=True)
    lset = lsub.add_parser("set", help="add or move a line (validated, atomic, services reloaded)")
    lset.add_argument("name")
    lset.add_argument("coords", metavar="AX,AY,BX,BY")
    lset.add_argument("--config", "-c")
    lset.add_argument("--camera", help="the camera whose line it is, with [[cameras]]")
    lset.set_defaults(func=cmd_lines_set)
    for name, func, what in (("flip", cmd_lines_flip, "swap a line's in and out (its ends)"),
                             ("remove", cmd_lines_remove, "delete a line (its counts so far are kept)")):
        lp = lsub.add_parser(name, help=what)
        lp.add_argument("name")
        lp.add_argument("--config", "-c")
        lp.add_argument("--camera", help="the camera whose line it is, with [[cameras]]")
        lp.set_defaults(func=func)
    ll = lsub.add_parser("list", help="every counting line, its ends and which way counts as in")
    ll.add_argument("--config", "-c")
    ll.add_argument("--json", action="store_true")
    ll.set_defaults(func=cmd_lines_list)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_cmd", required=True)
    cc = csub.add_parser("check", help="validate a configuration file")
    cc.add_argument("file")
    cc.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_config_check)
