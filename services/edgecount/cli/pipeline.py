"""Running the pipeline over recorded video or bus recordings: replay, record, replay-service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from edgecount import stages
from edgecount.assets.obtain import AssetError
from edgecount.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    config_path,
    err,
    line_args,
    out,
    with_progress,
)
from edgecount.runtime import logs
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.settings import load_config, runtime_dir
from edgecount_core.config import ConfigError


def replay_with_progress(cfg: Any, args: argparse.Namespace, label: str, **kwargs: Any) -> Any:
    """Run the pipeline over ``args.source``, with a progress bar on a terminal (not with --json)."""
    from edgecount.tools.replay import replay

    source = args.source[0] if isinstance(args.source, list) else args.source
    return with_progress(label, args.json, lambda progress: replay(cfg, source, progress=progress, **kwargs),
                         unit="frames")


def camera_line_args(args: argparse.Namespace, cameras: list[str]) -> dict[str, list[Any]]:
    """``--line CAM:NAME:AX,AY,BX,BY`` for one camera; ``--line NAME:...`` for every camera."""
    from edgecount_core.config import parse_line_arg

    out: dict[str, list[Any]] = {}
    for text in args.line or []:
        if text.count(":") == 2:
            cam, _, rest = text.partition(":")
            out.setdefault(cam, []).append(parse_line_arg(rest))
        else:
            for cam in cameras:
                out.setdefault(cam, []).append(parse_line_arg(text))
    return out


def _replay_cameras(args: argparse.Namespace) -> int:
    from edgecount.detection.interpreter import DetectorError
    from edgecount.tools.replay import ReplayError, camera_sources, replay_cameras

    try:
        sources = camera_sources(args.source)
        lines = camera_line_args(args, list(sources))
    except (ReplayError, ConfigError) as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    cfg = load_config(args.config)
    logger = logs.configure("replay", level="warning" if not args.verbose else "info")
    try:
        res = with_progress("replay", args.json, lambda progress: replay_cameras(
            cfg, sources, realtime=args.realtime, lines=lines, progress=progress, logger=logger,
            runtime_dir=args.runtime_dir, publish=args.publish), unit="frames")
    except (ReplayError, AssetError, DetectorError, ConfigError) as exc:
        err.print(f"[red]replay failed:[/] {exc}")
        return EXIT_FAILED
    rc = EXIT_FAILED if any(r.truncated for r in res.cameras.values()) else EXIT_OK
    if args.json:
        print(json.dumps(res.to_json()))
        return rc
    t = Table(title=f"{len(res.cameras)} cameras: {res.processed_frames} frames, {res.fps:.1f} fps together")
    for col in ("camera", "frames", "dropped", "line", "in", "out"):
        t.add_column(col, justify="right" if col in ("frames", "dropped", "in", "out") else "left")
    for cam, r in res.cameras.items():
        first = True
        for name, c in (r.lines or {"—": {"in": 0, "out": 0}}).items():
            t.add_row(cam if first else "", f"{r.processed_frames}/{r.frames}" if first else "",
                      str(r.dropped_frames) if first else "", name, str(c["in"]), str(c["out"]))
            first = False
    out.print(t)
    if any(r.truncated for r in res.cameras.values()):
        err.print("[red]a video ended early[/] (truncated or damaged file); its counts cover what was read")
    if any(res.restarts.values()):
        err.print(f"[yellow]services restarted during the replay:[/] {res.restarts}")
    return rc


def lines_and_config(args: argparse.Namespace) -> tuple[list[Any], Any] | int:
    """The --line options and the configuration, or the exit status of a usage error."""
    try:
        lines = line_args(args)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    return lines, load_config(args.config)


def cmd_replay(args: argparse.Namespace) -> int:
    from edgecount.detection.interpreter import DetectorError
    from edgecount.tools.replay import ReplayError

    if len(args.source) > 1 or "=" in args.source[0].split("/")[0]:
        return _replay_cameras(args)
    got = lines_and_config(args)
    if isinstance(got, int):
        return got
    lines, cfg = got
    if not lines and not cfg.lines:
        err.print("[red]no counting lines:[/] pass --line NAME:AX,AY,BX,BY or configure [[lines]]")
        return EXIT_USAGE
    logger = logs.configure("replay", level="warning" if not args.verbose else "info")
    try:
        res = replay_with_progress(cfg, args, "replay", realtime=args.realtime, lines=lines or None, logger=logger,
                                    runtime_dir=args.runtime_dir, publish=args.publish)
    except (ReplayError, AssetError, DetectorError) as exc:
        err.print(f"[red]replay failed:[/] {exc}")
        return EXIT_FAILED
    # A cut-short file is not a success: the counts are real but cover only part of the video.
    rc = EXIT_FAILED if res.truncated else EXIT_OK
    if res.truncated:
        err.print(f"[red]the video ended after {res.frames} of {res.expected_frames} frames[/] (truncated or "
                  "damaged file); the counts cover what was read")
    if args.json:
        print(json.dumps(res.to_json()))
        return rc
    t = Table(title=f"{res.source}: {res.processed_frames}/{res.frames} frames, "
                    f"{res.fps:.1f} fps, {res.dropped_frames} dropped")
    t.add_column("line")
    t.add_column("in", justify="right")
    t.add_column("out", justify="right")
    for name, c in res.lines.items():
        t.add_row(name, str(c["in"]), str(c["out"]))
    out.print(t)
    if res.zones:
        z = Table(title="zones")
        for col in ("zone", "entries", "exits"):
            z.add_column(col)
        for name, c in res.zones.items():
            z.add_row(name, str(c["entries"]), str(c["exits"]))
        out.print(z)
    if any(res.restarts.values()):
        err.print(f"[yellow]services restarted during the replay:[/] {res.restarts}")
    return rc


def cmd_record(args: argparse.Namespace) -> int:
    from edgecount.tools.recording import ALL_TOPICS, record

    path = config_path(args)
    cfg = load_config(path)
    rd = runtime_dir(cfg)
    if not RuntimePaths(rd).control.exists():
        err.print(f"[red]the appliance is not running[/] (no {RuntimePaths(rd).control})")
        return EXIT_NOT_RUNNING
    topics = [t.encode() for t in args.topics.split(",")] if args.topics else [t for t in ALL_TOPICS if t != b"frame"]
    unknown = [t for t in topics if t not in ALL_TOPICS]
    if unknown:
        err.print(f"[red]unknown topics {unknown}[/]; choose from {[t.decode() for t in ALL_TOPICS]}")
        return EXIT_USAGE
    with_frames = b"frame" in topics
    if with_frames and not args.yes:
        if not sys.stdin.isatty():
            err.print("[red]recording frames stores images of people:[/] confirm with --yes")
            return EXIT_USAGE
        answer = input("Recording frames stores images of people on this device. Type 'yes' to continue: ")
        if answer.strip() != "yes":
            err.print("not recording")
            return EXIT_USAGE
    text = Path(path).read_text(encoding="utf-8") if path else ""
    counts = record(rd, text, Path(args.out), args.seconds, topics, with_frames)
    out.print(f"recorded {sum(counts.values())} messages into {args.out}: {counts}")
    return EXIT_OK


def cmd_replay_service(args: argparse.Namespace) -> int:
    from edgecount.tools.recording import normalise, replay_service

    try:
        outputs = replay_service(args.service, Path(args.dir), publish=args.publish)
    except (OSError, RuntimeError, ValueError) as exc:
        err.print(f"[red]replay-service failed:[/] {exc}")
        return EXIT_FAILED
    rows = normalise(outputs)
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json or not args.out:
        sys.stdout.write(text)
    else:
        by_topic: dict[str, int] = {}
        for r in rows:
            by_topic[r["topic"]] = by_topic.get(r["topic"], 0) + 1
        out.print(f"{args.service} published {len(rows)} messages {by_topic}; written to {args.out}")
    return EXIT_OK


PUBLISH_HELP = ("also deliver to the configured broker and webhook, as the device <id>-replay with a client id of "
                "its own (default: only a private JSON-lines file; never as the device itself)")


def register(sub: Any) -> None:
    """Add this module's commands to the ``edgecount`` parser."""
    rp = sub.add_parser("replay", help="run the whole pipeline over video files and print the counts")
    rp.add_argument("source", nargs="+", help="video file, or asset:NAME from the manifest; several files run as "
                    "several cameras of one pipeline (cam1, cam2, ... or NAME=FILE)")
    rp.add_argument("--config", "-c")
    rp.add_argument("--line", action="append", metavar="[CAM:]NAME:AX,AY,BX,BY",
                    help="counting line in normalised coordinates (repeatable; replaces configured lines); "
                    "with several files, CAM: gives it to one camera, without it every camera gets it")
    rp.add_argument("--realtime", action="store_true", help="pace at the source frame rate and drop frames when behind")
    rp.add_argument("--json", action="store_true")
    rp.add_argument("--verbose", "-v", action="store_true")
    rp.add_argument("--runtime-dir", type=Path, help="use (and keep) this directory for sockets, state and logs")
    rp.add_argument("--publish", action="store_true", help=PUBLISH_HELP)
    rp.set_defaults(func=cmd_replay)

    rec = sub.add_parser("record", help="record what flows on the bus of the running appliance")
    rec.add_argument("--out", required=True)
    rec.add_argument("--seconds", type=float, required=True)
    rec.add_argument("--topics", help="comma-separated (default: every topic but frame); 'frame' stores images")
    rec.add_argument("--yes", action="store_true", help="confirm recording frames (images of people)")
    rec.add_argument("--config", "-c")
    rec.set_defaults(func=cmd_record)

    rps = sub.add_parser("replay-service", help="feed a recording into one service alone, collect its output")
    rps.add_argument("service", choices=stages.replayable())
    rps.add_argument("dir")
    rps.add_argument("--out", help="write the normalised output (JSON lines) here")
    rps.add_argument("--json", action="store_true")
    rps.add_argument("--publish", action="store_true", help=PUBLISH_HELP)
    rps.set_defaults(func=cmd_replay_service)
