"""``edgecount doctor``: every check a technician needs on site, each with its fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import attrs
import cv2

from edgecount.assets.obtain import AssetError, AssetStore, resolve_source
from edgecount.assets.sources import sha256_of
from edgecount.detection.interpreter import edgetpu_devices, probe_edgetpu, runtime_name
from edgecount.runtime.figures import DISK_FULL
from edgecount.runtime.segments import reclaim_stale_segments
from edgecount.runtime.settings import load_config, state_dir
from edgecount.stages import capture_process
from edgecount.stages.figures import CAPTURE, COUNTER, PRIVACY
from edgecount.stages.source_diagnosis import why_no_frames
from edgecount_core.config import Config, ConfigError

CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}  # Global Unichip (unflashed), Google (running)


@attrs.frozen
class Check:
    name: str
    status: str  # "pass", "warn", "fail"
    detail: str
    fix: str = ""


def coral_usb_present() -> bool:
    for dev in Path("/sys/bus/usb/devices").glob("*"):
        try:
            ids = ((dev / "idVendor").read_text().strip(), (dev / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            return True
    return False


def cpu_temperature() -> float | None:
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            return int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return None


def clock_synchronised() -> bool | None:
    if Path("/run/systemd/timesync/synchronized").exists():
        return True
    if shutil.which("timedatectl"):
        r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                           text=True, timeout=5)
        if r.returncode == 0 and r.stdout.strip() in ("yes", "no"):
            return r.stdout.strip() == "yes"
    return None


QUIET_LINE_S = 1800.0
"""A line that counted nothing while people were in view this long is flagged (``doctor --quiet-minutes``)."""


def run_checks(config_path: str | None, appliance: dict[str, Any] | None,
               quiet_line_s: float = QUIET_LINE_S) -> list[Check]:
    checks: list[Check] = []
    try:
        cfg = load_config(config_path)
        checks.append(Check("config", "pass", f"{config_path or 'defaults'} is valid"))
    except ConfigError as exc:
        return [Check("config", "fail", str(exc), "edit the file; `edgecount config check FILE` explains each key")]
    store = AssetStore.for_config(cfg)
    checks.extend(_camera(cfg, cam, store, appliance) for cam in cfg.camera_names())
    checks.extend(_models(cfg, store))
    checks.append(_edgetpu(cfg))
    checks.append(_shm(cfg))
    checks.extend(broker_check(cfg))
    checks.append(_clock(appliance))
    checks.append(_disk(cfg, appliance))
    if appliance and appliance.get("total_pss_mb"):
        checks.append(_memory(appliance))
    if appliance:
        checks.append(restarts_check(appliance))
        checks.extend(quiet_lines_check(cfg, appliance, quiet_line_s))
    checks.extend(update_check(cfg))
    return checks


def update_check(cfg: Config) -> list[Check]:
    """The software version running and the last update's fate (only on a device with A/B slots)."""
    from edgecount.tools.update import describe, update_view

    view = update_view(cfg)
    if view is None:
        return []
    text, trouble = describe(view)
    return [Check("update", "warn" if trouble else "pass", text,
                  "the device runs the previous version; `edgecount logs` of the failed boots is on the data "
                  "partition; fix the bundle and update again" if trouble else "")]


def restarts_check(appliance: dict[str, Any]) -> Check:
    """Every restart of the last hour with the watchdog's cause: a device that passes its camera check right
    after four hangs and an out-of-memory kill is not fine."""
    events = sorted((r["at"], s["service"], r["reason"]) for s in appliance.get("services", [])
                    for r in s.get("restarts_last_hour") or [])
    asked = [e for e in events if "on request" in e[2]]
    faults = [e for e in events if e not in asked]
    if not faults:
        note = f" ({len(asked)} on request)" if asked else ""
        return Check("restarts", "pass", f"no service failed in the last hour{note}")
    listed = "; ".join(f"{time.strftime('%H:%M:%S', time.localtime(t))} {svc} {why}" for t, svc, why in faults[-6:])
    oom = any("out of memory" in why for _, _, why in faults)
    fix = ("memory: use the int8 SSD model, fewer ring_slots or cameras, or a board with more RAM" if oom else
           "edgecount logs shows each failure in context; a hang names the service that stopped answering")
    return Check("restarts", "fail" if oom or len(faults) >= 3 else "warn",
                 f"{len(faults)} in the last hour: {listed}", fix)


