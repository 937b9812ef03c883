"""What can be checked of the Yocto layer without a build host: lint, kas schema, installed files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ..helpers import ROOT

LAYER = ROOT / "yocto" / "meta-edgecount"
RECIPES = sorted(LAYER.glob("recipes-*/*/*.bb")) + sorted(LAYER.glob("recipes-*/*/*.bbappend")) \
    + sorted(LAYER.glob("dynamic-layers/*/recipes-*/*/*.bbappend"))


def test_oelint_adv_is_clean() -> None:
    # Only the HOMEPAGE reachability rule is suppressed: it needs the network, which CI has not. The variables
    # of the layers we build on that oelint does not know (meta-rauc's bundle class, GRUB's, wic's) are listed
    # in yocto/oelint-constants.json; the rules are scarthgap's.
    res = subprocess.run([sys.executable, "-m", "oelint_adv", "--quiet", "--suppress", "oelint.vars.homepageping",
                          "--release", "scarthgap", f"--constantmods=+{ROOT / 'yocto' / 'oelint-constants.json'}",
                          *map(str, RECIPES)], capture_output=True, text=True, cwd=ROOT)
    findings = (res.stdout + res.stderr).strip()
    assert findings == "" and res.returncode == 0, findings


def test_kas_files_follow_kas_schema() -> None:
    import kas

    schema = json.loads((Path(kas.__file__).parent / "schema-kas.json").read_text())
    files = sorted((ROOT / "yocto" / "kas").glob("*.yml"))
    assert len(files) >= 2
    for f in files:
        doc = yaml.safe_load(f.read_text())
        jsonschema.validate(doc, schema)
        for inc in doc.get("header", {}).get("includes", []):
            assert (ROOT / inc).is_file(), f"{f.name} includes missing {inc}"
    machines = {yaml.safe_load(f.read_text()).get("machine") for f in files}
    assert {"qemux86-64", "raspberrypi4-64"} <= machines


def test_every_installed_file_exists_and_layer_is_scarthgap() -> None:
    recipe = (LAYER / "recipes-apps" / "edgecount" / "edgecount_0.1.0.bb").read_text()
    sources = re.findall(r"\$\{S\}/(\S+)", recipe)
    assert len(sources) >= 3
    # The model manifest is installed by the wheel itself, to the path the code reads on every target.
    assert '"share/edgecount" = ["models/manifest.toml"]' in (ROOT / "pyproject.toml").read_text()
    for rel in sources:
        assert (ROOT / rel).is_file(), rel
    bbappend = (LAYER / "recipes-core" / "systemd" / "systemd-conf_%.bbappend").read_text()
    for name in re.findall(r"file://(\S+?)[\s\"]", bbappend):
        assert (ROOT / "yocto" / "systemd" / name).is_file(), name
    layer = (LAYER / "conf" / "layer.conf").read_text()
    assert 'LAYERSERIES_COMPAT_edgecount = "scarthgap"' in layer
    assert "meta-python" in layer and "openembedded-layer" in layer
    assert "python_setuptools_build_meta" in recipe and "systemd" in recipe


# -- a real BitBake (issue 16) --------------------------------------------------------------------------
def _layer_snapshots() -> Path:
    env = os.environ.get("EDGECOUNT_YOCTO_LAYERS")
    cand = Path(env) if env else ROOT.parent / "shared" / "yocto-layers"
    if not cand.is_dir():
        pytest.fail("the scarthgap layer snapshots are missing: set EDGECOUNT_YOCTO_LAYERS to their directory "
                    "(`git archive` of each layer at the commit the kas files pin)")
    return cand


def test_kas_files_pin_every_layer_to_the_snapshot_commits() -> None:
    from ..yocto.bitbake_parse import load_kas

    readme = (_layer_snapshots() / "README.md").read_text()
    pinned = dict(re.findall(r"\| \S+\.tar\.gz \| https?://\S+?/([\w.-]+?)(?:\.git)? \| scarthgap \| ([0-9a-f]{40}) \|",
                             readme))
    assert len(pinned) >= 4, pinned
    for kas_file in sorted((ROOT / "yocto" / "kas").glob("*.yml")):
        for name, repo in load_kas(kas_file)["repos"].items():
            if "url" in repo:
                assert repo.get("commit") == pinned[name], f"{kas_file.name}: {name} is not pinned to {pinned[name]}"


@pytest.mark.slow
@pytest.mark.parametrize("kas_name", ["edgecount-qemux86-64.yml", "edgecount-rpi4-coral.yml"])
def test_bitbake_resolves_the_image(kas_name: str) -> None:
    """`bitbake -g edgecount-image edgecount-bundle` parses every layer and resolves both graphs, offline."""
    import shutil as _shutil

    from ..yocto.bitbake_parse import errors, parse

    missing = [t for t in ("gawk", "chrpath", "diffstat", "cpio", "lz4", "zstd", "file") if not _shutil.which(t)]
    if missing:
        pytest.fail(f"BitBake host tools missing: {missing} (`just test-deps` installs them)")
    import tempfile

    # Not under pytest's private (0700) temporary tree: the unprivileged build user must reach it.
    work = Path(tempfile.mkdtemp(prefix="ec-bitbake-"))
    try:
        rc, out = parse(ROOT / "yocto" / "kas" / kas_name, _layer_snapshots(), work)
        found = errors(out)
        assert rc == 0 and not found, "\n".join(found or out.splitlines()[-40:])
        graph = (work / "build" / "task-depends.dot").read_text()
    finally:
        _shutil.rmtree(work, ignore_errors=True)
    # The A/B pieces (issue 30): RAUC on the device, its bundle built with rauc-native from the image's ext4, the
    # boot loader that chooses the slot.
    boot = {"edgecount-qemux86-64.yml": "grub-efi", "edgecount-rpi4-coral.yml": "rpi-u-boot-scr"}[kas_name]
    for recipe in ("edgecount", "python3-structlog", "python3-tensorflow-lite", "libedgetpu-std", "rauc",
                   "rauc-conf", "edgecount-slots", "edgecount-bundle", "rauc-native", boot):
        assert f'"{recipe}.do_' in graph, f"{recipe} is not in the image's dependency graph"
    assert '"edgecount-bundle.do_unpack" -> "edgecount-image.do_image_complete"' in graph
    assert '"python3-scipy.do_' not in graph  # the device does not need SciPy (issue 16)


# -- the A/B layout (issue 30, item 6) ------------------------------------------------------------------
def _distro_vars() -> dict[str, str]:
    conf = (LAYER / "conf" / "distro" / "edgecount-os.conf").read_text()
    return dict(re.findall(r'^(EDGECOUNT_\w+) \?{0,2}= "([^"]*)"', conf, re.M))


def _wic_parser(work: Path) -> Any:
    """wic's own kickstart parser, from the pinned poky snapshot (no build directory needed)."""
    import tarfile

    from ..yocto.bitbake_parse import load_kas, snapshot_for

    poky = load_kas(ROOT / "yocto" / "kas" / "edgecount-qemux86-64.yml")["repos"]["poky"]
    with tarfile.open(snapshot_for("poky", poky["commit"], _layer_snapshots())) as tar:
        tar.extractall(work, members=[m for m in tar.getmembers() if m.name.startswith("poky/scripts/lib/wic/")],
                       filter="tar")
    sys.path.insert(0, str(work / "poky" / "scripts" / "lib"))
    try:
        import wic.ksparser
    finally:
        sys.path.pop(0)
    return wic.ksparser


