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
