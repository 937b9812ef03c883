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

Totals = dict[str, dict[str, int]]


def totals_since(db: Path, windows: Mapping[str, float], names: list[str]) -> dict[str, Totals]:
    """Per window label (start as a Unix time), ``{"line:NAME"|"zone:NAME": {"in", "out"}}``.

    Every name in ``names`` appears, with zeros if nothing was counted there.
    """
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    result: dict[str, Totals] = {}
    try:
        for label, start in windows.items():
            rows = con.execute("SELECT kind, name, SUM(n_in), SUM(n_out) FROM history WHERE kind != 'event' "
                               "AND bucket_start >= ? GROUP BY kind, name ORDER BY kind, name", (start,)).fetchall()
            result[label] = {f"{k}:{n}": {"in": int(i or 0), "out": int(o or 0)} for k, n, i, o in rows}
    finally:
        con.close()
    for totals in result.values():
        for n in names:
            totals.setdefault(n, {"in": 0, "out": 0})
    return result


def series(db: Path, since: float, until: float, by_s: float, names: list[str]) -> dict[str, Any]:
    """Counts per time bin of ``by_s`` seconds from ``since`` to ``until``: ``{"bins": [start, ...],
    "series": {"line:NAME"|"zone:NAME": {"in": [...], "out": [...]}}}`` (zeros where nothing was counted)."""
    first = math.floor(since / by_s) * by_s
    bins = [first + i * by_s for i in range(max(1, math.ceil((until - first) / by_s)))]
    out: dict[str, dict[str, list[int]]] = {n: {"in": [0] * len(bins), "out": [0] * len(bins)} for n in names}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT kind, name, CAST((bucket_start - ?) / ? AS INTEGER), SUM(n_in), SUM(n_out) FROM history "
            "WHERE kind != 'event' AND bucket_start >= ? AND bucket_start < ? GROUP BY kind, name, 3",
            (first, by_s, first, until)).fetchall()
    finally:
        con.close()
    for kind, name, i, n_in, n_out in rows:
        s = out.setdefault(f"{kind}:{name}", {"in": [0] * len(bins), "out": [0] * len(bins)})
        if 0 <= i < len(bins):
            s["in"][i] += int(n_in or 0)
            s["out"][i] += int(n_out or 0)
    return {"bins": bins, "by_s": by_s, "series": out}
