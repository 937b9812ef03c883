"""Which model files a configuration means: a manifest name or a path, and the CPU twin of an Edge TPU model.

Shared by the inference stage and by the tools that load a detector themselves
(preview, doctor, replay), so they all resolve a model the same way.
"""

from __future__ import annotations

from pathlib import Path

from edgecount.detection.runtime import DetectorError
from edgecount.runtime.assets import AssetStore, ModelFiles
from edgecount_core.config import Config

__all__ = ["DetectorError", "cpu_twin", "resolve_model", "startup_model"]


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
