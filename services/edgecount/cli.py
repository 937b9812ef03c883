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

# Piped output keeps whole table rows (no 80-column wrapping) so scripts and logs stay readable.
out = Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def _store(cfg: Any) -> AssetStore:
    return AssetStore(cfg.assets.mirror or None, cfg.assets.cache or None, cfg.assets.allow_download)


DEFAULT_CONFIG = Path("/etc/edgecount/edgecount.toml")


def _config_path(args: argparse.Namespace) -> str | None:
    """--config, else $EDGECOUNT_CONFIG, else the installed /etc/edgecount/edgecount.toml."""
    import os

    if getattr(args, "config", None):
        return str(args.config)
    if os.environ.get("EDGECOUNT_CONFIG"):
        return os.environ["EDGECOUNT_CONFIG"]
    return str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None


def _status_reply(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from edgecount.control import ask

    cfg = load_config(_config_path(args))
    return cfg, ask(runtime_dir(cfg), {"cmd": "status"})


def _fmt_uptime(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cmd_status(args: argparse.Namespace) -> int:
    import shutil as _shutil

    from edgecount.control import NotRunning
    from edgecount.doctor import cpu_temperature

    try:
        cfg, st = _status_reply(args)
    except NotRunning as exc:
        if args.json:
            print(json.dumps({"running": False, "error": str(exc)}))
        else:
            err.print(f"[red]{exc}[/]")
        return EXIT_NOT_RUNNING
    sd = state_dir(cfg)
    disk = _shutil.disk_usage(sd if sd.exists() else Path("/"))
    device = {"disk_free_gib": round(disk.free / 2**30, 2), "cpu_temp_c": cpu_temperature(),
              "watchdog_pid": st["pid"], "uptime_s": st["uptime_s"], "ready": st["ready"]}
    if args.json:
        print(json.dumps({"running": True, "device": device, "services": st["services"]}))
        return EXIT_OK
    t = Table(title=f"edgecount — {cfg.device.site}/{cfg.device.id}, up {_fmt_uptime(st['uptime_s'])}")
    for col in ("service", "state", "pid", "uptime", "restarts", "details"):
        t.add_column(col)
    colour = {"ok": "green", "degraded": "yellow", "starting": "cyan"}
    for s_ in st["services"]:
        x = s_["stats"]
        if s_["service"] == "capture":
            d = f"fps in {x.get('fps_in', 0)}, frames {x.get('frames_read', 0)}, reconnects {x.get('reconnects', 0)}"
        elif s_["service"] == "inference":
            d = (f"{x.get('model', '')} on {x.get('backend', '?')}{' (DEGRADED)' if x.get('degraded') else ''}, "
                 f"p50 {x.get('latency_ms_p50', 0)} ms, processed {x.get('processed', 0)}, "
                 f"dropped {int(x.get('skipped', 0)) + int(x.get('overwritten', 0))}")
        elif s_["service"] == "counter":
            d = f"frames {x.get('processed', 0)}, tracks {x.get('active_tracks', 0)}, events {x.get('events', 0)}"
        elif s_["service"] == "privacy":
            d = f"records {x.get('records', 0)}, log pending {x.get('log_pending', 0)}"
        else:
            broker = x.get("broker_connected")
            d = f"outbox backlog {x.get('backlog', 0)}" + (
                "" if broker is None else f", broker {'connected' if broker else 'DISCONNECTED'}")
        state = s_["state"]
        t.add_row(s_["service"], f"[{colour.get(state, 'red')}]{state}[/]", str(s_["pid"] or "-"),
                  _fmt_uptime(s_["uptime_s"]), str(s_["restarts"]), d)
    out.print(t)
    temp = device["cpu_temp_c"]
    out.print(f"disk free {device['disk_free_gib']} GiB, CPU temperature "
              f"{f'{temp:.1f} °C' if temp is not None else 'n/a'}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from edgecount.control import NotRunning
    from edgecount.doctor import run_checks

    try:
        _, appliance = _status_reply(args)
    except (NotRunning, ConfigError):
        appliance = None
    checks = run_checks(_config_path(args), appliance)
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks]}))
        return EXIT_FAILED if failed else EXIT_OK
    t = Table(title="edgecount doctor")
    for col in ("check", "result", "detail", "fix"):
        t.add_column(col)
    mark = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for c in checks:
        t.add_row(c.name, mark[c.status], c.detail, c.fix)
    out.print(t)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    from edgecount.control import NotRunning, ask

    cfg = load_config(_config_path(args))
    try:
        reply = ask(runtime_dir(cfg), {"cmd": "restart", "service": args.service}, timeout_ms=15000)
    except NotRunning as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_NOT_RUNNING
    if not reply.get("ok"):
        err.print(f"[red]{reply.get('error')}[/]")
        return EXIT_USAGE
    out.print(f"restarted {reply['service']} (pid {reply['pid']})")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    import time as _time

    cfg = load_config(_config_path(args))
    log_dir = state_dir(cfg) / "logs"
    names = [args.service] if args.service else ["capture", "inference", "counter", "privacy", "uplink"]
    files = {n: log_dir / f"{n}.log" for n in names}
    if not any(f.exists() for f in files.values()):
        err.print(f"[yellow]no log files in {log_dir}[/]; under systemd the logs are in the journal: "
                  "journalctl -u edgecount")
        return EXIT_FAILED
    handles = {}
    for n, f in files.items():
        if not f.exists():
            continue
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines()[-args.lines:]
        for ln in lines:
            print(f"{n:9} {ln}" if len(files) > 1 else ln)
        fh = f.open("r", encoding="utf-8", errors="replace")
        fh.seek(0, 2)
        handles[n] = fh
    sys.stdout.flush()
    if not args.follow:
        return EXIT_OK
    try:
        while True:
            for n, fh in handles.items():
                for ln in fh.readlines():
                    print(f"{n:9} {ln.rstrip()}" if len(files) > 1 else ln.rstrip(), flush=True)
            _time.sleep(0.3)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_counts(args: argparse.Namespace) -> int:
    import sqlite3
    import time as _time

    cfg = load_config(_config_path(args))
    db = state_dir(cfg) / "uplink.db"
    if not db.exists():
        err.print(f"[yellow]no counts yet ({db} does not exist)[/]")
        return EXIT_FAILED
    now = _time.time()
    local = _time.localtime(now)
    midnight = _time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    since = now - _parse_since(args.since) if args.since else None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    windows = {"today": midnight, "last hour": now - 3600}
    if since is not None:
        windows = {f"since {args.since}": since}
    result: dict[str, dict[str, dict[str, int]]] = {}
    for label, start in windows.items():
        rows = con.execute("SELECT kind, name, SUM(n_in), SUM(n_out) FROM history WHERE kind != 'event' "
                           "AND bucket_start >= ? GROUP BY kind, name ORDER BY kind, name", (start,)).fetchall()
        result[label] = {f"{k}:{n}": {"in": int(i or 0), "out": int(o or 0)} for k, n, i, o in rows}
    con.close()
    names = [f"line:{ln.name}" for ln in cfg.lines] + [f"zone:{z.name}" for z in cfg.zones]
    for label in result:
        for n in names:
            result[label].setdefault(n, {"in": 0, "out": 0})
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

    from edgecount import bus
    from edgecount_core.messages import Crossing, ZoneEvent

    cfg = load_config(_config_path(args))
    rd = runtime_dir(cfg)
    if not (rd / "counter.sock").exists():
        err.print(f"[red]the appliance is not running[/] (no {rd / 'counter.sock'})")
        return EXIT_NOT_RUNNING
    ctx: _zmq.Context[Any] = _zmq.Context()
    sub = bus.Subscriber(ctx, rd, [("counter", (bus.CROSSING, bus.ZONE))], log.configure("cli", level="error"))
    deadline = None if args.follow else _time.monotonic() + args.wait
    try:
        while deadline is None or _time.monotonic() < deadline:
            got = sub.recv(200)
            if got is None:
                continue
            msg = got[1]
            when = _time.strftime("%H:%M:%S", _time.localtime(msg.ts)) if hasattr(msg, "ts") else ""
            if isinstance(msg, Crossing):
                row = {"time": when, "line": msg.line, "direction": msg.direction}
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


