"""Fixtures of the tests that build a Debian guest: one debootstrap, shared by the package's boot test and the
A/B image test (debootstrap is two of each one's minutes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ..helpers import ROOT
from .guest_host import DEBIAN_MIRROR, require_guest_host

sys.path.insert(0, str(ROOT / "yocto/image"))
import build_image


@pytest.fixture(scope="session")
def bookworm_amd64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian bookworm (minbase) with what the appliance, RAUC and a kernel need, as `just image` starts it.
    Tests never change it: each takes a copy (:func:`.guest_host.guest_tree`)."""
    require_guest_host("image tests", ["debootstrap", "chroot"])
    tree = Path(tmp_path_factory.mktemp("bookworm")) / "rootfs"
    build_image.bootstrap(tree, DEBIAN_MIRROR, build_image.debootstrap_cache())
    return tree
