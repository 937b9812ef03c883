"""The device's own count history (``edgecount counts``): totals per window and charts per time bin.

The uplink keeps every record it received, delivered or not, for
``HISTORY_DAYS``; :class:`~edgecount.stages.outbox.History` reads it without
disturbing the running service. This shapes what it reads for the technician:
every configured line and zone appears, with zeros where nobody was counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgecount.stages.outbox import History
from edgecount_core.camera_names import prefixed
from edgecount_core.messages import DEFAULT_CAMERA

Totals = dict[str, dict[str, int]]


def series_name(camera: str, name: str) -> str:
    """A line or zone (``line:NAME``) in a chart: prefixed ``CAMERA/`` for any camera but ``main``."""
    return prefixed(name, camera)


def totals_by_camera(db: Path, windows: Mapping[str, float],
                     names: Mapping[str, list[str]]) -> dict[str, dict[str, Totals]]:
    """Per camera, per window label (start as a Unix time), ``{"line:NAME"|"zone:NAME": {"in", "out"}}``.

    Every camera and name in ``names`` appears, with zeros if nothing was counted there.
    """
    result: dict[str, dict[str, Totals]] = {cam: {} for cam in names}
    with History(db) as history:
        for label, start in windows.items():
            for cam in result:
                result[cam][label] = {}
            for cam, k, n, i, o in history.sums_since(start):
                result.setdefault(cam, {}).setdefault(label, {})[f"{k}:{n}"] = {"in": i, "out": o}
    for cam, per_window in result.items():
        for totals in per_window.values():
            for n in names.get(cam, []):
                totals.setdefault(n, {"in": 0, "out": 0})
    return result


def totals_since(db: Path, windows: Mapping[str, float], names: list[str]) -> dict[str, Totals]:
    """:func:`totals_by_camera` for a single-camera device."""
    return totals_by_camera(db, windows, {DEFAULT_CAMERA: names})[DEFAULT_CAMERA]


def series(db: Path, since: float, until: float, by_s: float, names: list[str]) -> dict[str, Any]:
    """Counts per time bin of ``by_s`` seconds from ``since`` to ``until``: ``{"bins": [start, ...],
    "series": {"line:NAME"|"zone:NAME": {"in": [...], "out": [...]}}}`` (zeros where nothing was counted).
    A camera other than ``main`` prefixes its names: ``CAMERA/line:NAME``."""
    first = math.floor(since / by_s) * by_s
    bins = [first + i * by_s for i in range(max(1, math.ceil((until - first) / by_s)))]
    out: dict[str, dict[str, list[int]]] = {n: {"in": [0] * len(bins), "out": [0] * len(bins)} for n in names}
    with History(db) as history:
        rows = history.sums_binned(first, by_s, until)
    for cam, kind, name, i, n_in, n_out in rows:
        s = out.setdefault(series_name(cam, f"{kind}:{name}"), {"in": [0] * len(bins), "out": [0] * len(bins)})
        if 0 <= i < len(bins):
            s["in"][i] += n_in
            s["out"][i] += n_out
    return {"bins": bins, "by_s": by_s, "series": out}
