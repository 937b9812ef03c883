#!/usr/bin/env python3
"""Build the flashable appliance disk image (the Mendel route, amd64): `just image`.

Layout (GPT): an EFI system partition with GRUB (``grub.cfg`` beside this
file chooses slot A or B from RAUC's environment, three tries each), two root
file system slots A and B, and a data partition for what no update may
touch: the configuration, the counter's state, the outbox and the logs
(bind-mounted over /etc/edgecount and /var/lib/edgecount by ``fstab``).

The root file system is Debian bookworm (debootstrap, as root) with our
``.deb``, RAUC and its keyring. Every file system is then made without root
(``mkfs.ext4 -d``, ``mkfs.vfat`` and mtools, ``sfdisk`` on a plain file),
with fixed UUIDs and every time clamped to ``SOURCE_DATE_EPOCH``, so the
same root file system gives the same image byte for byte. Standard library
only: it runs under the build host's python3.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMPATIBLE = "edgecount-amd64"
MiB = 1 << 20
NAMESPACE = uuid.UUID("6f1c6bb8-2c1b-4c35-9e59-2e9f0c0e7a10")  # edgecount's: every id below derives from it
GRUB_MODULES = "part_gpt fat ext2 normal linux loadenv test echo regexp configfile search all_video gzio"
ROOTFS_PACKAGES = ["systemd", "systemd-sysv", "udev", "kmod", "procps", "python3", "adduser", "libglib2.0-0",
                   "libgl1", "linux-image-amd64", "dbus", "rauc", "rauc-service", "grub-common", "openssl",
                   "cryptsetup-bin", "e2fsprogs"]
CMDLINE = "console=ttyS0 panic=-1 systemd.journald.forward_to_console=1"


def fixed_uuid(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive", **kw.pop("env", {})}  # type: ignore[dict-item]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise SystemExit(f"image: {' '.join(cmd[:3])} failed ({res.returncode}):\n{res.stdout[-1500:]}\n"
                         f"{res.stderr[-2500:]}")
    return res


def epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH") or 1_767_225_600)  # 2026-01-01 when nothing is given


def frozen_clock() -> str:
    """SOURCE_DATE_EPOCH as libfaketime's absolute (frozen) time, for tools that stamp the clock's time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch()))


# -- the root file system --------------------------------------------------------------------------------

def debootstrap_cache() -> Path:
    """Where debootstrap keeps the packages it downloaded, for the next build (and the tests) to reuse."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecount" / "debootstrap"


def bootstrap(rootfs: Path, mirror: str, cache: Path, extra: list[str] | None = None) -> None:
    """A minimal bookworm with what the appliance, RAUC and a kernel need (as root)."""
    cache.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", "--variant=minbase", f"--cache-dir={cache}",
         f"--include={','.join(ROOTFS_PACKAGES + (extra or []))}", "bookworm", str(rootfs), mirror], timeout=1800)


def install_appliance(rootfs: Path, deb: Path, keyring: Path, version: str, compatible: str = COMPATIBLE) -> None:
    """Our package, RAUC's configuration and keyring, the data partition's mounts, the trial unit, and the
    initramfs check that makes a slot without systemd reboot (so GRUB counts the try) instead of hanging."""
    shutil.copy2(deb, rootfs / "tmp" / deb.name)
    run(["chroot", str(rootfs), "dpkg", "-i", f"/tmp/{deb.name}"], timeout=900)
    (rootfs / "tmp" / deb.name).unlink()
    rauc = rootfs / "etc/rauc"
    rauc.mkdir(parents=True, exist_ok=True)
    (rauc / "system.conf").write_text((HERE / "system.conf").read_text().replace("@COMPATIBLE@", compatible))
    shutil.copyfile(keyring, rauc / "keyring.pem")
    (rootfs / "etc/fstab").write_text((HERE / "fstab").read_text())
    for mount in ("boot/efi", "data"):
        (rootfs / mount).mkdir(parents=True, exist_ok=True)
    unit = rootfs / "etc/systemd/system/edgecount-update-trial.service"
    shutil.copyfile(HERE / "edgecount-update-trial.service", unit)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants/edgecount-update-trial.service"
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/edgecount-update-trial.service")
    slot_check = rootfs / "etc/initramfs-tools/scripts/init-bottom/edgecount-slot-check"
    slot_check.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "slot-check", slot_check)
    slot_check.chmod(0o755)
    # The initramfs GRUB loads is the slot's own: each slot refuses itself if it cannot run systemd.
    run(["chroot", str(rootfs), "update-initramfs", "-u", "-k", "all"], timeout=900,
        env={"SOURCE_DATE_EPOCH": str(epoch())})
    (rootfs / "etc/edgecount-release").write_text(f"{version}\n")
    (rootfs / "etc/hostname").write_text("edgecount\n")
    (rootfs / "etc/machine-id").write_text("")  # systemd makes one at first boot: no two devices share it
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # debootstrap's downloads: 200 MB of .debs
        for f in (rootfs / cache).glob("*"):
            if f.is_file():
                f.unlink()


def split_data(rootfs: Path, data: Path) -> None:
    """Move what must outlive updates out of the root file system, into the data partition's tree."""
    for src, dest in (("etc/edgecount", "etc/edgecount"), ("var/lib/edgecount", "lib/edgecount")):
        target = data / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if (rootfs / src).exists():
            shutil.copytree(rootfs / src, target, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(rootfs / src)
        target.mkdir(parents=True, exist_ok=True)
        (rootfs / src).mkdir(parents=True, exist_ok=True)  # the mount points


# -- file systems and the disk, without root ------------------------------------------------------------

def clamp_times(tree: Path) -> None:
    t = epoch()
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
    os.utime(tree, (t, t))


def ext4(tree: Path, out: Path, size_mib: int, label: str, clamp: bool = True) -> None:
    """``tree`` as an ext4 image of ``size_mib``; ``clamp=False`` for a trial image, whose times do not matter."""
    clamp_times(tree)
    fs_uuid = fixed_uuid(f"fs-{label}")
    out.unlink(missing_ok=True)
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-U", fs_uuid, "-E", f"hash_seed={fixed_uuid(f'hash-{label}')}",
         "-I", "256", "-d", str(tree), str(out), f"{size_mib}M"], env={"E2FSPROGS_FAKE_TIME": str(epoch())},
        timeout=1800)
    if clamp:
        clamp_ctimes(tree, out)