def quiet_lines_check(cfg: Config, appliance: dict[str, Any], quiet_line_s: float) -> list[Check]:
    """Lines that counted nothing while people were in view for ``quiet_line_s`` (the counter's own figure:
    seconds with someone in view since the line last counted, since the counter started)."""
    counter = next((s for s in appliance.get("services", []) if s.get("service") == "counter"), None)
    stats = (counter or {}).get("stats") or {}
    quiet = []
    several = len(cfg.camera_names()) > 1
    for cam in cfg.camera_names():
        for ln in cfg.for_camera(cam).lines:
            seconds = COUNTER.quiet_line.read(stats, camera=cam if several else "", line=ln.name)
            if seconds >= quiet_line_s:
                quiet.append(f"{ln.name if not several else f'{cam}/{ln.name}'} ({seconds / 60:.0f} min)")
    if not quiet:
        return [Check("lines", "pass", f"every line counted within {quiet_line_s / 60:.0f} min of people in view")]
    return [Check("lines", "warn", "counted nothing while people were in view: " + ", ".join(quiet),
                  "the line may lie beside the path or end short of it: edgecount preview shows the lines and "
                  "where feet were seen; move it with edgecount lines set")]


def _clock(appliance: dict[str, Any] | None) -> Check:
    """NTP sync, and what the running privacy filter saw of the clock: steps back, long silences."""
    sync = clock_synchronised()
    detail = {True: "synchronised (NTP)", False: "NOT synchronised", None: "sync state unknown"}[sync]
    fix = "" if sync else "enable NTP (timedatectl set-ntp true): count buckets use the clock"
    privacy = next((s for s in (appliance or {}).get("services", []) if s.get("service") == "privacy"), None)
    stats = (privacy or {}).get("stats") or {}
    ahead, steps = PRIVACY.clock_ahead_s.read(stats), int(PRIVACY.clock_steps_back.read(stats))
    gaps, gap_s = int(PRIVACY.stream_gaps.read(stats)), PRIVACY.stream_gap_s.read(stats)
    notes = []
    if steps:
        notes.append(f"stepped back {steps}x" + (f", bucket times {ahead:.0f} s ahead, catching up" if ahead else ""))
    if gaps:
        notes.append(f"{gaps} gap(s) without frames, {gap_s / 3600:.1f} h in all, sent as no rows")
    if notes:
        fix = fix or "no count was lost; an RTC kept in local time or without battery steps at every boot " \
                     "(`edgecount logs privacy` has each step and gap)"
    return Check("clock", "pass" if sync and not ahead else "warn", "; ".join([detail, *notes]), fix)


def _memory(appliance: dict[str, Any]) -> Check:
    """The running appliance's memory (PSS of every process) against the RAM of the board."""
    total = float(appliance["total_pss_mb"])
    per = ", ".join(f"{s['service']} {s.get('pss_mb')}" for s in appliance["services"] if s.get("pss_mb"))
    try:
        ram_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError):
        ram_mb = 0.0
    ok = not ram_mb or total < ram_mb * 0.4
    return Check("memory", "pass" if ok else "warn",
                 f"{total:.0f} MB PSS in all (of {ram_mb:.0f} MB RAM): {per}",
                 "" if ok else "use the int8 SSD model, fewer ring_slots, or a board with more RAM")


