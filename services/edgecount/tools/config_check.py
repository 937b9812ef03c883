"""What makes a configuration unable to run, decided once for ``run`` and ``config check``.

A mistake in the file (a model name that does not exist, a secret others can read, a video file that is
not there) is fixed by neither a restart nor the reboot the unit's start limit escalates to, so ``run``
exits 2 on it, which the unit does not retry. ``config check`` must refuse exactly what ``run`` refuses,
or a passing check would not mean the device starts. Warnings are what runs but is probably not meant.
"""

from __future__ import annotations

from edgecount.assets.obtain import AssetStore, missing_source_file, resolve_source
from edgecount.detection.model_files import model_problems, startup_model
from edgecount.stages.uplink_sinks import check_secrets
from edgecount_core.config import Config

__all__ = ["config_mistakes", "config_warnings"]


def _missing_sources(cfg: Config, store: AssetStore, fetch: bool) -> list[str]:
    """Every camera whose source is a file that is not there. An ``asset:`` clip must be in the manifest; it is
    fetched (``AssetError`` when it cannot be) only with ``fetch``: a check never downloads a video."""
    out = []
    for cam in cfg.camera_names():
        source = cfg.for_camera(cam).capture.source
        if source.startswith("asset:"):
            name = source.removeprefix("asset:")
            if store.manifest.entry("clips", name) is None:
                out.append(f"camera {cam!r}: source {source!r}: no clip of that name in the manifest; fix: one of "
                           f"{', '.join(f'asset:{c}' for c in sorted(store.manifest.section('clips')))}")
                continue
            if not fetch:
                continue
        resolved = resolve_source(source, store)
        if missing_source_file(source, resolved):
            key = f"camera {cam!r}: source" if cfg.cameras else "capture.source"
            out.append(f"{key} {resolved!r}: no such file; fix: the path of a video file, rtsp://..., "
                       "/dev/videoN or asset:NAME")
    return out


def config_mistakes(cfg: Config, store: AssetStore, fetch: bool = False) -> list[str]:
    """Every reason ``run`` refuses ``cfg``; ``run`` also fetches its ``asset:`` clips here (``fetch``, which
    raises ``AssetError`` when one cannot be obtained)."""
    return check_secrets(cfg) + model_problems(cfg, store) + _missing_sources(cfg, store, fetch)


def config_warnings(cfg: Config, store: AssetStore) -> list[str]:
    """What runs but is probably not meant: a camera counting nothing, a model not on the device yet."""
    out = [f"camera {cam!r} has no counting lines: it counts nothing; add one with edgecount lines set"
           if cfg.cameras else "no counting lines: the device counts nothing; add one with edgecount lines set"
           for cam in cfg.camera_names() if not cfg.for_camera(cam).lines and not cfg.for_camera(cam).zones]
    model = startup_model(cfg, store)
    entry = store.manifest.entry("models", model)
    if entry is not None and not store.cached(model, entry.file).exists():
        out.append(f"model {model} is not on this device yet: run edgecount models fetch {model} (from the asset "
                   "mirror or the network) before the appliance starts")
    return out