def cmd_preview(args: argparse.Namespace) -> int:
    import cv2

    from edgecount.preview import draw, from_appliance, from_camera

    cfg = load_config(_config_path(args))
    got = from_appliance(cfg, runtime_dir(cfg))
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
    people = draw(frame, cfg, boxes, scores, redact)
    if not cv2.imwrite(str(args.out), frame, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        err.print(f"[red]cannot write {args.out}[/]")
        return EXIT_FAILED
    out.print(f"wrote {args.out} from the {source}: {len(cfg.lines)} lines, {len(cfg.zones)} zones, "
              f"{people} people{' (pixelated)' if redact else ' (NOT redacted)'}")
    return EXIT_OK


def cmd_lines_set(args: argparse.Namespace) -> int:
    import os
    import tempfile
    import tomllib

    from edgecount.control import NotRunning, ask
    from edgecount.settings import to_toml

    path = _config_path(args)
    if path is None:
        err.print("[red]no configuration file[/]: pass --config FILE")
        return EXIT_USAGE
    try:
        line = parse_line_arg(f"{args.name}:{args.coords}")
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    lines = [ln for ln in data.get("lines", []) if ln.get("name") != line.name]
    lines.append({"name": line.name, "a": list(line.a), "b": list(line.b)})
    data["lines"] = lines
    from edgecount_core.config import parse_config

    parse_config(data, source=path)  # refuse to write anything invalid
    text = to_toml(data)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, target.stat().st_mode & 0o777)
    os.replace(tmp, target)  # readers see the old file or the new one, never half of it
    out.print(f"line {line.name} set to A={line.a} B={line.b} in {path}")
    cfg = load_config(path)
    try:
        # Counts are durable before this; the counter and privacy filter re-read the lines.
        for service in ("counter", "privacy"):
            ask(runtime_dir(cfg), {"cmd": "restart", "service": service}, timeout_ms=20000)
        out.print("counter and privacy filter reloaded")
    except NotRunning:
        out.print("the appliance is not running; the change applies at its next start")
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    from edgecount.recording import ALL_TOPICS, record

    path = _config_path(args)
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
    from edgecount.recording import normalise, replay_service

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


