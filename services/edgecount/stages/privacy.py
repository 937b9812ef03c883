"""Privacy filter service: the only producer for the uplink.

It follows the counter's durable event log (crossings and zone changes, which
carry track ids) and publishes only :class:`CountRecord` rows, which it first
writes to its own durable log. Under the default policy ``counts`` a record
is a count per line/zone per time bucket; policy ``events`` adds one record
per crossing whose time is rounded down to ``event_resolution_s`` and which
carries no track id. Frames, boxes, track ids and per-person timestamps stop
here. Each camera has its own aggregator, closed by that camera's watermarks.
"""

from __future__ import annotations

import io
import math
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import msgpack

from edgecount.runtime import bus
from edgecount.runtime.durable_log import Follower, SyncServer
from edgecount.runtime.settings import state_dir
from edgecount.runtime.store import Store
from edgecount.stages.base import Service
from edgecount_core.config import Config
from edgecount_core.frames import StillPairing
from edgecount_core.messages import (
    DEFAULT_CAMERA,
    CountRecord,
    Crossing,
    EndOfStream,
    LogTail,
    Message,
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
        self._retired_keys: list[str] = []  # saved states of cameras no longer configured, dropped at commit
        closed = [r for cam in self.aggs for r in self._restore_state(cam)] + self._orphaned_buckets()
        applied = self.store.get_int("applied")
        self.follower = Follower(self.ctx, runtime_dir, "counter", applied, self._apply, _event_seq, self.log)
        self.watch(self.follower.sock, self.follower.handle)
        self.sync = SyncServer(self.ctx, runtime_dir, self.name, self.store, self.log)
        self.watch(self.sync.sock, self.sync.handle)
        self.records = 0
        self.late = 0
        self.next_tail = 0.0
        self.snapshots = 0
        self.next_snapshot = 0.0
        self.pending_frame: Any = None
        self.pairing = StillPairing(max_wait_s=SNAPSHOT_WAIT_S)
        self.clock = time.monotonic  # replaced by tests that need time to pass
        self.face_detectors: list[Any] = []
        self.readers: dict[str, Any] = {}
        self.unknown_camera = 0
        if closed:
            self._commit(closed)  # buckets of another length, emitted as they were; fetched by the uplink

    def after_write_failure(self) -> None:
        # Buckets counted or closed in memory whose commit failed: back to the committed ones. The follower
        # did not advance, so the same events are applied again once there is room.
        for cam in self.aggs:
            self.aggs[cam] = self._aggregator(cam, self.cfg.privacy.bucket_s)
            self._restore_state(cam)

    def _aggregator(self, camera: str, bucket_s: float) -> BucketAggregator:
        view = self.cfg.for_camera(camera)
        return BucketAggregator(device=self._source(camera), lines=[ln.name for ln in view.lines],
                                zones=[z.name for z in view.zones], bucket_s=bucket_s, camera=camera,
                                max_zero_fill_s=self.cfg.privacy.max_zero_fill_s)

    def _source(self, camera: str) -> str:
        return source_id(self.cfg.device.site, self.cfg.device.id, camera)

    def _restore_state(self, camera: str) -> list[CountRecord]:
        """Take over a camera's open buckets saved by the last run. Lines or zones may have changed since (the
        open counts are kept, the new names used). A state that cannot be read is discarded with an error
        logged, never a failed start; buckets saved with another length are returned, closed, to emit."""
        agg = self.aggs[camera]
        raw = self.store.get(agg_key(camera))
        legacy = self.store.get(LEGACY_AGG_KEY) if camera == DEFAULT_CAMERA else None
        try:
            if raw is not None:
                state = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            elif legacy is not None:
                state = legacy_state(legacy)
            else:
                return []
            saved_s = float(state["bucket_s"])
            if saved_s == agg.bucket_s:
                agg.restore(state)
                return []
            old = self._aggregator(camera, saved_s)
            old.restore(state)
            self.log.warning("privacy.bucket_length_changed", camera=camera, was_s=saved_s, now_s=agg.bucket_s)
            return old.flush()
        except Exception as exc:  # any damage to the saved state: start clean rather than never start
            self.log.error("privacy.state_discarded", camera=camera, reason=f"{type(exc).__name__}: {exc}"[:300],
                           hint="the open (not yet emitted) buckets of the last run are lost")
            return []

    def _orphaned_buckets(self) -> list[CountRecord]:
        """Open buckets saved for a camera the configuration no longer has (a file moved to ``[[cameras]]``
        leaves ``main``'s; a camera renamed or removed leaves its own): emitted as they were, under the
        camera they were counted for, instead of dropped. Their saved state goes in the same commit."""
        out: list[CountRecord] = []
        for key in self.store.keys(AGG_KEY):
            camera = DEFAULT_CAMERA if key == AGG_KEY else key.partition("@")[2]
            if camera in self.aggs:
                continue
            try:
                state = msgpack.unpackb(self.store.get(key) or b"", raw=False, strict_map_key=False)
                old = BucketAggregator(self._source(camera), (), bucket_s=float(state["bucket_s"]), camera=camera)
                old.restore(state)
                records = old.flush()
            except Exception as exc:  # damaged: as in _restore_state, never a failed start
                self.log.error("privacy.state_discarded", camera=camera, reason=f"{type(exc).__name__}: {exc}"[:300])
                records = []
            self.log.warning("privacy.camera_gone", camera=camera, open_buckets_sent=len(records))
            out += records
            self._retired_keys.append(key)
        return out

    def setup(self) -> None:
        if self.cfg.privacy.policy != "snapshots":
            return
        from edgecount.detection.redaction import FaceDetector
        from edgecount.runtime.assets import AssetStore
        from edgecount.runtime.ring import RingReader

        store = AssetStore.for_config(self.cfg)
        self.face_detectors = [FaceDetector(store.fetch_model(n))
                               for n in ("face_detection_short_range", "face_detection_full_range")]
        self.readers = {cam: RingReader(self.runtime_dir, cam) for cam in self.aggs}
        self.log.warning("privacy.snapshots_enabled", interval_s=self.cfg.privacy.snapshot_interval_s)

    def _maybe_snapshot(self, msg: Message) -> None:
        from edgecount.detection.redaction import redact_snapshot
        from edgecount_core.messages import Detections, FrameReady, Snapshot

        now = self.clock()
        if self.pairing.expired(now):
            # Inference skipped that frame (live mode drops frames): its detections will never come.
            self.log.warning("privacy.snapshot_abandoned", reason="no detections for the frame within "
                             f"{self.pairing.max_wait_s:.0f} s")
            self.pairing.clear()
            self.pending_frame = None
        reader = self.readers.get(getattr(msg, "camera", DEFAULT_CAMERA))
        if isinstance(msg, FrameReady) and reader is not None and not self.pairing.waiting(now) \
                and now >= self.next_snapshot:
            from edgecount.runtime.ring import RingError

            try:
                view = reader.view(msg.ring, msg.slot, msg.seq)
            except RingError as exc:  # capture restarted (a new ring) or is gone: the next still comes later
                self.log.warning("privacy.snapshot_skipped", reason=str(exc)[:200])
                return
            if view is None:
                return
            frame = view.copy()
            del view
            if reader.still_valid(msg.slot, msg.seq):
                self.pending_frame = frame
                self.pairing.take(msg.ring, msg.seq, now)
        elif isinstance(msg, Detections) and self.pending_frame is not None and self.pairing.matches(msg.ring,
                                                                                                      msg.seq):
            frame = self.pending_frame
            self.pending_frame = None
            self.pairing.clear()
            try:
                jpeg = redact_snapshot(frame, msg.box_array(), self.face_detectors)
            except RuntimeError as exc:
                self.log.error("privacy.snapshot_refused", reason=str(exc))
                return
            res = self.cfg.privacy.bucket_s
            start = math.floor(msg.ts / res) * res
            with self.store.transaction():
                n = self.store.next_seq()
                snap = Snapshot(snapshot_id=f"{self._source(msg.camera)}/snapshot/{n}", bucket_start=start,
                                jpeg=jpeg, log_seq=n, camera=msg.camera)
                self.store.append(n, bus.SNAPSHOT, encode(snap))
            self.pub.send(bus.SNAPSHOT, snap)
            self.snapshots += 1
            self.next_snapshot = now + self.cfg.privacy.snapshot_interval_s

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
                self.store.put(agg_key(agg.camera), msgpack.packb(agg.to_state(), use_bin_type=True))
            for key in self._retired_keys:
                self.store.delete(key)
            self._retired_keys = []
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
            if self.readers:
                self._maybe_snapshot(msg)
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
        needed = int(msg.stats.get("counter_last_event_seq", 0))
        if not self.follower.caught_up(needed):
            self.follower.on_tail(needed)
            return  # capture repeats the end-of-stream; forward it once caught up
        agg = self.aggs.get(msg.camera)
        if agg is not None:  # that camera's stream ended: its open buckets are complete
            self._publish(self._commit(agg.flush(), changed=[agg]))
        stats = dict(msg.stats)
        stats["privacy_last_seq"] = self.store.last_seq
        self.pub.send(bus.EOS, attrs.evolve(msg, stats=stats))

    def tick(self) -> int:
        now = time.monotonic()
        if now >= self.next_tail:
            self.pub.send(bus.TAIL, LogTail(service=self.name, last_seq=self.store.last_seq))
            self.follower.ack()
            self.next_tail = now + 1.0
        return 200

    def stats(self) -> dict[str, StatValue]:
        clocks = [agg.clock for agg in self.aggs.values()]
        return {"records": self.records, "late_events": self.late, "snapshots": self.snapshots,
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
        for reader in self.readers.values():
            reader.close()
        self.follower.close()
        self.sync.close()
        self.store.close()


AGG_KEY = "aggregator.msgpack"


def agg_key(camera: str) -> str:
    """Where a camera's open buckets are saved (``main``: where single-camera builds saved them)."""
    return AGG_KEY if camera == DEFAULT_CAMERA else f"{AGG_KEY}@{camera}"

SNAPSHOT_WAIT_S = 10.0  # how long a still waits for its frame's detections before it is given up
LEGACY_AGG_KEY = "aggregator"  # pickled by builds up to 0.1.0


class _AggregatorUnpickler(pickle.Unpickler):
    """Reads the state of older builds once, allowing no class but the aggregator's own two."""

    ALLOWED = frozenset({("edgecount_core.privacy", "BucketAggregator"), ("edgecount_core.privacy", "_Bucket")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in saved privacy state")
        return super().find_class(module, name)


def legacy_state(raw: bytes) -> dict[str, Any]:
    """An older build's pickled aggregator as today's plain state."""
    agg = _AggregatorUnpickler(io.BytesIO(raw)).load()
    if not isinstance(agg, BucketAggregator):
        raise ValueError("saved privacy state is not an aggregator")
    fresh = BucketAggregator(agg.device, (), bucket_s=agg.bucket_s, grace_s=agg.grace_s)
    for name, value in vars(fresh).items():  # what later builds added: as a fresh aggregator has it
        vars(agg).setdefault(name, value)
    return agg.to_state()


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def _event_seq(msg: Message) -> int:
    return int(getattr(msg, "event_seq", 0))

