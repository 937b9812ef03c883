"""Reading RAUC's slot status, and what `status` says after an update was kept or rolled back (issue 30)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from edgecount.runtime.settings import load_config
from edgecount.supervisor.slots import SlotError, parse_status
from edgecount.tools.update import _write_record, attempt_report


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
    _write_record(cfg, {"version": "0.2.0", "from_slot": "A", "to_slot": "B", "outcome": "installed",
                        "reason": "", "started": 1.0})
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


def test_a_slot_that_never_gets_healthy_reboots_and_leaves_another_slots_record_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecount.tools.update import read_record, trial

    monkeypatch.setattr("edgecount.supervisor.slots.shutil.which", lambda _: "/usr/bin/rauc")
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(f'[runtime]\ndir = "{tmp_path / "rt"}"\nstate_dir = "{tmp_path / "state"}"\n\n'
                        "[update]\nmark_good_after_s = 30\nboot_deadline_s = 60\n")
    cfg = load_config(str(cfg_path))
    (tmp_path / "state").mkdir()
    # The last attempt put 0.3.0 into A, which failed; the device runs B (whose slot is on trial again).
    _write_record(cfg, {"version": "0.3.0", "from_slot": "B", "to_slot": "A", "outcome": "installed",
                        "reason": "", "started": 1.0})
    device = _FakeDevice("B")
    now = [0.0]
    verdict = trial(cfg, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), run=device,
                    uptime=lambda: 5.0)
    # No appliance answers here (no control socket): never READY, so the deadline reboots.
    assert verdict.decision == "failed" and verdict.reason.startswith("never READY")
    assert ["systemctl", "reboot"] in device.calls and now[0] >= 60 - 5  # waited for the deadline, from boot
    assert not any("mark-good" in c for c in device.calls)
    assert read_record(cfg)["outcome"] == "installed" and read_record(cfg)["reason"] == ""
