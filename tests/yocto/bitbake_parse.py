"""Lay out a BitBake build directory from a kas file and the layer snapshots, and run ``bitbake -g``.

The kas file stays the one source: machine, distro, target, the layers of every repository and the
``local_conf_header`` lines come from it (includes followed). The repositories come from source snapshots
(``git archive`` of the commits the kas file pins), so nothing is fetched: with ``BB_NO_NETWORK`` BitBake
parses every recipe and resolves the image's dependency graph offline. BitBake refuses to run as root, so
as root the parse runs as an unprivileged build user that owns the build directory.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_USER = "edgecount-build"


def load_kas(path: Path) -> dict[str, Any]:
    """The kas file with its includes merged in (includes first, the file itself wins)."""
    doc = yaml.safe_load(path.read_text())
    merged: dict[str, Any] = {}
    for inc in doc.get("header", {}).get("includes", []):
        _merge(merged, load_kas(ROOT / inc))
    _merge(merged, doc)
    return merged


def _merge(into: dict[str, Any], doc: dict[str, Any]) -> None:
    for k, v in doc.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def snapshot_for(repo: str, commit: str, snapshots: Path) -> Path:
    """The archive of ``repo`` at ``commit`` (its name carries the commit's first 12 digits)."""
    found = sorted(snapshots.glob(f"{repo}-*-{commit[:12]}.tar.gz"))
    if not found:
        raise FileNotFoundError(f"no snapshot of {repo} at {commit[:12]} in {snapshots} (see its README)")
    return found[0]


def layout(kas_file: Path, snapshots: Path, work: Path) -> tuple[Path, str]:
    """Unpack the pinned layers into ``work`` and write ``work/build/conf``; returns (build dir, targets)."""
    kas = load_kas(kas_file)
    layers: list[Path] = []
    for name, repo in kas["repos"].items():
        if "url" in repo:
            if not repo.get("commit"):
                raise ValueError(f"{kas_file.name}: repository {name} is not pinned to a commit")
            top = work / name
            if not top.exists():
                with tarfile.open(snapshot_for(name, repo["commit"], snapshots)) as tar:
                    tar.extractall(work, filter="tar")
            base = top
        else:
            base = ROOT  # this repository: the layer is used from the checkout itself
        for sub in (repo.get("layers") or {"": None}):
            layers.append((base / sub).resolve() if sub else base.resolve())
    build = work / "build"
    conf = build / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "bblayers.conf").write_text(
        'POKY_BBLAYERS_CONF_VERSION = "2"\nBBPATH = "${TOPDIR}"\nBBFILES ?= ""\nBBLAYERS ?= " \\\n'
        + "".join(f"    {p} \\\n" for p in layers) + '"\n')
    local = [f'MACHINE ?= "{kas["machine"]}"', f'DISTRO ?= "{kas["distro"]}"',
             # Parsing only, offline: no fetch, no connectivity check.
             'BB_NO_NETWORK = "1"', 'CONNECTIVITY_CHECK_URIS = ""', 'PACKAGE_CLASSES ?= "package_ipk"']
    for _, text in sorted((kas.get("local_conf_header") or {}).items()):
        local.append(text.rstrip())
    (conf / "local.conf").write_text("\n".join(local) + "\n")
    (conf / "templateconf.cfg").write_text("meta-poky/conf/templates/default\n")
    targets = kas["target"] if isinstance(kas["target"], list) else [kas["target"]]
    return build, " ".join(map(str, targets))


def _build_user() -> tuple[int, int] | None:
    """(uid, gid) of the unprivileged build user, created if needed; None when not root."""
    if os.getuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(BUILD_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/sh", BUILD_USER], check=True)
        pw = pwd.getpwnam(BUILD_USER)
    return pw.pw_uid, pw.pw_gid


def parse(kas_file: Path, snapshots: Path, work: Path, timeout_s: float = 1800) -> tuple[int, str]:
    """Run ``bitbake -g TARGETS`` for ``kas_file`` (one parse for every target); returns (exit status, BitBake's
    output)."""
    build, target = layout(kas_file, snapshots, work)
    ids = _build_user()
    if ids is not None:
        for p in [work, *work.rglob("*")]:
            if not p.is_symlink():
                os.chown(p, *ids)
        # The checkout's layer is read in place, and the build directory lies wherever the caller put it:
        # the build user must be able to reach both.
        for p in [ROOT, *ROOT.parents, *work.resolve().parents]:
            if p != Path("/"):
                p.chmod(p.stat().st_mode | 0o005)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8",
           "HOME": str(work), "BBPATH": str(build)}
    poky = work / "poky"
    cmd = f"cd {poky} && . ./oe-init-build-env {build} >/dev/null && bitbake -g {target}"
    runner = ["runuser", "-u", BUILD_USER, "--"] if ids is not None else []
    res = subprocess.run([*runner, "bash", "-c", cmd], capture_output=True, text=True, timeout=timeout_s,
                         env=env, cwd=work)
    return res.returncode, res.stdout + res.stderr


def errors(output: str) -> list[str]:
    """Every ERROR line of a BitBake run (QA issues at parse time, unresolved dependencies, bad expansions)."""
    return [ln for ln in output.splitlines() if re.match(r"^(ERROR|FATAL)\b", ln)]


if __name__ == "__main__":
    import sys

    rc, out = parse(ROOT / sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
    print(out[-6000:])
    print("exit", rc, "errors", len(errors(out)))
