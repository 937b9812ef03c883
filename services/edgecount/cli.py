"""The ``edgecount`` command line.

Exit codes: 0 ok, 1 a check or the pipeline failed, 2 usage or configuration
error, 3 the appliance is not running.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from edgecount import __version__, log
from edgecount.assets import AssetError, AssetStore
from edgecount.settings import load_config, runtime_dir, state_dir
from edgecount_core.config import ConfigError, parse_line_arg

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _store(cfg: Any) -> AssetStore:
    return AssetStore(cfg.assets.mirror or None, cfg.assets.cache or None, cfg.assets.allow_download)


def cmd_run(args: argparse.Namespace) -> int:
    from edgecount.watchdog import Watchdog

    cfg = load_config(args.config)
    logger = log.configure("watchdog")
    store = _store(cfg)
    from edgecount.inference import resolve_model

    try:
        from edgecount.assets import resolve_source

        resolve_source(cfg.capture.source, store)
        resolve_model(cfg.inference.model, store)
    except Exception as exc:
        err.print(f"[red]cannot start:[/] {exc}")
        return EXIT_FAILED
    config_path = Path(args.config).resolve() if args.config else None
    if config_path is None:
        err.print("[red]edgecount run needs --config FILE[/] (see config/edgecount.toml)")
        return EXIT_USAGE
    log_dir = None if args.log_to_stderr else state_dir(cfg) / "logs"
    wd = Watchdog(cfg, config_path, runtime_dir(cfg), log_dir=log_dir, logger=logger)
    return wd.run()


def cmd_replay(args: argparse.Namespace) -> int:
    from edgecount.detector import DetectorError
    from edgecount.replay import ReplayError, replay

    try:
        lines = [parse_line_arg(s) for s in args.line or []]
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    cfg = load_config(args.config)
    if not lines and not cfg.lines:
        err.print("[red]no counting lines:[/] pass --line NAME:AX,AY,BX,BY or configure [[lines]]")
        return EXIT_USAGE
    show_bar = not args.json and err.is_terminal
    logger = log.configure("replay", level="warning" if not args.verbose else "info")
    try:
        if show_bar:
            with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                          TimeRemainingColumn(), console=err, transient=True) as bar:
                task = bar.add_task("replay", total=None)
                res = replay(cfg, args.source, realtime=args.realtime, lines=lines or None,
                             progress=lambda n, total: bar.update(task, completed=n, total=total or None),
                             logger=logger, runtime_dir=args.runtime_dir)
        else:
            res = replay(cfg, args.source, realtime=args.realtime, lines=lines or None, logger=logger,
                         runtime_dir=args.runtime_dir)
    except (ReplayError, AssetError, DetectorError) as exc:
        err.print(f"[red]replay failed:[/] {exc}")
        return EXIT_FAILED
    if res.eos_stats.get("truncated"):
        err.print(f"[yellow]warning:[/] the video ended after {res.frames} of "
                  f"{res.eos_stats.get('expected_frames')} frames (truncated or damaged file); "
                  "the counts cover what was read")
    if args.json:
        print(json.dumps(res.to_json()))
        return EXIT_OK
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
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from edgecount.detector import DetectorError
    from edgecount.evaluate import count_error, mot_metrics
    from edgecount.replay import ReplayError, replay
    from edgecount_core.groundtruth import parse_mot, true_line_counts

    try:
        lines = [parse_line_arg(s) for s in args.line or []]
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    cfg = load_config(args.config)
    try:
        gt = parse_mot(Path(args.gt).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read ground truth {args.gt}:[/] {exc}")
        return EXIT_USAGE
    logger = log.configure("eval", level="warning")
    try:
        if not args.json and err.is_terminal:
            with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                          TimeRemainingColumn(), console=err, transient=True) as bar:
                task = bar.add_task("eval", total=None)
                res = replay(cfg, args.source, lines=lines or None, logger=logger, collect_tracks=True,
                             progress=lambda n, total: bar.update(task, completed=n, total=total or None))
        else:
            res = replay(cfg, args.source, lines=lines or None, logger=logger, collect_tracks=True)
    except (ReplayError, AssetError, DetectorError) as exc:
        err.print(f"[red]eval failed:[/] {exc}")
        return EXIT_FAILED
    geometry = [ln for ln in (lines or list(cfg.lines))]
    from edgecount_core.geometry import Line

    glines = [Line(ln.name, ln.a, ln.b) for ln in geometry]
    import cv2

    from edgecount.assets import resolve_source

    cap = cv2.VideoCapture(resolve_source(args.source, _store(cfg)))
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    cap.release()
    frames = min(res.processed_frames, gt.frames()) if res.processed_frames else gt.frames()
    metrics = mot_metrics(gt, res.tracks, frames)
    truth = true_line_counts(gt, glines, width, height, fps=fps, band_px=2.0)
    counts = count_error(truth, res.lines)
    report = {"source": args.source, "frames": res.frames, "processed_frames": res.processed_frames,
              "fps": round(res.fps, 2), "model": cfg.inference.model, "metrics": metrics, "counts": counts}
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


def cmd_models(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    store = _store(cfg)
    if args.models_cmd == "list":
        rows = [store.status("models", n) for n in store.manifest.get("models", {})]
        rows += [store.status("clips", n) for n in store.manifest.get("clips", {})]
        if args.json:
            print(json.dumps(rows))
            return EXIT_OK
        t = Table()
        for col in ("name", "kind", "present", "verified", "licence", "file"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["name"], r["kind"], "yes" if r["present"] else "no",
                      "[green]ok[/]" if r["verified"] else "[red]no[/]", r["licence"], r["file"])
        out.print(t)
        return EXIT_OK
    names = args.names or list(store.manifest.get("models", {}))
    failed = 0
    results = []
    for name in names:
        kind = "models" if name in store.manifest.get("models", {}) else "clips"
        try:
            path = store.fetch_model(name).model if kind == "models" else store.fetch_clip(name)
            results.append({"name": name, "ok": True, "path": str(path)})
            if not args.json:
                out.print(f"[green]ok[/] {name}: {path}")
        except AssetError as exc:
            failed += 1
            results.append({"name": name, "ok": False, "error": str(exc)})
            if not args.json:
                err.print(f"[red]failed[/] {name}: {exc}")
    if args.json:
        print(json.dumps(results))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"ok": False, "errors": str(exc).splitlines()}))
        else:
            err.print(f"[red]invalid configuration[/]\n{exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"ok": True, "lines": [ln.name for ln in cfg.lines],
                          "zones": [z.name for z in cfg.zones]}))
    else:
        out.print(f"[green]ok[/] {args.file}: {len(cfg.lines)} lines, {len(cfg.zones)} zones, "
                  f"model {cfg.inference.model} on {cfg.inference.device}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgecount", description="People counting on the edge.")
    p.add_argument("--version", action="version", version=f"edgecount {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the appliance until stopped")
    r.add_argument("--config", "-c", required=True)
    r.add_argument("--log-to-stderr", action="store_true",
                   help="services log to this process's stderr (the journal under systemd)")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("replay", help="run the whole pipeline over a video file and print the counts")
    rp.add_argument("source", help="video file, or asset:NAME from the manifest")
    rp.add_argument("--config", "-c")
    rp.add_argument("--line", action="append", metavar="NAME:AX,AY,BX,BY",
                    help="counting line in normalised coordinates (repeatable; replaces configured lines)")
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
    ev.set_defaults(func=cmd_eval)

    m = sub.add_parser("models", help="list or fetch models and clips")
    msub = m.add_subparsers(dest="models_cmd", required=True)
    ml = msub.add_parser("list")
    ml.add_argument("--config", "-c")
    ml.add_argument("--json", action="store_true")
    mf = msub.add_parser("fetch")
    mf.add_argument("names", nargs="*")
    mf.add_argument("--config", "-c")
    mf.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_cmd", required=True)
    cc = csub.add_parser("check", help="validate a configuration file")
    cc.add_argument("file")
    cc.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_config_check)
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
