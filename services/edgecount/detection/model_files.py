"""Which model files a configuration means: a manifest name or a path, and the CPU twin of an Edge TPU model.

Shared by the inference stage and by the tools that load a detector themselves
(preview, doctor, replay), so they all resolve a model the same way.
"""

from __future__ import annotations

from pathlib import Path

from edgecount.assets.obtain import AssetStore, ModelFiles
from edgecount.detection.interpreter import DetectorError
from edgecount_core.config import Config

__all__ = ["DetectorError", "cpu_twin", "model_problems", "person_detectors", "resolve_model", "startup_model"]

FACE_DECODERS = frozenset({"blazeface"})
"""Decoders of models that find faces (for redaction), never people to count."""


def resolve_model(name_or_path: str, store: AssetStore) -> ModelFiles:
    """A manifest name, or a path to a .tflite whose manifest entry is found by file name."""
    p = Path(name_or_path)
    if p.suffix == ".tflite":
        if not p.is_file():
            raise DetectorError(f"inference.model {name_or_path!r}: no such file")
        for name, entry in store.manifest.models.items():
            if entry.file == p.name:
                labels = p.with_name(entry.labels) if entry.labels else None
                if labels is not None and not labels.exists():
                    # A compiled model copied alone: its labels come from the manifest like any asset's.
                    labels = store.fetch_labels(name)
                return ModelFiles(name, p, labels, entry)
        raise DetectorError(f"{p.name}: not in the model manifest, so its decoder is unknown")
    return store.fetch_model(name_or_path)


def cpu_twin(model: str, store: AssetStore) -> str:
    """The CPU model standing in for an Edge TPU model (manifest ``cpu_model``), by name or file."""
    models = store.manifest.models
    entry = models.get(model) or next((e for e in models.values() if Path(e.file).stem == model), None)
    return (entry.cpu_model if entry is not None else "") or model.removesuffix("_edgetpu")


def startup_model(cfg: Config, store: AssetStore) -> str:
    """The model that must be present before the appliance starts.

    The accelerator's own model may be absent together with the accelerator: what must exist is
    the CPU fallback it would run on.
    """
    if cfg.inference.device == "cpu":
        return cfg.inference.model
    return cfg.inference.fallback_model or cpu_twin(cfg.inference.model, store)


def person_detectors(store: AssetStore) -> list[str]:
    """The manifest's models that can count people (face detectors are for redaction only)."""
    return sorted(n for n, e in store.manifest.models.items() if e.decoder not in FACE_DECODERS)


def model_problems(cfg: Config, store: AssetStore) -> list[str]:
    """Every ``[inference]`` model that names nothing usable: a typo no restart can fix, so ``run`` exits 2
    and ``config check`` fails on it. Whether the file is on the device yet is another matter (fetching)."""
    import difflib

    choices = person_detectors(store)
    problems = []
    inf = cfg.inference
    on_cpu = inf.device == "cpu"
    # An accelerator's own model file may be absent together with the accelerator (the CPU model runs then,
    # flagged degraded); a file the CPU runs must be there. A name must exist either way: that is a typo.
    for key, name, must_exist in (("inference.model", inf.model, on_cpu),
                                  ("inference.fallback_model", inf.fallback_model, True),
                                  ("inference.tpu_fallback_model", inf.tpu_fallback_model, False)):
        if not name:
            continue
        if name.endswith(".tflite"):
            if must_exist and not Path(name).is_file():
                problems.append(f"{key} = {name!r}: no such file; fix: the path of a .tflite file, or a model name "
                                f"({', '.join(choices)})")
            continue
        entry = store.manifest.entry("models", name)
        if entry is None or entry.decoder in FACE_DECODERS:
            why = "detects faces, not people" if entry is not None else "no model of that name in the manifest"
            near = difflib.get_close_matches(name, choices, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            problems.append(f"{key} = {name!r}: {why}; fix: {hint}one of {', '.join(choices)}")
    return problems
