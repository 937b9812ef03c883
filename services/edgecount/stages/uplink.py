"""Uplink service: the outbox and its delivery to the configured sinks.

It follows the privacy filter's durable record log only, so frames, boxes and
track ids can never reach it. Each record is inserted into the SQLite outbox
(``synchronous=FULL``), keyed by its stable id, in the same transaction that
records how far the privacy log has been applied; only then is the privacy
filter allowed to forget it. Every sink delivers the outbox in order and
keeps a cursor of what it has confirmed; a row is deleted once every sink
has confirmed it. The outbox is bounded: beyond ``max_rows`` the oldest
records are merged into coarser buckets, and records older than
``max_age_days`` are dropped, with what was dropped counted and reported.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs

from edgecount.runtime import bus
from edgecount.runtime.control import NotRunning, ask
from edgecount.runtime.durable_log import Follower
from edgecount.runtime.settings import state_dir
from edgecount.runtime.store import Store
from edgecount.stages import stage
from edgecount.stages.base import Service
from edgecount.stages.uplink_sinks import OutRow, Sink, SinkError, build_sinks
from edgecount_core.config import Config
from edgecount_core.messages import DEFAULT_CAMERA, CountRecord, EndOfStream, LogTail, Message, Snapshot, StatValue
from edgecount_core.outbox import PendingRecord, plan_compaction

_OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    name TEXT NOT NULL, bucket_start REAL NOT NULL, bucket_s REAL NOT NULL, n_in INTEGER NOT NULL,
    n_out INTEGER NOT NULL, created REAL NOT NULL, blob BLOB);
CREATE TABLE IF NOT EXISTS history (
    record_id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, bucket_start REAL NOT NULL,
    bucket_s REAL NOT NULL, n_in INTEGER NOT NULL, n_out INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS history_time ON history(bucket_start);
"""
HISTORY_DAYS = 31


def _add_column(store: Store, table: str, column: str) -> None:
    """Add a column a newer build needs to a store an older build created (idempotent)."""
    name = column.split()[0]
    have = {row[1] for row in store.db.execute(f"PRAGMA table_info({table})")}
    if name not in have:
        store.db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


