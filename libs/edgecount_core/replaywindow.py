"""Replay's flow control: at most ``size`` frames announced and not yet acknowledged, announced again
when nothing moves.

In replay every frame must be counted, so capture holds back until the counter acknowledges (it does so
only after its commit). If a stage downstream restarts, the frames it had are lost to it; they are still
in the ring, so after ``stall_s`` without progress the window announces them again, oldest first (a stage
that already had them recognises them by sequence number). Acknowledgements are cumulative, so one for a
frame this capture never announced (the counter finishing a frame of the capture that was killed, which
reaches the new one) is ignored: taken, it would cover frames nobody has counted, and every later
acknowledgement, being lower, would be ignored in turn, holding the replay for ever. Pure: the caller
passes the time in.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs

__all__ = ["ReplayWindow"]

T = TypeVar("T")


@attrs.define
class ReplayWindow(Generic[T]):
    size: int
    stall_s: float = 2.0
    acked: int = 0
    last_progress: float = 0.0
    last_sent: int = 0
    stale_acks: int = 0
    """Acknowledgements of frames this window never announced (a killed predecessor's), ignored."""
    _in_flight: dict[int, T] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self._in_flight)

    def has_room(self) -> bool:
        return len(self._in_flight) < self.size

    def sent(self, seq: int, announcement: T, now: float) -> None:
        self._in_flight[seq] = announcement
        self.last_sent = max(self.last_sent, seq)
        self.last_progress = now

    def acknowledged(self, seq: int, now: float) -> bool:
        """Everything up to ``seq`` is done; False for an acknowledgement already had or not ours."""
        if seq > self.last_sent:
            self.stale_acks += 1
            return False
        if seq <= self.acked:
            return False
        self.acked = seq
        self.last_progress = now
        for s in [s for s in self._in_flight if s <= seq]:
            del self._in_flight[s]
        return True

    def to_resend(self, now: float) -> list[T]:
        """What to announce again, oldest first, when nothing moved for ``stall_s`` (else nothing)."""
        if not self._in_flight or now - self.last_progress <= self.stall_s:
            return []
        self.last_progress = now
        return [self._in_flight[s] for s in sorted(self._in_flight)]
