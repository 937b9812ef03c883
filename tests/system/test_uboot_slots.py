"""The Raspberry Pi's A/B boot script, run by a real U-Boot under QEMU (issue 30, item 6).

The Yocto layer's ``boot.cmd.in`` is what chooses slot A or B on a Raspberry Pi: it spends one of the
slot's tries (``BOOT_<slot>_LEFT``, three until the running system marks the slot good), passes over a slot
with none left, and boots A when both are spent. No board is lent to this project, so Debian's U-Boot for
QEMU's ``virt`` machine (``u-boot-qemu``) runs it instead, compiled by ``mkimage`` the way the recipe
compiles it, with ``virtio`` for the Pi's ``mmc`` and ``booti`` for its kernel command. U-Boot's distro boot
finds ``boot.scr`` on the first partition of the same four-partition GPT disk, as on the Pi. The slot
partitions hold a stand-in kernel, so each boot ends at ``booti`` ("Bad Linux ARM64 Image magic"); what the
script decided is then read at U-Boot's prompt: the slot, the tries left, the kernel command line, and the
bytes it loaded (each slot's stand-in says which slot it is).

One boot follows another with ``run bootcmd`` in the same session, the environment kept in memory: Debian
12's QEMU cannot write U-Boot's environment to its emulated flash (QEMU issue 2343, "pflash write timeout"),
so ``saveenv`` fails here, and on a Pi the environment is a file on the boot partition (``uboot.env``)
anyway. What RAUC writes between boots (``fw_setenv`` of ``BOOT_ORDER`` and ``BOOT_<slot>_LEFT``) is typed
at the prompt. Not proven here: the Pi's firmware, its ``mmc`` driver and ``uboot.env`` storage.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..helpers import ROOT
from .guest_host import require_guest_host

sys.path.insert(0, str(ROOT / "yocto/image"))
import build_image  # a build script, not a package

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "yocto/meta-edgecount/dynamic-layers/raspberrypi/recipes-bsp/rpi-u-boot-scr/files/boot.cmd.in"
UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
TOOLS = ("qemu-system-aarch64", "mkimage", "mkfs.vfat", "mcopy", "mkfs.ext4", "debugfs", "sfdisk")
PROMPT = b"\n=> "


def _disk(work: Path) -> Path:
    """The Pi's layout (boot partition, slots A and B, data), with boot.scr compiled as the recipe does."""
    cmd = SCRIPT.read_text()
    for key, value in (("BOOT_MEDIA", "virtio"), ("KERNEL_IMAGETYPE", "Image"), ("KERNEL_BOOTCMD", "booti")):
        cmd = cmd.replace(f"@@{key}@@", value)
    assert "@@" not in cmd, "the recipe fills more placeholders than this test"
    (work / "boot.cmd").write_text(cmd)
    build_image.run(["mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-n", "edgecount A/B",
                     "-d", str(work / "boot.cmd"), str(work / "boot.scr")])
    boot = work / "boot.vfat"
    build_image.run(["mkfs.vfat", "-n", "BOOT", "-C", str(boot), str(16 * 1024)])
    build_image.run(["mcopy", "-i", str(boot), str(work / "boot.scr"), "::/boot.scr"], env={"MTOOLS_SKIP_CHECK": "1"})
    parts = [("esp", boot, 16, build_image.ESP_TYPE)]
    for slot in ("a", "b"):
        tree = work / f"slot-{slot}"
        (tree / "boot").mkdir(parents=True)
        (tree / "boot/Image").write_bytes(f"edgecount slot {slot.upper()} stand-in kernel\n".encode() * 64)
        build_image.ext4(tree, work / f"{slot}.ext4", 16, f"rootfs-{slot}")
        parts.append((f"rootfs-{slot}", work / f"{slot}.ext4", 16, build_image.LINUX_ROOT_X86_64))
    (work / "data").mkdir()
    build_image.ext4(work / "data", work / "data.ext4", 8, "data")
    parts.append(("data", work / "data.ext4", 8, build_image.LINUX_DATA))
    build_image.assemble(work / "disk.img", parts)
    return work / "disk.img"


