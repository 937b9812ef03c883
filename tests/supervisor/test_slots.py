"""Reading RAUC's slot status, and what `status` says after an update was kept or rolled back (issue 30)."""

from __future__ import annotations

import json
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