class Uplink(Service):
    name = "uplink"
    MAX_SNAPSHOTS = 20  # undelivered stills kept while offline; older ones are dropped (counted)

    def __init__(self, config: Config, runtime_dir: Path, process: str = "") -> None:
        super().__init__(config, runtime_dir, process)
        self.store = Store(state_dir(config) / "uplink.db", synchronous="FULL")
        self.store.db.executescript(_OUTBOX)
        _add_column(self.store, "outbox", "occupancy INTEGER")  # zones' occupancy (added in 0.2; older stores)
        for table in ("outbox", "history"):  # several cameras (added in 0.3): older rows are camera 'main'
            _add_column(self.store, table, f"camera TEXT NOT NULL DEFAULT '{DEFAULT_CAMERA}'")
        self.stills_allowed = config.privacy.policy == "snapshots"
        if not self.stills_allowed:
            self._drop_queued_stills()
        self.follower = Follower(self.ctx, runtime_dir, stage(self.name).follows, self.store.get_int("applied"),
                                 self._apply,
                                 lambda m: int(getattr(m, "log_seq", 0)), self.log)
        self.watch(self.follower.sock, self.follower.handle)
        self.sinks: list[Sink] = []
        self.pending_eos: dict[str, EndOfStream] = {}  # per camera: each stream ends on its own
        self.next_housekeeping = 0.0
        self.next_health = 0.0

    def setup(self) -> None:
        try:
            self.sinks = build_sinks(self.cfg, self.log)
        except SinkError as exc:
            self.log.error("uplink.sink_config", reason=str(exc))
            raise

    def _drop_queued_stills(self) -> None:
        """The policy was switched away from ``snapshots``: stills still waiting are never sent."""
        with self.store.transaction():
            n = self.store.db.execute("DELETE FROM outbox WHERE kind = 'snapshot'").rowcount
            if n:
                self.store.put_int("dropped.snapshots", self.store.get_int("dropped.snapshots") + n)
        if n:
            self.log.warning("uplink.snapshots_dropped", count=n, reason="privacy.policy is no longer 'snapshots'")

    def _apply(self, msg: Message) -> None:
        if isinstance(msg, Snapshot) and not self.stills_allowed:
            with self.store.transaction():  # made before the policy changed: consumed, never queued
                self.store.put_int("applied", msg.log_seq)
            return
        if isinstance(msg, Snapshot):
            with self.store.transaction():
                self.store.db.execute(
                    "INSERT OR IGNORE INTO outbox(record_id, kind, name, bucket_start, bucket_s, n_in, n_out, created, "
                    "blob, camera) VALUES(?, 'snapshot', 'snapshot', ?, 0, 0, 0, ?, ?, ?)",
                    (msg.snapshot_id, msg.bucket_start, time.time(), msg.jpeg, msg.camera))
                self.store.put_int("applied", msg.log_seq)
            return
        if not isinstance(msg, CountRecord):
            return
        with self.store.transaction():
            self.store.db.execute(
                "INSERT OR IGNORE INTO outbox(record_id, kind, name, bucket_start, bucket_s, n_in, n_out, created, "
                "occupancy, camera) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (msg.record_id, msg.kind, msg.name, msg.bucket_start, msg.bucket_s, msg.n_in, msg.n_out, time.time(),
                 msg.occupancy, msg.camera))
            # What `edgecount counts` shows on the device, kept whether or not it was delivered.
            self.store.db.execute(
                "INSERT OR IGNORE INTO history(record_id, kind, name, bucket_start, bucket_s, n_in, n_out, camera) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                (msg.record_id, msg.kind, msg.name, msg.bucket_start, msg.bucket_s, msg.n_in, msg.n_out, msg.camera))
            self.store.put_int("applied", msg.log_seq)

    def handle(self, topic: bytes, msg: Message) -> None:
        if isinstance(msg, CountRecord | Snapshot):
            self.follower.on_message(msg)
        elif isinstance(msg, LogTail):
            self.follower.on_tail(msg.last_seq)

    def _cursor(self, sink: Sink) -> int:
        return self.store.get_int(f"cursor.{sink.name}")

    def _rows_after(self, cursor: int, limit: int) -> list[OutRow]:
        rows = self.store.db.execute(
            "SELECT id, record_id, kind, name, bucket_start, bucket_s, n_in, n_out, blob, occupancy, camera "
            "FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)).fetchall()
        out = []
        for r in rows:
            if r[2] == "snapshot":
                rec: dict[str, object] = {"id": r[1], "site": self.cfg.device.site, "device": self.cfg.device.id,
                                          "camera": r[10], "kind": "snapshot", "bucket_start": r[4]}
                out.append(OutRow(r[0], rec, bytes(r[8])))
            else:
                record: dict[str, object] = {"id": r[1], "site": self.cfg.device.site, "device": self.cfg.device.id,
                                             "camera": r[10], "kind": r[2], "name": r[3], "bucket_start": r[4],
                                             "bucket_s": r[5], "in": r[6], "out": r[7]}
                if r[9] is not None:
                    record["occupancy"] = r[9]
                out.append(OutRow(r[0], record))
        return out

    def _advance_cursor(self, sink: Sink, cursor: int) -> int:
        """Record what ``sink`` confirmed since ``cursor`` (and how many records that was); the new cursor."""
        done = sink.confirmed()
        if done <= cursor:
            return cursor
        with self.store.transaction():
            n = self.store.db.execute("SELECT COUNT(*) FROM outbox WHERE id > ? AND id <= ?",
                                      (cursor, done)).fetchone()[0]
            self.store.put_int(f"cursor.{sink.name}", done)
            self.store.put_int(f"confirmed.{sink.name}", self.store.get_int(f"confirmed.{sink.name}") + int(n))
        return done

    def _deliver(self) -> None:
        for sink in self.sinks:
            cursor = self._advance_cursor(sink, self._cursor(sink))
            n = sink.wants()
            if n:
                sink.offer(self._rows_after(sink.offered_upto(cursor), n))
                self._advance_cursor(sink, cursor)

    def _housekeeping(self) -> None:
        if not self.sinks:
            return
        low = min(self._cursor(s) for s in self.sinks)
        ob = self.cfg.uplink.outbox
        with self.store.transaction():
            self.store.db.execute("DELETE FROM outbox WHERE id <= ?", (low,))
            self.store.db.execute("DELETE FROM history WHERE bucket_start < ?", (time.time() - HISTORY_DAYS * 86400,))
        # Stills are bounded on their own: only the newest few wait for a connection.
        snaps = [r[0] for r in self.store.db.execute(
            "SELECT id FROM outbox WHERE kind = 'snapshot' AND id > ? ORDER BY id", (low,)).fetchall()]
        if len(snaps) > self.MAX_SNAPSHOTS:
            drop = snaps[: len(snaps) - self.MAX_SNAPSHOTS]
            with self.store.transaction():
                self.store.db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in drop])
                self.store.put_int("dropped.snapshots", self.store.get_int("dropped.snapshots") + len(drop))
        rows = self.store.db.execute(
            "SELECT id, record_id, kind, name, bucket_start, bucket_s, n_in, n_out, camera FROM outbox "
            "WHERE kind != 'snapshot' ORDER BY id").fetchall()
        if len(rows) <= ob.max_rows and not rows:
            return
        # Rows a sink has handed over and awaits confirmation for stay as they are (their PUBACK may come).
        in_flight = [(self._cursor(s), s.offered_upto(self._cursor(s))) for s in self.sinks]
        pending = [PendingRecord(*r) for r in rows if not any(lo < r[0] <= hi for lo, hi in in_flight)]
        plan = plan_compaction(pending, ob.max_rows, ob.max_age_days * 86400.0, time.time(),
                               keep_recent=ob.max_rows // 2, cursors=[self._cursor(s) for s in self.sinks])
        if plan.empty:
            return
        with self.store.transaction():
            self.store.db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in plan.delete])
            # Each merged row takes the place (row id) of the newest it replaces: sinks past it never get it.
            self.store.db.executemany(
                "INSERT INTO outbox(id, record_id, kind, name, bucket_start, bucket_s, n_in, n_out, created, "
                "camera) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.row_id, r.record_id, r.kind, r.name, r.bucket_start, r.bucket_s, r.n_in, r.n_out, time.time(),
                  r.camera) for r in plan.insert])
            for key, add in (("dropped.records", plan.dropped_records), ("dropped.in", plan.dropped_in),
                             ("dropped.out", plan.dropped_out)):
                self.store.put_int(key, self.store.get_int(key) + add)
        self.log.warning("uplink.outbox_compacted", merged_into=len(plan.insert), removed=len(plan.delete),
                         dropped_records=plan.dropped_records)

    def backlog(self) -> int:
        """Outbox rows some sink has not confirmed yet."""
        if not self.sinks:
            return 0
        low = min(self._cursor(s) for s in self.sinks)
        n = self.store.db.execute("SELECT COUNT(*) FROM outbox WHERE id > ?", (low,)).fetchone()
        return int(n[0])

    def tick(self) -> int:
        self._deliver()
        now = time.monotonic()
        if now >= self.next_housekeeping:
            self.follower.ack()
            self._housekeeping()
            self.next_housekeeping = now + 5.0
        for cam in list(self.pending_eos):
            self._try_finish(cam)
        backlog = self.backlog()
        if now >= self.next_health:
            # The whole device's state (a camera down makes it "degraded"); which service is, stays local.
            state, _ = self._device_state()
            for s in self.sinks:
                s.publish_health({"ts": round(time.time()), "state": state, "backlog": backlog})
            self.next_health = now + 60.0
        fine = all(s.status().get("broker_connected", True) and not s.status().get("sink_degraded", False)
                   for s in self.sinks)
        self.state = "ok" if fine else "degraded"
        return 20 if backlog else 200

    def _device_state(self) -> tuple[str, list[str]]:
        """The whole device's state from the watchdog (a camera down is ``degraded`` with ``capture`` named):
        service names and states only. Without a watchdog (replay-service) it is this service's own."""
        try:
            reply = ask(self.runtime_dir, {"cmd": "state"}, timeout_ms=300)
            degraded = [str(n) for n in reply.get("degraded", [])]
        except (NotRunning, OSError):
            degraded = []
        if self.state == "degraded" and self.name not in degraded:
            degraded.append(self.name)
        return ("degraded" if degraded else "ok"), degraded

    def forward_eos(self, msg: EndOfStream) -> None:
        self.pending_eos[msg.camera] = msg
        self._try_finish(msg.camera)

    def _try_finish(self, camera: str) -> None:
        msg = self.pending_eos[camera]
        needed = int(msg.stats.get("privacy_last_seq", 0))
        if not self.follower.caught_up(needed):
            self.follower.on_tail(needed)
            return
        self._deliver()
        if self.backlog():
            return
        stats = dict(msg.stats)
        stats["uplink_delivered_upto"] = self.follower.applied
        for sink in self.sinks:  # every record is confirmed by every sink (MQTT: PUBACK) before this
            stats[f"sink.{sink.name}.confirmed"] = self.store.get_int(f"confirmed.{sink.name}")
        self.pub.send(bus.EOS, attrs.evolve(msg, stats=stats))
        del self.pending_eos[camera]

    def stats(self) -> dict[str, StatValue]:
        s: dict[str, StatValue] = {"backlog": self.backlog(), "applied": self.follower.applied,
                                   "recovered": self.follower.recovered, "lost": self.follower.lost,
                                   "resets": self.follower.resets,
                                   "dropped_records": self.store.get_int("dropped.records")}
        for sink in self.sinks:
            s[f"delivered.{sink.name}"] = self.store.get_int(f"confirmed.{sink.name}")
            for k, v in sink.status().items():
                if isinstance(v, int | float | str | bool):
                    s[k] = v
        if self.sinks:
            low = min(self._cursor(x) for x in self.sinks)
            oldest = self.store.db.execute("SELECT MIN(created) FROM outbox WHERE id > ?", (low,)).fetchone()[0]
            s["oldest_undelivered_s"] = round(max(0.0, time.time() - oldest), 1) if oldest is not None else 0.0
        return s

    def teardown(self) -> None:
        for s in self.sinks:
            s.close()
        self.follower.close()
        self.store.close()

