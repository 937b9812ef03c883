"""The device's own count history (``edgecount counts``), read from the uplink's store.

The uplink keeps every record it received in its ``history`` table, delivered or
not, for ``HISTORY_DAYS``; this reads it without disturbing the running service
(read-only connection, WAL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

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
