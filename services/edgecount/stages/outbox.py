"""The uplink's SQLite outbox and count history: every statement on ``uplink.db`` lives here.

The uplink service decides when to take, deliver, trim and compact; this type
says how that is stored. A count record becomes a row in one place
(:meth:`Outbox.add_record`) and a row becomes what a sink sends in one place
(:meth:`Outbox.rows_after`), ``occupancy`` included for zones. The history the
technician reads (``edgecount counts``) comes through :class:`History`, a
read-only view of the same file that never disturbs the running service.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from edgecount.runtime.store import Store
from edgecount.stages.uplink_sinks import OutRow
from edgecount_core.messages import DEFAULT_CAMERA, CountRecord, Snapshot
from edgecount_core.outbox import TOTAL, CompactionPlan, PendingRecord

FIRST_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    name TEXT NOT NULL, bucket_start REAL NOT NULL, bucket_s REAL NOT NULL, n_in INTEGER NOT NULL,
    n_out INTEGER NOT NULL, created REAL NOT NULL, blob BLOB);
CREATE TABLE IF NOT EXISTS history (
    record_id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, bucket_start REAL NOT NULL,
    bucket_s REAL NOT NULL, n_in INTEGER NOT NULL, n_out INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS history_time ON history(bucket_start);
"""
"""The first build's tables; later columns (``occupancy``, ``camera``) are added when a store is opened."""
HISTORY_DAYS = 31
"""How long the device keeps what it counted for ``edgecount counts``, delivered or not."""

_ROW = "id, record_id, kind, name, bucket_start, bucket_s, n_in, n_out, blob, occupancy, camera"


def _add_column(db: sqlite3.Connection, table: str, column: str) -> None:
    """Add a column a newer build needs to a store an older build created (idempotent)."""
    name = column.split()[0]
    if name not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