def cmd_run(args: argparse.Namespace) -> int:
    from edgecount.watchdog import Watchdog

    cfg = load_config(_config_path(args))
    logger = log.configure("watchdog")
    store = _store(cfg)
    from edgecount.assets import resolve_source
    from edgecount.detector import DetectorError
    from edgecount.inference import cpu_twin, resolve_model

    try:
        resolve_source(cfg.capture.source, store)
        if cfg.inference.device == "cpu":
            resolve_model(cfg.inference.model, store)
        else:
            # The accelerator's model may be absent together with the accelerator: the CPU
            # fallback is what must exist before starting.
            resolve_model(cfg.inference.fallback_model or cpu_twin(cfg.inference.model, store), store)
    except (AssetError, DetectorError) as exc:
        err.print(f"[red]cannot start:[/] {exc}")
        return EXIT_FAILED
    path = _config_path(args)
    if path is None:
        err.print("[red]edgecount run needs --config FILE[/] (or /etc/edgecount/edgecount.toml)")
        return EXIT_USAGE
    config_path = Path(path).resolve()
    log_dir = None if args.log_to_stderr else state_dir(cfg) / "logs"
    wd = Watchdog(cfg, config_path, runtime_dir(cfg), log_dir=log_dir, logger=logger)
    return wd.run()


def _line_args(args: argparse.Namespace) -> list[Any]:
    """The --line options, parsed (ConfigError on a malformed one)."""
    return [parse_line_arg(s_) for s_ in args.line or []]


def _replay_with_progress(cfg: Any, args: argparse.Namespace, label: str, **kwargs: Any) -> Any:
    """Run the pipeline over ``args.source``, with a progress bar on a terminal (not with --json)."""
    from edgecount.replay import replay

    if args.json or not err.is_terminal:
        return replay(cfg, args.source, **kwargs)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)
        return replay(cfg, args.source, progress=lambda n, total: bar.update(task, completed=n, total=total or None),
                      **kwargs)


