"""The flashable A/B image, booted under QEMU with UEFI firmware, updated in the field (issue 30).

`yocto/image/build_image.py` makes the disk (GPT: EFI partition with GRUB, slots A and B, data), with the
package installed into slot A and a test CA as the device's keyring; `yocto/image/bundle.py` signs the next
version's root file system with that CA's key. QEMU boots the disk through OVMF (TCG, no KVM) and a guest agent
(`tests/image/ab_agent.py`) drives it: counting on A while the count receiver refuses, a tampered bundle refused,
the update installed, the reboot into B, the trial keeping B, and the records from before the update delivered;
then the power cut while a version that cannot boot is written into A (B boots and counts, A is marked bad),
that version installed whole, tried three times by GRUB before it returns to B, where `status` and `doctor`
report the failed update and the records that waited through it are delivered.

Needs root (debootstrap, chroot) and the tools `just test-deps` installs. About 15 minutes, 13 of them in QEMU.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgecount.assets.obtain import AssetStore
from edgecount.runtime.settings import to_toml

from ..helpers import ROOT
from .guest_host import MIRROR_IN_GUEST, guest_tree, mirror_assets, require_guest_host
from .test_image_boot import agent_reports, configure_guest

pytestmark = pytest.mark.slow

sys.path.insert(0, str(ROOT / "yocto/image"))
import build_image  # noqa: E402  (a build script, not a package)
from bundle import build_bundle  # noqa: E402

TAG = "EDGECOUNT-ABTEST "
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
TOOLS = ("debootstrap", "chroot", "mkfs.ext4", "debugfs", "qemu-system-x86_64", "grub-mkimage", "grub-editenv",
         "mkfs.vfat", "mcopy", "sfdisk", "faketime", "rauc", "mksquashfs", "openssl")


def _ca(d: Path) -> tuple[Path, Path]:
    cert, key = d / "ca.cert.pem", d / "ca.key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "30", "-subj", "/O=edgecount test/CN=edgecount test update CA"],
                   check=True, capture_output=True)
    return cert, key


def _reports(console: Path) -> list[dict[str, Any]]:
    return agent_reports(console, TAG)


def _boot(image: Path, vars_fd: Path, console: Path, timeout_s: float, until: str = "done") -> list[dict[str, Any]]:
    """Boot the disk until the agent reports ``until`` (or gives up). ``power_cut_now`` is answered by killing
    QEMU at once: the power cut, with whatever the guest had not yet written lost."""
    cmd = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "2", "-m", "3072",
           "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
           "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}",
           "-drive", f"file={image},format=raw,if=virtio", "-nic", "none", "-display", "none",
           "-serial", f"file:{console}"]
    qemu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and qemu.poll() is None:
        steps = [r["step"] for r in _reports(console)]
        if until in steps or "timeout" in steps or "power_cut_missed" in steps:
            break
        time.sleep(1 if until == "power_cut_now" else 5)
    if until != "power_cut_now":
        with contextlib.suppress(subprocess.TimeoutExpired):
            qemu.wait(timeout=120)  # the agent powers the guest off after its last report
    if qemu.poll() is None:
        qemu.kill()
        qemu.wait()
    reports = _reports(console)
    if until not in [r["step"] for r in reports]:
        text = console.read_text(errors="replace") if console.exists() else ""
        lines = [ln for ln in text.splitlines() if "edgecount" in ln or "rauc" in ln or "GRUB" in ln
                 or "Traceback" in ln or "panic" in ln.lower()]
        pytest.fail(f"the guest did not finish (limit {timeout_s:.0f} s); reports: {json.dumps(reports[-4:])[:6000]}"
                    "\nconsole:\n" + "\n".join(lines[-60:]) + "\ntail:\n" + text[-3000:])
    return reports


def test_image_boots_updates_keeps_a_good_slot_and_falls_back_from_a_broken_one(
        bookworm_amd64: Path, built_deb: Path, store: AssetStore, tmp_path_factory: pytest.TempPathFactory) -> None:
    require_guest_host("A/B image test", TOOLS, [OVMF_CODE, OVMF_VARS])
    work = Path(tmp_path_factory.mktemp("abimage"))
    rootfs, data = work / "rootfs", work / "data"
    timings: dict[str, float] = {}
    cert, key = _ca(work)

    t = time.monotonic()
    guest_tree(bookworm_amd64, rootfs)  # debootstrapped once for this test and the package's boot test
    timings["copy_rootfs_s"] = time.monotonic() - t
    build_image.install_appliance(rootfs, built_deb, cert, "0.1.0")
    assert (rootfs / "vmlinuz").exists() and (rootfs / "initrd.img").exists(), "the kernel links GRUB boots"
    mirror_assets(rootfs / MIRROR_IN_GUEST.lstrip("/"), store)
    cfg = configure_guest(rootfs)
    cfg["uplink"] = {"sinks": ["webhook"], "webhook": {"url": "http://127.0.0.1:8099/counts", "timeout_s": 2.0}}
    cfg["update"] = {"mark_good_after_s": 30, "boot_deadline_s": 900}
    (rootfs / "etc/edgecount/edgecount.toml").write_text(to_toml(cfg))
    agent = rootfs / "usr/local/lib/edgecount-abtest"
    agent.mkdir(parents=True)
    shutil.copy2(ROOT / "tests/image/ab_agent.py", agent / "ab_agent.py")
    (rootfs / "etc/systemd/system/edgecount-abtest.service").write_text(
        "[Unit]\nDescription=edgecount A/B test agent\nAfter=edgecount.service\n\n[Service]\nType=simple\n"
        "ExecStart=/usr/bin/python3 /usr/local/lib/edgecount-abtest/ab_agent.py\nStandardError=journal+console\n\n"
        "[Install]\nWantedBy=multi-user.target\n")
    (rootfs / "etc/systemd/system/multi-user.target.wants/edgecount-abtest.service").symlink_to(
        "/etc/systemd/system/edgecount-abtest.service")
    build_image.split_data(rootfs, data)

    # The next version: the same system, told apart by its release file (and by the bundle's version).
    t = time.monotonic()
    (rootfs / "etc/edgecount-release").write_text("0.2.0\n")
    build_image.slot_image(rootfs, work / "next.ext4", "rootfs-b")
    abtest = data / "abtest"
    abtest.mkdir()
    build_bundle(work / "next.ext4", abtest / "next.raucb", "0.2.0", cert, key)
    # A version that cannot boot: a kernel and its initramfs and no system (say, an image recipe that lost its
    # packages). The initramfs's slot check panics, panic=-1 reboots, and GRUB counts the try.
    broken = work / "broken"
    for link in ("vmlinuz", "initrd.img"):
        target = Path(os.readlink(rootfs / link))
        (broken / target.parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rootfs / target, broken / target)
        (broken / link).symlink_to(target)
    (broken / "etc").mkdir()
    (broken / "etc/edgecount-release").write_text("0.3.0\n")
    build_image.slot_image(broken, work / "broken.ext4", "rootfs-broken")
    build_bundle(work / "broken.ext4", abtest / "broken.raucb", "0.3.0", cert, key)
    tampered = bytearray((abtest / "next.raucb").read_bytes())
    tampered[len(tampered) // 3] ^= 0x01
    (abtest / "tampered.raucb").write_bytes(bytes(tampered))
    (rootfs / "etc/edgecount-release").write_text("0.1.0\n")
    timings["bundle_s"] = time.monotonic() - t

    t = time.monotonic()
    image = work / "edgecount-amd64.img"
    sha = build_image.disk_from_trees(rootfs, data, image, work / "parts", 2048, 1536)
    timings["image_s"] = time.monotonic() - t
    layout = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,
                                       check=True).stdout)["partitiontable"]
    assert layout["label"] == "gpt" and [p["name"] for p in layout["partitions"]] == [
        "esp", "rootfs-a", "rootfs-b", "data"]

    vars_fd = work / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_fd)
    t = time.monotonic()
    limit = float(os.environ.get("EDGECOUNT_AB_TIMEOUT_S", "2400"))
    reports = _boot(image, vars_fd, work / "console.log", limit, until="power_cut_now")
    timings["until_power_cut_s"] = time.monotonic() - t
    reports += _boot(image, vars_fd, work / "console-after-cut.log", limit - timings["until_power_cut_s"])
    timings["qemu_s"] = time.monotonic() - t
    by = {r["step"]: r for r in reports}

    # Slot A, the factory image, counts; GRUB chose it from RAUC's environment.
    boots = [r for r in reports if r["step"] == "boot"]
    assert "rauc.slot=A" in boots[0]["cmdline"].split() and "rauc.slot=B" in boots[1]["cmdline"].split(), boots
    assert by["counting_a"]["release"] == "0.1.0" and by["counting_a"]["backlog"] >= 2
    # A tampered bundle: refused, nothing written (slot B still holds no bundle).
    tamper = by["tampered"]
    assert tamper["rc"] == 2 and "changed after it was signed" in tamper["out"]["error"], tamper
    # The good bundle installed into B, which is now the boot loader's first choice.
    inst = by["installed"]
    assert inst["rc"] == 0 and inst["out"]["version"] == "0.2.0", inst
    assert inst["rauc"]["boot_primary"] == "rootfs.1", inst["rauc"]
    # Slot B runs the new version and proved itself: the trial marked it good.
    assert by["booted_b"]["release"] == "0.2.0"
    kept = by["kept_b"]
    slot_b = next(body for e in kept["rauc"]["slots"] for _, body in e.items() if body.get("bootname") == "B")
    assert kept["rauc"]["booted"] == "B" and slot_b["boot_status"] == "good", kept
    assert kept["update"]["last_attempt"]["outcome"] == "good" and kept["update"]["bundle_version"] == "0.2.0"
    # Counts that waited in the outbox through the update were delivered after it, none lost.
    delivered = by["delivered"]
    before = [r for r in delivered["records"] if float(r.get("bucket_start", 1e18)) < inst["before"]]
    assert len(before) >= by["counting_a"]["backlog"], delivered
    # Power lost while RAUC wrote A: B boots and counts, A is marked bad, status calls the update interrupted.
    cut = by["after_power_cut"]
    assert by["power_cut_now"]["progress"][0] < 100, by["power_cut_now"]
    slot_a = next(body for e in cut["rauc"]["slots"] for _, body in e.items() if body.get("bootname") == "A")
    assert cut["rauc"]["booted"] == "B" and slot_a["boot_status"] == "bad" and cut["release"] == "0.2.0", cut
    assert cut["frames"][1] > cut["frames"][0] > 0, cut
    assert (cut["update"]["last_attempt"]["version"], cut["update"]["last_attempt"]["outcome"]) == (
        "0.3.0", "interrupted"), cut["update"]
    # A version that cannot boot: installed into A, three tries, then GRUB went back to B.
    assert by["installed_broken"]["rc"] == 0, by["installed_broken"]
    assert ["rauc.slot=B" in b["cmdline"].split() for b in boots[2:]] == [True, True], boots
    fell = by["fell_back"]
    assert fell["rauc"]["booted"] == "B" and fell["release"] == "0.2.0", fell
    last = fell["update"]["last_attempt"]
    assert (last["version"], last["outcome"]) == ("0.3.0", "rolled_back"), fell["update"]
    doctor = {c["name"]: c for c in fell["doctor"]["checks"]}
    assert doctor["update"]["status"] == "warn" and "0.3.0 FAILED" in doctor["update"]["detail"], doctor["update"]
    # Counts that waited through the failed update and the fallback were delivered after it, none lost.
    again = by["delivered_after_rollback"]
    waited = [r for r in again["records"] if float(r.get("bucket_start", 1e18)) < by["installed_broken"]["before"]]
    assert by["installed_broken"]["backlog"] >= 2 and len(waited) >= by["installed_broken"]["backlog"], again
    console = (work / "console-after-cut.log").read_text(errors="replace")
    assert console.count("edgecount: slot /root has no /usr/lib/systemd/systemd") == 3, \
        "the broken slot A was tried three times, each refused by the initramfs"

    print("A/B image test:", json.dumps({**{k: round(v, 1) for k, v in timings.items()}, "image_sha256": sha,
                                         "install_s": round(inst["seconds"], 1),
                                         "b_kept_at_uptime_s": kept["uptime_s"]}), file=sys.stderr)