class UBoot:
    """A U-Boot session on QEMU's serial console: boots once on start, then answers commands."""

    def __init__(self, disk: Path, work: Path) -> None:
        flash = work / "flash0.img"
        with flash.open("wb") as f:
            f.write(UBOOT.read_bytes())
            f.truncate(64 << 20)
        self.qemu = subprocess.Popen(
            ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-m", "256", "-nographic", "-nic", "none",
             "-drive", f"if=pflash,format=raw,readonly=on,file={flash}",
             "-drive", f"if=virtio,format=raw,file={disk}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = b""
        self.first_boot = self._until_prompt(180)

    def _until_prompt(self, timeout: float) -> str:
        start, end = len(self.out), time.monotonic() + timeout
        assert self.qemu.stdout is not None
        while time.monotonic() < end:
            ready, _, _ = select.select([self.qemu.stdout], [], [], 1)
            if ready:
                chunk = os.read(self.qemu.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.out += chunk
                if self.out.endswith(PROMPT):
                    return self.out[start:].decode(errors="replace")
        pytest.fail(f"U-Boot gave no prompt within {timeout:.0f} s:\n{self.out[-3000:].decode(errors='replace')}")

    def __call__(self, command: str, timeout: float = 120) -> str:
        assert self.qemu.stdin is not None
        self.qemu.stdin.write(command.encode() + b"\n")
        self.qemu.stdin.flush()
        return self._until_prompt(timeout)

    def boot(self) -> dict[str, str]:
        """The next boot (distro boot runs boot.scr again), and what the script decided."""
        return self.decided(self("run bootcmd"))

    def decided(self, log: str) -> dict[str, str]:
        assert "Found U-Boot script /boot.scr" in log and "Bad Linux ARM64 Image magic" in log, log[-2000:]
        env = self("printenv bootslot BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT bootargs")
        got = dict(re.findall(r"^(\w+)=(.*?)\r?$", env, re.M))
        loaded = self("md.b ${kernel_addr_r} 0x20")
        got["loaded"] = "".join(re.findall(r"\s{2}(.{1,16})\r?$", loaded, re.M))
        return got

    def close(self) -> None:
        self.qemu.kill()
        self.qemu.wait()


def test_the_pi_boot_script_spends_tries_falls_back_and_boots_the_chosen_slot(tmp_path: Path) -> None:
    require_guest_host("U-Boot test", TOOLS, [UBOOT], as_root=False)
    uboot = UBoot(_disk(tmp_path), tmp_path)
    try:
        uuid = {s: build_image.fixed_uuid(f"part-rootfs-{s.lower()}") for s in "AB"}

        def slot_of(got: dict[str, str]) -> str:
            # The command line names the partition it mounts and RAUC's slot; the kernel came from that slot.
            args = got["bootargs"].split()
            assert f"root=PARTUUID={uuid[got['bootslot']]}" in args and f"rauc.slot={got['bootslot']}" in args, got
            assert f"slot {got['bootslot']} stand-in" in got["loaded"], got
            return got["bootslot"]

        # A fresh environment, as on a card just written: slot A, one of its three tries spent.
        first = uboot.decided(uboot.first_boot)
        assert (slot_of(first), first["BOOT_A_LEFT"], first["BOOT_B_LEFT"]) == ("A", "2", "0"), first
        # The running system marks A good, and an update installed into B makes it first (RAUC's fw_setenv).
        uboot('setenv BOOT_A_LEFT 3; setenv BOOT_ORDER "B A"; setenv BOOT_B_LEFT 3')
        # B never marks itself good: three boots spend its tries, the fourth is A's.
        tries = [uboot.boot() for _ in range(4)]
        assert [(slot_of(t), t["BOOT_B_LEFT"]) for t in tries] == [("B", "2"), ("B", "1"), ("B", "0"), ("A", "0")]
        assert tries[-1]["BOOT_A_LEFT"] == "2" and tries[-1]["BOOT_ORDER"] == "B A", tries[-1]
        # A slot marked good keeps its tries from boot to boot (the trial marks it again at every boot).
        uboot("setenv BOOT_A_LEFT 3")
        assert (slot_of(again := uboot.boot()), again["BOOT_A_LEFT"]) == ("A", "2"), again
        # Both slots out of tries: A anyway, so a technician can still reach the device.
        uboot("setenv BOOT_A_LEFT 0; setenv BOOT_B_LEFT 0")
        stuck = uboot.boot()
        assert (slot_of(stuck), stuck["BOOT_A_LEFT"], stuck["BOOT_B_LEFT"]) == ("A", "0", "0"), stuck
    finally:
        uboot.close()
