"""What can be checked of the Yocto layer without a build host: lint, kas schema, installed files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from ..helpers import ROOT

LAYER = ROOT / "yocto" / "meta-edgecount"
RECIPES = sorted(LAYER.glob("recipes-*/*/*.bb")) + sorted(LAYER.glob("recipes-*/*/*.bbappend"))


def test_oelint_adv_is_clean() -> None:
    # Only the HOMEPAGE reachability rule is suppressed: it needs the network, which CI has not.
    res = subprocess.run([sys.executable, "-m", "oelint_adv", "--quiet", "--suppress", "oelint.vars.homepageping",
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
    """`bitbake -g edgecount-image` parses every layer and resolves the whole dependency graph, offline."""
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
    for recipe in ("edgecount", "python3-structlog", "python3-tensorflow-lite", "libedgetpu-std"):
        assert f'"{recipe}.do_' in graph, f"{recipe} is not in the image's dependency graph"
    assert '"python3-scipy.do_' not in graph  # the device does not need SciPy (issue 16)
