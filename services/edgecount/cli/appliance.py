"""Commands about the running appliance: run, status, doctor, restart, logs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from edgecount import stages
from edgecount.assets.obtain import AssetError, AssetStore
from edgecount.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    config_path,
    err,
    out,
    with_progress,
)
from edgecount.runtime import logs
from edgecount.runtime.settings import load_config, runtime_dir, state_dir
from edgecount_core.config import ConfigError

if TYPE_CHECKING:
    from edgecount.tools.doctor import Check


def _status_reply(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from edgecount.supervisor.control import ask

    cfg = load_config(config_path(args))
    return cfg, ask(runtime_dir(cfg), {"cmd": "status"})


def _fmt_uptime(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cmd_run(args: argparse.Namespace) -> int:
    from edgecount.supervisor.watchdog import Watchdog

    cfg = load_config(config_path(args))
    logger = logs.configure("watchdog")
    store = AssetStore.for_config(cfg)
    from edgecount.detection.model_files import DetectorError, resolve_model, startup_model
    from edgecount.tools.config_check import config_mistakes

    # Neither a restart nor the reboot the unit's start limit escalates to fixes a mistake in the configuration:
    # exit 2, which the unit does not retry (RestartPreventExitStatus=2).
    try:
        mistakes = config_mistakes(cfg, store, fetch=True)
    except AssetError as exc:
        err.print(f"[red]cannot start:[/] {exc}")
        return EXIT_FAILED
    for problem in mistakes:
        err.print(f"[red]cannot start:[/] {problem}")
    if mistakes:
        return EXIT_USAGE
    try:
        resolve_model(startup_model(cfg, store), store)
    except (AssetError, DetectorError) as exc:
        err.print(f"[red]cannot start:[/] {exc}")
        return EXIT_FAILED
    path = config_path(args)
    if path is None:
        err.print("[red]edgecount run needs --config FILE[/] (or /etc/edgecount/edgecount.toml)")
        return EXIT_USAGE
    resolved = Path(path).resolve()
    log_dir = None if args.log_to_stderr else state_dir(cfg) / "logs"
    if log_dir is not None:
        logger = logs.configure("watchdog", copy_to=log_dir / "watchdog.log")
    wd = Watchdog(cfg, resolved, runtime_dir(cfg), services=stages.processes(cfg), log_dir=log_dir, logger=logger,
                  preload=stages.preload_modules(), figures=stages.figures_by_stage())
    return wd.run()


def cameras_view(cfg: Any, services: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per camera: its capture's state and rate, and what inference made of its frames. A camera whose capture
    is down is ``degraded`` on its own; the other cameras keep their state."""
    from edgecount.stages import capture_process
    from edgecount.stages.figures import CAPTURE, INFERENCE

    by_name = {s_["service"]: s_ for s_ in services}
    inf = by_name.get("inference", {}).get("stats", {})
    several = len(cfg.camera_names()) > 1
    out: dict[str, dict[str, Any]] = {}
    for cam in cfg.camera_names():
        cap = by_name.get(capture_process(cfg, cam), {})
        x = cap.get("stats", {})
        share = cam if several else ""  # inference's figures per camera, when it serves several
        out[cam] = {"process": capture_process(cfg, cam), "state": cap.get("state", "stopped"),
                    "source": cfg.for_camera(cam).capture.source, "fps_in": CAPTURE.fps_in.read(x),
                    "frames_read": int(CAPTURE.frames_read.read(x)), "source_down_s": CAPTURE.source_down_s.read(x),
                    "processed": int(INFERENCE.processed.read(inf, camera=share)),
                    "skipped": int(INFERENCE.skipped.read(inf, camera=share))}
    return out


def _details(process: str, stats: dict[str, Any]) -> str:
    """The service's shown figures, as its stage declares them (trouble highlighted)."""
    from edgecount.runtime.figures import details
    from edgecount.stages import split_process

    shown = details(split_process(process)[0].reported(), stats)
    return ", ".join(f"[yellow]{text}[/]" if trouble else text for text, trouble in shown)


