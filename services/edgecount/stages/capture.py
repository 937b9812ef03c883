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

import os
import secrets
import time
from pathlib import Path
from typing import Any

import attrs
import cv2

from edgecount.runtime import bus
from edgecount.runtime.assets import AssetStore, missing_source_file, resolve_source
from edgecount.runtime.backoff import Backoff
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.ring import RingError, RingWriter
from edgecount.stages import split_process
from edgecount.stages.base import Service
from edgecount_core.config import Config
from edgecount_core.messages import DEFAULT_CAMERA, EndOfStream, FrameReady, Marker, Message, StatValue, Tracks
from edgecount_core.pacing import Pacer
from edgecount_core.replaywindow import ReplayWindow


def open_source(source: str, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> cv2.VideoCapture:
    """Open a V4L2 device, file or network stream. A stream that stalls without closing makes ``read()`` fail
    after ``read_timeout_s`` instead of blocking capture (and its heartbeat) for ever."""
    if source.startswith("/dev/video") or source.isdigit():
        index = int(source.removeprefix("/dev/video")) if source.removeprefix("/dev/video").isdigit() else source
        return cv2.VideoCapture(index, cv2.CAP_V4L2)
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)])


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
        self.window: ReplayWindow[FrameReady] = ReplayWindow(size=max(1, c.ring_slots - 2),
                                                             last_progress=time.monotonic())
        self.cap: cv2.VideoCapture | None = None
        self.source = ""
        self.is_file = False
        self.fps = 10.0
        self.expected_frames = 0
        self.frames_read = 0
        self.published = 0
        self.reconnects = 0
        self.resends = 0
        self.ended = False
        self.truncated = False
        self.synced = self.realtime
        self.sync_token = secrets.token_hex(8)
        self.next_sync = 0.0
        self.next_eos = 0.0
        self.file_pace = Pacer()  # a file played at its own speed (realtime)
        self.stream_t0 = time.time()
        # Replay stamps frame N at t0 + N / fps. A restarted capture reads the file again and must stamp each
        # frame as before, or the tracker sees time jump ahead by the outage and loses every track it held.
        self.epoch_file = RuntimePaths(runtime_dir).epoch(self.process)
        self.backoff = Backoff(c.reconnect_initial_s, c.reconnect_max_s)
        self.reopen_at = 0.0
        self.down_since = 0.0
        self._warned_resize = False
        self._fps_ema = 0.0
        self._last_frame_wall = 0.0
        self.cap_pace = Pacer()  # capture.max_fps
        self.capped = 0

    def setup(self) -> None:
        store = AssetStore.for_config(self.cfg)
        self.source = resolve_source(self.cfg.capture.source, store)
        self.is_file = os.path.isfile(self.source)
        if missing_source_file(self.cfg.capture.source, self.source):
            raise FileNotFoundError(f"capture.source {self.source!r}: no such file")
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
            wait = self.backoff.next()
            if self.ring_error != str(exc):
                self.log.error("capture.ring_unavailable", reason=str(exc), retry_in_s=round(wait, 1))
            self.ring_error = str(exc)
            self.reopen_at = time.monotonic() + wait
            self.state = "degraded"
            return False
        if self._ring.squatted is not None:
            self.log.warning("capture.ring_name_taken", usual=str(self._ring.squatted), using=str(self._ring.path),
                             hint="another user made a segment under this appliance's ring name; remove it")
        if self.ring_error:
            self.log.info("capture.ring_made", path=str(self._ring.path))
        self.ring_error = ""
        self.backoff.reset()
        return True

    def _open(self) -> bool:
        if self._ring is None and not self._make_ring():
            return False
        cap = open_source(self.source, *self.cfg.capture_timeouts())
        if not cap.isOpened():
            cap.release()
            wait = self.backoff.next()
            self.log.warning("capture.open_failed", source=self.source, retry_in_s=round(wait, 1),
                             attempt=self.backoff.attempts)
            self.reopen_at = time.monotonic() + wait
            self._mark_down()
            return False
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1 <= fps <= 240 else 10.0
        self.expected_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.is_file else 0
        self.backoff.reset()
        self.file_pace.start(time.monotonic())
        if self.down_since:
            self.log.info("capture.source_back", source=self.source,
                          down_s=round(time.monotonic() - self.down_since, 1))
        self.down_since = 0.0
        self.state = "ok"
        self.log.info("capture.opened", source=self.source, fps=self.fps, frames=self.expected_frames)
        return True

    def _mark_down(self) -> None:
        """The source is unavailable: degraded (not hung) until it comes back; the back-off keeps trying."""
        if not self.down_since:
            self.down_since = time.monotonic()
        self.state = "degraded"

    # -- reading ------------------------------------------------------------------------
    def _read_one(self, ts: float | None = None) -> FrameReady | None:
        if self.cap is None:
            return None
        w = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if 0 < w <= self.ring.max_w and 0 < h <= self.ring.max_h:
            # Decode straight into the ring slot: no copy of the frame at all.
            seq, slot, view = self.ring.begin(w, h)
            ok, frame = self.cap.read(view)
            if ok and frame is not None and frame.shape != view.shape:
                ok = self._store(frame, view)
        else:
            ok, frame = self.cap.read()
            if ok and frame is not None:
                frame = self._fit(frame)
                h, w = frame.shape[:2]
                seq, slot, view = self.ring.begin(w, h)
                view[...] = frame if frame.ndim == 3 else frame[..., None]
        if not ok or frame is None:
            self._source_ended()
            return None
        self.frames_read += 1
        if ts is None:
            ts = time.time()
        self.ring.commit(seq, ts)
        msg = FrameReady(seq=seq, slot=slot, ts=ts, width=view.shape[1], height=view.shape[0],
                         ring=self.ring.generation, camera=self.camera)
        del view
        self.pub.send(bus.FRAME, msg)
        self.published += 1
        now = time.monotonic()
        if self._last_frame_wall:
            inst = 1.0 / max(now - self._last_frame_wall, 1e-6)
            self._fps_ema = inst if not self._fps_ema else 0.9 * self._fps_ema + 0.1 * inst
        self._last_frame_wall = now
        return msg

    def _fit(self, frame: Any) -> Any:
        h, w = frame.shape[:2]
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if w > self.ring.max_w or h > self.ring.max_h:
            s = min(self.ring.max_w / w, self.ring.max_h / h)
            if not self._warned_resize:
                self.log.warning("capture.downscaling", width=w, height=h, scale=round(s, 3))
                self._warned_resize = True
            frame = cv2.resize(frame, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
        return frame

    def _store(self, frame: Any, view: Any) -> bool:
        """The source delivered another size than it announced; fit it into the slot."""
        frame = self._fit(frame)
        if frame.shape != view.shape:
            frame = cv2.resize(frame, (view.shape[1], view.shape[0]), interpolation=cv2.INTER_AREA)
        view[...] = frame
        return True

    def _source_ended(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        if self.is_file:
            if self.expected_frames and self.frames_read < self.expected_frames:
                self.truncated = True
                self.log.warning("capture.truncated", read=self.frames_read, expected=self.expected_frames,
                                 hint="the file ends early or is damaged; counts cover what was read")
            if self.cfg.capture.loop and self.frames_read:
                self.log.info("capture.loop")
                self._open()
                return
            self.ended = True
            self.log.info("capture.source_ended", frames=self.frames_read)
        else:
            self.reconnects += 1
            self._mark_down()
            wait = self.backoff.next()
            self.log.warning("capture.lost", source=self.source, retry_in_s=round(wait, 1))
            self.reopen_at = time.monotonic() + wait

    # -- loop ---------------------------------------------------------------------------
    def tick(self) -> int:
        now = time.monotonic()
        if self.cap is None and not self.ended:
            if now >= self.reopen_at:
                self._open()
            return 50
        if self.realtime:
            return self._tick_realtime(now)
        return self._tick_replay(now)

    def _tick_realtime(self, now: float) -> int:
        if self.ended:
            if now >= self.next_eos:
                self._send_eos()
                self.next_eos = now + 1.0
            return 200
        if self.is_file and not self.file_pace.take(now, 1.0 / (self.fps * self.cfg.capture.file_speed)):
            return max(1, int(self.file_pace.wait_s(now) * 1000))
        max_fps = self.cfg.capture.max_fps
        if max_fps and not self.cap_pace.take(now, 1.0 / max_fps):
            self._skip_one()
            return 0
        self._read_one()
        return 0

    def _skip_one(self) -> None:
        """Above ``max_fps``: take the frame off the source without decoding it into the ring."""
        assert self.cap is not None
        if not self.cap.grab():
            self._source_ended()
            return
        self.frames_read += 1
        self.capped += 1

    def _tick_replay(self, now: float) -> int:
        if not self.synced:
            if now >= self.next_sync:
                self.pub.send(bus.MARKER, Marker(token=self.sync_token, origin_ts=time.time()))
                self.next_sync = now + 0.2
            return 50
        while not self.ended and self.window.has_room():
            msg = self._read_one(self.stream_t0 + self.frames_read / self.fps)
            if msg is None:
                break
            self.window.sent(msg.seq, msg, now)
        again = self.window.to_resend(now)  # something downstream restarted and lost frames
        for m in again:
            self.pub.send(bus.FRAME, attrs.evolve(m, resend=True))
            self.resends += 1
        if again:
            self.log.warning("capture.resend", frames=len(again), acked=self.window.acked)
        if self.ended and not len(self.window) and now >= self.next_eos:
            self._send_eos()
            self.next_eos = now + 1.0
        return 20

    def _send_eos(self) -> None:
        self.pub.send(bus.EOS, EndOfStream(last_seq=self.ring.seq, camera=self.camera, stats={
            "frames": self.frames_read, "truncated": self.truncated, "expected_frames": self.expected_frames,
            "resends": self.resends, "started_wall": self.stream_t0,
            "capture_cpu_s": round(time.process_time(), 3)}))

    def handle(self, topic: bytes, msg: Message) -> None:
        if isinstance(msg, Tracks) and msg.camera == self.camera:
            self.window.acknowledged(msg.seq, time.monotonic())

    def forward_marker(self, msg: Marker) -> None:
        if msg.token == self.sync_token and not self.synced:
            self.synced = True
            self.log.info("capture.pipeline_connected", round_trip_ms=round((time.time() - msg.origin_ts) * 1000, 1))
            self.stream_t0 = self._stream_epoch()

    def _stream_epoch(self) -> float:
        """The replay's time origin: the one an earlier run of this capture recorded, else now (recorded)."""
        try:
            return float(self.epoch_file.read_text())
        except (OSError, ValueError):
            now = time.time()
            tmp = self.epoch_file.with_suffix(".tmp")
            tmp.write_text(repr(now))
            tmp.replace(self.epoch_file)
            return now

    def forward_eos(self, msg: EndOfStream) -> None:
        pass  # our own end-of-stream coming back from the uplink; the replay controller acts on it

    def stats(self) -> dict[str, StatValue]:
        return {"frames_read": self.frames_read, "published": self.published, "fps_in": round(self._fps_ema, 2),
                "reconnects": self.reconnects, "resends": self.resends, "ended": self.ended,
                "camera": self.camera, "capped": self.capped,
                "source_fps": self.fps, "in_flight": len(self.window), "stale_acks": self.window.stale_acks,
                "source_down_s": round(time.monotonic() - self.down_since, 1) if self.down_since else 0.0,
                "retry_in_s": round(max(0.0, self.reopen_at - time.monotonic()), 1) if self.down_since else 0.0,
                "ring_error": self.ring_error[:200]}

    def teardown(self) -> None:
        if self.cap is not None:
            self.cap.release()
        if self._ring is not None:
            self._ring.close(unlink=True)

