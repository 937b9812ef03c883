"""``edgecount update``: install a signed bundle into the other slot, and let the new slot prove itself.

The technician's half: fetch the bundle (a path, a USB stick, or an https
URL), refuse it unless :func:`~edgecount.tools.bundle_check.check_bundle`
passes, then ``rauc install`` with progress and a record of the attempt in
the state directory (on the data partition, which no update touches). The
device's half, run by ``edgecount-update-trial.service`` at every boot: if
the running slot is on trial, watch the appliance until it is healthy
(:class:`edgecount_core.slot_trial.SlotTrial`) and mark the slot good, or
reboot so the boot loader can fall back. After a fallback, the old slot
reads the record and reports the failed update.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecount import __version__
from edgecount.runtime.files import replace_text
from edgecount.runtime.settings import runtime_dir, state_dir
from edgecount.stages.figures import COUNTER
from edgecount.supervisor.control import NotRunning, ask
from edgecount.supervisor.slots import SlotError, SlotStatus, mark_booted, read_status
from edgecount.tools.bundle_check import BundleError, BundleInfo, check_bundle, device_compatible
from edgecount_core.config import Config
from edgecount_core.slot_trial import SlotTrial, Verdict

__all__ = ["BundleError", "Progress", "SlotError", "attempt_report", "boot_id", "describe", "fetch", "install",
           "read_record", "trial", "update_view"]

Progress = Callable[[int, str], None]
"""Percent done and what is happening."""
RECORD = "update.json"
_RAUC_PROGRESS = re.compile(r"^\s*(\d{1,3})%\s+(.*)$")


def _record_path(cfg: Config) -> Path:
    return state_dir(cfg) / RECORD


def read_record(cfg: Config) -> dict[str, Any]:
    try:
        loaded = json.loads(_record_path(cfg).read_text())
        return loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(cfg: Config, record: dict[str, Any]) -> None:
    _record_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    replace_text(_record_path(cfg), json.dumps(record, indent=1), 0o640)


def fetch(source: str, work: Path, progress: Progress) -> Path:
    """A local path as it is; an https URL downloaded into ``work`` (checked afterwards like any bundle)."""
    if not source.startswith(("https://", "http://")):
        return Path(source)
    if source.startswith("http://"):
        raise BundleError("refusing a plain http:// URL: use https:// (or a file on a USB stick)")
    dest = work / Path(source.split("?", 1)[0]).name
    try:
        with urllib.request.urlopen(source, timeout=30) as resp, dest.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                progress(int(100 * done / total) if total else 0, f"downloading {done >> 20} MiB")
    except OSError as exc:
        raise BundleError(f"{source}: download failed ({exc})") from None
    return dest


def install(cfg: Config, source: str, progress: Progress, run: Callable[..., Any] = subprocess.run,
            popen: Callable[..., Any] = subprocess.Popen) -> BundleInfo:
    """Check, then install into the other slot; raises :class:`BundleError` (nothing written) or
    :class:`SlotError` (rauc failed while installing: the other slot is marked bad, the running one untouched)."""
    state_dir(cfg).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ec-update-", dir=state_dir(cfg)) as tmp:
        bundle = fetch(source, Path(tmp), progress)
        progress(0, "checking the signature and every block")
        info = check_bundle(bundle, Path(cfg.update.keyring), device_compatible(Path(cfg.update.system_conf)), run)
        slots = read_status(run)
        running = slots.running()
        record = {"version": info.version, "from_version": running.version if running else "",
                  "from_slot": slots.booted, "started": time.time(), "outcome": "installing", "reason": "",
                  "boot_id": boot_id()}
        _write_record(cfg, record)
        proc = popen(["rauc", "install", str(bundle)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-19:], line.rstrip()]
            m = _RAUC_PROGRESS.match(line)
            if m:
                progress(int(m.group(1)), m.group(2).strip())
        if proc.wait() != 0:
            _write_record(cfg, {**record, "outcome": "install_failed", "reason": tail[-1] if tail else ""})
            raise SlotError("rauc install failed: " + " / ".join(tail[-3:]))
        after = read_status(run)
        _write_record(cfg, {**record, "outcome": "installed", "to_slot": _other(after, slots.booted)})
    progress(100, "installed: reboot to run it")
    return info


def _other(status: SlotStatus, booted: str) -> str:
    return next((s.bootname for s in status.slots if s.bootname != booted), "")


def boot_id() -> str:
    """This boot's id (the kernel makes a new one at every boot); empty where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def attempt_report(cfg: Config, status: SlotStatus | None, this_boot: str | None = None) -> dict[str, Any]:
    """What ``status`` and ``doctor`` say about updates: the version running and the last attempt's fate."""
    record = read_record(cfg)
    running = status.running() if status else None
    out: dict[str, Any] = {"version": __version__, "slot": status.booted if status else "",
                           "bundle_version": running.version if running else "", "last_attempt": None}
    if record:
        outcome = record.get("outcome", "")
        if outcome == "installed" and status is not None and record.get("to_slot") \
                and status.booted != record["to_slot"]:
            # Back on the old slot after installing into the other: the new one did not prove itself.
            outcome = "rolled_back"
            record["reason"] = record.get("reason") or "the new slot did not boot or was never healthy (3 tries)"
        elif outcome == "installing" and record.get("boot_id") \
                and record["boot_id"] != (boot_id() if this_boot is None else this_boot):
            # Still "installing" in a later boot: power was lost (or the device restarted) while RAUC wrote
            # the other slot. RAUC marks that slot bad before its first write, so the running one is intact.
            outcome = "interrupted"
            record["reason"] = "the device restarted while the update was being written: install it again"
        out["last_attempt"] = {"version": record.get("version"), "outcome": outcome,
                               "reason": record.get("reason", ""), "at": record.get("started")}
    return out