class Outbox:
    """Records waiting for the sinks (in arrival order, by row id), each sink's cursor, and the history.

    Every method that changes something runs in a transaction of its own unless the caller holds one
    (:meth:`transaction`), so "insert the record and note how far the privacy log is applied" stays atomic.
    """

    def __init__(self, path: Path) -> None:
        self.store = Store(path, synchronous="FULL")
        db = self.store.db
        db.executescript(FIRST_SCHEMA)
        _add_column(db, "outbox", "occupancy INTEGER")  # zones' occupancy (added in 0.2)
        for table in ("outbox", "history"):  # several cameras (added in 0.3): older rows are camera 'main'
            _add_column(db, table, f"camera TEXT NOT NULL DEFAULT '{DEFAULT_CAMERA}'")

    @property
    def set_aside(self) -> Path | None:
        """Where a damaged file was moved before this one started empty (``None``: it was fine)."""
        return self.store.set_aside

    def transaction(self) -> AbstractContextManager[None]:
        return self.store.transaction()

    # -- small durable figures (applied log position, cursors, what was dropped) ----------------------------
    def get(self, key: str) -> int:
        return self.store.get_int(key)

    def put(self, key: str, value: int) -> None:
        self.store.put_int(key, value)

    def add_to(self, key: str, n: int) -> None:
        self.store.put_int(key, self.store.get_int(key) + n)

    def cursor(self, sink: str) -> int:
        """The row id up to which ``sink`` has confirmed everything."""
        return self.store.get_int(f"cursor.{sink}")

    def confirm(self, sink: str, upto: int) -> int:
        """``sink`` confirmed every row up to ``upto``: move its cursor and count the rows; how many."""
        cursor = self.cursor(sink)
        if upto <= cursor:
            return 0
        with self.store.transaction():
            n = int(self.store.db.execute("SELECT COUNT(*) FROM outbox WHERE id > ? AND id <= ?",
                                          (cursor, upto)).fetchone()[0])
            self.store.put_int(f"cursor.{sink}", upto)
            self.add_to(f"confirmed.{sink}", n)
        return n

    # -- taking records in (the caller's transaction also records the applied log position) -----------------
    def add_record(self, msg: CountRecord) -> None:
        """Queue a count record and keep it in the history (a running total only in the outbox: the history
        holds what was counted, once); a record id seen before is ignored."""
        db = self.store.db
        db.execute("INSERT OR IGNORE INTO outbox(record_id, kind, name, bucket_start, bucket_s, n_in, n_out, "
                   "created, occupancy, camera) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (msg.record_id, msg.kind, msg.name, msg.bucket_start, msg.bucket_s, msg.n_in, msg.n_out,
                    time.time(), msg.occupancy, msg.camera))
        if msg.kind == TOTAL:
            return
        db.execute("INSERT OR IGNORE INTO history(record_id, kind, name, bucket_start, bucket_s, n_in, n_out, "
                   "camera) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                   (msg.record_id, msg.kind, msg.name, msg.bucket_start, msg.bucket_s, msg.n_in, msg.n_out,
                    msg.camera))

    def line_buckets(self, camera: str, name: str, since: float, until: float) -> list[tuple[float, int, int]]:
        """``(bucket_start, in, out)`` of one line's buckets starting in ``[since, until)``, from the history."""
        rows = self.store.db.execute(
            "SELECT bucket_start, n_in, n_out FROM history WHERE kind = 'line' AND camera = ? AND name = ? "
            "AND bucket_start >= ? AND bucket_start < ?", (camera, name, since, until)).fetchall()
        return [(float(b), int(i), int(o)) for b, i, o in rows]

    def add_still(self, msg: Snapshot) -> None:
        """Queue a redacted still (policy ``snapshots``); it is never part of the history."""
        self.store.db.execute(
            "INSERT OR IGNORE INTO outbox(record_id, kind, name, bucket_start, bucket_s, n_in, n_out, created, "
            "blob, camera) VALUES(?, 'snapshot', 'snapshot', ?, 0, 0, 0, ?, ?, ?)",
            (msg.snapshot_id, msg.bucket_start, time.time(), msg.jpeg, msg.camera))

    def drop_stills(self, keep_newest: int | None = None, after: int = 0) -> int:
        """Delete waiting stills past row ``after``, all of them or all but the newest ``keep_newest``;
        the number dropped is added to ``dropped.snapshots``."""
        ids = [r[0] for r in self.store.db.execute(
            "SELECT id FROM outbox WHERE kind = 'snapshot' AND id > ? ORDER BY id", (after,)).fetchall()]
        drop = ids if keep_newest is None else ids[: max(0, len(ids) - keep_newest)]
        if drop:
            with self.store.transaction():
                self.store.db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in drop])
                self.add_to("dropped.snapshots", len(drop))
        return len(drop)

    # -- delivery ---------------------------------------------------------------------------------------
    def rows_after(self, row: int, limit: int, site: str, device: str) -> list[OutRow]:
        """Up to ``limit`` rows after row id ``row``, as the sinks send them."""
        out = []
        for r in self.store.db.execute(f"SELECT {_ROW} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                                       (row, limit)).fetchall():
            record: dict[str, object] = {"id": r[1], "site": site, "device": device, "camera": r[10],
                                         "kind": r[2]}
            if r[2] == "snapshot":
                out.append(OutRow(r[0], {**record, "bucket_start": r[4]}, bytes(r[8])))
                continue
            record.update({"name": r[3], "bucket_start": r[4], "bucket_s": r[5], "in": r[6], "out": r[7]})
            if r[9] is not None:  # zones carry how many were inside at the bucket's end; lines have none
                record["occupancy"] = r[9]
            out.append(OutRow(r[0], record))
        return out

    def backlog(self, after: int) -> int:
        """Rows after row id ``after`` (what the slowest sink has not confirmed)."""
        return int(self.store.db.execute("SELECT COUNT(*) FROM outbox WHERE id > ?", (after,)).fetchone()[0])

    def oldest_created(self, after: int) -> float | None:
        """When the oldest row after ``after`` was queued (``None``: none waits)."""
        value = self.store.db.execute("SELECT MIN(created) FROM outbox WHERE id > ?", (after,)).fetchone()[0]
        return None if value is None else float(value)

    # -- housekeeping -----------------------------------------------------------------------------------
    def trim(self, upto: int, now: float) -> None:
        """Forget rows every sink has confirmed, and history older than :data:`HISTORY_DAYS`."""
        with self.store.transaction():
            self.store.db.execute("DELETE FROM outbox WHERE id <= ?", (upto,))
            self.store.db.execute("DELETE FROM history WHERE bucket_start < ?", (now - HISTORY_DAYS * 86400,))

    def pending_counts(self) -> list[PendingRecord]:
        """Every waiting count record (stills excluded), oldest first: what compaction may merge."""
        return [PendingRecord(*r) for r in self.store.db.execute(
            "SELECT id, record_id, kind, name, bucket_start, bucket_s, n_in, n_out, camera FROM outbox "
            "WHERE kind != 'snapshot' ORDER BY id").fetchall()]

    def compact(self, plan: CompactionPlan, now: float) -> None:
        """Carry out a compaction plan: delete first, then put each merged row in the place (row id) of the
        newest row it replaces, so a sink past that row never gets the sum; count what was dropped."""
        with self.store.transaction():
            self.store.db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in plan.delete])
            self.store.db.executemany(
                "INSERT INTO outbox(id, record_id, kind, name, bucket_start, bucket_s, n_in, n_out, created, "
                "camera) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.row_id, r.record_id, r.kind, r.name, r.bucket_start, r.bucket_s, r.n_in, r.n_out, now,
                  r.camera) for r in plan.insert])
            for key, add in (("dropped.records", plan.dropped_records), ("dropped.in", plan.dropped_in),
                             ("dropped.out", plan.dropped_out)):
                self.add_to(key, add)

    def close(self) -> None:
        self.store.close()