def cmd_status(args: argparse.Namespace) -> int:
    import shutil as _shutil

    from edgecount.supervisor.control import NotRunning
    from edgecount.tools.doctor import cpu_temperature
    from edgecount.tools.update import describe, update_view
    from edgecount.tools.validate import last_result, summary

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
              "watchdog_pid": st["pid"], "uptime_s": st["uptime_s"], "ready": st["ready"],
              "state": st.get("state", "ok"), "degraded": st.get("degraded", []),
              "watchdog_pss_mb": st.get("pss_mb"), "total_pss_mb": st.get("total_pss_mb"),
              "fork_server": st.get("fork_server", "off")}
    cameras = cameras_view(cfg, st["services"])
    validated = last_result(cfg)
    update = update_view(cfg)
    if args.json:
        print(json.dumps({"running": True, "device": device, "cameras": cameras, "services": st["services"],
                          "validation": None if validated is None else {
                              k: validated.get(k) for k in ("at", "source", "verdict", "count_accuracy",
                                                            "event_accuracy", "ci95", "tally")},
                          "update": update}))
        return EXIT_OK
    t = Table(title=f"edgecount — {cfg.device.site}/{cfg.device.id}, up {_fmt_uptime(st['uptime_s'])}")
    for col in ("service", "state", "pid", "uptime", "restarts", "PSS MB", "details"):
        t.add_column(col, justify="right" if col == "PSS MB" else "left")
    colour = {"ok": "green", "degraded": "yellow", "starting": "cyan"}
    for s_ in st["services"]:
        d = _details(s_["service"], s_["stats"])
        state = s_["state"]
        t.add_row(s_["service"], f"[{colour.get(state, 'red')}]{state}[/]", str(s_["pid"] or "-"),
                  _fmt_uptime(s_["uptime_s"]), str(s_["restarts"]), f"{s_.get('pss_mb') or '-'}", d)
    out.print(t)
    if cfg.cameras:
        ct = Table(title="cameras")
        for col in ("camera", "state", "fps in", "processed", "skipped"):
            ct.add_column(col, justify="left" if col in ("camera", "state") else "right")
        for name, c in cameras.items():
            ct.add_row(name, f"[{colour.get(c['state'], 'red')}]{c['state']}[/]", str(c["fps_in"]),
                       str(c["processed"]), str(c["skipped"]))
        out.print(ct)
    temp = device["cpu_temp_c"]
    shared = {"fork": "", "exec": " (fork server not shared with the watchdog)",
              "off": " (fork server off: nothing shared)"}.get(device["fork_server"], "")
    out.print(f"memory (PSS, all processes) {device['total_pss_mb']} MB{shared}, "
              f"disk free {device['disk_free_gib']} GiB, CPU temperature "
              f"{f'{temp:.1f} °C' if temp is not None else 'n/a'}")
    out.print(summary(validated, time.time()) if validated else
              "[yellow]never validated at this site[/]: count by hand for 15 minutes with edgecount validate")
    if update is not None:
        text, trouble = describe(update)
        out.print(f"[red]{text}[/]" if trouble else text)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from edgecount.supervisor.control import NotRunning
    from edgecount.tools.doctor import run_checks

    try:
        _, appliance = _status_reply(args)
    except (NotRunning, ConfigError):
        appliance = None
    checks = run_checks(config_path(args), appliance, quiet_line_s=args.quiet_minutes * 60)
    if args.view and not any(c.name == "config" and c.status == "fail" for c in checks):
        checks += _view_checks(args)
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


def _view_checks(args: argparse.Namespace) -> list[Check]:
    """``doctor --view``: one check per counting line, from a stretch of detections (README, "Where to hang
    the camera"). A view too flat for groups fails: the device will undercount there."""
    from edgecount.tools.doctor import Check
    from edgecount.tools.viewsurvey import survey_view

    cfg = load_config(config_path(args))
    status = {"ok": "pass", "warn": "warn", "unknown": "warn", "small": "warn", "tall": "warn", "flat": "fail"}
    found = []
    for camera in cfg.camera_names():
        prefix = "" if not cfg.cameras else f"{camera} "

        def watch(progress: Any, cam: str = camera) -> Any:
            return survey_view(cfg, cam, args.seconds, runtime_dir(cfg), progress)

        try:
            views, frames, where = with_progress(f"watching {prefix or 'the camera '}for {args.seconds:g} s",
                                                 args.json, watch)
        except (RuntimeError, OSError, AssetError) as exc:
            found.append(Check(f"{prefix}view", "fail", f"no detections to survey: {exc}",
                               "start the appliance (edgecount run) or fix the camera first"))
            continue
        if not views:
            found.append(Check(f"{prefix}view", "warn", "no counting lines to judge", "add [[lines]]"))
        for v in views:
            detail = (f"{v.sightings} sightings over {frames} frames from {where}: {v.overlap_share:.0%} "
                      f"overlapping, people {v.median_height:.0%} of the frame tall")
            found.append(Check(f"{prefix}view at {v.line}", status[v.verdict], detail,
                               "" if v.verdict == "ok" else v.advice))
    return found


