"""The A/B disk image's layout and reproducibility, from small trees (issue 30, item 1).

The full image (debootstrap, our package, a QEMU boot through UEFI) is `test_ab_update.py`; this checks the
assembly alone, in a second: the partitions, what GRUB finds on the EFI partition, and that the same trees give
the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import ROOT

sys.path.insert(0, str(ROOT / "yocto/image"))
import build_image  # a build script, not a package

TOOLS = ("mkfs.ext4", "debugfs", "e2fsck", "dumpe2fs", "grub-mkimage", "grub-editenv", "mkfs.vfat",
         "mcopy", "mtype", "sfdisk", "faketime")
pytestmark = pytest.mark.skipif(not all(shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") for t in TOOLS),
                                reason="`just test-deps` installs GRUB, mtools, dosfstools, fdisk and faketime")


def _trees(d: Path) -> tuple[Path, Path]:
    rootfs, data = d / "rootfs", d / "data"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/edgecount-release").write_text("0.1.0\n")
    (data / "etc/edgecount").mkdir(parents=True)
    (data / "etc/edgecount/edgecount.toml").write_text("[device]\nsite = 'x'\n")
    return rootfs, data


def test_partitions_grub_and_the_same_bytes_twice(tmp_path: Path) -> None:
    rootfs, data = _trees(tmp_path)
    shas = [build_image.disk_from_trees(rootfs, data, tmp_path / f"disk{i}.img", tmp_path / f"work{i}", 24, 16, 16)
            for i in range(2)]
    assert shas[0] == shas[1] == hashlib.sha256((tmp_path / "disk0.img").read_bytes()).hexdigest()
    table = json.loads(subprocess.run(["sfdisk", "--json", str(tmp_path / "disk0.img")], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    parts = table["partitions"]
    assert table["label"] == "gpt" and [p["name"] for p in parts] == ["esp", "rootfs-a", "rootfs-b", "data"]
    assert parts[0]["type"] == build_image.ESP_TYPE and parts[3]["type"] == build_image.LINUX_DATA
    assert parts[1]["uuid"].lower() == build_image.fixed_uuid("part-rootfs-a")
    esp = tmp_path / "work0" / "esp.vfat"
    cfg = subprocess.run(["mtype", "-i", str(esp), "::/EFI/BOOT/grub.cfg"], capture_output=True, text=True,
                         env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}, check=True).stdout
    # GRUB boots slot B by its partition UUID, with RAUC's slot name on the kernel command line (not in
    # $chosen: GRUB itself sets that to the menu entry's title).
    assert build_image.fixed_uuid("part-rootfs-b") in cfg and "rauc.slot=$pick" in cfg and "@" not in cfg
    subprocess.run(["mcopy", "-i", str(esp), "::/EFI/BOOT/grubenv", str(tmp_path / "grubenv")], check=True,
                   env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
    env = subprocess.run(["grub-editenv", str(tmp_path / "grubenv"), "list"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert {"ORDER=A", "A_OK=1", "A_TRY=0", "B_OK=0"} <= set(env), env
    # The data partition holds the configuration; slot B starts empty.
    got = subprocess.run(["debugfs", "-R", "cat /etc/edgecount/edgecount.toml", str(tmp_path / "work0/data.ext4")],
                         capture_output=True, text=True).stdout
    assert "site = 'x'" in got


def test_a_changed_file_changes_the_image(tmp_path: Path) -> None:
    rootfs, data = _trees(tmp_path)
    one = build_image.disk_from_trees(rootfs, data, tmp_path / "a.img", tmp_path / "wa", 24, 16, 16)
    (rootfs / "etc/edgecount-release").write_text("0.1.1\n")
    assert build_image.disk_from_trees(rootfs, data, tmp_path / "b.img", tmp_path / "wb", 24, 16, 16) != one


def test_a_partition_too_small_for_its_tree_is_refused(tmp_path: Path) -> None:
    rootfs, data = _trees(tmp_path)
    (rootfs / "big.bin").write_bytes(b"\x01" * (30 << 20))
    with pytest.raises(SystemExit, match=r"image: mkfs\.ext4"):
        build_image.disk_from_trees(rootfs, data, tmp_path / "c.img", tmp_path / "wc", 24, 16, 16)
    assert build_image.fitted_mib(rootfs) > 30


def test_a_bundles_slot_image_has_little_room_to_spare_and_is_reproducible(tmp_path: Path) -> None:
    # RAUC writes a bundle's image whole into the slot: free blocks in it are written on every device.
    rootfs, _ = _trees(tmp_path)
    (rootfs / "payload.bin").write_bytes(bytes(range(256)) * 40_000)  # 10 MB
    images = [tmp_path / f"slot{i}.ext4" for i in range(2)]
    for image in images:
        build_image.slot_image(rootfs, image, "rootfs")
    assert images[0].read_bytes() == images[1].read_bytes()
    assert images[0].stat().st_size < 0.8 * build_image.fitted_mib(rootfs) * build_image.MiB
    free_blocks, block_size = build_image.ext4_figures(images[0], "Free blocks", "Block size")
    free = free_blocks * block_size
    # What stays free is the margin and mke2fs's fixed costs on a small tree (the journal, inode tables).
    assert free < 16 * build_image.MiB + 0.1 * images[0].stat().st_size, f"{free} bytes left free"
    fsck = subprocess.run(["e2fsck", "-f", "-n", str(images[0])], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    got = subprocess.run(["debugfs", "-R", "cat /payload.bin", str(images[0])], capture_output=True).stdout
    assert got == (rootfs / "payload.bin").read_bytes()


def _slot_check(tmp_path: Path, rootmnt: Path) -> subprocess.CompletedProcess[str]:
    # initramfs-tools' panic() reboots under panic=-1; this one only says so and exits as it would not return.
    functions = tmp_path / "functions"
    functions.write_text('panic() { echo "PANIC: $*"; exit 42; }\n')
    return subprocess.run(["sh", str(ROOT / "yocto/image/slot-check")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "rootmnt": str(rootmnt),
                               "EDGECOUNT_INITRAMFS_FUNCTIONS": str(functions)})


def test_the_initramfs_refuses_a_slot_without_systemd_and_starts_one_with_it(tmp_path: Path) -> None:
    # Debian's initramfs runs the slot's /bin/sh when its init is missing, and waits forever; this check
    # panics instead, so panic=-1 reboots and GRUB counts the try.
    slot = tmp_path / "slot"
    (slot / "usr/bin").mkdir(parents=True)
    (slot / "bin").symlink_to("usr/bin")
    (slot / "usr/bin/sh").write_text("")
    (slot / "usr/bin/sh").chmod(0o755)
    refused = _slot_check(tmp_path, slot)
    assert refused.returncode == 42 and "PANIC: edgecount: slot" in refused.stdout, refused
    systemd = slot / "usr/lib/systemd/systemd"
    systemd.parent.mkdir(parents=True)
    systemd.write_text("")
    assert _slot_check(tmp_path, slot).returncode == 42, "a systemd that cannot be executed is no systemd"
    systemd.chmod(0o755)
    started = _slot_check(tmp_path, slot)
    assert started.returncode == 0 and "PANIC" not in started.stdout, started
    prereqs = subprocess.run(["sh", str(ROOT / "yocto/image/slot-check"), "prereqs"], capture_output=True, text=True)
    assert prereqs.returncode == 0 and prereqs.stdout.strip() == ""
