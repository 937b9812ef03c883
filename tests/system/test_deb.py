"""`just deb`: the Debian (Mendel) package builds, and what it installs runs on Debian's Python."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not shutil.which("dpkg-deb") or not Path("/usr/bin/python3").exists(),
                    reason="needs Debian's dpkg-deb and /usr/bin/python3")
def test_deb_builds_installs_its_files_and_runs(built_deb: Path, tmp_path: Path) -> None:
    deb = built_deb
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Package: edgecount" in info and "conffiles" in info and "postinst" in info
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    for f in ("lib/systemd/system/edgecount.service", "lib/systemd/system.conf.d/10-edgecount-watchdog.conf",
              "usr/lib/sysusers.d/edgecount.conf", "lib/udev/rules.d/99-edgecount-coral.rules",
              "etc/edgecount/edgecount.toml", "usr/share/edgecount/manifest.toml",
              "usr/share/edgecount/recipes/yolox_nano_int8.json", "usr/bin/edgecount"):
        assert (root / f).is_file(), f
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/edgecount/edgecount.toml"]
    # Unpacked beside /usr rather than into it: the package's own manifest, which `config check` resolves the
    # model against.
    env = {"PYTHONPATH": str(root / "opt/edgecount/lib"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "EDGECOUNT_MANIFEST": str(root / "usr/share/edgecount/manifest.toml")}
    run = subprocess.run(["/usr/bin/python3", "-m", "edgecount", "config", "check",
                          str(root / "etc/edgecount/edgecount.toml")], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    imports = subprocess.run(["/usr/bin/python3", "-c", "import ai_edge_litert.interpreter, cv2, zmq, tomlkit"],
                             capture_output=True, text=True, env=env)
    assert imports.returncode == 0, imports.stderr
    # Evaluation code is not shipped: the device never needs SciPy or trackeval to count.
    assert not (root / "opt/edgecount/lib/scipy").exists() and not (root / "opt/edgecount/lib/trackeval").exists()
