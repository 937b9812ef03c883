"""Running the pipeline over recorded video or bus recordings: replay, eval, record, replay-service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from edgecount import stages
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
from edgecount.runtime.assets import AssetError
from edgecount.runtime.settings import load_config, runtime_dir
from edgecount_core.config import ConfigError


def _replay_with_progress(cfg: Any, args: argparse.Namespace, label: str, **kwargs: Any) -> Any:
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
    from edgecount.detection.runtime import DetectorError
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
            runtime_dir=args.runtime_dir), unit="frames")
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


def _lines_and_config(args: argparse.Namespace) -> tuple[list[Any], Any] | int:
    """The --line options and the configuration, or the exit status of a usage error."""
    try:
        lines = line_args(args)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    return lines, load_config(args.config)


def cmd_replay(args: argparse.Namespace) -> int:
    from edgecount.detection.runtime import DetectorError
    from edgecount.tools.replay import ReplayError

    if len(args.source) > 1 or "=" in args.source[0].split("/")[0]:
        return _replay_cameras(args)
    got = _lines_and_config(args)
    if isinstance(got, int):
        return got
    lines, cfg = got
    if not lines and not cfg.lines:
        err.print("[red]no counting lines:[/] pass --line NAME:AX,AY,BX,BY or configure [[lines]]")
        return EXIT_USAGE
    logger = logs.configure("replay", level="warning" if not args.verbose else "info")
    try:
        res = _replay_with_progress(cfg, args, "replay", realtime=args.realtime, lines=lines or None, logger=logger,
                                    runtime_dir=args.runtime_dir)
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


def cmd_eval(args: argparse.Namespace) -> int:
    from edgecount.detection.runtime import DetectorError
    from edgecount.tools.evaluate import count_error, mot_metrics
    from edgecount.tools.replay import ReplayError
    from edgecount_core.geometry import Line
    from edgecount_core.groundtruth import parse_mot, true_line_counts

    try:
        import trackeval  # noqa: F401  (evaluation only: not installed on the device)
    except ImportError:
        err.print("[red]edgecount eval needs the evaluation extra:[/] pip install 'edgecount[eval]' "
                  "(trackeval and SciPy; never needed for counting)")
        return EXIT_FAILED
    got = _lines_and_config(args)
    if isinstance(got, int):
        return got
    lines, cfg = got
    try:
        gt = parse_mot(Path(args.gt).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read ground truth {args.gt}:[/] {exc}")
        return EXIT_USAGE
    if args.sweep:
        if lines:
            err.print("[red]--sweep generates its own lines:[/] drop --line")
            return EXIT_USAGE
        return _eval_sweep(cfg, args, gt)
    logger = logs.configure("eval", level="warning")
    try:
        res = _replay_with_progress(cfg, args, "eval", lines=lines or None, logger=logger, collect_tracks=True)
    except (ReplayError, AssetError, DetectorError) as exc:
        err.print(f"[red]eval failed:[/] {exc}")
        return EXIT_FAILED
    glines = [Line(ln.name, ln.a, ln.b) for ln in (lines or cfg.lines)]
    frames = min(res.processed_frames, gt.frames()) if res.processed_frames else gt.frames()
    metrics = mot_metrics(gt, res.tracks, frames)
    truth = true_line_counts(gt, glines, res.width, res.height, fps=res.source_fps)
    counts = count_error(truth, res.lines)
    report = {"source": args.source, "frames": res.frames, "processed_frames": res.processed_frames,
              "fps": round(res.fps, 2), "model": cfg.inference.model, "metrics": metrics, "counts": counts}
    if args.png:
        from edgecount.tools.evaluate import plot_counts

        plot_counts(counts, Path(args.png))
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    m = Table(title=f"tracking on {res.processed_frames} frames ({cfg.inference.model}, {res.fps:.1f} fps)")
    for col in ("MOTA", "IDF1", "HOTA", "IDSW", "recall", "precision"):
        m.add_column(col, justify="right")
    m.add_row(*(f"{metrics[k]:.3f}" if isinstance(metrics[k], float) else str(metrics[k])
                for k in ("MOTA", "IDF1", "HOTA", "IDSW", "recall", "precision")))
    out.print(m)
    t = Table(title=f"line counts: total absolute error {counts['abs_error']} of {counts['true_total']} "
                    f"({counts['relative_error']:.1%})")
    for col in ("line", "true in", "in", "true out", "out", "error"):
        t.add_column(col, justify="right" if col != "line" else "left")
    for name, c in counts["lines"].items():
        t.add_row(name, str(c["true_in"]), str(c["in"]), str(c["true_out"]), str(c["out"]), str(c["abs_error"]))
    out.print(t)
    return EXIT_OK


def _eval_sweep(cfg: Any, args: argparse.Namespace, gt: Any) -> int:
    """``eval --sweep``: the generated lines over the clip and its perturbed copies, tune half vs held-out half."""
    import tempfile

    from edgecount.detection.runtime import DetectorError
    from edgecount.runtime.assets import AssetStore, resolve_source
    from edgecount.tools.replay import ReplayError
    from edgecount.tools.sweep import VARIANTS, evaluate_variant, split_lines, sweep_lines

    names = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        err.print(f"[red]unknown variants {unknown}[/]; choose from {', '.join(VARIANTS)}")
        return EXIT_USAGE
    lines = sweep_lines()
    tune, held = split_lines(lines)
    logger = logs.configure("eval", level="warning")
    report: dict[str, Any] = {"source": args.source, "model": cfg.inference.model,
                              "lines": {"tune": [ln.name for ln in tune], "held_out": [ln.name for ln in held]},
                              "variants": {}}
    try:
        clip = Path(resolve_source(args.source, AssetStore.for_config(cfg)))
        with tempfile.TemporaryDirectory(prefix="ec-sweep-") as tmp:
            for n in names:
                def run(video: str, label: str = n) -> Any:
                    fake = argparse.Namespace(source=video, json=args.json)
                    return _replay_with_progress(cfg, fake, f"eval {label}", lines=_sections(lines), logger=logger,
                                                 collect_tracks=True)
                report["variants"][n] = evaluate_variant(clip, gt, VARIANTS[n], lines, cfg, Path(tmp), run)
    except (ReplayError, AssetError, DetectorError, RuntimeError) as exc:
        err.print(f"[red]eval failed:[/] {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    t = Table(title=f"{len(lines)} generated lines: tuned on {len(tune)}, reported on the {len(held)} held out "
                    f"({cfg.inference.model})")
    for col in ("variant", "held-out error", "worst line", "tune error", "without linking", "IDF1", "fps"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for n, r in report["variants"].items():
        h = r["held_out"]
        t.add_row(n, f"{h['relative_error']:.1%} ({h['abs_error']}/{h['true_total']})",
                  f"{h['worst_line']}: {h['worst_abs_error']} of {h['worst_true']}",
                  f"{r['tune']['relative_error']:.1%}", f"{r['held_out_without_linking']['relative_error']:.1%}",
                  f"{r['metrics']['IDF1']:.3f}", f"{r['fps']:.1f}")
    out.print(t)
    return EXIT_OK


def _sections(lines: list[Any]) -> list[Any]:
    from edgecount_core.config import LineSection

    return [LineSection(name=ln.name, a=ln.a, b=ln.b) for ln in lines]


def cmd_record(args: argparse.Namespace) -> int:
    from edgecount.tools.recording import ALL_TOPICS, record

    path = config_path(args)
    cfg = load_config(path)
    rd = runtime_dir(cfg)
    if not (rd / "control.sock").exists():
        err.print(f"[red]the appliance is not running[/] (no {rd / 'control.sock'})")
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
        outputs = replay_service(args.service, Path(args.dir))
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
    rp.set_defaults(func=cmd_replay)

    ev = sub.add_parser("eval", help="run the pipeline on a video with MOTChallenge ground truth and score it")
    ev.add_argument("source", help="video file, or asset:NAME")
    ev.add_argument("gt", help="MOTChallenge gt.txt (frame 1 = the video's first frame)")
    ev.add_argument("--config", "-c")
    ev.add_argument("--line", action="append", metavar="NAME:AX,AY,BX,BY")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--png", metavar="FILE", help="also write a chart of true vs counted per line")
    ev.add_argument("--sweep", action="store_true",
                    help="32 generated lines (tune half / held-out half) over the clip and perturbed copies of it")
    ev.add_argument("--variants", metavar="A,B", help="with --sweep: only these copies (default: all; "
                    "original, half_res, double_res, mirrored, every_2nd, every_3rd, dark, jpeg)")
    ev.set_defaults(func=cmd_eval)

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
    rps.set_defaults(func=cmd_replay_service)
