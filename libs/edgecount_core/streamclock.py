"""Stream time: a camera's frame timestamps made safe to cut into count buckets.

Frame times come from the device's wall clock, and wall clocks step: NTP corrects a fast RTC, an RTC
kept in local time is hours off at every boot, someone runs ``date -s``. A bucket already emitted can
take no more counts (its record id is final), so taking a backward step as it comes would drop every
crossing until the clock passed the buckets already closed. The stream clock never runs back: after a
backward step it holds, then runs at half speed until it meets the wall clock again. Every crossing
lands in a bucket that is still open, bucket times stay in order, and the labels run ahead of the wall
clock by at most the step, shrinking. A forward step is taken as it comes: what a long silence means is
the aggregator's to decide. Pure: the caller passes every timestamp in, in stream order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["CATCH_UP_RATE", "StreamClock"]

CATCH_UP_RATE = 0.5
"""While ahead, stream time gains on the wall clock this fraction of the time that passes (half speed)."""


@attrs.define
class StreamClock:
    """Maps wall-clock timestamps of one stream to stream time, which never runs back.

    ``tolerance_s`` is how far back a timestamp may be and still be taken as late, not as a clock step
    (the aggregator's grace: such an event still finds its bucket open).
    """

    tolerance_s: float = 2.0
    newest: float | None = None
    """The newest wall-clock timestamp seen since the last step."""
    ahead_s: float = 0.0
    """How far stream time runs ahead of the wall clock (the part of backward steps not yet caught up)."""
    steps_back: int = 0
    """Backward steps seen (each longer than the tolerance)."""

    def map(self, ts: float) -> float:
        """Stream time of wall-clock ``ts``; call once per timestamp, in stream order."""
        if not math.isfinite(ts):
            raise ValueError(f"timestamp {ts!r} is not a finite number")
        if self.newest is None:
            self.newest = ts
        elif ts > self.newest:
            self.ahead_s = max(0.0, self.ahead_s - (ts - self.newest) * CATCH_UP_RATE)
            self.newest = ts
        elif ts < self.newest - self.tolerance_s:
            self.ahead_s += self.newest - ts  # the stream's time holds where it was
            self.newest = ts
            self.steps_back += 1
        return ts + self.ahead_s

    def to_state(self) -> dict[str, Any]:
        return {"newest": self.newest, "ahead_s": self.ahead_s, "steps_back": self.steps_back}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], tolerance_s: float) -> StreamClock:
        """A clock saved by :meth:`to_state`; ``ValueError`` if it is not one."""
        try:
            newest = state["newest"]
            clock = cls(tolerance_s=tolerance_s, newest=None if newest is None else float(newest),
                        ahead_s=float(state["ahead_s"]), steps_back=int(state["steps_back"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a saved stream clock: {exc!r}") from None
        if not math.isfinite(clock.ahead_s) or clock.ahead_s < 0 or (
                clock.newest is not None and not math.isfinite(clock.newest)):
            raise ValueError("not a saved stream clock: a time is negative or not finite")
        return clock
