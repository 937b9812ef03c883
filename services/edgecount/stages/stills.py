"""Redacted stills for policy ``snapshots``: which frame to take, paired with its own detections, blanked.

The privacy filter owns what leaves the device and writes each still to its durable log; this component
only decides when a still is due, copies that frame out of the ring, waits for the detections of exactly
that frame (a restarted capture reuses sequence numbers, so the ring's generation is part of the key),
and hands back the redacted JPEG. A frame whose detections never come (inference skipped it) is given up
after a bound, and a ring that is gone (capture restarted or stopped) costs one still, not the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from edgecount_core.config import Config
from edgecount_core.frames import StillPairing
from edgecount_core.messages import DEFAULT_CAMERA, Detections, FrameReady, Message

SNAPSHOT_WAIT_S = 10.0  # how long a still waits for its frame's detections before it is given up


@attrs.frozen
class Still:
    """A redacted JPEG of ``camera`` at ``ts`` (the frame's time)."""

    jpeg: bytes
    ts: float
    camera: str


class StillTaker:
    """One redacted still every ``privacy.snapshot_interval_s``, from any of the cameras."""

    def __init__(self, config: Config, runtime_dir: Path, cameras: Iterable[str], log: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from edgecount.assets.obtain import AssetStore
        from edgecount.detection.redaction import FaceDetector
        from edgecount.runtime.ring import RingReader

        store = AssetStore.for_config(config)
        self.face_detectors = [FaceDetector(store.fetch_model(n))
                               for n in ("face_detection_short_range", "face_detection_full_range")]
        self.readers = {cam: RingReader(runtime_dir, cam) for cam in cameras}
        self.interval_s = config.privacy.snapshot_interval_s
        self.log = log
        self.clock = clock  # replaced by tests that need time to pass
        self.pairing = StillPairing(max_wait_s=SNAPSHOT_WAIT_S)
        self.pending_frame: Any = None
        self.next_at = 0.0
        self.taken = 0

    def offer(self, msg: Message) -> Still | None:
        """See a frame announcement or a frame's detections; the redacted still when one is complete."""
        now = self.clock()
        if self.pairing.expired(now):
            # Inference skipped that frame (live mode drops frames): its detections will never come.
            self.log.warning("privacy.snapshot_abandoned", reason="no detections for the frame within "
                             f"{self.pairing.max_wait_s:.0f} s")
            self.pairing.clear()
            self.pending_frame = None
        if isinstance(msg, FrameReady):
            self._take(msg, now)
            return None
        if isinstance(msg, Detections) and self.pending_frame is not None and self.pairing.matches(msg.ring,
                                                                                                      msg.seq):
            return self._redact(msg, now)
        return None

    def _take(self, msg: FrameReady, now: float) -> None:
        from edgecount.runtime.ring import RingError

        reader = self.readers.get(getattr(msg, "camera", DEFAULT_CAMERA))
        if reader is None or self.pairing.waiting(now) or now < self.next_at:
            return
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

    def _redact(self, msg: Detections, now: float) -> Still | None:
        from edgecount.detection.redaction import redact_snapshot

        frame, self.pending_frame = self.pending_frame, None
        self.pairing.clear()
        try:
            jpeg = redact_snapshot(frame, msg.box_array(), self.face_detectors)
        except RuntimeError as exc:
            self.log.error("privacy.snapshot_refused", reason=str(exc))
            return None
        self.taken += 1
        self.next_at = now + self.interval_s
        return Still(jpeg=jpeg, ts=msg.ts, camera=msg.camera)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
