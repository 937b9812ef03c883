"""`edgecount update` refuses a bad bundle before it writes anything (issue 30, item 3).

Real RAUC bundles, signed at test time with keys made at test time, checked by the real rauc, openssl and
veritysetup. A verity bundle's blocks are checked by RAUC only as it copies them into the other slot, so without
the up-front check a tampered bundle would fail half-way through writing it: `rauc info` alone accepts a bundle
with a changed payload byte (shown below).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgecount.tools.bundle_check import BundleError, check_bundle, device_compatible

from ..helpers import ROOT

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("rauc", "mksquashfs", "veritysetup", "openssl")),
                                reason="rauc, squashfs-tools, cryptsetup-bin and openssl are installed by "
                                "`just test-deps`")

COMPATIBLE = "edgecount-amd64"


def _keypair(d: Path, name: str) -> tuple[Path, Path]:
    cert, key = d / f"{name}.cert.pem", d / f"{name}.key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "30", "-subj", f"/O=edgecount test/CN={name}"], check=True,
                   capture_output=True)
    return cert, key


def _rootfs_image(d: Path) -> Path:
    tree = d / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/edgecount-release").write_text("0.2.0\n")
    (tree / "payload.bin").write_bytes(random.Random(30).randbytes(3_000_000))  # MBs that do not compress away
    img = d / "rootfs.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(img), "16M"], check=True, capture_output=True)
    return img


def _bundle(d: Path, cert: Path, key: Path, compatible: str = COMPATIBLE, name: str = "good") -> Path:
    out = d / f"{name}.raucb"
    res = subprocess.run([sys.executable, str(ROOT / "yocto/image/bundle.py"), str(_rootfs_image(d)), str(out),
                          "--version", "0.2.0", "--cert", str(cert), "--key", str(key), "--compatible", compatible],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("bundles")
    cert, key = _keypair(d, "signing")
    (conf := d / "system.conf").write_text(f"[system]\ncompatible={COMPATIBLE}\nbootloader=grub\n")
    return {"dir": d, "cert": cert, "key": key, "conf": conf, "good": _bundle(d, cert, key)}


def _flip(src: Path, dest: Path, offset: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x01
    dest.write_bytes(bytes(data))
    return dest


def test_a_signed_intact_bundle_for_this_device_passes_every_check(kit: dict[str, Any]) -> None:
    info = check_bundle(kit["good"], kit["cert"], device_compatible(kit["conf"]))
    assert (info.version, info.compatible, info.bundle_format) == ("0.2.0", COMPATIBLE, "verity")
    assert info.blocks_checked * 4096 >= 3_000_000  # the whole payload, not a sample


@pytest.mark.parametrize("where", ["payload", "hash tree"])
def test_one_changed_byte_is_refused(kit: dict[str, Any], where: str) -> None:
    good: Path = kit["good"]
    size = good.stat().st_size
    offset = 200_000 if where == "payload" else size - 8 - 4096  # inside the payload / just before the signature
    bad = _flip(good, kit["dir"] / f"bad-{where.replace(' ', '')}.raucb", offset)
    # What RAUC alone says about it before installing: nothing is wrong (it would find out while writing).
    info = subprocess.run(["rauc", "info", f"--keyring={kit['cert']}", str(bad)], capture_output=True, text=True)
    if where == "payload":
        assert info.returncode == 0
    with pytest.raises(BundleError, match=r"changed after it was signed|not signed by a key|not a readable"):
        check_bundle(bad, kit["cert"], COMPATIBLE)


def test_a_bundle_signed_by_an_unknown_key_is_refused(kit: dict[str, Any]) -> None:
    other_cert, other_key = _keypair(kit["dir"], "stranger")
    d = kit["dir"] / "stranger"
    d.mkdir()
    stranger = _bundle(d, other_cert, other_key, name="stranger")
    with pytest.raises(BundleError, match="not signed by a key this device trusts"):
        check_bundle(stranger, kit["cert"], COMPATIBLE)


def test_a_bundle_for_another_device_is_refused(kit: dict[str, Any]) -> None:
    d = kit["dir"] / "arm"
    d.mkdir()
    arm = _bundle(d, kit["cert"], kit["key"], compatible="edgecount-arm64", name="arm")
    with pytest.raises(BundleError, match="is for 'edgecount-arm64', this device is 'edgecount-amd64'"):
        check_bundle(arm, kit["cert"], COMPATIBLE)


def test_a_truncated_bundle_is_refused(kit: dict[str, Any]) -> None:
    cut = kit["dir"] / "cut.raucb"
    cut.write_bytes(kit["good"].read_bytes()[:1_000_000])
    with pytest.raises(BundleError):
        check_bundle(cut, kit["cert"], COMPATIBLE)


def test_the_command_refuses_before_it_writes_anything(kit: dict[str, Any], tmp_path: Path) -> None:
    """Through the CLI: exit 2, JSON naming why, no update record, rauc install never run (no slot touched)."""
    bad = _flip(kit["good"], tmp_path / "bad.raucb", 300_000)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[runtime]\ndir = "{tmp_path / "rt"}"\nstate_dir = "{tmp_path / "state"}"\n\n'
                   f'[update]\nkeyring = "{kit["cert"]}"\nsystem_conf = "{kit["conf"]}"\n')
    shim = tmp_path / "bin"
    shim.mkdir()
    # A rauc that records any install it is asked for, and passes everything else to the real one.
    (shim / "rauc").write_text(f'#!/bin/sh\nif [ "$1" = install ]; then touch {tmp_path}/INSTALLED; fi\n'
                               f'exec {shutil.which("rauc")} "$@"\n')
    (shim / "rauc").chmod(0o755)
    env = {**__import__("os").environ, "PATH": f"{shim}:{__import__('os').environ['PATH']}"}
    res = subprocess.run([sys.executable, "-m", "edgecount", "update", str(bad), "--json", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["result"] == "refused" and "changed after it was signed" in report["error"]
    assert not (tmp_path / "INSTALLED").exists() and not (tmp_path / "state" / "update.json").exists()
    # An intact bundle gets past every check and only then meets this host's lack of slots (exit 3).
    res = subprocess.run([sys.executable, "-m", "edgecount", "update", str(kit["good"]), "--json", "--config",
                          str(cfg)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 3 and json.loads(res.stdout)["result"] == "no_slots", res.stdout + res.stderr
    assert not (tmp_path / "INSTALLED").exists()