def test_the_wks_files_lay_out_the_debian_images_partitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "yocto" / "image"))
    try:
        import build_image
    finally:
        sys.path.pop(0)
    variables = {**_distro_vars(), "DEPLOY_DIR_IMAGE": "/deploy"}
    # One set of partition UUIDs: GRUB's script names the slots' roots by them, in both images.
    for name in ("esp", "rootfs-a", "rootfs-b", "data"):
        key = "EDGECOUNT_PARTUUID_" + {"rootfs-a": "A", "rootfs-b": "B"}.get(name, name.upper())
        assert variables[key] == build_image.fixed_uuid(f"part-{name}"), key
    ksparser = _wic_parser(tmp_path)
    monkeypatch.setattr(ksparser, "get_bitbake_var", lambda key, *_a, **_k: variables.get(key))
    for wks in sorted((LAYER / "wic").glob("edgecount-ab-*.wks.in")):
        # BitBake expands a .wks.in before wic reads it; every variable must be one BitBake knows here.
        text = wks.read_text()
        unknown = set(re.findall(r"\$\{([^}]+)\}", text)) - set(variables)
        assert not unknown, f"{wks.name}: {unknown}"
        expanded = tmp_path / wks.name.removesuffix(".in")
        expanded.write_text(re.sub(r"\$\{([^}]+)\}", lambda m: variables[m.group(1)], text))
        ks = ksparser.KickStart(str(expanded))
        parts = ks.partitions
        assert [p.part_name for p in parts] == ["esp", "rootfs-a", "rootfs-b", "data"], wks.name
        assert ks.bootloader.ptable == "gpt" and all(p.no_fstab_update for p in parts)
        assert [p.uuid for p in parts] == [build_image.fixed_uuid(f"part-{p.part_name}") for p in parts]
        esp, slot_a, slot_b, data = parts
        assert (slot_a.mountpoint, slot_a.source, slot_a.exclude_path) == ("/", "rootfs", ["data/"])
        assert slot_b.source is None and slot_a.fixed_size == slot_b.fixed_size == 2048 * 1024  # KiB
        assert (data.source, data.change_directory, data.fixed_size) == ("rootfs", "data", 1024 * 1024)
        assert esp.mountpoint == "/boot/efi" and esp.fstype == "vfat"
    grub = ksparser.KickStart(str(tmp_path / "edgecount-ab-grub.wks"))
    assert grub.bootloader.configfile == "/deploy/edgecount-grub.cfg"
    assert grub.partitions[0].fixed_size == 64 * 1024 and grub.partitions[0].source == "bootimg-efi"


def test_the_slots_recipe_fills_every_placeholder_of_the_grub_script() -> None:
    recipe = (LAYER / "recipes-core" / "edgecount-slots" / "edgecount-slots_0.1.0.bb").read_text()
    placeholders = set(re.findall(r"@([A-Z_]+)@", (ROOT / "yocto" / "image" / "grub.cfg").read_text()))
    filled = set(re.findall(r"s\|@([A-Z_]+)@\|", recipe))
    assert placeholders and filled == placeholders
    # The RAUC configuration and the fstab are the Debian image's files, found through FILESEXTRAPATHS.
    for bbappend in ("rauc/rauc-conf.bbappend", "base-files/base-files_%.bbappend"):
        assert "../../../image" in (LAYER / "recipes-core" / bbappend).read_text()
    used = re.findall(r"\$\{S\}/(\S+)", recipe)
    assert "yocto/image/grub.cfg" in used and all((ROOT / rel).is_file() for rel in used), used