def cmd_replay(args: argparse.Namespace) -> int:
    from edgecount.detector import DetectorError
    from edgecount.replay import ReplayError

    try:
        lines = _line_args(args)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    cfg = load_config(args.config)
    if not lines and not cfg.lines:
        err.print("[red]no counting lines:[/] pass --line NAME:AX,AY,BX,BY or configure [[lines]]")
        return EXIT_USAGE
    logger = log.configure("replay", level="warning" if not args.verbose else "info")
    try:
        res = _replay_with_progress(cfg, args, "replay", realtime=args.realtime, lines=lines or None, logger=logger,
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
    from edgecount.replay import ReplayError
    from edgecount_core.geometry import Line
    from edgecount_core.groundtruth import parse_mot, true_line_counts

    try:
        lines = _line_args(args)
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
        res = _replay_with_progress(cfg, args, "eval", lines=lines or None, logger=logger, collect_tracks=True)
    except (ReplayError, AssetError, DetectorError) as exc:
        err.print(f"[red]eval failed:[/] {exc}")
        return EXIT_FAILED
    glines = [Line(ln.name, ln.a, ln.b) for ln in (lines or cfg.lines)]
    frames = min(res.processed_frames, gt.frames()) if res.processed_frames else gt.frames()
    metrics = mot_metrics(gt, res.tracks, frames)
    truth = true_line_counts(gt, glines, res.width, res.height, fps=res.source_fps, band_px=2.0)
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


def cmd_bench_models(args: argparse.Namespace) -> int:
    from edgecount.benchmodels import bench_models

    cfg = load_config(_config_path(args))
    store = _store(cfg)
    person_decoders = ("ssd_postprocess", "yolox", "yolov5", "yolov8")
    names = args.names or [n for n, e in store.manifest.get("models", {}).items()
                           if e.get("sha256") and e.get("decoder") in person_decoders]
    tiles = ["1x1", *args.tiles]
    try:
        if not args.json and err.is_terminal:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                          transient=True) as bar:
                task = bar.add_task("bench", total=None)
                rows = bench_models(store, names, args.frames, tiles, progress=lambda k, n, what: bar.update(
                    task, completed=k, total=n, description=what))
        else:
            rows = bench_models(store, names, args.frames, tiles)
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
    r.add_argument("--config", "-c")
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

    st = sub.add_parser("status", help="each service of the running appliance")
    st.add_argument("--config", "-c")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    dr = sub.add_parser("doctor", help="check camera, models, Edge TPU, shared memory, broker, clock, disk")
    dr.add_argument("--config", "-c")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)

    rs = sub.add_parser("restart", help="restart one service of the running appliance")
    rs.add_argument("service", choices=["capture", "inference", "counter", "privacy", "uplink"])
    rs.add_argument("--config", "-c")
    rs.set_defaults(func=cmd_restart)

    lg = sub.add_parser("logs", help="show (and follow) service logs")
    lg.add_argument("service", nargs="?", choices=["capture", "inference", "counter", "privacy", "uplink"])
    lg.add_argument("--config", "-c")
    lg.add_argument("--follow", "-f", action="store_true")
    lg.add_argument("--lines", "-n", type=int, default=20)
    lg.set_defaults(func=cmd_logs)

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

    pv = sub.add_parser("preview", help="write one frame with lines, zones and detections (people pixelated)")
    pv.add_argument("--out", required=True, type=Path)
    pv.add_argument("--unredacted", action="store_true",
                    help="do not pixelate people (stays on this device; never send such an image)")
    pv.add_argument("--config", "-c")
    pv.set_defaults(func=cmd_preview)

    ln = sub.add_parser("lines", help="counting lines")
    lsub = ln.add_subparsers(dest="lines_cmd", required=True)
    lset = lsub.add_parser("set", help="add or move a line (validated, atomic, services reloaded)")
    lset.add_argument("name")
    lset.add_argument("coords", metavar="AX,AY,BX,BY")
    lset.add_argument("--config", "-c")
    lset.set_defaults(func=cmd_lines_set)

    rec = sub.add_parser("record", help="record what flows on the bus of the running appliance")
    rec.add_argument("--out", required=True)
    rec.add_argument("--seconds", type=float, required=True)
    rec.add_argument("--topics", help="comma-separated (default: every topic but frame); 'frame' stores images")
    rec.add_argument("--yes", action="store_true", help="confirm recording frames (images of people)")
    rec.add_argument("--config", "-c")
    rec.set_defaults(func=cmd_record)

    rps = sub.add_parser("replay-service", help="feed a recording into one service alone, collect its output")
    rps.add_argument("service", choices=["inference", "counter", "privacy", "uplink"])
    rps.add_argument("dir")
    rps.add_argument("--out", help="write the normalised output (JSON lines) here")
    rps.add_argument("--json", action="store_true")
    rps.set_defaults(func=cmd_replay_service)

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
