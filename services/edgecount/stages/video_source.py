"""One camera's video source: opened with timeouts, decoded straight into a ring slot.

Capture decides when to read, pace, reconnect and announce; this owns how a
V4L2 device, a file or a network stream is opened and how its frames land in
shared memory: decoded into the slot itself when they fit (no copy), fitted to
the ring's largest frame when they do not, whatever size the source announced.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import cv2

from edgecount.runtime.ring import RingWriter


def open_source(source: str, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> cv2.VideoCapture:
    """Open a V4L2 device, file or network stream. A stream that stalls without closing makes ``read()`` fail
    after ``read_timeout_s`` instead of blocking capture (and its heartbeat) for ever."""
    if source.startswith("/dev/video") or source.isdigit():
        index = int(source.removeprefix("/dev/video")) if source.removeprefix("/dev/video").isdigit() else source
        return cv2.VideoCapture(index, cv2.CAP_V4L2)
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)])


@attrs.frozen
class RingFrame:
    """A frame decoded into a ring slot and not yet committed (the caller stamps and commits it)."""

    seq: int
    slot: int
    width: int
    height: int


class VideoSource:
    """Frames of one source, counted; ``read_into`` returns ``None`` once the source gives no more (a file's
    end, a lost stream), and the source is closed then: :meth:`open` again to go on."""

    DEFAULT_FPS = 10.0  # what a source that reports no (or a silly) rate is taken to run at

    def __init__(self, source: str, timeouts: tuple[float, float], log: Any) -> None:
        self.source = source
        self.timeouts = timeouts
        self.log = log
        self.is_file = os.path.isfile(source)
        self.cap: cv2.VideoCapture | None = None
        self.fps = self.DEFAULT_FPS
        self.expected_frames = 0  # a file's announced length (0: unknown, or a live source)
        self.frames_read = 0  # over every opening (a looped file goes on counting)
        self.skipped = 0  # of those, taken off the source without being decoded (over capture.max_fps)
        self._warned_resize = False

    @property
    def is_open(self) -> bool:
        return self.cap is not None

    @property
    def ended_early(self) -> bool:
        """A file that gave fewer frames than it announced (damaged or cut short)."""
        return self.is_file and bool(self.expected_frames) and self.frames_read < self.expected_frames

    def open(self) -> bool:
        """Open the source; ``False`` when it cannot be opened now (try again later)."""
        cap = open_source(self.source, *self.timeouts)
        if not cap.isOpened():
            cap.release()
            return False
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1 <= fps <= 240 else self.DEFAULT_FPS
        self.expected_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.is_file else 0
        return True

    def read_into(self, ring: RingWriter) -> RingFrame | None:
        """Decode the next frame into a slot of ``ring``; ``None`` (and closed) when there is none."""
        if self.cap is None:
            return None
        w = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if 0 < w <= ring.max_w and 0 < h <= ring.max_h:
            seq, slot, view = ring.begin(w, h)
            ok, frame = self.cap.read(view)  # decoded in place: no copy of the frame at all
            if ok and frame is not None and frame.shape != view.shape:  # not the size it announced
                frame = self._fit(frame, ring)
                if frame.shape != view.shape:
                    frame = cv2.resize(frame, (view.shape[1], view.shape[0]), interpolation=cv2.INTER_AREA)
                view[...] = frame
        else:
            ok, frame = self.cap.read()
            if ok and frame is not None:
                frame = self._fit(frame, ring)
                h, w = frame.shape[:2]
                seq, slot, view = ring.begin(w, h)
                view[...] = frame if frame.ndim == 3 else frame[..., None]
        if not ok or frame is None:
            self.close()
            return None
        self.frames_read += 1
        got = RingFrame(seq, slot, int(view.shape[1]), int(view.shape[0]))
        del view  # the ring's memory must not stay referenced here
        return got

    def skip(self) -> bool:
        """Take a frame off the source without decoding it; ``False`` (and closed) when there is none."""
        if self.cap is None or not self.cap.grab():
            self.close()
            return False
        self.frames_read += 1
        self.skipped += 1
        return True

    def _fit(self, frame: Any, ring: RingWriter) -> Any:
        """Colour and at most the ring's largest frame (downscaled keeping its shape, said once)."""
        h, w = frame.shape[:2]
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if w > ring.max_w or h > ring.max_h:
            s = min(ring.max_w / w, ring.max_h / h)
            if not self._warned_resize:
                self.log.warning("capture.downscaling", width=w, height=h, scale=round(s, 3))
                self._warned_resize = True
            frame = cv2.resize(frame, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
        return frame

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