def clamp_ctimes(tree: Path, image: Path) -> None:
    """mke2fs copies each file's ctime, which only the kernel sets (to when it was last changed), and atime,
    which reading moves: set both to SOURCE_DATE_EPOCH inside the image, in one debugfs session."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch()))
    paths = ["/"]
    for dirpath, dirnames, filenames in os.walk(tree):
        paths += ["/" + os.path.relpath(os.path.join(dirpath, n), tree) for n in dirnames + filenames]
    # atime too: mke2fs reading a directory after its stat moves the source's atime (relatime).
    lines = [f'set_inode_field "{p}" {field} {stamp}' for p in paths for field in ("ctime", "atime")]
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as cmds:
        cmds.write("\n".join(lines) + "\n")
        cmds.flush()
        run(["debugfs", "-w", "-f", cmds.name, str(image)], env={"E2FSPROGS_FAKE_TIME": str(epoch())},
            timeout=1800)


def slot_image(tree: Path, out: Path, label: str) -> None:
    """A slot's content for a bundle: an ext4 image of ``tree`` with little room to spare. RAUC writes the image
    whole into the slot and grows it to the slot afterwards (``resize=true`` in system.conf), so every free
    block left in it is written on every device for nothing: a ``fitted_mib`` image of the appliance's root
    file system had 0.7 GB of its 1.9 GB free. ``resize2fs -M`` cannot help: its estimate of the smallest size
    kept all of that room. So the tree is laid out twice: first in a roomy file system, to learn how many
    blocks it takes, then in one of that size and a margin (a smaller file system has smaller inode tables, a
    smaller journal and fewer group descriptors, so the same tree fits)."""
    roomy = out.with_name(out.name + ".roomy")
    ext4(tree, roomy, fitted_mib(tree), label, clamp=False)
    blocks, free, size = ext4_figures(roomy, "Block count", "Free blocks", "Block size")
    roomy.unlink()
    ext4(tree, out, int((blocks - free) * size * 1.03 / MiB) + 8, label)


def ext4_figures(image: Path, *keys: str) -> list[int]:
    """Numbers from an ext4 image's superblock, by dumpe2fs's names for them (``Free blocks``)."""
    header = run(["dumpe2fs", "-h", str(image)]).stdout
    return [int(re.search(rf"^{key}:\s+(\d+)", header, re.M)[1]) for key in keys]  # type: ignore[index]


def fitted_mib(tree: Path) -> int:
    """A file system size that surely holds ``tree``, estimated from its files (:func:`slot_image` then
    measures what it really takes)."""
    allocated, files = 0, 0
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            allocated += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            files += 1
    # Blocks round up per file; inode tables, the journal and metadata take their share.
    return int((allocated + files * 4096) * 1.15 / MiB) + 96


def esp(out: Path, size_mib: int, work: Path) -> None:
    """FAT: GRUB as the removable-media loader (EFI/BOOT/BOOTX64.EFI), its grub.cfg and its environment
    (A is good, B is empty)."""
    cfg = (HERE / "grub.cfg").read_text().replace("@PARTUUID_A@", fixed_uuid("part-rootfs-a")) \
        .replace("@PARTUUID_B@", fixed_uuid("part-rootfs-b")).replace("@CMDLINE@", CMDLINE) \
        .replace("@KERNEL@", "/vmlinuz").replace("@INITRD@", "initrd ($disk,gpt$part)/initrd.img")
    (work / "grub.cfg").write_text(cfg)
    loader, env = work / "BOOTX64.EFI", work / "grubenv"
    # grub-mkimage (not mkstandalone, whose memdisk tar stamps the build's time): the modules built in, and
    # the prefix on the partition it was loaded from, so it reads EFI/BOOT/grub.cfg there.
    run(["grub-mkimage", "-O", "x86_64-efi", "-o", str(loader), "-p", "/EFI/BOOT", *GRUB_MODULES.split()],
        timeout=300)
    env.unlink(missing_ok=True)
    run(["grub-editenv", str(env), "create"])
    run(["grub-editenv", str(env), "set", "ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=0"])
    tree = work / "esp-tree"
    (tree / "EFI/BOOT").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(loader, tree / "EFI/BOOT/BOOTX64.EFI")
    shutil.copyfile(env, tree / "EFI/BOOT/grubenv")
    shutil.copyfile(work / "grub.cfg", tree / "EFI/BOOT/grub.cfg")
    clamp_times(tree)
    out.unlink(missing_ok=True)
    run(["mkfs.vfat", "--invariant", "-i", "ec0a0b01", "-n", "ESP", "-C", str(out), str(size_mib * 1024)])
    # -s -m: the directories and files with their (clamped) times, not the time of the copy.
    # mtools stamps a directory entry's creation time with the clock: a frozen clock (libfaketime) keeps it.
    run(["faketime", "-f", frozen_clock(), "mcopy", "-s", "-m", "-i", str(out), str(tree / "EFI"), "::/"],
        env={"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"})


def assemble(out: Path, parts: list[tuple[str, Path, int, str]]) -> str:
    """A GPT disk of ``(name, image, size_mib, type)`` partitions in order; returns its sha256."""
    offset_mib = 1
    total = offset_mib + sum(p[2] for p in parts) + 1
    out.unlink(missing_ok=True)
    with out.open("wb") as f:
        f.truncate(total * MiB)
    script = [f"label: gpt\nlabel-id: {fixed_uuid('disk').upper()}\nunit: sectors\nfirst-lba: 2048\n"]
    start = offset_mib * MiB // 512
    for name, _, size, kind in parts:
        script.append(f"start={start}, size={size * MiB // 512}, type={kind}, "
                      f"uuid={fixed_uuid(f'part-{name}').upper()}, name={name}\n")
        start += size * MiB // 512
    run(["sfdisk", "--no-reread", "--no-tell-kernel", str(out)], input="".join(script))
    at = offset_mib
    for _, image, size, _ in parts:
        if image.stat().st_size > size * MiB:
            raise SystemExit(f"image: {image.name} is larger than its {size} MiB partition")
        run(["dd", f"if={image}", f"of={out}", "bs=1M", f"seek={at}", "conv=notrunc,sparse", "status=none"])
        at += size
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
LINUX_DATA = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def disk_from_trees(rootfs: Path, data: Path, out: Path, work: Path, root_mib: int, data_mib: int,
                    esp_mib: int = 64) -> str:
    """The image from a prepared root file system and data tree; slot B starts empty (the first update
    fills it). Returns the image's sha256."""
    work.mkdir(parents=True, exist_ok=True)
    ext4(rootfs, work / "rootfs-a.ext4", root_mib, "rootfs-a")
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    ext4(empty, work / "rootfs-b.ext4", root_mib, "rootfs-b")
    ext4(data, work / "data.ext4", data_mib, "data")
    esp(work / "esp.vfat", esp_mib, work)
    return assemble(out, [("esp", work / "esp.vfat", esp_mib, ESP_TYPE),
                          ("rootfs-a", work / "rootfs-a.ext4", root_mib, LINUX_ROOT_X86_64),
                          ("rootfs-b", work / "rootfs-b.ext4", root_mib, LINUX_ROOT_X86_64),
                          ("data", work / "data.ext4", data_mib, LINUX_DATA)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the disk image to write (e.g. build/edgecount-amd64.img)")
    p.add_argument("--deb", type=Path, required=True, help="the package (`just deb`)")
    p.add_argument("--keyring", type=Path, required=True, help="the CA certificate bundles must chain to")
    p.add_argument("--version", default="")
    p.add_argument("--mirror", default=os.environ.get("EDGECOUNT_DEBIAN_MIRROR", "http://deb.debian.org/debian"))
    p.add_argument("--root-mib", type=int, default=2048)
    p.add_argument("--data-mib", type=int, default=1024)
    p.add_argument("--rootfs-only", action="store_true",
                   help="write only the root file system image (a slot's content: the bundle's input)")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("image: debootstrap and chroot need root (every later step runs without it)")
    version = a.version or a.deb.name.split("_")[1]
    cache = debootstrap_cache()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ec-image-", dir=a.out.parent) as tmp:
        work = Path(tmp)
        rootfs, data = work / "rootfs", work / "data"
        bootstrap(rootfs, a.mirror, cache)
        install_appliance(rootfs, a.deb, a.keyring, version)
        split_data(rootfs, data)
        if a.rootfs_only:
            slot_image(rootfs, a.out, "rootfs")
            print(f"{a.out}  (root file system {version}, cut to its contents)")
            return 0
        sha = disk_from_trees(rootfs, data, a.out, work, a.root_mib, a.data_mib)
    print(f"{a.out}  sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
