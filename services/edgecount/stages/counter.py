"""Tracker + counter service: turns per-frame detections into tracks and count events.

Its whole state (tracker, counters, position in the stream) is committed to
its SQLite store together with the events each frame produced, before the
frame is acknowledged (the ``tracks`` message capture waits for). A counter
killed at any moment therefore resumes exactly where its last commit left it,
and the privacy filter fetches any event it missed from the durable log.
"""

from __future__ import annotations

import pickle
import secrets
import time
from pathlib import Path

from edgecount.runtime import bus
from edgecount.runtime.durable_log import SyncServer
from edgecount.runtime.settings import state_dir
from edgecount.runtime.store import Store
from edgecount.stages.base import Service
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

STATE_VERSION = 3


class Counter(Service):
    name = "counter"

    def __init__(self, config: Config, runtime_dir: Path) -> None:
        super().__init__(config, runtime_dir)
        self.camera = config.camera_counter()
        self.store = Store(state_dir(config) / "counter.db", synchronous="NORMAL")
        self.stream = (self.store.get("stream") or b"").decode()
        self.position = FramePosition(live=config.capture.realtime)
        self.last_ts = 0.0
        self.processed = 0
        self.gaps = 0
        self.gap_logged = 0
        self.restored = False
        self._restore()
        if not self.stream:
            self.stream = secrets.token_hex(4)
            with self.store.transaction():
                self.store.put("stream", self.stream.encode())
        self.sync = SyncServer(self.ctx, runtime_dir, self.name, self.store, self.log)
        self.watch(self.sync.sock, self.sync.handle)
        self.track_ms = 0.0
        self.next_watermark = 0.0
        self.next_tail = 0.0

    def _restore(self) -> None:
        raw = self.store.get("state")
        if raw is None:
            return
        try:
            state = pickle.loads(raw)
            if state[0] != STATE_VERSION:
                self.log.warning("counter.state_discarded", reason=f"state format {state[0]}, this build uses "
                                 f"{STATE_VERSION}")
                return
            _, camera, lines, last_ring, last_seq, last_ts, processed = state
        except Exception as exc:
            self.log.error("counter.state_unreadable", reason=str(exc), hint="starting from a clean state")
            return
        if lines != [(ln.name, ln.a, ln.b) for ln in self.camera.engine.lines]:
            self.log.warning("counter.state_discarded", reason="the counting lines changed")
            return
        self.camera, self.last_ts = camera, last_ts
        self.position.ring, self.position.seq = last_ring, last_seq
        self.processed = processed
        self.restored = True
        self.log.info("counter.state_restored", last_seq=last_seq, events=self.store.last_seq)

    def _state_blob(self) -> bytes:
        lines = [(ln.name, ln.a, ln.b) for ln in self.camera.engine.lines]
        return pickle.dumps((STATE_VERSION, self.camera, lines, self.position.ring, self.position.seq,
                             self.last_ts, self.processed), protocol=pickle.HIGHEST_PROTOCOL)

    def handle(self, topic: bytes, msg: Message) -> None:
        if not isinstance(msg, Detections):
            return
        previous = self.position.follow(msg.ring)
        if previous is not None:
            self.log.info("counter.capture_restarted", ring=msg.ring, previous_last_seq=previous)
        if self.position.seen(msg.seq):
            # Counted before a restart (or a resend): acknowledge it again, count nothing.
            self.pub.send(bus.TRACKS, Tracks(seq=msg.seq, ts=msg.ts, width=msg.width, height=msg.height))
            return
        if self.position.skips_ahead(msg.seq):
            # Every frame counts in replay: wait (unacknowledged) until capture re-announces the gap.
            if msg.seq != self.gap_logged:
                self.log.info("counter.waiting_for_frame", expected=self.position.seq + 1, got=msg.seq)
                self.gap_logged = msg.seq
            self.gaps += 1
            return
        t0 = time.perf_counter()
        out = self.camera.step(msg.box_array(), msg.score_array(), msg.ts, msg.seq, msg.width, msg.height)
        self.position.advance(msg.seq)
        self.last_ts = msg.ts
        self.processed += 1
        outgoing: list[tuple[bytes, Crossing | ZoneEvent]] = []
        with self.store.transaction():
            for c in out.crossings:
                n = self.store.next_seq()
                ev = Crossing(event_id=f"{self.stream}:{n}", line=c.line, direction=c.direction, ts=c.ts,
                              track_id=c.track_id, seq=c.seq, event_seq=n)
                self.store.append(n, bus.CROSSING, encode(ev))
                outgoing.append((bus.CROSSING, ev))
            for z in out.zone_changes:
                n = self.store.next_seq()
                zev = ZoneEvent(event_id=f"{self.stream}:{n}", zone=z.zone, kind=z.kind, ts=z.ts,
                                track_id=z.track_id, occupancy=z.occupancy, event_seq=n, dwell_s=z.dwell_s)
                self.store.append(n, bus.ZONE, encode(zev))
                outgoing.append((bus.ZONE, zev))
            self.store.put("state", self._state_blob())
        self.track_ms = 0.9 * self.track_ms + 0.1 * (time.perf_counter() - t0) * 1000
        # Only now, with the frame's effects durable, is it acknowledged downstream and to capture.
        self.pub.send(bus.TRACKS, Tracks(seq=msg.seq, ts=msg.ts, width=msg.width, height=msg.height,
                                         rows=out.rows.astype("<f4").tobytes(), ended=out.ended))
        for t, m in outgoing:
            self.pub.send(t, m)
        if msg.ts >= self.next_watermark:
            self.pub.send(bus.WATERMARK, Watermark(ts=msg.ts, seq=msg.seq, event_seq=self.store.last_seq))
            self.next_watermark = msg.ts + 1.0

    def tick(self) -> int:
        now = time.monotonic()
        if now >= self.next_tail:
            self.pub.send(bus.TAIL, LogTail(service=self.name, last_seq=self.store.last_seq))
            self.next_tail = now + 1.0
        return 200

    def on_eos(self, msg: EndOfStream) -> EndOfStream:
        if self.last_ts:
            self.pub.send(bus.WATERMARK, Watermark(ts=self.last_ts, seq=self.position.seq,
                                                   event_seq=self.store.last_seq))
        stats = dict(msg.stats)
        stats["counter_processed"] = self.processed
        stats["counter_last_event_seq"] = self.store.last_seq
        for name, c in self.camera.engine.totals().items():
            stats[f"line.{name}.in"] = c["in"]
            stats[f"line.{name}.out"] = c["out"]
        return EndOfStream(last_seq=msg.last_seq, stats=stats)

    def stats(self) -> dict[str, StatValue]:
        s: dict[str, StatValue] = {"processed": self.processed, "last_seq": self.position.seq,
                                   "tracker_ms": round(self.track_ms, 3), "events": self.store.last_seq,
                                   "out_of_order": self.gaps,
                                   "active_tracks": sum(1 for t in self.camera.tracker.tracks
                                                        if t.state == "confirmed"),
                                   "tracklets_joined": self.camera.linker.links}
        for zc in self.camera.engine.zone_counters:
            s[f"zone.{zc.zone.name}.occupancy"] = zc.occupancy
        return s

    def teardown(self) -> None:
        self.sync.close()
        self.store.close()

