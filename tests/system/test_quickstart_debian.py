"""The README's first command on a stock Debian 12, where pip refuses to install into the system (issue 31).

``debootstrap`` builds a minimal bookworm with Debian's own Python 3.11, its ``venv`` module and pip (which
marks the system Python externally managed: PEP 668). A copy of this checkout goes in, with the asset
mirror beside it at ``../shared/assets`` as the README says. The test first shows the old quick start
failing there (``pip install rust-just``: ``externally-managed-environment``), then runs the README's first
command line as it is written and checks that it counted, that ``edgecount`` is runnable the way the README
says afterwards, and that a configuration of one's own finds the model the demo obtained.

Needs root (debootstrap, chroot, mount), Debian's mirror and PyPI; ``.ci/run`` installs debootstrap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import ROOT

pytestmark = pytest.mark.slow

DEBIAN_MIRROR = os.environ.get("EDGECOUNT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
STOCK = ["python3", "python3-venv", "python3-pip", "ca-certificates"]
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_first_command() -> str:
    """The first line of the README's quick start, without its comment."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S)
    assert block, "the README has no quick start block"
    return block.group(1).splitlines()[0].split("#")[0].strip()


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def stock_debian(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.fail("needs root and debootstrap (.ci/run installs it)")
    rootfs = tmp_path / "rootfs"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecount" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    res = _run(["debootstrap", "--variant=minbase", f"--cache-dir={cache}", f"--include={','.join(STOCK)}",
                "bookworm", str(rootfs), DEBIAN_MIRROR], timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    shutil.copy("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    # This machine may reach PyPI through an inspecting proxy whose CA only its own bundle holds.
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc" / "ssl" / "host-ca.crt")
    checkout = rootfs / "root" / "edgecount"
    assert _run(["git", "clone", "-q", str(ROOT), str(checkout)], timeout=120).returncode == 0
    mirror = Path(os.environ.get("EDGECOUNT_ASSET_MIRROR") or ROOT.parent / "shared" / "assets")
    shared = rootfs / "root" / "shared" / "assets"
    shared.mkdir(parents=True)
    mounts = [(["mount", "--bind", "-o", "ro", str(mirror), str(shared)], shared),
              (["mount", "-t", "proc", "proc", str(rootfs / "proc")], rootfs / "proc"),
              (["mount", "--bind", "/dev", str(rootfs / "dev")], rootfs / "dev"),
              (["mount", "-t", "tmpfs", "-o", "size=512m", "shm", str(rootfs / "dev" / "shm")],
               rootfs / "dev" / "shm")]
    done: list[Path] = []
    try:
        for cmd, where in mounts:
            res = _run(cmd, timeout=30)
            assert res.returncode == 0, f"{' '.join(cmd)}: {res.stderr}"
            done.append(where)
        yield rootfs
    finally:
        for where in reversed(done):
            _run(["umount", "-l", str(where)], timeout=30)
        shutil.rmtree(rootfs, ignore_errors=True)


def _in_guest(rootfs: Path, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``script`` in the checkout inside the guest, with a login shell's plain environment."""
    env = ["env", "-i", f"PATH={GUEST_PATH}", "HOME=/root", "LANG=C.UTF-8", "PIP_CERT=/etc/ssl/host-ca.crt",
           "PIP_DEFAULT_TIMEOUT=180"]
    return subprocess.run(["chroot", str(rootfs), *env, "bash", "-c", f"cd /root/edgecount && {script}"],
                          capture_output=True, text=True, timeout=timeout)


def test_the_readme_quick_start_on_stock_debian_12(stock_debian: Path) -> None:
    old = _in_guest(stock_debian, "python3 -m pip install rust-just", timeout=300)
    assert old.returncode != 0 and "externally-managed-environment" in old.stdout + old.stderr  # PEP 668, as reported
    first = readme_first_command()
    assert "just demo" in first
    demo = _in_guest(stock_debian, first, timeout=2400)
    trace = stock_debian / "root" / ".local" / "state" / "edgecount" / "cli-errors.log"
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:],
                                  trace.read_text()[-4000:] if trace.exists() else "")
    assert "795/795 frames" in demo.stdout and "vertical_centre" in demo.stdout, demo.stdout[-3000:]
    # Afterwards, as the README says: the command line, and one's own configuration finding the demo's model
    # (no asset mirror named: it must come from the cache the demo filled).
    (stock_debian / "root" / "my.toml").write_text('[inference]\nmodel = "yolox_nano"\n[[lines]]\nname = "door"\n'
                                                   'a = [0.1, 0.5]\nb = [0.9, 0.5]\n')
    own = _in_guest(stock_debian, ".venv/bin/edgecount config check /root/my.toml", timeout=300)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "not on this device" not in own.stdout, own.stdout
    assert (stock_debian / "root" / ".cache" / "edgecount" / "yolox_nano" / "yolox_nano.tflite").is_file()
