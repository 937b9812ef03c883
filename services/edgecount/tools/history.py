"""The device's own count history (``edgecount counts``), read from the uplink's store.

The uplink keeps every record it received in its ``history`` table, delivered or
not, for ``HISTORY_DAYS``; this reads it without disturbing the running service
(read-only connection, WAL).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgecount_core.messages import DEFAULT_CAMERA

Totals = dict[str, dict[str, int]]


def series_name(camera: str, name: str) -> str:
    """A line or zone (``line:NAME``) in a chart: prefixed ``CAMERA/`` for any camera but ``main``."""
    return name if camera == DEFAULT_CAMERA else f"{camera}/{name}"


def _camera_column(con: sqlite3.Connection) -> str:
    """The camera of each row: its column, or ``main`` in a store no multi-camera build has opened yet."""
    cols = {row[1] for row in con.execute("PRAGMA table_info(history)")}
    return "camera" if "camera" in cols else f"'{DEFAULT_CAMERA}'"


def totals_by_camera(db: Path, windows: Mapping[str, float],
                     names: Mapping[str, list[str]]) -> dict[str, dict[str, Totals]]:
    """Per camera, per window label (start as a Unix time), ``{"line:NAME"|"zone:NAME": {"in", "out"}}``.

    Every camera and name in ``names`` appears, with zeros if nothing was counted there.
    """
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    result: dict[str, dict[str, Totals]] = {cam: {} for cam in names}
    try:
        cam_col = _camera_column(con)
        for label, start in windows.items():
            rows = con.execute(f"SELECT {cam_col}, kind, name, SUM(n_in), SUM(n_out) FROM history WHERE "
                               "kind != 'event' AND bucket_start >= ? GROUP BY 1, kind, name ORDER BY 1, kind, name",
                               (start,)).fetchall()
            for cam in result:
                result[cam][label] = {}
            for cam, k, n, i, o in rows:
                result.setdefault(cam, {}).setdefault(label, {})[f"{k}:{n}"] = {"in": int(i or 0),
                                                                                 "out": int(o or 0)}
    finally:
        con.close()
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
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            f"SELECT {_camera_column(con)}, kind, name, CAST((bucket_start - ?) / ? AS INTEGER), SUM(n_in), "
            "SUM(n_out) FROM history WHERE kind != 'event' AND bucket_start >= ? AND bucket_start < ? "
            "GROUP BY 1, kind, name, 4", (first, by_s, first, until)).fetchall()
    finally:
        con.close()
    for cam, kind, name, i, n_in, n_out in rows:
        s = out.setdefault(series_name(cam, f"{kind}:{name}"), {"in": [0] * len(bins), "out": [0] * len(bins)})
        if 0 <= i < len(bins):
            s["in"][i] += int(n_in or 0)
            s["out"][i] += int(n_out or 0)
    return {"bins": bins, "by_s": by_s, "series": out}
