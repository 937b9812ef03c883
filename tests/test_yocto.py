"""What can be checked of the Yocto layer without a build host: lint, kas schema, installed files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from .helpers import ROOT

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