def update_view(cfg: Config) -> dict[str, Any] | None:
    """:func:`attempt_report` on this device, or None where it has no A/B slots (a plain package install)."""
    if not Path(cfg.update.system_conf).exists():
        return None
    try:
        status: SlotStatus | None = read_status()
    except SlotError:
        status = None
    return attempt_report(cfg, status)


def describe(view: dict[str, Any]) -> tuple[str, bool]:
    """One line for ``status`` and ``doctor``, and whether it is trouble (a failed or rolled-back update)."""
    head = f"software {view['bundle_version'] or view['version']}" + (f" (slot {view['slot']})" if view["slot"]
                                                                       else "")
    last = view.get("last_attempt")
    if not last:
        return head, False
    outcome = str(last.get("outcome"))
    if outcome in ("rolled_back", "install_failed", "interrupted"):
        return f"{head}; update to {last.get('version')} FAILED ({outcome.replace('_', ' ')}): {last.get('reason')}", \
            True
    return f"{head}; last update {last.get('version')}: {outcome}", False


def trial(cfg: Config, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
          run: Callable[..., Any] = subprocess.run, uptime: Callable[[], float] | None = None) -> Verdict:
    """Watch a slot on trial until it is good (marked) or has failed (reboot requested); see the module."""
    status = read_status(run)
    if status.running() is None:
        return Verdict("good", "no slot is running (no A/B slots)")
    record = read_record(cfg)
    if record.get("to_slot") != status.booted:
        record = {}  # the last attempt was for the other slot (say, one that failed and was left): not ours
    # On trial: the first boots after an install into this slot, until it is kept. Every other boot is of a
    # proven slot, which is marked good again (the boot loader counts each boot as a try until then) but never
    # given up for want of frames. Asked of the record, not of RAUC: RAUC's U-Boot backend calls a slot good
    # while it has tries left, so "good" there does not mean "kept".
    on_trial = record.get("outcome") == "installed"
    judge = SlotTrial(cfg.update.mark_good_after_s, cfg.update.boot_deadline_s, proven=not on_trial)
    uptime0 = (uptime or _uptime)() - clock()  # the deadline counts from boot, not from this start
    while True:
        try:
            st = ask(runtime_dir(cfg), {"cmd": "status"})
            ready = bool(st.get("ready"))
            counter: dict[str, Any] = next(
                (s for s in st.get("services", []) if s.get("service") == "counter"), {})
            processed = int(COUNTER.processed.read(counter.get("stats") or {}))
        except (NotRunning, OSError, TimeoutError, ValueError):
            ready, processed = False, 0
        verdict = judge.observe(uptime0 + clock(), ready, processed)
        if verdict.decision != "wait":
            break
        sleep(2.0)
    if verdict.decision == "good":
        mark_booted(True, run)
        if on_trial:
            _write_record(cfg, {**record, "outcome": "good", "reason": verdict.reason})
    else:
        _write_record(cfg, {**record, "reason": verdict.reason})
        run(["systemctl", "reboot"], timeout=60)
    return verdict


def _uptime() -> float:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0

