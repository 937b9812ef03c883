"""What the tests that build and run a Debian guest share: the host check and the model's mirror layout.

The package's boot test, the A/B image test and the arm64 test each build a root file system as root
(debootstrap, chroot) and run it emulated. They skip only when told to (``EDGECOUNT_SKIP_IMAGE_TEST=1``);
on a host that cannot run them they fail with what to install, so CI cannot pass them by accident.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from edgecount.assets.obtain import AssetStore

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_MIRROR = os.environ.get("EDGECOUNT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
MIRROR_IN_GUEST = "/srv/edgecount-mirror"


def require_guest_host(test: str, tools: Iterable[str], files: Iterable[Path] = (), as_root: bool = True) -> None:
    """Skip when told to; fail, naming what is missing, where this host cannot build and run the guest
    (``as_root=False`` for a guest that needs no root file system built here)."""
    if os.environ.get("EDGECOUNT_SKIP_IMAGE_TEST") == "1":
        pytest.skip("EDGECOUNT_SKIP_IMAGE_TEST=1")
    if as_root and (platform.machine() != "x86_64" or os.geteuid() != 0):
        pytest.fail(f"the {test} builds its root file system as root (debootstrap, chroot) on x86_64; run it "
                    "as root on x86_64 or set EDGECOUNT_SKIP_IMAGE_TEST=1")
    missing = [t for t in tools if not shutil.which(t, path=SYSTEM_PATH)]
    missing += [str(f) for f in files if not f.exists()]
    if missing:
        pytest.fail(f"the {test} needs {', '.join(missing)}: `just test-deps` installs them "
                    "(or set EDGECOUNT_SKIP_IMAGE_TEST=1)")


def guest_tree(pristine: Path, dest: Path) -> Path:
    """A copy of the shared root file system for one test to change (owners, modes and device nodes kept)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(pristine), str(dest)], check=True, capture_output=True)
    return dest


def mirror_assets(mirror: Path, store: AssetStore, model: str = "ssd_mobilenet_v1_coco_quant",
                  clips: Iterable[str] = ("pets09",)) -> None:
    """The model (and clips), laid out under ``mirror`` as the asset mirror a guest's configuration names."""
    found = store.fetch_model(model)
    entries = [("models", model, [found.model, found.labels])]
    entries += [("clips", clip, [store.fetch_clip(clip)]) for clip in clips]
    for kind, name, files in entries:
        dest = mirror / store.entry(kind, name).mirror[0]
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            assert f is not None, f"{name} has no {kind[:-1]} file here"
            shutil.copyfile(f, dest / f.name)
            (dest / f.name).chmod(0o644)  # the service runs as the unprivileged edgecount user
