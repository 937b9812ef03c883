"""``edgecount eval``: the pipeline scored against MOTChallenge ground truth, on one clip or on every scene."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from edgecount.assets.obtain import AssetError, AssetStore
from edgecount.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, err, out
from edgecount.cli.pipeline import lines_and_config, replay_with_progress
from edgecount.runtime import logs

TOLERANCE_NOTE = ("tolerant: a crossing within 0.02 (normalised) of a segment's end may be counted or not, since "
                  "the annotated foot point is itself that uncertain")


def cmd_eval(args: argparse.Namespace) -> int:
    from edgecount.tools.scenes import SceneError, SceneSpec, load_scenes, parse_scene
    from edgecount.tools.sweep import VARIANTS

    try:
        import trackeval  # noqa: F401  (evaluation only: not installed on the device)
    except ImportError:
        err.print("[red]edgecount eval needs the evaluation extra:[/] pip install 'edgecount[eval]' "
                  "(trackeval and SciPy; never needed for counting)")
        return EXIT_FAILED
    got = lines_and_config(args)
    if isinstance(got, int):
        return got
    lines, cfg = got
    if (args.source is None) != (args.gt is None):
        err.print("[red]give both a video and its ground truth[/] (edgecount eval VIDEO GT.txt)")
        return EXIT_USAGE
    if not args.sweep and (args.scene or args.source is None):
        err.print("[red]--scene goes with --sweep;[/] without it, give a video and its ground truth: "
                  "edgecount eval VIDEO GT.txt")
        return EXIT_USAGE
    if args.sweep and lines:
        err.print("[red]--sweep generates its own lines:[/] drop --line")
        return EXIT_USAGE
    unknown = [n for n in _variant_names(args) if n not in VARIANTS]
    if unknown:
        # Before the scenes are read: checking a scene decodes its whole video.
        err.print(f"[red]unknown variants {unknown}[/]; choose from {', '.join(VARIANTS)}")
        return EXIT_USAGE
    specs: list[SceneSpec] = []
    try:
        if args.source is not None:
            specs.append(SceneSpec(_scene_name(args.source), args.source, args.gt))
        specs += [parse_scene(s) for s in args.scene or []]
        if args.sweep and not specs:
            specs = [parse_scene(name) for name in ("pets09", "tud")]
        store = AssetStore.for_config(cfg)
        scenes = load_scenes(specs, store)
    except SceneError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    except AssetError as exc:
        err.print(f"[red]eval failed:[/] {exc}")
        return EXIT_FAILED
    if args.sweep:
        return _eval_sweep(cfg, args, scenes)
    return _eval_clip(cfg, args, lines, scenes[0])


def _variant_names(args: argparse.Namespace) -> list[str]:
    from edgecount.tools.sweep import VARIANTS

    return args.variants.split(",") if args.variants else list(VARIANTS)


def _scene_name(source: str) -> str:
    import re

    stem = Path(source.removeprefix("asset:")).stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "clip"


def _eval_clip(cfg: Any, args: argparse.Namespace, lines: list[Any], scene: Any) -> int:
    from edgecount.detection.interpreter import DetectorError
    from edgecount.tools.evaluate import count_error, mot_metrics
    from edgecount.tools.replay import ReplayError
    from edgecount_core.geometry import Line
    from edgecount_core.groundtruth import true_count_ranges, true_line_counts

    logger = logs.configure("eval", level="warning")
    try:
        res = replay_with_progress(cfg, args, "eval", lines=lines or None, logger=logger, collect_tracks=True)
    except (ReplayError, AssetError, DetectorError) as exc:
        err.print(f"[red]eval failed:[/] {exc}")
        return EXIT_FAILED
    gt = scene.gt
    glines = [Line(ln.name, ln.a, ln.b) for ln in (lines or cfg.lines)]
    frames = min(res.processed_frames, gt.frames()) if res.processed_frames else gt.frames()
    metrics = mot_metrics(gt, res.tracks, frames)
    truth = true_line_counts(gt, glines, res.width, res.height, fps=res.source_fps)
    counts = count_error(truth, res.lines, true_count_ranges(gt, glines, res.width, res.height))
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
    t = Table(title=f"line counts: {counts['abs_error']} of {counts['true_total']} off "
                    f"({counts['relative_error']:.1%}); tolerant {counts['tolerant_error']} "
                    f"({counts['tolerant_relative_error']:.1%})", caption=TOLERANCE_NOTE)
    for col in ("line", "true in", "in", "true out", "out", "error", "tolerant"):
        t.add_column(col, justify="right" if col != "line" else "left")
    for name, c in counts["lines"].items():
        t.add_row(name, str(c["true_in"]), str(c["in"]), str(c["true_out"]), str(c["out"]), str(c["abs_error"]),
                  str(c["tolerant_error"]))
    out.print(t)
    return EXIT_OK


def _eval_sweep(cfg: Any, args: argparse.Namespace, scenes: list[Any]) -> int:
    """``eval --sweep``: the generated lines over every scene and perturbed copies of it."""
    from edgecount.detection.interpreter import DetectorError
    from edgecount.tools.replay import ReplayError
    from edgecount.tools.sweep import VARIANTS, evaluate_variant, split_lines, sweep_lines

    names = _variant_names(args)
    lines = sweep_lines()
    tune, held = split_lines(lines)
    logger = logs.configure("eval", level="warning")
    report: dict[str, Any] = {"model": cfg.inference.model, "tolerance": TOLERANCE_NOTE,
                              "lines": {"tune": [ln.name for ln in tune], "held_out": [ln.name for ln in held]},
                              "scenes": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="ec-sweep-") as tmp:
            for scene in scenes:
                variants: dict[str, Any] = {}
                report["scenes"][scene.name] = {"video": str(scene.video), "tuned": scene.tuned, "fps": scene.fps,
                                                "size": [scene.width, scene.height], "variants": variants}
                for n in names:
                    def run(video: str, label: str = f"{scene.name} {n}") -> Any:
                        fake = argparse.Namespace(source=video, json=args.json)
                        return replay_with_progress(cfg, fake, f"eval {label}", lines=sections(lines), logger=logger,
                                                    collect_tracks=True)
                    variants[n] = evaluate_variant(scene, VARIANTS[n], lines, cfg, Path(tmp), run)
    except (ReplayError, AssetError, DetectorError, RuntimeError) as exc:
        err.print(f"[red]eval failed:[/] {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    for name, sc in report["scenes"].items():
        kind = "the settings were chosen looking at it" if sc["tuned"] else "never seen by the tuning"
        t = Table(title=f"{name} ({kind}): {len(lines)} generated lines, reported on the {len(held)} held out "
                        f"({cfg.inference.model})", caption=TOLERANCE_NOTE)
        for col in ("variant", "held-out error", "tolerant", "worst line", "tune error", "without linking", "IDF1",
                    "fps"):
            t.add_column(col, justify="left" if col == "variant" else "right")
        for n, r in sc["variants"].items():
            h = r["held_out"]
            t.add_row(n, f"{h['relative_error']:.1%} ({h['abs_error']}/{h['true_total']})",
                      f"{h['tolerant_relative_error']:.1%}",
                      f"{h['worst_line']}: {h['worst_abs_error']} of {h['worst_true']}",
                      f"{r['tune']['relative_error']:.1%}", f"{r['held_out_without_linking']['relative_error']:.1%}",
                      f"{r['metrics']['IDF1']:.3f}", f"{r['fps']:.1f}")
        out.print(t)
    return EXIT_OK


def sections(lines: list[Any]) -> list[Any]:
    from edgecount_core.config import LineSection

    return [LineSection(name=ln.name, a=ln.a, b=ln.b) for ln in lines]


def register(sub: Any) -> None:
    """Add ``eval`` to the ``edgecount`` parser."""
    ev = sub.add_parser("eval", help="run the pipeline on a video with MOTChallenge ground truth and score it")
    ev.add_argument("source", nargs="?", help="video file, or asset:NAME (with --sweep: one more scene)")
    ev.add_argument("gt", nargs="?", help="MOTChallenge gt.txt (frame 1 = the video's first frame)")
    ev.add_argument("--config", "-c")
    ev.add_argument("--line", action="append", metavar="NAME:AX,AY,BX,BY")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--png", metavar="FILE", help="also write a chart of true vs counted per line")
    ev.add_argument("--sweep", action="store_true",
                    help="32 generated lines (tune half / held-out half) over every scene and perturbed copies of it")
    ev.add_argument("--scene", action="append", metavar="NAME|NAME=VIDEO,GT",
                    help="with --sweep: a built-in scene (pets09, tud) or your own MOTChallenge sequence "
                    "(repeatable; default: every built-in scene)")
    ev.add_argument("--variants", metavar="A,B", help="with --sweep: only these copies (default: all; "
                    "original, half_res, double_res, mirrored, every_2nd, every_3rd, dark, jpeg)")
    ev.set_defaults(func=cmd_eval)