class History:
    """What the device counted, summed per camera, kind and name, read without disturbing the uplink
    (a read-only connection; WAL lets the service write meanwhile). Events are not counts and are left out."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            cols = {row[1] for row in self.con.execute("PRAGMA table_info(history)")}
        except sqlite3.Error:
            self.con.close()  # not a database (damaged): the caller reports it; nothing stays open
            raise
        # A store no multi-camera build has opened yet: every row is camera 'main'.
        self.camera = "camera" if "camera" in cols else f"'{DEFAULT_CAMERA}'"

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    def sums_since(self, start: float) -> Iterable[tuple[str, str, str, int, int]]:
        """``(camera, kind, name, in, out)`` over every bucket starting at or after ``start``."""
        rows = self.con.execute(
            f"SELECT {self.camera}, kind, name, SUM(n_in), SUM(n_out) FROM history WHERE kind != 'event' "
            "AND bucket_start >= ? GROUP BY 1, kind, name ORDER BY 1, kind, name", (start,)).fetchall()
        return [(str(c), str(k), str(n), int(i or 0), int(o or 0)) for c, k, n, i, o in rows]

    def sums_binned(self, first: float, by_s: float, until: float) -> Iterable[tuple[str, str, str, int, int, int]]:
        """``(camera, kind, name, bin, in, out)``: bins of ``by_s`` seconds from ``first`` up to ``until``."""
        rows = self.con.execute(
            f"SELECT {self.camera}, kind, name, CAST((bucket_start - ?) / ? AS INTEGER), SUM(n_in), SUM(n_out) "
            "FROM history WHERE kind != 'event' AND bucket_start >= ? AND bucket_start < ? GROUP BY 1, kind, name, 4",
            (first, by_s, first, until)).fetchall()
        return [(str(c), str(k), str(n), int(b), int(i or 0), int(o or 0)) for c, k, n, b, i, o in rows]
