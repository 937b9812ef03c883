"""The A/B root file system slots, as RAUC sees them: which one runs, which is good, what each holds.

RAUC owns the slots and the boot loader's state (GRUB's environment on the
EFI partition); this module only reads ``rauc status`` and asks RAUC to mark
the running slot good or bad. Nothing here writes a slot.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["NoSlots", "Slot", "SlotError", "SlotStatus", "mark_booted", "read_status"]

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class SlotError(RuntimeError):
    """RAUC refused or failed."""


class NoSlots(SlotError):
    """This system has no A/B slots, or RAUC's service that manages them is not running."""


@attrs.frozen
class Slot:
    name: str
    """RAUC's slot name (``rootfs.0``)."""
    bootname: str
    """The boot loader's name for it (``A``)."""
    booted: bool
    boot_status: str
    """``good`` or ``bad``, from the boot loader's state."""
    version: str
    """The version of the bundle last installed into it (empty for the factory image)."""


@attrs.frozen
class SlotStatus:
    compatible: str
    booted: str
    """Bootname of the running slot."""
    primary: str
    """RAUC name of the slot the boot loader tries first."""
    slots: tuple[Slot, ...]

    def running(self) -> Slot | None:
        return next((s for s in self.slots if s.booted), None)

    def by_bootname(self, bootname: str) -> Slot | None:
        return next((s for s in self.slots if s.bootname == bootname), None)


def _slot(name: str, raw: Mapping[str, Any], booted: str) -> Slot:
    status = raw.get("slot_status") or {}
    bundle = status.get("bundle") or {}
    bootname = str(raw.get("bootname") or "")
    return Slot(name=name, bootname=bootname, booted=raw.get("state") == "booted" or bootname == booted,
                boot_status=str(raw.get("boot_status") or ""), version=str(bundle.get("version") or ""))


def parse_status(text: str) -> SlotStatus:
    """``rauc status --output-format=json`` as a :class:`SlotStatus` (raises :class:`SlotError` on garbage)."""
    try:
        raw = json.loads(text)
        booted = str(raw.get("booted") or "")
        slots = tuple(_slot(name, body, booted) for entry in raw.get("slots", []) for name, body in entry.items()
                      if str(body.get("class", "rootfs")) == "rootfs")
        return SlotStatus(compatible=str(raw.get("compatible") or ""), booted=booted,
                          primary=str(raw.get("boot_primary") or ""), slots=slots)
    except (ValueError, AttributeError, TypeError) as exc:
        raise SlotError(f"rauc status said something unreadable: {exc}") from None


def _rauc(args: list[str], run: Runner, timeout: float = 60) -> str:
    if shutil.which("rauc") is None:
        raise NoSlots("rauc is not installed: this system has no A/B slots (an image built by `just image` has)")
    res = run(["rauc", *args], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        said = (res.stderr or res.stdout).strip()[-400:]
        if "system config" in said.lower() or "system.conf" in said:
            raise NoSlots(f"this system has no A/B slots (rauc: {said})")
        if "d-bus" in said.lower():
            raise NoSlots(f"RAUC's service is not reachable (is rauc.service running?): {said}")
        raise SlotError(f"rauc {' '.join(args)}: {said}")
    return str(res.stdout)


def read_status(run: Runner = subprocess.run) -> SlotStatus:
    return parse_status(_rauc(["status", "--detailed", "--output-format=json"], run))


def mark_booted(good: bool, run: Runner = subprocess.run) -> None:
    """Mark the running slot good (keep it) or bad (the boot loader will not choose it again)."""
    _rauc(["status", "mark-good" if good else "mark-bad", "booted"], run)
