#!/usr/bin/env python3
"""Build a signed RAUC bundle (verity format) of a root file system image: `just bundle`.

The bundle holds one image, for the ``rootfs`` slot class, and a manifest
naming the device it is for (``compatible``) and its version. It is signed
with the given key and certificate; a device installs it only if that
certificate chains to its keyring (README, "Updating devices in the field":
production keys come from a separate CA and the signing key never sits on a
device). Standard library only: it runs on a build host with rauc and
squashfs-tools installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COMPATIBLE = "edgecount-amd64"
MKSQUASHFS_ARGS = "-Xcompression-level 6"


def build_bundle(rootfs_image: Path, out: Path, version: str, cert: Path, key: Path,
                 compatible: str = COMPATIBLE, keyring: Path | None = None) -> str:
    """Write the bundle to ``out``; returns its sha256."""
    if shutil.which("rauc") is None or shutil.which("mksquashfs") is None:
        raise SystemExit("bundle: rauc and mksquashfs are needed (apt-get install rauc squashfs-tools)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ec-bundle-") as tmp:
        content = Path(tmp) / "content"
        content.mkdir()
        try:
            os.link(rootfs_image, content / "rootfs.ext4")
        except OSError:
            shutil.copyfile(rootfs_image, content / "rootfs.ext4")
        (content / "manifest.raucm").write_text(
            f"[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=verity\n\n"
            "[image.rootfs]\nfilename=rootfs.ext4\n")
        # zstd: about gzip's size at several times its speed, and every kernel we ship reads it.
        cmd = ["rauc", "bundle", f"--cert={cert}", f"--key={key}", f"--mksquashfs-args=-comp zstd {MKSQUASHFS_ARGS}",
               str(content), str(out)]
        if keyring is not None:
            cmd.insert(3, f"--keyring={keyring}")
        res = subprocess.run(cmd, capture_output=True, text=True,
                             env={**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")})
        if res.returncode != 0:
            raise SystemExit(f"bundle: rauc bundle failed:\n{res.stderr[-2000:]}")
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rootfs_image", type=Path, help="an ext4 image of the next version's root file system")
    p.add_argument("out", type=Path)
    p.add_argument("--version", required=True)
    p.add_argument("--cert", type=Path, required=True)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--compatible", default=COMPATIBLE)
    p.add_argument("--keyring", type=Path, help="check the signature against this keyring after signing")
    a = p.parse_args()
    sha = build_bundle(a.rootfs_image, a.out, a.version, a.cert, a.key, a.compatible, a.keyring)
    print(f"{a.out}  sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
