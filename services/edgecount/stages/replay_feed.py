"""Replay's half of capture: every frame processed, none lost to a restart, each stamped as in the first run.

Before the first frame a marker goes round the whole pipeline, so every link is
connected and nothing published is dropped by a subscriber still joining. Then
at most the window's frames are in flight; the counter's per-frame ``tracks``
acknowledge them, and what a restarted stage lost is announced again. Frame N is
stamped ``t0 + N / fps`` with ``t0`` recorded for the run: a restarted capture
reads the file again and must stamp each frame as before, or the tracker sees
time jump ahead by the outage and loses every track it held.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import attrs

from edgecount_core.messages import FrameReady, Marker
from edgecount_core.replaywindow import ReplayWindow

SYNC_EVERY_S = 0.2  # how often the marker is sent until it comes back


def recorded_epoch(path: Path) -> float:
    """A replay's time origin: the one an earlier run of this capture recorded at ``path``, else now (recorded
    atomically: a capture killed while writing it must not leave half a number)."""
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        now = time.time()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(repr(now))
        tmp.replace(path)
        return now


class ReplayFeed:
    """The connect-first handshake, the frames in flight and the stream's time origin of one replay."""

    def __init__(self, window_size: int, epoch_file: Path, now: float) -> None:
        self.window: ReplayWindow[FrameReady] = ReplayWindow(size=max(1, window_size), last_progress=now)
        self.token = secrets.token_hex(8)
        self.synced = False
        self.next_sync = 0.0
        self.t0 = time.time()
        self.epoch_file = epoch_file
        self.resends = 0

    def marker_due(self, now: float) -> Marker | None:
        """The marker to send now while the pipeline is not known to be connected, else ``None``."""
        if self.synced or now < self.next_sync:
            return None
        self.next_sync = now + SYNC_EVERY_S
        return Marker(token=self.token, origin_ts=time.time())

    def marker_back(self, msg: Marker) -> float | None:
        """Our marker came round: the pipeline is connected and the stream's origin is fixed. Its round trip
        in ms; ``None`` for another's marker or one that comes round again."""
        if msg.token != self.token or self.synced:
            return None
        self.synced = True
        self.t0 = recorded_epoch(self.epoch_file)
        return (time.time() - msg.origin_ts) * 1000

    def stamp(self, frame_index: int, fps: float) -> float:
        """The stream time of the ``frame_index``-th frame of the file (from 0)."""
        return self.t0 + frame_index / fps

    def lost(self, now: float) -> list[FrameReady]:
        """Frames to announce again: in flight and unacknowledged too long (something downstream restarted)."""
        again = [attrs.evolve(m, resend=True) for m in self.window.to_resend(now)]
        self.resends += len(again)
        return again
