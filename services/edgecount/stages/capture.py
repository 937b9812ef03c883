"""Capture service: reads a video source and writes frames into the shared-memory ring.

Two modes:

* **realtime** (cameras, ``run``): frames are taken as they come (file sources
  are paced at their frame rate times ``file_speed``), written to the ring and announced. Nothing
  ever waits for a reader; a slow reader loses frames (latest frame wins).
* **replay** (``realtime = false``): every frame must be processed. Capture
  first sends a marker through the whole pipeline and waits for it to come
  back (every link is connected), then keeps at most ``ring_slots - 2``
  frames in flight, using the counter's per-frame ``tracks`` messages as
  credit. Frames still in flight are re-announced if the pipeline stalls
  (a service restarted), and the end of the stream is announced until the
  process is stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgecount.assets.obtain import AssetStore, missing_source_file, resolve_source
from edgecount.runtime import bus
from edgecount.runtime.backoff import Backoff, Outage
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.ring import RingError, RingWriter
from edgecount.stages import split_process
from edgecount.stages.base import Service
from edgecount.stages.replay_feed import ReplayFeed
from edgecount.stages.video_source import VideoSource
from edgecount_core.config import Config
from edgecount_core.messages import DEFAULT_CAMERA, EndOfStream, FrameReady, Marker, Message, StatValue, Tracks
from edgecount_core.pacing import LivePace, RateMeter


class Capture(Service):
    """One camera's capture (process ``capture``, or ``capture@NAME`` with ``[[cameras]]``)."""

    name = "capture"

    def __init__(self, config: Config, runtime_dir: Path, process: str = "") -> None:
        self.camera = split_process(process or self.name)[1] or DEFAULT_CAMERA
        # This camera's one-camera view: its source, capture settings, lines.
        super().__init__(config.for_camera(self.camera), runtime_dir, process)
        c = self.cfg.capture
        self._ring: RingWriter | None = None  # made in setup(): one that does not fit is waited for, degraded
        self.ring_error = ""
        self.realtime = c.realtime
        # Replay: connected first, at most ring_slots - 2 frames in flight (the rest are being read), stamped
        # as in the first run.
        self.feed = ReplayFeed(c.ring_slots - 2, RuntimePaths(runtime_dir).epoch(self.process), time.monotonic())
        self.video = VideoSource("", self.cfg.capture_timeouts(), self.log)  # resolved in setup()
        self.published = 0
        self.reconnects = 0
        self.ended = False
        self.truncated = False
        self.next_eos = 0.0
        self.pace = LivePace(speed=c.file_speed, max_fps=c.max_fps or 0.0)  # realtime
        self.outage = Outage(Backoff(c.reconnect_initial_s, c.reconnect_max_s))  # the source, or the ring
        self.fps_in = RateMeter()

    def setup(self) -> None:
        source = resolve_source(self.cfg.capture.source, AssetStore.for_config(self.cfg))
        if missing_source_file(self.cfg.capture.source, source):
            raise FileNotFoundError(f"capture.source {source!r}: no such file")
        self.video = VideoSource(source, self.cfg.capture_timeouts(), self.log)
        self._open()

    @property
    def ring(self) -> RingWriter:
        assert self._ring is not None, "the ring is made before the source is opened"
        return self._ring

    def _make_ring(self) -> bool:
        """The frame ring, or degraded until it can be made (shared memory full, a name squatted and no
        other to take): this camera waits, retrying, and no other stops. Before, capture restarted until
        the watchdog gave up and the whole device stopped counting."""
        c = self.cfg.capture
        try:
            self._ring = RingWriter(self.runtime_dir, c.ring_slots, c.max_width, c.max_height, self.camera)
        except (RingError, OSError) as exc:
            wait = self.outage.failed(time.monotonic(), gone=False)
            if self.ring_error != str(exc):
                self.log.error("capture.ring_unavailable", reason=str(exc), retry_in_s=round(wait, 1))
            self.ring_error = str(exc)
            self.state = "degraded"
            return False
        if self._ring.squatted is not None:
            self.log.warning("capture.ring_name_taken", usual=str(self._ring.squatted), using=str(self._ring.path),
                             hint="another user made a segment under this appliance's ring name; remove it")
        if self.ring_error:
            self.log.info("capture.ring_made", path=str(self._ring.path))
        self.ring_error = ""
        self.outage.backoff.reset()
        return True

    def _open(self) -> bool:
        if self._ring is None and not self._make_ring():
            return False
        video, now = self.video, time.monotonic()
        if not video.open():
            wait = self.outage.failed(now)
            self.log.warning("capture.open_failed", source=video.source, retry_in_s=round(wait, 1),
                             attempt=self.outage.backoff.attempts)
            self.state = "degraded"  # not hung: the back-off keeps trying
            return False
        self.pace.start(now)
        down_s = self.outage.over(now)
        if down_s:
            self.log.info("capture.source_back", source=video.source, down_s=round(down_s, 1))
        self.state = "ok"
        self.log.info("capture.opened", source=video.source, fps=video.fps, frames=video.expected_frames)
        return True

    # -- reading ------------------------------------------------------------------------
    def _read_one(self, ts: float | None = None) -> FrameReady | None:
        frame = self.video.read_into(self.ring)
        if frame is None:
            self._source_ended()
            return None
        ts = time.time() if ts is None else ts
        self.ring.commit(frame.seq, ts)
        msg = FrameReady(seq=frame.seq, slot=frame.slot, ts=ts, width=frame.width, height=frame.height,
                         ring=self.ring.generation, camera=self.camera)
        self.pub.send(bus.FRAME, msg)
        self.published += 1
        self.fps_in.tick(time.monotonic())
        return msg

    def _source_ended(self) -> None:
        video = self.video
        video.close()
        if video.is_file:
            if video.ended_early:
                self.truncated = True
                self.log.warning("capture.truncated", read=video.frames_read, expected=video.expected_frames,
                                 hint="the file ends early or is damaged; counts cover what was read")
            if self.cfg.capture.loop and self.video.frames_read:
                self.log.info("capture.loop")
                self._open()
                return
            self.ended = True
            self.log.info("capture.source_ended", frames=self.video.frames_read)
        else:
            self.reconnects += 1
            self.state = "degraded"
            wait = self.outage.failed(time.monotonic())
            self.log.warning("capture.lost", source=video.source, retry_in_s=round(wait, 1))

    # -- loop ---------------------------------------------------------------------------
    def tick(self) -> int:
        now = time.monotonic()
        if not self.video.is_open and not self.ended:
            if self.outage.due(now):
                self._open()
            return 50
        if self.realtime:
            return self._tick_realtime(now)
        return self._tick_replay(now)

    def _tick_realtime(self, now: float) -> int:
        if self.ended:
            self._announce_end(now)
            return 200
        wait_s = self.pace.file_wait_s(now, self.video.fps) if self.video.is_file else 0.0
        if wait_s:
            return max(1, int(wait_s * 1000))
        if self.pace.over_cap(now):
            if not self.video.skip():  # taken off the source without being decoded into the ring
                self._source_ended()
            return 0
        self._read_one()
        return 0

    def _tick_replay(self, now: float) -> int:
        feed = self.feed
        if not feed.synced:
            marker = feed.marker_due(now)
            if marker is not None:
                self.pub.send(bus.MARKER, marker)
            return 50
        while not self.ended and feed.window.has_room():
            msg = self._read_one(feed.stamp(self.video.frames_read, self.video.fps))
            if msg is None:
                break
            feed.window.sent(msg.seq, msg, now)
        again = feed.lost(now)
        for m in again:
            self.pub.send(bus.FRAME, m)
        if again:
            self.log.warning("capture.resend", frames=len(again), acked=feed.window.acked)
        if self.ended and not len(feed.window):
            self._announce_end(now)
        return 20

    def _announce_end(self, now: float) -> None:
        """The stream ended: said every second until the process is stopped (a late subscriber hears it)."""
        if now < self.next_eos:
            return
        self.next_eos = now + 1.0
        self.pub.send(bus.EOS, EndOfStream(last_seq=self.ring.seq, camera=self.camera, stats={
            "frames": self.video.frames_read, "truncated": self.truncated,
            "expected_frames": self.video.expected_frames, "resends": self.feed.resends, "started_wall": self.feed.t0,
            "capture_cpu_s": round(time.process_time(), 3)}))

    def handle(self, topic: bytes, msg: Message) -> None:
        if isinstance(msg, Tracks) and msg.camera == self.camera:
            self.feed.window.acknowledged(msg.seq, time.monotonic())

    def forward_marker(self, msg: Marker) -> None:
        if self.realtime:
            return  # a live stream starts at once; the handshake is replay's
        round_trip_ms = self.feed.marker_back(msg)
        if round_trip_ms is not None:
            self.log.info("capture.pipeline_connected", round_trip_ms=round(round_trip_ms, 1))

    def forward_eos(self, msg: EndOfStream) -> None:
        pass  # our own end-of-stream coming back from the uplink; the replay controller acts on it

    def stats(self) -> dict[str, StatValue]:
        window, now = self.feed.window, time.monotonic()
        return {"frames_read": self.video.frames_read, "published": self.published,
                "fps_in": round(self.fps_in.rate, 2), "reconnects": self.reconnects, "resends": self.feed.resends,
                "ended": self.ended, "camera": self.camera, "capped": self.video.skipped,
                "source_fps": self.video.fps, "in_flight": len(window), "stale_acks": window.stale_acks,
                "source_down_s": round(self.outage.gone_s(now), 1), "retry_in_s": round(self.outage.retry_in_s(now), 1),
                "ring_error": self.ring_error[:200]}

    def teardown(self) -> None:
        self.video.close()
        if self._ring is not None:
            self._ring.close(unlink=True)

