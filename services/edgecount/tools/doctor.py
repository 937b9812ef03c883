"""``edgecount doctor``: every check a technician needs on site, each with its fix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import attrs
import cv2

from edgecount.detection.runtime import edgetpu_devices, probe_edgetpu, runtime_name
from edgecount.runtime.assets import AssetError, AssetStore, resolve_source, sha256_of
from edgecount.runtime.segments import reclaim_stale_segments
from edgecount.runtime.settings import load_config, state_dir
from edgecount.stages import capture_process
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


def run_checks(config_path: str | None, appliance: dict[str, Any] | None) -> list[Check]:
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
    checks.extend(_broker(cfg))
    checks.append(_clock(appliance))
    checks.append(_disk(cfg, appliance))
    if appliance and appliance.get("total_pss_mb"):
        checks.append(_memory(appliance))
    return checks


def _clock(appliance: dict[str, Any] | None) -> Check:
    """NTP sync, and what the running privacy filter saw of the clock: steps back, long silences."""
    sync = clock_synchronised()
    detail = {True: "synchronised (NTP)", False: "NOT synchronised", None: "sync state unknown"}[sync]
    fix = "" if sync else "enable NTP (timedatectl set-ntp true): count buckets use the clock"
    privacy = next((s for s in (appliance or {}).get("services", []) if s.get("service") == "privacy"), None)
    stats = (privacy or {}).get("stats") or {}
    ahead, steps = float(stats.get("clock_ahead_s", 0) or 0), int(stats.get("clock_steps_back", 0) or 0)
    gaps, gap_s = int(stats.get("stream_gaps", 0) or 0), float(stats.get("stream_gap_s", 0) or 0)
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
        if cap and stats.get("ring_error"):
            return Check(title, "fail", f"{process} has no frame ring: {stats['ring_error']} (degraded, retrying; "
                         "the other cameras go on)", "free shared memory or lower the ring; "
                         f"`edgecount logs {process}`")
        if cap and cap["state"] == "degraded" and float(stats.get("source_down_s", 0)) > 0:
            return Check(title, "fail",
                         f"{cfg.capture.source}: unavailable for {stats.get('source_down_s')} s; capture retries in "
                         f"{stats.get('retry_in_s')} s (degraded, not restarted; counting resumes by itself)",
                         f"check the camera's power, cable or network and the URL; `edgecount logs {process}`")
        if cap and cap["state"] in ("ok", "degraded") and int(stats.get("frames_read", 0)) > 0:
            fix = "" if cap["state"] == "ok" else f"see `edgecount logs {process}`"
            return Check(title, "pass" if cap["state"] == "ok" else "warn",
                         f"{process} is running: {stats.get('frames_read')} frames read, "
                         f"{stats.get('fps_in', 0)} fps", fix)
    try:
        source = resolve_source(cfg.capture.source, store)
    except AssetError as exc:
        return Check(title, "fail", str(exc).splitlines()[0], f"set {key} or the asset mirror")
    t0 = time.monotonic()
    vc = cv2.VideoCapture(source)
    ok, frame = vc.read() if vc.isOpened() else (False, None)
    vc.release()
    if not ok or frame is None:
        return Check(title, "fail", f"{source} does not deliver frames",
                     "check the cable/URL and credentials; for /dev/videoN the user needs the 'video' group")
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


def _broker(cfg: Config) -> list[Check]:
    if "mqtt" not in cfg.uplink.sinks:
        return [Check("broker", "pass", "no MQTT sink configured")]
    m = cfg.uplink.mqtt
    try:
        socket.create_connection((m.host, m.port), timeout=3).close()
        return [Check("broker", "pass", f"{m.host}:{m.port} reachable")]
    except OSError as exc:
        return [Check("broker", "fail", f"{m.host}:{m.port} unreachable ({exc})",
                      "check uplink.mqtt.host/port, the network and the firewall; counts wait in the outbox")]


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
    waiting = [f"{s['service']} for {float(s['stats']['disk_full_s']):.0f} s"
               for s in (appliance or {}).get("services", []) if "disk_full_s" in (s.get("stats") or {})]
    ok = usage.free > 200 * 2**20 and not waiting
    detail = f"{probe}: {usage.free / 2**30:.1f} GiB free"
    if waiting:
        detail += "; waiting for room to write: " + ", ".join(waiting) + " (degraded, not restarted)"
    return Check("disk", "pass" if ok else "fail", detail,
                 "" if ok else "free space (old logs, a big uplink.jsonl or its .1/.2, foreign files): the outbox "
                 "needs room while offline; counting resumes by itself")



