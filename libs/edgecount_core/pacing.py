"""Frames at a steady rate: a file played at its own speed, a camera capped at ``max_fps``.

One rule serves both: an event is due once its period has passed since the last one's due time, and
after a stall (a slow disk, a busy CPU) the schedule catches up by at most ``slack_s`` worth of events
instead of bursting every frame it missed. Pure: the caller passes the time in.
"""

from __future__ import annotations

import attrs

__all__ = ["LivePace", "Pacer", "RateMeter"]


@attrs.define
class Pacer:
    slack_s: float = 0.5
    next_at: float = 0.0

    def start(self, now: float) -> None:
        """Pace from ``now``: no burst of "late" events at the start."""
        self.next_at = now

    def wait_s(self, now: float) -> float:
        """How long until the next event is due (0 when it is)."""
        return max(0.0, self.next_at - now)

    def take(self, now: float, period_s: float) -> bool:
        """Whether an event is due at ``now``; if so it is taken and the next one scheduled."""
        if now < self.next_at:
            return False
        self.next_at = max(self.next_at + period_s, now - self.slack_s)
        return True


@attrs.define
class RateMeter:
    """Events per second, smoothed (an exponential average of the instantaneous rate, ``weight`` for the
    newest): what a stage reports as its input rate."""

    weight: float = 0.1
    rate: float = 0.0
    _last: float = 0.0

    def tick(self, now: float) -> None:
        """An event happened at ``now``."""
        if self._last:
            inst = 1.0 / max(now - self._last, 1e-6)
            self.rate = inst if not self.rate else (1.0 - self.weight) * self.rate + self.weight * inst
        self._last = now


@attrs.define
class LivePace:
    """Realtime frame timing: a file played at ``speed`` times its own rate, any source capped at ``max_fps``
    (0: no cap; a frame over the cap is taken off the source without being decoded)."""

    speed: float = 1.0
    max_fps: float = 0.0
    file: Pacer = attrs.Factory(Pacer)
    cap: Pacer = attrs.Factory(Pacer)

    def start(self, now: float) -> None:
        """The source (re)opened at ``now``."""
        self.file.start(now)

    def file_wait_s(self, now: float, fps: float) -> float:
        """0 when a file's next frame is due (it is taken), else how long until it is."""
        if self.file.take(now, 1.0 / (fps * self.speed)):
            return 0.0
        return max(self.file.wait_s(now), 1e-3)

    def over_cap(self, now: float) -> bool:
        """Whether a frame at ``now`` would exceed ``max_fps`` (else it is taken)."""
        return bool(self.max_fps) and not self.cap.take(now, 1.0 / self.max_fps)
