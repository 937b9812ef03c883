"""Everything a bundle must pass before a byte of it reaches a slot.

``rauc install`` checks a verity bundle's blocks only as it copies them, so a
bundle changed after signing would fail half-way through writing the other
slot. The technician's command therefore checks first, and writes nothing
unless every check passes: the signature chains to this device's keyring, the
bundle is meant for this device (RAUC's ``compatible``), and every payload
block matches the hash tree the signed manifest names (``veritysetup
verify``, in user space, no root needed).
"""

from __future__ import annotations

import configparser
import json
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs

__all__ = ["BundleError", "BundleInfo", "check_bundle", "device_compatible"]

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
VERITY_BLOCK = 4096


class BundleError(RuntimeError):
    """The bundle is refused; the message says why in the technician's words."""


@attrs.frozen
class BundleInfo:
    path: Path
    compatible: str
    version: str
    bundle_format: str
    blocks_checked: int


def device_compatible(system_conf: Path) -> str:
    """The ``compatible`` string of this device's RAUC configuration."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(system_conf.read_text())
        return parser["system"]["compatible"].strip()
    except (OSError, KeyError, configparser.Error) as exc:
        raise BundleError(f"{system_conf}: no [system] compatible= ({exc}); this device was not built with A/B "
                          "slots (`just image` builds one that is)") from None


_PACKAGE_OF = {"rauc": "rauc", "openssl": "openssl", "veritysetup": "cryptsetup-bin"}


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise BundleError(f"{tool} is not installed; an image built by `just image` has it "
                          f"(apt-get install {_PACKAGE_OF[tool]})")


def _manifest(path: Path, keyring: Path, run: Runner) -> configparser.ConfigParser:
    """The signed manifest's text (the signature itself was checked by ``rauc info`` already)."""
    with tempfile.TemporaryDirectory(prefix="ec-bundle-") as tmp:
        sig, text = Path(tmp) / "sig.cms", Path(tmp) / "manifest.raucm"
        res = run(["rauc", "extract-signature", f"--keyring={keyring}", str(path), str(sig)],
                  capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise BundleError(f"{path.name}: its signature cannot be read ({res.stderr.strip()[-200:]})")
        res = run(["openssl", "cms", "-verify", "-noverify", "-inform", "DER", "-in", str(sig), "-out", str(text)],
                  capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise BundleError(f"{path.name}: its signed manifest cannot be read ({res.stderr.strip()[-200:]})")
        parser = configparser.ConfigParser()
        parser.read_string(text.read_text())
        return parser


def _verify_blocks(path: Path, manifest: configparser.ConfigParser, run: Runner) -> int:
    """Every payload block against the signed hash tree; returns how many were checked."""
    bundle = manifest["bundle"] if manifest.has_section("bundle") else {}
    try:
        root, salt, tree = bundle["verity-hash"], bundle["verity-salt"], int(bundle["verity-size"])
    except (KeyError, ValueError):
        raise BundleError(f"{path.name}: a verity bundle without its hash tree in the manifest") from None
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(size - 8)
        sig_size = int(struct.unpack(">Q", f.read(8))[0])
    data = size - 8 - sig_size - tree
    if data <= 0 or data % VERITY_BLOCK:
        raise BundleError(f"{path.name}: the payload size ({data} bytes) does not fit its hash tree: truncated or "
                          "changed after it was signed")
    res = run(["veritysetup", "verify", "--no-superblock", f"--hash-offset={data}",
               f"--data-blocks={data // VERITY_BLOCK}", f"--salt={salt}", str(path), str(path), root],
              capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        where = (res.stderr.strip().splitlines() or ["no detail"])[0]
        raise BundleError(f"{path.name} was changed after it was signed ({where}): nothing was written; get the "
                          "bundle again")
    return data // VERITY_BLOCK


def check_bundle(path: Path, keyring: Path, compatible: str, run: Runner = subprocess.run) -> BundleInfo:
    """Refuse (:class:`BundleError`) unless ``path`` is signed for this device, meant for it, and intact."""
    for tool in ("rauc", "openssl", "veritysetup"):
        _need(tool)
    if not path.is_file():
        raise BundleError(f"{path}: no such file")
    if not keyring.is_file():
        raise BundleError(f"{keyring}: this device has no update keyring (update.keyring); it trusts no bundle")
    res = run(["rauc", "info", f"--keyring={keyring}", "--output-format=json", str(path)],
              capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        said = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "no detail"
        if any(w in said.lower() for w in ("signature", "certificate", "verify", "signer")):
            raise BundleError(f"{path.name} is not signed by a key this device trusts ({said}): nothing was written")
        raise BundleError(f"{path.name} is not a readable update bundle ({said})")
    try:
        info = json.loads(res.stdout)
    except ValueError:
        raise BundleError(f"rauc info printed no JSON for {path.name}") from None
    theirs = str(info.get("compatible") or "")
    if theirs != compatible:
        raise BundleError(f"{path.name} is for {theirs!r}, this device is {compatible!r}: nothing was written; "
                          "use the bundle built for this device")
    manifest = _manifest(path, keyring, run)
    fmt = manifest["bundle"].get("format", "plain") if manifest.has_section("bundle") else "plain"
    if fmt == "verity":
        blocks = _verify_blocks(path, manifest, run)
    elif fmt == "plain":
        blocks = 0  # RAUC hashes a plain bundle whole before it installs anything
    else:
        raise BundleError(f"{path.name}: bundle format {fmt!r} is not one this device installs (verity, plain)")
    return BundleInfo(path=path, compatible=theirs, version=str(info.get("version") or ""), bundle_format=fmt,
                      blocks_checked=blocks)
