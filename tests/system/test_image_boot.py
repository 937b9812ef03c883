"""The Debian package, proven by installing it into Debian and booting that system.

``debootstrap`` builds a minimal bookworm root file system (once, shared with the A/B image
test: the ``bookworm_amd64`` fixture), the package goes in
with ``dpkg -i`` (its postinst creates the user and enables the unit), the unit
passes ``systemd-analyze verify``, and the system boots under QEMU (TCG, no
KVM needed) with the PETS09 clip as its camera. A test agent inside the guest
(``tests/image/guest_agent.py``, never packaged) waits for the appliance to
report ready and to count, freezes a service and then the supervisor with
SIGSTOP, switches to a V4L2 camera (the kernel's vivid test device) under
the unit's device sandbox, breaks the configuration (not retried), then makes every start fail
until the start limit reboots the guest, and reports what happened on the
serial console, which this test reads.

Needs root (debootstrap, chroot), Debian's mirror, debootstrap, qemu-system-x86
and e2fsprogs; ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import cv2
import pytest

from edgecount.assets.obtain import AssetStore
from edgecount.runtime.settings import to_toml

from ..helpers import ROOT
from .guest_host import MIRROR_IN_GUEST, SYSTEM_PATH, guest_tree, mirror_assets, require_guest_host

pytestmark = pytest.mark.slow

TAG = "EDGECOUNT-IMAGETEST "
TOOLS = ("debootstrap", "chroot", "mke2fs", "qemu-system-x86_64")


def run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(cmd[:3])} … failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return res


def configure_guest(rootfs: Path) -> dict[str, Any]:
    """The packaged configuration, with the mirror and a clip speed the emulated CPU can keep up with."""
    conf_path = rootfs / "etc/edgecount/edgecount.toml"
    cfg = tomllib.loads(conf_path.read_text())
    cfg["device"] = {"site": "image-test", "id": "qemu-bookworm"}
    cfg["assets"] = {"mirror": MIRROR_IN_GUEST, "allow_download": False}
    # Emulated, SSD takes about 2 s a frame: play the clip slower, so the tracker still sees
    # steps of a few clip frames, and let tracks survive as long in wall time.
    cfg["capture"].update(source="asset:pets09", file_speed=0.15, loop=True)
    cfg["tracker"] = {"max_lost_s": 10.0}
    # The lightest model: under emulation every frame costs seconds (the packaged default is YOLOX-nano).
    cfg["inference"]["model"] = "ssd_mobilenet_v1_coco_quant"
    cfg["privacy"] = {"policy": "counts", "bucket_s": 10}
    conf_path.write_text(to_toml(cfg))
    return cfg


def install_agent(rootfs: Path, clip_path: Path) -> None:
    agent_dir = rootfs / "usr/local/lib/edgecount-imagetest"
    agent_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "tests/image/guest_agent.py", agent_dir / "guest_agent.py")
    # The network camera of the outage step: an MJPEG stream of PETS09 frames, served inside the guest.
    shutil.copy2(ROOT / "tests/image/mjpeg_camera.py", agent_dir / "mjpeg_camera.py")
    frames = agent_dir / "frames"
    frames.mkdir(exist_ok=True)
    clip = cv2.VideoCapture(str(clip_path))
    for i in range(60):
        ok, frame = clip.read()
        assert ok
        cv2.imwrite(str(frames / f"{i:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    clip.release()
    unit = rootfs / "etc/systemd/system/edgecount-imagetest.service"
    shutil.copy2(ROOT / "tests/image/edgecount-imagetest.service", unit)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants/edgecount-imagetest.service"
    wants.symlink_to("/etc/systemd/system/edgecount-imagetest.service")
    (rootfs / "etc/hostname").write_text("edgecount-test\n")


def boot(rootfs: Path, image: Path, console: Path, timeout_s: float) -> list[dict[str, Any]]:
    """Boot the image; return the agent's reports once it says done (or fail with the console's tail)."""
    kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((rootfs / "boot").glob("initrd.img-*"))[-1]
    # TCG: software emulation works on any x86_64 host (the /dev/kvm some sandboxes expose is not enough).
    cmd = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "max",
           "-smp", "2", "-m", "3072", "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "root=/dev/vda rw console=ttyS0 init=/lib/systemd/systemd panic=-1 "
                      "systemd.journald.forward_to_console=1",
           "-drive", f"file={image},format=raw,if=virtio", "-nic", "none", "-display", "none",
           "-serial", f"file:{console}", "-no-reboot",
           # A hardware watchdog for the system.conf.d drop-in to arm.
           "-device", "i6300esb"]
    qemu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The guest ends itself: the agent powers it off on a failure, or lets the start limit reboot it
    # (-no-reboot turns that into QEMU's exit).
    try:
        qemu.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        qemu.kill()
        qemu.wait()
    reports = agent_reports(console)
    steps = [r["step"] for r in reports]
    if "done" not in steps or steps[-1] != "escalation_started":
        qemu_out = qemu.stdout.read() if qemu.stdout else ""
        text = console.read_text(errors="replace") if console.exists() else ""
        # What the unit and the supervisor said is what explains a failure; the shutdown noise is not.
        unit_lines = [ln for ln in text.splitlines() if "edgecount.service" in ln
                      or ('"level": "' in ln and '"level": "info"' not in ln) or "Traceback" in ln]
        pytest.fail(f"the guest did not finish (qemu exit {qemu.returncode}, limit {timeout_s:.0f}s); "
                    f"qemu said: {qemu_out[-1000:]}\nlast agent reports: {json.dumps(reports[-3:])}\n"
                    "unit and service messages:\n" + "\n".join(unit_lines[-40:]))
    return reports


def agent_reports(console: Path, tag: str = TAG) -> list[dict[str, Any]]:
    """Every ``tag {json}`` line a guest agent wrote on the serial console."""
    if not console.exists():
        return []
    out = []
    for line in console.read_text(errors="replace").splitlines():
        if line.startswith(tag):
            with contextlib.suppress(ValueError):  # a line cut by the end of the file
                out.append(json.loads(line[len(tag):]))
    return out


def test_package_installs_boots_counts_and_recovers_from_a_frozen_process(
        bookworm_amd64: Path, built_deb: Path, store: AssetStore, tmp_path_factory: pytest.TempPathFactory) -> None:
    require_guest_host("image test", TOOLS)
    work = Path(tmp_path_factory.mktemp("image"))
    rootfs, image, console = work / "rootfs", work / "root.img", work / "console.log"
    timings: dict[str, float] = {}

    t = time.monotonic()
    guest_tree(bookworm_amd64, rootfs)  # debootstrapped once for this test and the A/B image test
    timings["copy_rootfs_s"] = time.monotonic() - t

    t = time.monotonic()
    shutil.copy2(built_deb, rootfs / "tmp" / built_deb.name)
    run(["chroot", str(rootfs), "dpkg", "-i", f"/tmp/{built_deb.name}"], timeout=600)
    (rootfs / "tmp" / built_deb.name).unlink()
    timings["install_s"] = time.monotonic() - t
    # What the postinst must have done: the user in the device groups, the unit enabled.
    ids = run(["chroot", str(rootfs), "id", "edgecount"], timeout=30).stdout
    assert "(video)" in ids and "(plugdev)" in ids, ids
    assert (rootfs / "etc/systemd/system/multi-user.target.wants/edgecount.service").is_symlink()

    verify = subprocess.run(["chroot", str(rootfs), "systemd-analyze", "verify", "edgecount.service"],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and not verify.stdout.strip() and not verify.stderr.strip(), (
        verify.stdout + verify.stderr)

    mirror_assets(rootfs / MIRROR_IN_GUEST.lstrip("/"), store)
    cfg = configure_guest(rootfs)
    check = subprocess.run(["chroot", str(rootfs), "edgecount", "config", "check", "/etc/edgecount/edgecount.toml"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    install_agent(rootfs, store.fetch_clip("pets09"))
    run(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(rootfs), "-F", str(image), "4G"], timeout=600)

    t = time.monotonic()
    reports = boot(rootfs, image, console, timeout_s=float(os.environ.get("EDGECOUNT_IMAGE_TIMEOUT_S", "1500")))
    timings["qemu_s"] = time.monotonic() - t
    by_step = {r["step"]: r for r in reports}
    log = console.read_text(errors="replace")

    assert by_step["done"]["ok"], json.dumps(reports[-3:], indent=1)
    # Came up by itself: systemd started it at boot, the supervisor said READY=1 (Type=notify).
    ready = by_step["ready"]
    assert ready["unit"]["ActiveState"] == "active" and ready["unit"]["StatusText"] == "counting"
    assert set(ready["services"].values()) <= {"ok", "degraded"}
    assert by_step["counting"]["events"] > 0
    # The system.conf.d drop-in armed the (emulated) hardware watchdog.
    assert "Using hardware watchdog" in log
    # A frozen service: the supervisor restarted it.
    rec = by_step["service_recovered"]
    assert rec["new_pid"] != by_step["froze_service"]["pid"] and rec["restarts"] >= 1
    journal = "\n".join(by_step["journal"]["lines"])
    assert '"child": "inference"' in journal and "watchdog.hung" in journal, journal
    # A frozen supervisor: systemd's watchdog fired, the unit was restarted and counts again.
    assert "Watchdog timeout" in journal, journal
    assert "Failed with result 'watchdog'" in journal, journal
    assert "Scheduled restart job" in journal, journal
    assert int(by_step["unit_recovered"]["unit"]["NRestarts"]) >= 1
    assert by_step["counting_again"]["events"] > by_step["counting"]["events"]
    counts = by_step["counts"]["counts"]
    lines = {f"line:{ln['name']}" for ln in cfg["lines"]}
    window = next(iter(counts.values()))
    assert lines <= set(window) and sum(v["in"] + v["out"] for v in window.values()) > 0, counts

    # A real V4L2 camera (vivid) works through the unit's DevicePolicy=closed and DeviceAllow.
    cam = by_step["camera"]
    assert int(cam["capture"]["frames_read"]) > 20 and int(cam["inference"]["processed"]) > 3, cam
    # A network camera down for longer than WatchdogSec: degraded, not restarted, counting resumes by itself.
    out = by_step["camera_outage"]
    assert out["down"], out  # status showed the camera unavailable and the device degraded
    assert out["down"]["device"]["state"] == "degraded" and "capture" in out["down"]["device"]["degraded"], out
    assert out["down"]["unit"]["StatusText"] == "degraded: capture", out
    assert not out["watchdog_fired"], out
    assert (out["after"]["MainPID"], out["after"]["NRestarts"]) == (out["before"]["MainPID"],
                                                                     out["before"]["NRestarts"]), out
    assert out["restarts"]["capture"] == 0, out
    # An invalid configuration (exit 2) is not retried: the unit stays failed, nothing restarts it.
    bad = by_step["config_error"]["unit"]
    assert (bad["ActiveState"], bad["ExecMainStatus"], bad["NRestarts"]) == ("failed", "2", "0"), bad
    assert "invalid configuration" in journal and "bogus_key" in journal, journal
    # Starts that keep failing: the start limit escalated to a reboot (QEMU exited on it).
    reboot = re.search(r"\[\s*([\d.]+)\] systemd\[1\]: Rebooting: unit edgecount.service failed", log)
    assert reboot and "Start request repeated too quickly" in log, log[-3000:]
    escalation_s = float(reboot.group(1)) - by_step["escalation_started"]["uptime_s"]

    summary = {**{k: round(v, 1) for k, v in timings.items()},
               # systemd's own record of when READY=1 made the unit active, in seconds since boot.
               "boot_to_ready_s": round(int(ready["unit"]["ActiveEnterTimestampMonotonic"]) / 1e6, 1),
               "first_count_s": by_step["counting"]["uptime_s"],
               "service_recovery_s": rec["seconds"],
               "watchdog_recovery_s": by_step["unit_recovered"]["seconds"],
               "failing_starts_to_reboot_s": round(escalation_s, 1),
               "inference_ms_p50": ready["inference"].get("latency_ms_p50")}
    print("image test:", json.dumps(summary), file=sys.stderr)
