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

import os
import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import attrs

from edgecount.runtime import bus
from edgecount.runtime.durable_log import Follower
from edgecount.runtime.settings import state_dir
from edgecount.stages import stage
from edgecount.stages.base import Service
from edgecount.stages.outbox import Outbox
from edgecount.stages.uplink_sinks import Sink, SinkError, build_sinks
from edgecount.supervisor.control import NotRunning, ask
from edgecount_core.config import Config
from edgecount_core.daily_totals import day_start, running_total, total_record
from edgecount_core.messages import CountRecord, EndOfStream, LogTail, Message, Snapshot, StatValue
from edgecount_core.outbox import plan_compaction


def local_zone() -> tzinfo:
    """The device's time zone, with its daylight-saving rules when the system names them (``TZ``,
    ``/etc/localtime``), else its current offset: daily totals start again at a local hour."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if os.environ.get("TZ"):
            return ZoneInfo(os.environ["TZ"].lstrip(":"))
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f)
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return datetime.now().astimezone().tzinfo or UTC


class Uplink(Service):
    name = "uplink"
    MAX_SNAPSHOTS = 20  # undelivered stills kept while offline; older ones are dropped (counted)

    def __init__(self, config: Config, runtime_dir: Path, process: str = "") -> None:
        super().__init__(config, runtime_dir, process)
        self.outbox = Outbox(state_dir(config) / "uplink.db")
        self.stills_allowed = config.privacy.policy == "snapshots"
        if not self.stills_allowed:
            self._drop_queued_stills()
        self.follower = Follower(self.ctx, runtime_dir, stage(self.name).follows, self.outbox.get("applied"),
                                 self._apply,
                                 lambda m: int(getattr(m, "log_seq", 0)), self.log)
        self.watch(self.follower.sock, self.follower.handle)
        self.sinks: list[Sink] = []
        self.pending_eos: dict[str, EndOfStream] = {}  # per camera: each stream ends on its own
        self.next_housekeeping = 0.0
        self.next_health = 0.0
        self.zone = local_zone()

    def setup(self) -> None:
        try:
            self.sinks = build_sinks(self.cfg, self.log)
        except SinkError as exc:
            self.log.error("uplink.sink_config", reason=str(exc))
            raise

    def _drop_queued_stills(self) -> None:
        """The policy was switched away from ``snapshots``: stills still waiting are never sent."""
        n = self.outbox.drop_stills()
        if n:
            self.log.warning("uplink.snapshots_dropped", count=n, reason="privacy.policy is no longer 'snapshots'")

    def _apply(self, msg: Message) -> None:
        if not isinstance(msg, CountRecord | Snapshot):
            return
        with self.outbox.transaction():  # queued and the log position noted together, or neither
            if isinstance(msg, CountRecord):
                self.outbox.add_record(msg)
                if msg.kind == "line":
                    self.outbox.add_record(self._day_total(msg))
            elif isinstance(msg, Snapshot) and self.stills_allowed:
                self.outbox.add_still(msg)  # made before a policy change away from stills: consumed, not queued
            self.outbox.put("applied", msg.log_seq)

    def _day_total(self, msg: CountRecord) -> CountRecord:
        """The line's running total of the day ``msg`` belongs to, its bucket included (from the history)."""
        start = day_start(msg.bucket_start, self.cfg.uplink.daily_reset_hour, self.zone)
        buckets = self.outbox.line_buckets(msg.camera, msg.name, start, msg.bucket_start + msg.bucket_s)
        return total_record(msg, start, running_total(buckets))

    def handle(self, topic: bytes, msg: Message) -> None:
        if isinstance(msg, CountRecord | Snapshot):
            self.follower.on_message(msg)
        elif isinstance(msg, LogTail):
            self.follower.on_tail(msg.last_seq)

    def _low(self) -> int:
        """The row every sink has confirmed."""
        return min(self.outbox.cursor(s.name) for s in self.sinks)

    def _deliver(self) -> None:
        for sink in self.sinks:
            self.outbox.confirm(sink.name, sink.confirmed())
            n = sink.wants()
            if n:
                after = sink.offered_upto(self.outbox.cursor(sink.name))
                sink.offer(self.outbox.rows_after(after, n, self.cfg.device.site, self.cfg.device.id))
                self.outbox.confirm(sink.name, sink.confirmed())

    def _housekeeping(self) -> None:
        if not self.sinks:
            return
        low, now = self._low(), time.time()
        self.outbox.trim(low, now)
        self.outbox.drop_stills(keep_newest=self.MAX_SNAPSHOTS, after=low)  # only the newest few wait
        ob = self.cfg.uplink.outbox
        cursors = [self.outbox.cursor(s.name) for s in self.sinks]
        # Rows a sink has handed over and awaits confirmation for stay as they are (their PUBACK may come).
        in_flight = [(c, s.offered_upto(c)) for c, s in zip(cursors, self.sinks, strict=True)]
        pending = [r for r in self.outbox.pending_counts() if not any(lo < r.row_id <= hi for lo, hi in in_flight)]
        if not pending:
            return
        plan = plan_compaction(pending, ob.max_rows, ob.max_age_days * 86400.0, now,
                               keep_recent=ob.max_rows // 2, cursors=cursors)
        if plan.empty:
            return
        self.outbox.compact(plan, now)
        self.log.warning("uplink.outbox_compacted", merged_into=len(plan.insert), removed=len(plan.delete),
                         dropped_records=plan.dropped_records)

    def backlog(self) -> int:
        """Outbox rows some sink has not confirmed yet."""
        return self.outbox.backlog(self._low()) if self.sinks else 0

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
        needed = msg.privacy_records_upto or 0
        if not self.follower.caught_up(needed):
            self.follower.on_tail(needed)
            return
        self._deliver()
        if self.backlog():
            return
        stats = {**msg.stats, "uplink_delivered_upto": self.follower.applied}
        # Every record is confirmed by every sink (MQTT: PUBACK) before this.
        confirmed = {sink.name: self.outbox.get(f"confirmed.{sink.name}") for sink in self.sinks}
        self.pub.send(bus.EOS, attrs.evolve(msg, stats=stats, confirmed=confirmed))
        del self.pending_eos[camera]

    def stats(self) -> dict[str, StatValue]:
        s: dict[str, StatValue] = {"backlog": self.backlog(), "applied": self.follower.applied,
                                   "recovered": self.follower.recovered, "lost": self.follower.lost,
                                   "resets": self.follower.resets,
                                   "dropped_records": self.outbox.get("dropped.records")}
        for sink in self.sinks:
            s[f"delivered.{sink.name}"] = self.outbox.get(f"confirmed.{sink.name}")
            for k, v in sink.status().items():
                if isinstance(v, int | float | str | bool):
                    s[k] = v
        if self.sinks:
            oldest = self.outbox.oldest_created(self._low())
            s["oldest_undelivered_s"] = round(max(0.0, time.time() - oldest), 1) if oldest is not None else 0.0
        return s

    def teardown(self) -> None:
        for s in self.sinks:
            s.close()
        self.follower.close()
        self.outbox.close()

