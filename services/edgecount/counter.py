"""Tracker + counter service: turns per-frame detections into tracks and count events."""

from __future__ import annotations

import time
from pathlib import Path

from edgecount import bus
from edgecount.service import Service, main_for
from edgecount_core.config import Config
from edgecount_core.counting import CountingEngine, TrackPoint
from edgecount_core.geometry import bottom_centre
from edgecount_core.messages import (
    Crossing,
    Detections,
    EndOfStream,
    Message,
    StatValue,
    Tracks,
    Watermark,
    ZoneEvent,
)
from edgecount_core.tracker import Tracker, TrackerConfig


class Counter(Service):
    name = "counter"
    sources = (("inference", (bus.DETECTIONS, bus.MARKER, bus.EOS)),)

    def __init__(self, config: Config, runtime_dir: Path) -> None:
        super().__init__(config, runtime_dir)
        t = config.tracker
        self.tracker = Tracker(TrackerConfig(
            high_score=t.high_score, low_score=t.low_score, new_track_score=t.new_track_score,
            min_hits=t.min_hits, max_lost_s=t.max_lost_s, match_iou=t.match_iou,
            recovery_distance=t.recovery_distance))
        self.engine = CountingEngine(config.geometry_lines(), config.geometry_zones(),
                                     band_px=config.counting.band_px)
        self.epoch = f"{int(time.time() * 1000):x}"
        self.last_seq = 0
        self.processed = 0
        self.track_ms = 0.0
        self.next_watermark = 0.0
        self.last_ts = 0.0

    def handle(self, topic: bytes, msg: Message) -> None:
        if not isinstance(msg, Detections) or msg.seq <= self.last_seq:
            return
        t0 = time.perf_counter()
        out = self.tracker.update(msg.box_array(), msg.score_array(), msg.ts)
        points = [TrackPoint(int(r[0]), bottom_centre(r[1], r[2], r[3], r[4])) for r in out.rows]
        crossings, zone_changes = self.engine.update(msg.width, msg.height, points, msg.ts, msg.seq,
                                                     ended=out.ended)
        self.track_ms = 0.9 * self.track_ms + 0.1 * (time.perf_counter() - t0) * 1000
        self.last_seq = msg.seq
        self.last_ts = msg.ts
        self.processed += 1
        self.pub.send(bus.TRACKS, Tracks(seq=msg.seq, ts=msg.ts, width=msg.width, height=msg.height,
                                         rows=out.rows.astype("<f4").tobytes(), ended=out.ended))
        for c in crossings:
            self.pub.send(bus.CROSSING, Crossing(event_id=f"{self.epoch}:{c.event_id}", line=c.line,
                                                 direction=c.direction, ts=c.ts, track_id=c.track_id,
                                                 seq=c.seq))
        for z in zone_changes:
            self.pub.send(bus.ZONE, ZoneEvent(event_id=f"{self.epoch}:{z.event_id}", zone=z.zone,
                                              kind=z.kind, ts=z.ts, track_id=z.track_id,
                                              occupancy=z.occupancy, dwell_s=z.dwell_s))
        if msg.ts >= self.next_watermark:
            self.pub.send(bus.WATERMARK, Watermark(ts=msg.ts, seq=msg.seq))
            self.next_watermark = msg.ts + 1.0

    def on_eos(self, msg: EndOfStream) -> EndOfStream:
        if self.last_ts:
            self.pub.send(bus.WATERMARK, Watermark(ts=self.last_ts, seq=self.last_seq))
        stats = dict(msg.stats)
        stats["counter_processed"] = self.processed
        for name, c in self.engine.totals().items():
            stats[f"line.{name}.in"] = c["in"]
            stats[f"line.{name}.out"] = c["out"]
        return EndOfStream(last_seq=msg.last_seq, stats=stats)

    def stats(self) -> dict[str, StatValue]:
        s: dict[str, StatValue] = {"processed": self.processed, "last_seq": self.last_seq,
                                   "tracker_ms": round(self.track_ms, 3),
                                   "active_tracks": sum(1 for t in self.tracker.tracks if t.state == "confirmed")}
        for zc in self.engine.zone_counters:
            s[f"zone.{zc.zone.name}.occupancy"] = zc.occupancy
        return s


def main() -> int:
    return main_for(Counter)



