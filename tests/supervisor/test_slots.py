"""Reading RAUC's slot status, and what `status` says after an update was kept or rolled back (issue 30)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from edgecount.runtime.settings import load_config
from edgecount.supervisor.slots import SlotError, parse_status
from edgecount.tools.update import _write_record, attempt_report, describe, read_record, trial
from edgecount_core.config import Config
from edgecount_core.slot_trial import Verdict


def _rauc_json(booted: str, b_status: str, b_version: str | None) -> str:
    """The shape `rauc status --detailed --output-format=json` prints (rauc 1.8), one non-rootfs slot too."""
    def slot(device: str, bootname: str, good: str, version: str | None) -> dict[str, object]:
        return {"class": "rootfs", "device": device, "type": "ext4", "bootname": bootname,
                "state": "booted" if bootname == booted else "inactive", "parent": None, "mountpoint": None,
                "boot_status": good, "slot_status": {"bundle": {"compatible": "edgecount-amd64", "version": version}}}
    return json.dumps({"compatible": "edgecount-amd64", "variant": "", "booted": booted,
                       "boot_primary": "rootfs.1" if b_status == "good" else "rootfs.0",
                       "slots": [{"rootfs.1": slot("/dev/vda3", "B", b_status, b_version)},
                                 {"efi.0": {"class": "efi", "device": "/dev/vda", "bootname": None}},
                                 {"rootfs.0": slot("/dev/vda2", "A", "good", None)}]})


def test_the_running_slot_and_versions_are_read() -> None:
    st = parse_status(_rauc_json("B", "good", "0.2.0"))
    running = st.running()
    assert running is not None and (running.name, running.bootname, running.version) == ("rootfs.1", "B", "0.2.0")
    assert [s.name for s in st.slots] == ["rootfs.1", "rootfs.0"] and st.primary == "rootfs.1"
    with pytest.raises(SlotError):
        parse_status("not json")


def test_status_reports_a_rolled_back_update_with_its_version(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'[runtime]\ndir = "{tmp_path / "rt"}"\nstate_dir = "{tmp_path / "state"}"\n')
    cfg = load_config(str(cfg_path))
    (tmp_path / "state").mkdir()
    _installed(cfg, "0.2.0", into="B")
    # Back on A after installing into B: the new slot never proved itself.
    report = attempt_report(cfg, parse_status(_rauc_json("A", "bad", "0.2.0")))
    assert report["slot"] == "A" and report["last_attempt"]["outcome"] == "rolled_back"
    assert report["last_attempt"]["version"] == "0.2.0" and "3 tries" in report["last_attempt"]["reason"]
    # The trial on B wrote why before it rebooted: that reason is kept.
    _write_record(cfg, {"version": "0.2.0", "from_slot": "A", "to_slot": "B", "outcome": "installed",
                        "reason": "never READY within 900 s of boot", "started": 1.0})
    report = attempt_report(cfg, parse_status(_rauc_json("A", "bad", "0.2.0")))
    assert report["last_attempt"]["reason"] == "never READY within 900 s of boot"
    # Running B: the update is in place (its outcome is what the trial recorded).
    report = attempt_report(cfg, parse_status(_rauc_json("B", "good", "0.2.0")))
    assert report["last_attempt"]["outcome"] == "installed" and report["bundle_version"] == "0.2.0"


class _FakeDevice:
    """`rauc` and `systemctl` as the trial calls them: what it asked is kept."""

    def __init__(self, booted: str) -> None:
        self.status = _rauc_json(booted, "bad", "0.2.0")
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        out = self.status if cmd[:2] == ["rauc", "status"] and "mark-good" not in cmd else ""
        return subprocess.CompletedProcess(cmd, 0, out, "")


class _Stop(Exception):
    pass


def _trial_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setattr("edgecount.supervisor.slots.shutil.which", lambda _: "/usr/bin/rauc")
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'[runtime]\ndir = "{tmp_path / "rt"}"\nstate_dir = "{tmp_path / "state"}"\n\n'
                        "[update]\nmark_good_after_s = 30\nboot_deadline_s = 60\n")
    (tmp_path / "state").mkdir()
    return load_config(str(cfg_path))


def _installed(cfg: Config, version: str, into: str) -> None:
    """The record `edgecount update` leaves after installing ``version`` into slot ``into``."""
    _write_record(cfg, {"version": version, "from_slot": "AB".replace(into, ""), "to_slot": into,
                        "outcome": "installed", "reason": "", "started": 1.0})


def _run_trial(cfg: Config, device: _FakeDevice, until_s: float = 1e9) -> tuple[Verdict, float]:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s
        if now[0] > until_s:
            raise _Stop

    verdict = trial(cfg, clock=lambda: now[0], sleep=sleep, run=device, uptime=lambda: 5.0)
    return verdict, now[0]


def test_a_slot_on_trial_that_never_gets_healthy_reboots_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _trial_cfg(tmp_path, monkeypatch)
    # 0.2.0 was installed into B and the device booted it: B is on trial.
    _installed(cfg, "0.2.0", into="B")
    device = _FakeDevice("B")
    verdict, waited = _run_trial(cfg, device)
    # No appliance answers here (no control socket): never READY, so the deadline reboots.
    assert verdict.decision == "failed" and verdict.reason.startswith("never READY")
    assert ["systemctl", "reboot"] in device.calls and waited >= 60 - 5  # waited for the deadline, from boot
    assert not any("mark-good" in c for c in device.calls)
    assert read_record(cfg)["outcome"] == "installed" and read_record(cfg)["reason"].startswith("never READY")


def test_a_proven_slot_is_never_given_up_and_leaves_another_slots_record_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _trial_cfg(tmp_path, monkeypatch)
    # The last attempt put 0.3.0 into A, which failed; the device runs B, kept at an earlier boot. GRUB counted
    # this boot as a try, so RAUC calls B bad until it is marked good again.
    _installed(cfg, "0.3.0", into="A")
    device = _FakeDevice("B")
    # No appliance answers: B waits for it, long past the deadline, and never reboots.
    with pytest.raises(_Stop):
        _run_trial(cfg, device, until_s=600)
    assert ["systemctl", "reboot"] not in device.calls
    assert read_record(cfg)["outcome"] == "installed" and read_record(cfg)["reason"] == ""


def test_a_proven_slot_with_its_camera_down_is_marked_good_at_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # READY but not one frame (the camera is unplugged): on a proven slot that is a site problem, not a bad slot.
    cfg = _trial_cfg(tmp_path, monkeypatch)
    monkeypatch.setattr("edgecount.tools.update.ask", lambda *_a, **_k: {
        "ready": True, "services": [{"service": "counter", "stats": {"processed": 0}}]})
    device = _FakeDevice("A")  # the factory slot: no update was ever recorded
    verdict, _ = _run_trial(cfg, device, until_s=600)
    assert verdict.decision == "good" and ["rauc", "status", "mark-good", "booted"] in device.calls
    assert ["systemctl", "reboot"] not in device.calls and read_record(cfg) == {}
    # The same READY without frames on a slot on trial is not enough: it reboots at the deadline.
    _installed(cfg, "0.2.0", into="A")
    device = _FakeDevice("A")
    verdict, _ = _run_trial(cfg, device, until_s=600)
    assert verdict.decision == "failed" and "no frame was processed" in verdict.reason
    assert ["systemctl", "reboot"] in device.calls


def test_an_install_cut_off_by_a_restart_is_reported_as_interrupted(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'[runtime]\ndir = "{tmp_path / "rt"}"\nstate_dir = "{tmp_path / "state"}"\n')
    cfg = load_config(str(cfg_path))
    (tmp_path / "state").mkdir()
    _write_record(cfg, {"version": "0.3.0", "from_slot": "B", "outcome": "installing", "reason": "",
                        "started": 1.0, "boot_id": "boot-1"})
    status = parse_status(_rauc_json("B", "good", "0.2.0"))
    # The same boot: RAUC may still be writing.
    assert attempt_report(cfg, status, this_boot="boot-1")["last_attempt"]["outcome"] == "installing"
    # A later boot: power went while the other slot was written; the technician is told to install again.
    report = attempt_report(cfg, status, this_boot="boot-2")
    last = report["last_attempt"]
    assert (last["version"], last["outcome"]) == ("0.3.0", "interrupted") and "install it again" in last["reason"]
    line, trouble = describe(report)
    assert trouble and "update to 0.3.0 FAILED (interrupted)" in line and "slot B" in line
