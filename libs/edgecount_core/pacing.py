"""Frames at a steady rate: a file played at its own speed, a camera capped at ``max_fps``.

One rule serves both: an event is due once its period has passed since the last one's due time, and
after a stall (a slow disk, a busy CPU) the schedule catches up by at most ``slack_s`` worth of events
instead of bursting every frame it missed. Pure: the caller passes the time in.
"""

from __future__ import annotations

import attrs

__all__ = ["Pacer"]


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