def cmd_restart(args: argparse.Namespace) -> int:
    from edgecount.supervisor.control import NotRunning, ask

    cfg = load_config(config_path(args))
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
    from edgecount.tools.flight_log import Follower, merged_tail

    cfg = load_config(config_path(args))
    log_dir = state_dir(cfg) / "logs"
    every = ("watchdog", *stages.processes(cfg))
    if args.service and args.service not in every:
        err.print(f"[red]no process {args.service!r}[/]; this configuration runs {', '.join(every)}")
        return EXIT_USAGE
    files = {n: log_dir / f"{n}.log" for n in ([args.service] if args.service else every)}
    if not any(f.exists() for f in files.values()):
        err.print(f"[yellow]no log files in {log_dir}[/]; under systemd the logs are in the journal: "
                  "journalctl -u edgecount")
        return EXIT_FAILED
    readable = not args.json and sys.stdout.isatty()

    def show(records: list[Any]) -> None:
        for r in records:
            print(readable_log_line(r.record) if readable else r.json())
        sys.stdout.flush()

    try:
        show(merged_tail(files, args.lines))
        if not args.follow:
            return EXIT_OK
        follower = Follower(files)
        try:
            while True:
                show(follower.poll())
                time.sleep(0.3)
        finally:
            follower.close()
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `logs | head`: the reader has what it wanted. Quiet, and no second error when Python flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


_LEVEL_STYLE = {"error": "ERROR", "warning": "WARN ", "info": "info ", "debug": "debug", "critical": "CRIT "}


def readable_log_line(record: dict[str, Any]) -> str:
    """One log record (``tools.flight_log``: always a map) as ``time service level event key=value ...``."""
    rec = dict(record)
    ts = str(rec.pop("timestamp", ""))[11:19]
    level = _LEVEL_STYLE.get(str(rec.pop("level", "")), "     ")
    event = rec.pop("event", "")
    who = rec.pop("service", "")
    rest = " ".join(f"{k}={v}" for k, v in rec.items())
    return f"{ts} {who:9} {level} {event} {rest}".rstrip()


def register(sub: Any) -> None:
    """Add this module's commands to the ``edgecount`` parser."""
    r = sub.add_parser("run", help="run the appliance until stopped")
    r.add_argument("--config", "-c")
    r.add_argument("--log-to-stderr", action="store_true",
                   help="services log to this process's stderr (the journal under systemd)")
    r.set_defaults(func=cmd_run)

    st = sub.add_parser("status", help="each service of the running appliance")
    st.add_argument("--config", "-c")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    dr = sub.add_parser("doctor", help="check camera, models, Edge TPU, shared memory, broker, clock, disk")
    dr.add_argument("--config", "-c")
    dr.add_argument("--json", action="store_true")
    dr.add_argument("--view", action="store_true",
                    help="also watch the live detections and judge the view at every counting line (people "
                    "overlapping, their size)")
    dr.add_argument("--seconds", type=float, default=60.0, help="with --view: how long to watch (default 60)")
    dr.add_argument("--quiet-minutes", type=float, default=30.0,
                    help="flag a line that counted nothing while people were in view this long (default 30)")
    dr.set_defaults(func=cmd_doctor)

    rs = sub.add_parser("restart", help="restart one service of the running appliance")
    rs.add_argument("service", help=f"one of {', '.join(stages.NAMES)}; capture@CAMERA with [[cameras]]")
    rs.add_argument("--config", "-c")
    rs.set_defaults(func=cmd_restart)

    lg = sub.add_parser("logs", help="every process's log, the watchdog's included, as one time-ordered stream")
    lg.add_argument("service", nargs="?", help=f"only one: watchdog, {', '.join(stages.NAMES)}; capture@CAMERA with "
                    "[[cameras]]")
    lg.add_argument("--json", action="store_true", help="one JSON object per line (the default when piped)")
    lg.add_argument("--config", "-c")
    lg.add_argument("--follow", "-f", action="store_true")
    lg.add_argument("--lines", "-n", type=int, default=20, help="the last N lines of the whole stream")
    lg.set_defaults(func=cmd_logs)
