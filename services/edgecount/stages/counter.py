"""Tracker + counter service: turns per-frame detections into tracks and count events.

Its whole state (tracker, counters, position in the stream) is committed to
its SQLite store together with the events each frame produced, before the
frame is acknowledged (the ``tracks`` message capture waits for). A counter
killed at any moment therefore resumes exactly where its last commit left it,
and the privacy filter fetches any event it missed from the durable log.

One process counts every camera: each has its own tracker, counters and
position (:class:`CameraState`, committed under its own key), and all share
one event log. A second process per camera would cost ~40 MB each for work
that takes well under a millisecond a frame.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import attrs

from edgecount.runtime import bus
from edgecount.runtime.durable_log import SyncServer
from edgecount.runtime.files import replace_text
from edgecount.runtime.settings import state_dir
from edgecount.runtime.store import Store
from edgecount.stages.base import Service
from edgecount.stages.counter_state import CameraState, encode_state, restore, state_key
from edgecount.stages.crossing_journal import CrossingJournal
from edgecount_core.camera_names import scoped
from edgecount_core.config import Config
from edgecount_core.frames import FramePosition
from edgecount_core.messages import (
    Crossing,
    Detections,
    EndOfStream,
    LogTail,
    Message,
    StatValue,
    Tracks,
    Watermark,
    ZoneEvent,
    encode,
)

WATERMARK_EVERY_S = 1.0  # stream time between watermarks: how soon privacy may close a bucket
FEET_EVERY_S = 10.0  # how often the foot grid for preview is written


class Counter(Service):
    name = "counter"

    def __init__(self, config: Config, runtime_dir: Path, process: str = "") -> None:
        super().__init__(config, runtime_dir, process)
        self.store = Store(state_dir(config) / "counter.db", synchronous="NORMAL")
        self.stream = (self.store.get("stream") or b"").decode()
        self.journal = CrossingJournal(self.store.db)
        self.cams: dict[str, CameraState] = {}
        self._load_cameras()
        self.gaps = 0
        self.gap_logged = 0
        self.unknown_camera = 0
        if not self.stream:
            self.stream = secrets.token_hex(4)
            with self.store.transaction():
                self.store.put("stream", self.stream.encode())
        self.sync = SyncServer(self.ctx, runtime_dir, self.name, self.store, self.log)
        self.watch(self.sync.sock, self.sync.handle)
        self.track_ms = 0.0
        self.next_tail = 0.0
        self.next_feet = time.monotonic() + 2.0  # soon after a start: a technician may preview at once

    def _load_cameras(self) -> None:
        """Every camera's counting as last committed (or fresh)."""
        for cam in self.cfg.camera_names():
            view = self.cfg.for_camera(cam)
            self.cams[cam] = self._restore(CameraState(cam, view.camera_counter(),
                                                       FramePosition(live=view.capture.realtime)))

    def after_write_failure(self) -> None:
        # The frame's tracker step and crossings were rolled back on disk: forget them in memory too, so the
        # frame, sent again (replay) or not (live), is counted once or not at all, never twice.
        self._load_cameras()

    def _restore(self, cs: CameraState) -> CameraState:
        raw = self.store.get(state_key(cs.name))
        if raw is None:
            return cs
        try:
            dropped = restore(cs, raw)
        except Exception as exc:
            self.log.error("counter.state_unreadable", camera=cs.name, reason=str(exc),
                           hint="starting from a clean state")
            return cs
        if dropped:
            self.log.warning("counter.state_discarded", camera=cs.name, reason=dropped)
        else:
            self.log.info("counter.state_restored", camera=cs.name, last_seq=cs.position.seq,
                          events=self.store.last_seq, open_tracks=len(cs.counter.tracker.tracks))
        return cs

    def handle(self, topic: bytes, msg: Message) -> None:
        if not isinstance(msg, Detections):
            return
        cs = self.cams.get(msg.camera)
        if cs is None:
            self.unknown_camera += 1
            return
        previous = cs.position.follow(msg.ring)
        if previous is not None:
            self.log.info("counter.capture_restarted", camera=cs.name, ring=msg.ring, previous_last_seq=previous)
        if cs.position.seen(msg.seq):
            # Counted before a restart (or a resend): acknowledge it again, count nothing.
            self.pub.send(bus.TRACKS, Tracks(seq=msg.seq, ts=msg.ts, width=msg.width, height=msg.height,
                                             camera=cs.name))
            return
        if cs.position.skips_ahead(msg.seq):
            # Every frame counts in replay: wait (unacknowledged) until capture re-announces the gap.
            if msg.seq != self.gap_logged:
                self.log.info("counter.waiting_for_frame", camera=cs.name, expected=cs.position.seq + 1,
                              got=msg.seq)
                self.gap_logged = msg.seq
            self.gaps += 1
            return
        t0 = time.perf_counter()
        out = cs.counter.step(msg.box_array(), msg.score_array(), msg.ts, msg.seq, msg.width, msg.height,
                              msg.feature_array())
        cs.position.advance(msg.seq)
        cs.last_ts = msg.ts
        cs.processed += 1
        cs.activity.update(msg.ts, len(out.ids), (c.line for c in out.crossings))
        if len(out.rows):
            rows = out.rows  # id, x1, y1, x2, y2: the feet are the bottom centre
            cs.feet.add(msg.ts, zip(((rows[:, 1] + rows[:, 3]) / 2 / msg.width).tolist(),
                                    (rows[:, 4] / msg.height).tolist(), strict=True))
        outgoing: list[tuple[bytes, Crossing | ZoneEvent]] = []
        with self.store.transaction():
            for c in out.crossings:
                n = self.store.next_seq()
                ev = Crossing(event_id=f"{self.stream}:{n}", line=c.line, direction=c.direction, ts=c.ts,
                              track_id=c.track_id, seq=c.seq, event_seq=n, camera=cs.name)
                self.store.append(n, bus.CROSSING, encode(ev))
                self.journal.add(c.ts, cs.name, c.line, c.direction)
                outgoing.append((bus.CROSSING, ev))
            for z in out.zone_changes:
                n = self.store.next_seq()
                zev = ZoneEvent(event_id=f"{self.stream}:{n}", zone=z.zone, kind=z.kind, ts=z.ts,
                                track_id=z.track_id, occupancy=z.occupancy, event_seq=n, dwell_s=z.dwell_s,
                                camera=cs.name)
                self.store.append(n, bus.ZONE, encode(zev))
                outgoing.append((bus.ZONE, zev))
            self.store.put(state_key(cs.name), encode_state(cs))
        self.track_ms = 0.9 * self.track_ms + 0.1 * (time.perf_counter() - t0) * 1000
        # Only now, with the frame's effects durable, is it acknowledged downstream and to capture.
        self.pub.send(bus.TRACKS, Tracks(seq=msg.seq, ts=msg.ts, width=msg.width, height=msg.height,
                                         rows=out.rows.astype("<f4").tobytes(), ended=out.ended, camera=cs.name))
        for t, m in outgoing:
            self.pub.send(t, m)
        # Also after the clock stepped back: waiting for it to pass the old mark would hold every bucket open.
        if msg.ts >= cs.next_watermark or msg.ts < cs.next_watermark - WATERMARK_EVERY_S:
            self.pub.send(bus.WATERMARK, Watermark(ts=msg.ts, seq=msg.seq, event_seq=self.store.last_seq,
                                                   camera=cs.name))
            cs.next_watermark = msg.ts + WATERMARK_EVERY_S

    def _write_feet(self) -> None:
        """Each camera's foot grid for ``preview``, replaced whole (a reader sees the old or the new)."""
        for cs in self.cams.values():
            path = state_dir(self.cfg) / f"{scoped('feet', cs.name)}.json"
            try:
                replace_text(path, json.dumps(cs.feet.to_json(cs.last_ts)), 0o600, fsync=False)
            except OSError as exc:  # a full disk: the grid is a convenience, counting goes on
                self.log.debug("counter.feet_not_written", reason=str(exc))

    def tick(self) -> int:
        now = time.monotonic()
        if now >= self.next_feet:
            self._write_feet()
            self.next_feet = now + FEET_EVERY_S
        if now >= self.next_tail:
            self.pub.send(bus.TAIL, LogTail(service=self.name, last_seq=self.store.last_seq))
            self.next_tail = now + 1.0
        return 200

    def on_eos(self, msg: EndOfStream) -> EndOfStream:
        cs = self.cams.get(msg.camera)
        if cs is None:
            return msg
        if cs.last_ts:
            self.pub.send(bus.WATERMARK, Watermark(ts=cs.last_ts, seq=cs.position.seq,
                                                   event_seq=self.store.last_seq, camera=cs.name))
        stats = dict(msg.stats)
        stats["counter_processed"] = cs.processed
        for name, c in cs.counter.engine.totals().items():
            stats[f"line.{name}.in"] = c["in"]
            stats[f"line.{name}.out"] = c["out"]
        return attrs.evolve(msg, stats=stats, counter_events_upto=self.store.last_seq)

    def stats(self) -> dict[str, StatValue]:
        cams = self.cams.values()
        s: dict[str, StatValue] = {
            "processed": sum(c.processed for c in cams),
            "last_seq": max(c.position.seq for c in cams),
            "tracker_ms": round(self.track_ms, 3), "events": self.store.last_seq, "out_of_order": self.gaps,
            "active_tracks": sum(1 for c in cams for t in c.counter.tracker.tracks if t.state == "confirmed"),
            "tracklets_joined": sum(c.counter.linker.links for c in cams), "unknown_camera": self.unknown_camera}
        several = len(self.cams) > 1
        for c in cams:
            prefix = f"camera.{c.name}." if several else ""
            if several:
                s[f"{prefix}processed"] = c.processed
            for zc in c.counter.engine.zone_counters:
                s[f"{prefix}zone.{zc.zone.name}.occupancy"] = zc.occupancy
            for name, seconds in c.activity.people_s.items():
                s[f"{prefix}line.{name}.people_s_since_count"] = round(seconds, 1)
            for name, totals in c.counter.engine.totals().items():  # kept in the counter's state: survive restarts
                s[f"{prefix}line.{name}.in"], s[f"{prefix}line.{name}.out"] = totals["in"], totals["out"]
        return s

    def teardown(self) -> None:
        self.sync.close()
        self.store.close()

