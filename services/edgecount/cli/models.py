"""Models on this device: list, fetch and benchmark them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from edgecount.assets.obtain import AssetError, AssetStore
from edgecount.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    config_path,
    err,
    out,
    with_progress,
)
from edgecount.runtime.settings import load_config


def cmd_models(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    store = AssetStore.for_config(cfg)
    if args.models_cmd == "list":
        rows = [store.status("models", n) for n in store.manifest.models]
        rows += [store.status("clips", n) for n in store.manifest.clips]
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
    names = args.names or list(store.manifest.models)
    failed = 0
    results = []
    for name in names:
        kind = "models" if name in store.manifest.models else "clips"
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


def cmd_quantize(args: argparse.Namespace) -> int:
    """Build a ``build = "quantize"`` model from its float source and check it against the manifest."""
    from pathlib import Path

    from edgecount.assets.quantize import QuantizeError

    cfg = load_config(args.config)
    store = AssetStore.for_config(cfg)
    try:
        entry = store.entry("models", args.name)
    except AssetError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    if entry.build != "quantize":
        err.print(f"[red]{args.name} is not built by quantisation[/] (its manifest entry has no build = \"quantize\")")
        return EXIT_USAGE
    dest = Path(args.out) if args.out else store.cached(args.name, entry.file)
    try:
        summary = store.quantize(entry, dest)  # the quantizer draws its own progress bar
    except (QuantizeError, AssetError, OSError, ValueError) as exc:
        err.print(f"[red]quantising {args.name} failed:[/] {exc}")
        return EXIT_FAILED
    summary["name"] = args.name
    summary["manifest_sha256"] = entry.sha256
    summary["matches_manifest"] = summary["sha256"] in entry.accepted_sha256(entry.sha256)
    if args.json:
        print(json.dumps(summary))
    else:
        out.print(f"{args.name}: {summary['bytes'] / 1e6:.2f} MB from {summary['calibration_views']} calibration "
                  f"views of {summary['photos']} photos -> {summary['model']}")
        out.print(f"sha256 {summary['sha256']}")
        if summary["matches_manifest"]:
            out.print("[green]identical to the model the manifest pins[/]")
        else:
            err.print("[yellow]differs from the manifest's sha256[/] (another quantizer version, recipe or photos); "
                      "update models/manifest.toml if this build is the one to ship")
    return EXIT_OK if summary["matches_manifest"] else EXIT_FAILED


def cmd_bench_models(args: argparse.Namespace) -> int:
    from edgecount.tools.bench_models import bench_models

    cfg = load_config(config_path(args))
    store = AssetStore.for_config(cfg)
    person_decoders = ("ssd_postprocess", "yolox", "yolov5", "yolov8")
    names = args.names or [n for n, e in store.manifest.models.items() if e.sha256 and e.decoder in person_decoders]
    tiles = ["1x1", *args.tiles]
    try:
        rows = with_progress("bench", args.json,
                             lambda progress: bench_models(store, names, args.frames, tiles, progress=progress))
    except AssetError as exc:
        err.print(f"[red]bench failed:[/] {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    t = Table(title=f"models on this device ({args.frames} PETS09 frames; quality: person, IoU 0.5)")
    cols = [("model", "model"), ("backend", "backend"), ("tiles", "tiles"), ("median ms", "median_ms"),
            ("p95 ms", "p95_ms"), ("fps 1t", "fps_1t"), ("fps all", None), ("CPU %", "cpu_pct"),
            ("model RSS MB", "model_rss_mb"), ("size MB", "size_mb"), ("precision", "precision"),
            ("recall", "recall"), ("AP50", "ap50")]
    for label, _ in cols:
        t.add_column(label, justify="left" if label in ("model", "backend", "tiles") else "right")
    for r in rows:
        if "error" in r:
            t.add_row(r["model"], r.get("backend", ""), r.get("tiles", ""), f"[yellow]{r['error']}[/]")
            continue
        all_key = f"fps_{r['threads_all']}t"
        t.add_row(*(f"{r[all_key]:.1f} ({r['threads_all']}t)" if key is None else
                    (f"{r[key]:.2f}" if isinstance(r.get(key), float) else str(r.get(key, ""))) for _, key in cols))
    out.print(t)
    return EXIT_OK


def register(sub: Any) -> None:
    """Add this module's commands to the ``edgecount`` parser."""
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
    mq = msub.add_parser("quantize", help="build an int8 model from its float source (host step; needs "
                                          "edgecount[quantize])")
    mq.add_argument("name", nargs="?", default="yolox_nano_int8")
    mq.add_argument("--out", help="write here instead of the model cache")
    mq.add_argument("--config", "-c")
    mq.add_argument("--json", action="store_true")
    mq.set_defaults(func=cmd_quantize)

    bn = sub.add_parser("bench", help="measure on this device")
    bsub = bn.add_subparsers(dest="bench_cmd", required=True)
    bm = bsub.add_parser("models", help="latency, throughput, memory and person-detection quality per model")
    bm.add_argument("names", nargs="*")
    bm.add_argument("--frames", type=int, default=200)
    bm.add_argument("--tiles", action="append", default=[], metavar="COLSxROWS",
                    help="also measure tiled inference, e.g. --tiles 2x2")
    bm.add_argument("--config", "-c")
    bm.add_argument("--json", action="store_true")
    bm.set_defaults(func=cmd_bench_models)