def _camera(full: Config, camera: str, store: AssetStore, appliance: dict[str, Any] | None) -> Check:
    """One camera: its capture's own report when the appliance runs, else a first frame read here."""
    cfg = full.for_camera(camera)
    process = capture_process(full, camera)
    title = "camera" if not full.cameras else f"camera {camera}"
    key = "capture.source" if not full.cameras else f"cameras.{camera}.source"
    if appliance:
        cap = next((s for s in appliance["services"] if s["service"] == process), None)
        stats = cap["stats"] if cap else {}
        if cap and CAPTURE.ring_error.text_of(stats):
            return Check(title, "fail", f"{process} has no frame ring: {CAPTURE.ring_error.text_of(stats)} "
                         "(degraded, retrying; "
                         "the other cameras go on)", "free shared memory or lower the ring; "
                         f"`edgecount logs {process}`")
        if cap and cap["state"] == "degraded" and CAPTURE.source_down_s.read(stats) > 0:
            return Check(title, "fail",
                         f"unavailable for {CAPTURE.source_down_s.read(stats)} s: "
                         f"{why_no_frames(cfg.capture.source)}; capture retries in "
                         f"{CAPTURE.retry_in_s.read(stats)} s (degraded, not restarted; counting "
                         "resumes by itself)", f"`edgecount logs {process}` has every attempt")
        if cap and cap["state"] in ("ok", "degraded") and CAPTURE.frames_read.read(stats) > 0:
            fix = "" if cap["state"] == "ok" else f"see `edgecount logs {process}`"
            return Check(title, "pass" if cap["state"] == "ok" else "warn",
                         f"{process} is running: {CAPTURE.frames_read.read(stats):.0f} frames read, "
                         f"{CAPTURE.fps_in.read(stats)} fps", fix)
    try:
        source = resolve_source(cfg.capture.source, store)
    except AssetError as exc:
        return Check(title, "fail", str(exc).splitlines()[0], f"set {key} or the asset mirror")
    t0 = time.monotonic()
    vc = cv2.VideoCapture(source)
    ok, frame = vc.read() if vc.isOpened() else (False, None)
    vc.release()
    if not ok or frame is None:
        return Check(title, "fail", f"no frame: {why_no_frames(source)}", f"set {key} once the cause is fixed")
    h, w = frame.shape[:2]
    return Check(title, "pass", f"{source}: {w}x{h}, first frame in {time.monotonic() - t0:.2f}s")


def _models(cfg: Config, store: AssetStore) -> list[Check]:
    out = []
    names = [cfg.inference.model] + ([cfg.inference.fallback_model] if cfg.inference.fallback_model else [])
    for name in names:
        if name.endswith(".tflite"):
            p = Path(name)
            out.append(Check(f"model {p.name}", "pass" if p.is_file() else "fail",
                             f"{p} ({'present' if p.is_file() else 'missing'}; not in the manifest, hash unchecked)",
                             "" if p.is_file() else "copy the model there or use a manifest name"))
            continue
        try:
            st = store.status("models", name)
        except AssetError as exc:
            out.append(Check(f"model {name}", "fail", str(exc), "use a name from `edgecount models list`"))
            continue
        if st["verified"]:
            out.append(Check(f"model {name}", "pass", f"{st['file']} sha256 ok"))
        elif st["present"]:
            out.append(Check(f"model {name}", "fail", f"{st['file']} sha256 {sha256_of(Path(st['file']))[:12]}… "
                             "does not match the manifest", f"edgecount models fetch {name}"))
        else:
            out.append(Check(f"model {name}", "fail", "not downloaded", f"edgecount models fetch {name}"))
    return out


def _edgetpu(cfg: Config) -> Check:
    listed = edgetpu_devices()
    usb = coral_usb_present()
    pci = Path("/dev/apex_0").exists()
    seen = f"runtime {runtime_name()}; pycoral lists {len(listed)}; USB Coral {'yes' if usb else 'no'}; " \
           f"PCIe /dev/apex_0 {'yes' if pci else 'no'}"
    if cfg.inference.device == "cpu":
        return Check("edge tpu", "pass", f"not configured (inference on CPU); {seen}")
    reason = probe_edgetpu(cfg.inference.device)
    if reason is None:
        return Check("edge tpu", "pass", f"{cfg.inference.device} opens; {seen}")
    return Check("edge tpu", "fail", f"{cfg.inference.device} unavailable: {reason}; {seen}",
                 "plug the Coral in (USB 3 port), install libedgetpu1-std, add the user to plugdev; "
                 "until then the CPU fallback model runs (degraded)")


