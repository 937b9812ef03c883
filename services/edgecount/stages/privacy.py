"""Privacy filter service: the only producer for the uplink.

It follows the counter's durable event log (crossings and zone changes, which
carry track ids) and publishes only :class:`CountRecord` rows, which it first
writes to its own durable log. Under the default policy ``counts`` a record
is a count per line/zone per time bucket; policy ``events`` adds one record
per crossing whose time is rounded down to ``event_resolution_s`` and which
carries no track id. Frames, boxes, track ids and per-person timestamps stop
here. Each camera has its own aggregator, closed by that camera's watermarks.
Its two helpers have rooms of their own: the saved open buckets
(:mod:`edgecount.stages.saved_buckets`) and the redacted stills of policy
``snapshots`` (:mod:`edgecount.stages.stills`).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

import attrs

from edgecount.runtime import bus
from edgecount.runtime.durable_log import Follower, SyncServer
from edgecount.runtime.settings import state_dir
from edgecount.runtime.store import Store
from edgecount.stages import stage
from edgecount.stages.base import Service
from edgecount.stages.saved_buckets import SavedBuckets
from edgecount.stages.stills import Still, StillTaker
from edgecount_core.config import Config
from edgecount_core.messages import (
    DEFAULT_CAMERA,
    CountRecord,
    Crossing,
    EndOfStream,
    LogTail,
    Message,
    Snapshot,
    StatValue,
    Watermark,
    ZoneEvent,
    encode,
)
from edgecount_core.privacy import BucketAggregator, source_id


class Privacy(Service):
    name = "privacy"

    def __init__(self, config: Config, runtime_dir: Path, process: str = "") -> None:
        super().__init__(config, runtime_dir, process)
        self.store = Store(state_dir(config) / "privacy.db", synchronous="FULL")
        self.aggs = {cam: self._aggregator(cam, config.privacy.bucket_s) for cam in config.camera_names()}
        self.saved = SavedBuckets(self.store, self.log, self._aggregator, self._source)
        closed = [r for agg in self.aggs.values() for r in self.saved.restore(agg)] + self.saved.orphans(self.aggs)
        applied = self.store.get_int("applied")
        self.follower = Follower(self.ctx, runtime_dir, stage(self.name).follows, applied, self._apply, _event_seq,
                                 self.log)
        self.watch(self.follower.sock, self.follower.handle)
        self.sync = SyncServer(self.ctx, runtime_dir, self.name, self.store, self.log)
        self.watch(self.sync.sock, self.sync.handle)
        self.records = 0
        self.late = 0
        self.next_tail = 0.0
        self.stills: StillTaker | None = None  # policy "snapshots" only (setup)
        self.unknown_camera = 0
        if closed:
            self._commit(closed)  # buckets of another length, emitted as they were; fetched by the uplink

    def after_write_failure(self) -> None:
        # Buckets counted or closed in memory whose commit failed: back to the committed ones. The follower
        # did not advance, so the same events are applied again once there is room.
        for cam in self.aggs:
            self.aggs[cam] = self._aggregator(cam, self.cfg.privacy.bucket_s)
            self.saved.restore(self.aggs[cam])

    def _aggregator(self, camera: str, bucket_s: float) -> BucketAggregator:
        view = self.cfg.for_camera(camera)
        return BucketAggregator(device=self._source(camera), lines=[ln.name for ln in view.lines],
                                zones=[z.name for z in view.zones], bucket_s=bucket_s, camera=camera,
                                max_zero_fill_s=self.cfg.privacy.max_zero_fill_s)

    def _source(self, camera: str) -> str:
        return source_id(self.cfg.device.site, self.cfg.device.id, camera)

    def setup(self) -> None:
        if self.cfg.privacy.policy != "snapshots":
            return
        self.stills = StillTaker(self.cfg, self.runtime_dir, self.aggs, self.log)
        self.log.warning("privacy.snapshots_enabled", interval_s=self.cfg.privacy.snapshot_interval_s)

    def _send_still(self, still: Still) -> None:
        """A redacted still into the durable log (the uplink fetches it from there), then published."""
        res = self.cfg.privacy.bucket_s
        with self.store.transaction():
            n = self.store.next_seq()
            snap = Snapshot(snapshot_id=f"{self._source(still.camera)}/snapshot/{n}",
                            bucket_start=math.floor(still.ts / res) * res, jpeg=still.jpeg, log_seq=n,
                            camera=still.camera)
            self.store.append(n, bus.SNAPSHOT, encode(snap))
        self.pub.send(bus.SNAPSHOT, snap)

    def _commit(self, records: list[CountRecord], applied: int | None = None,
                changed: list[BucketAggregator] | None = None) -> list[CountRecord]:
        """Write records and the state of the aggregators that ``changed`` (default: all) in one transaction;
        returns what to publish."""
        out = []
        with self.store.transaction():
            for r in records:
                n = self.store.next_seq()
                rec = attrs.evolve(r, log_seq=n)
                self.store.append(n, bus.RECORD, encode(rec))
                out.append(rec)
            for agg in self.aggs.values() if changed is None else changed:
                self.saved.save(agg)
            self.saved.retire()
            if applied is not None:
                self.store.put_int("applied", applied)
        return out

    def _publish(self, records: list[CountRecord]) -> None:
        for r in records:
            self.pub.send(bus.RECORD, r)
            self.records += 1

    def _apply(self, msg: Message) -> None:
        events: list[CountRecord] = []
        agg = self.aggs.get(getattr(msg, "camera", DEFAULT_CAMERA))
        if agg is None:
            self.unknown_camera += 1  # logged by the counter under a configuration that had this camera
        elif isinstance(msg, Crossing):
            if not agg.add("line", msg.line, msg.direction, msg.ts):
                self.late += 1
            if self.cfg.privacy.policy in ("events", "snapshots"):
                res = self.cfg.privacy.event_resolution_s
                coarse = math.floor(agg.now / res) * res  # stream time: never behind a closed bucket
                events.append(CountRecord(
                    # The counter's log id, stream included: a counter.db started afresh numbers from 1 again.
                    record_id=f"{agg.device}/event/{msg.line}/{msg.event_id}", kind="event",
                    name=msg.line, bucket_start=coarse, bucket_s=res,
                    n_in=int(msg.direction == "in"), n_out=int(msg.direction == "out"), camera=agg.camera))
        elif isinstance(msg, ZoneEvent) and not agg.add("zone", msg.zone, msg.kind, msg.ts, msg.occupancy):
            self.late += 1
        self._publish(self._commit(events, applied=_event_seq(msg), changed=[agg] if agg else []))

    def handle(self, topic: bytes, msg: Message) -> None:
        if topic in (bus.FRAME, bus.DETECTIONS):
            still = self.stills.offer(msg) if self.stills is not None else None
            if still is not None:
                self._send_still(still)
            return
        if isinstance(msg, Crossing | ZoneEvent):
            self.follower.on_message(msg)
        elif isinstance(msg, LogTail):
            self.follower.on_tail(msg.last_seq)
        elif isinstance(msg, Watermark):
            # Close buckets only once every event before this watermark has been applied.
            agg = self.aggs.get(msg.camera)
            if agg is None:
                return
            if self.follower.caught_up(msg.event_seq):
                steps = agg.clock.steps_back
                closed = agg.advance(msg.ts)
                self._report_time_faults(agg, steps)
                if closed:
                    self._publish(self._commit(closed, changed=[agg]))
            else:
                self.follower.on_tail(msg.event_seq)

    def _report_time_faults(self, agg: BucketAggregator, steps_before: int) -> None:
        """Say once, in the log, that a camera's clock stepped back or its stream went silent."""
        if agg.clock.steps_back > steps_before:
            self.log.warning("privacy.clock_stepped_back", camera=agg.camera, ahead_s=round(agg.clock.ahead_s, 1),
                             hint="bucket times run ahead of the clock until it catches up at half speed; "
                                  "no crossing is dropped. Check NTP (`edgecount doctor`) and the RTC")
        for gap in agg.take_gaps():
            self.log.warning("privacy.stream_gap", camera=agg.camera, start=_iso(gap.start), end=_iso(gap.end),
                             seconds=round(gap.seconds), max_zero_fill_s=agg.max_zero_fill_s,
                             hint="no frame for that long, or the clock stepped forward: those buckets get no "
                                  "rows (the device did not watch); counting goes on")

    def forward_eos(self, msg: EndOfStream) -> None:
        needed = msg.counter_events_upto or 0
        if not self.follower.caught_up(needed):
            self.follower.on_tail(needed)
            return  # capture repeats the end-of-stream; forward it once caught up
        agg = self.aggs.get(msg.camera)
        if agg is not None:  # that camera's stream ended: its open buckets are complete
            self._publish(self._commit(agg.flush(), changed=[agg]))
        self.pub.send(bus.EOS, attrs.evolve(msg, privacy_records_upto=self.store.last_seq))

    def tick(self) -> int:
        now = time.monotonic()
        if now >= self.next_tail:
            self.pub.send(bus.TAIL, LogTail(service=self.name, last_seq=self.store.last_seq))
            self.follower.ack()
            self.next_tail = now + 1.0
        return 200

    def stats(self) -> dict[str, StatValue]:
        clocks = [agg.clock for agg in self.aggs.values()]
        return {"records": self.records, "late_events": self.late, "snapshots": self.stills.taken if self.stills else 0,
                "clock_steps_back": sum(c.steps_back for c in clocks),
                "clock_ahead_s": round(max((c.ahead_s for c in clocks), default=0.0), 1),
                "stream_gaps": sum(a.gap_count for a in self.aggs.values()),
                "stream_gap_s": round(sum(a.gap_s for a in self.aggs.values())),
                "applied": self.follower.applied, "gaps": self.follower.gaps, "recovered": self.follower.recovered,
                "duplicates": self.follower.duplicates, "log_pending": self.store.pending(),
                "unknown_camera": self.unknown_camera,
                # Entries the counter trimmed before we applied them: non-zero only if our state was lost.
                "lost": self.follower.lost, "resets": self.follower.resets}

    def teardown(self) -> None:
        if self.stills is not None:
            self.stills.close()
        self.follower.close()
        self.sync.close()
        self.store.close()


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def _event_seq(msg: Message) -> int:
    return int(getattr(msg, "event_seq", 0))

