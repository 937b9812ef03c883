"""Exponential back-off: how long to wait before the next attempt, doubling up to a ceiling.

One helper for every retry loop of the appliance (a camera reconnecting, the
Edge TPU probed again, a webhook retried, a service restarted by the watchdog),
so they all back off the same way and reset the same way.
"""

from __future__ import annotations

import attrs


@attrs.define
class Backoff:
    initial: float
    maximum: float
    factor: float = 2.0
    attempts: int = 0
    _delay: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self._delay = self.initial

    @property
    def delay(self) -> float:
        """The wait the next failure will get."""
        return self._delay

    def next(self) -> float:
        """The wait after this failure; the one after the next failure grows by ``factor``."""
        wait = self._delay
        self._delay = min(self._delay * self.factor, self.maximum)
        self.attempts += 1
        return wait

    def reset(self) -> None:
        """After a success: the next failure waits ``initial`` again."""
        self._delay = self.initial
        self.attempts = 0


@attrs.define
class Outage:
    """Something a service needs is gone (a camera, shared memory): since when, and when to try again."""

    backoff: Backoff
    since: float = 0.0
    """Monotonic time it went (0 while it is there)."""
    retry_at: float = 0.0

    def failed(self, now: float, gone: bool = True) -> float:
        """An attempt failed or it was lost: the wait before the next attempt. ``gone`` starts the outage's
        clock (a failure to set up, before it was ever there, does not)."""
        wait = self.backoff.next()
        self.retry_at = now + wait
        if gone and not self.since:
            self.since = now
        return wait

    def over(self, now: float) -> float:
        """It is there again: how long it was gone (0 when it was not)."""
        was = self.gone_s(now)
        self.since = 0.0
        self.backoff.reset()
        return was

    def due(self, now: float) -> bool:
        return now >= self.retry_at

    def gone_s(self, now: float) -> float:
        return now - self.since if self.since else 0.0

    def retry_in_s(self, now: float) -> float:
        return max(0.0, self.retry_at - now) if self.since else 0.0