def _shm(cfg: Config) -> Check:
    need = cfg.capture.ring_slots * cfg.capture.max_width * cfg.capture.max_height * 3 * len(cfg.camera_names())
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return Check("shared memory", "warn", "/dev/shm missing; the ring falls back to the runtime directory")
    reclaimed = reclaim_stale_segments()  # rings of killed runs: nobody holds them, they only take memory
    free = st.f_bavail * st.f_frsize
    ok = free >= need
    note = f"; reclaimed {len(reclaimed)} stale ring(s)" if reclaimed else ""
    return Check("shared memory", "pass" if ok else "fail",
                 f"/dev/shm {free / 2**20:.0f} MiB free, rings need {need / 2**20:.0f} MiB{note}",
                 "" if ok else "lower capture.ring_slots/max_width/max_height or enlarge /dev/shm")


def broker_check(cfg: Config) -> list[Check]:
    """A real MQTT login with the configured credentials and TLS: a TCP connect passes a wrong password too."""
    from edgecount.stages.uplink_sinks import probe_broker

    if "mqtt" not in cfg.uplink.sinks:
        return [Check("broker", "pass", "no MQTT sink configured")]
    m = cfg.uplink.mqtt
    # Never the device's own client id: the broker would close the running uplink's session for ours.
    problem = probe_broker(m, f"edgecount-doctor-{os.getpid()}-{int(time.time())}")
    where = f"{m.host}:{m.port}{' (TLS)' if m.tls else ''}"
    if not problem:
        return [Check("broker", "pass", f"{where}: logged in{f' as {m.username}' if m.username else ''}")]
    if "refused the login" in problem:
        fix = ("check uplink.mqtt.username and the password in uplink.mqtt.password_file against the broker's "
               "accounts and ACL; counts wait in the outbox")
    elif "TLS" in problem:
        fix = "check uplink.mqtt.ca_file (the broker's CA), the broker's host name in its certificate, and the port"
    else:
        fix = "check uplink.mqtt.host/port, the network and the firewall; counts wait in the outbox"
    return [Check("broker", "fail", f"{where}: {problem}", fix)]


def state_dir_problem(d: Path) -> str:
    """Why the service user could not keep its state in ``d`` ("" when it can, or can create it)."""
    probe = d
    while not probe.exists():
        if probe.parent == probe:
            return ""
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user (uid {os.getuid()})"
    return ""


def _disk(cfg: Config, appliance: dict[str, Any] | None = None) -> Check:
    d = state_dir(cfg)
    problem = state_dir_problem(d)
    if problem:
        return Check("disk", "fail", f"state directory {d}: {problem}",
                     "set runtime.state_dir to a directory the service user owns (the package uses "
                     "/var/lib/edgecount)")
    probe = d if d.exists() else d.parent if d.parent.exists() else Path("/")
    usage = shutil.disk_usage(probe)
    waiting = [f"{s['service']} for {DISK_FULL.read(s.get('stats') or {}):.0f} s"
               for s in (appliance or {}).get("services", []) if DISK_FULL.read(s.get("stats") or {}, -1) >= 0]
    ok = usage.free > 200 * 2**20 and not waiting
    detail = f"{probe}: {usage.free / 2**30:.1f} GiB free"
    if waiting:
        detail += "; waiting for room to write: " + ", ".join(waiting) + " (degraded, not restarted)"
    return Check("disk", "pass" if ok else "fail", detail,
                 "" if ok else "free space (old logs, a big uplink.jsonl or its .1/.2, foreign files): the outbox "
                 "needs room while offline; counting resumes by itself")



