"""The times of the counter's recent crossings, kept on the device for on-site validation.

``edgecount validate`` compares a technician's hand tally with what the device counted, crossing by
crossing, within a couple of seconds. Privacy's buckets are a minute wide and the counter's durable log is
trimmed as soon as privacy has the events, so the counter also keeps, in its own store and in the same
transaction as the events, each crossing's capture time, camera, line and direction for
:data:`KEEP_S`. Nothing about the person is kept, and nothing here ever leaves the device.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edgecount_core.validation import TimedCrossing

__all__ = ["KEEP_S", "CrossingJournal", "JournalError", "read_crossings"]

KEEP_S = 7 * 86400.0
"""How long crossing times are kept: a tally file from last week's audit can still be compared."""
_PRUNE_EVERY_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS crossing_times (
    ts REAL NOT NULL, camera TEXT NOT NULL, line TEXT NOT NULL, direction TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS crossing_times_ts ON crossing_times (ts);
"""


class JournalError(RuntimeError):
    """The counter's store cannot be read (missing, or not a counter store)."""


class CrossingJournal:
    """The writing side, inside the counter: call :meth:`add` within the transaction that logs the event."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.executescript(_SCHEMA)
        self.next_prune = 0.0

    def add(self, ts: float, camera: str, line: str, direction: str) -> None:
        self.db.execute("INSERT INTO crossing_times (ts, camera, line, direction) VALUES (?, ?, ?, ?)",
                        (ts, camera, line, direction))
        if ts >= self.next_prune:
            self.db.execute("DELETE FROM crossing_times WHERE ts < ?", (ts - KEEP_S,))
            self.next_prune = ts + _PRUNE_EVERY_S


def read_crossings(store_path: Path, since: float, until: float, camera: str) -> list[TimedCrossing]:
    """``camera``'s crossings with a capture time in ``[since, until]``, oldest first (read-only)."""
    if not store_path.is_file():
        raise JournalError(f"{store_path}: no counter store (has the appliance run with this configuration?)")
    try:
        db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise JournalError(f"{store_path}: cannot open the counter's store: {exc}") from None
    try:
        rows = db.execute("SELECT ts, line, direction FROM crossing_times WHERE camera = ? AND ts BETWEEN ? AND ? "
                          "ORDER BY ts", (camera, since, until)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # a counter that never counted since crossing times were kept
        raise JournalError(f"{store_path}: cannot read crossing times: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{store_path}: cannot read crossing times: {exc}") from None
    finally:
        db.close()
    return [TimedCrossing(float(t), str(ln), str(d)) for t, ln, d in rows]
