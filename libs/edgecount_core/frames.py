"""Where a pipeline stage is in the frame stream, which frames are new to it, and whose frame is next."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

import attrs

__all__ = ["FramePosition", "StillPairing", "TakeTurns"]

T = TypeVar("T")


class TakeTurns(Generic[T]):
    """Frames waiting per camera, handed out one camera at a time, in turn.

    A live camera keeps only its newest frame (the older one is counted as skipped: a detector that falls
    behind must not answer with stale pictures); a replayed camera keeps every frame, in order. :meth:`take`
    serves the next camera in the rotation that has a frame, so a camera that announces ten times faster
    than another still gets one frame per turn and none can starve the rest.
    """

    def __init__(self, cameras: Iterable[tuple[str, bool]]) -> None:
        self.live = dict(cameras)
        self.waiting: dict[str, deque[T]] = {cam: deque() for cam in self.live}
        self.skipped = dict.fromkeys(self.live, 0)
        self._order = deque(self.live)

    def offer(self, camera: str, item: T) -> bool:
        """Queue ``item`` for ``camera``; False for a camera this rotation does not have."""
        queue = self.waiting.get(camera)
        if queue is None:
            return False
        if self.live[camera] and queue:
            self.skipped[camera] += len(queue)
            queue.clear()
        queue.append(item)
        return True

    def take(self) -> tuple[str, T] | None:
        """The next camera in turn with a frame waiting, and that frame (its oldest, in replay)."""
        for _ in range(len(self._order)):
            cam = self._order[0]
            self._order.rotate(-1)
            if self.waiting[cam]:
                return cam, self.waiting[cam].popleft()
        return None


@attrs.define
class FramePosition:
    """The ring generation and seq of the last frame a stage took.

    On a live source a new ring generation is a restarted capture numbering its
    frames from 1 again: they are new, whatever their seq. In replay, seq is the
    position in the file (a restarted capture reads the same frames again), so
    the ring is ignored.
    """

    live: bool
    ring: int = 0
    seq: int = 0

    def follow(self, ring: int) -> int | None:
        """Take ``ring`` as the capture's; when it replaced an earlier one, that one's last seq."""
        if not self.live or ring == self.ring:
            return None
        previous = self.seq if self.ring else None
        self.ring, self.seq = ring, 0
        return previous

    def seen(self, seq: int) -> bool:
        """Frame ``seq`` of the current ring was taken before (or is older than one that was)."""
        return seq <= self.seq

    def skips_ahead(self, seq: int) -> bool:
        """In replay, frame ``seq`` is not the next one: an earlier frame was lost on the way (a restarted
        stage missed it). Taking it would let its acknowledgement, which is cumulative, cover the lost one;
        it must wait for capture to announce the missing frames again. Live sources skip frames by design."""
        return not self.live and seq > self.seq + 1

    def advance(self, seq: int) -> None:
        self.seq = max(self.seq, seq)


@attrs.define
class StillPairing:
    """Pairs a still copied from the ring with the detections of that very frame, or gives it up.

    A frame is identified by (ring generation, seq), as everywhere: after a capture restart the same seq
    names another image, whose boxes would leave the people of the still visible. Detections for a frame
    that inference skipped never come, so a still waits at most ``max_wait_s`` (time is passed in).
    """

    max_wait_s: float
    ring: int = 0
    seq: int = 0
    taken_at: float | None = None

    def waiting(self, now: float) -> bool:
        """A still is waiting for its detections (and has not waited too long)."""
        return self.taken_at is not None and now - self.taken_at <= self.max_wait_s

    def expired(self, now: float) -> bool:
        return self.taken_at is not None and now - self.taken_at > self.max_wait_s

    def take(self, ring: int, seq: int, now: float) -> None:
        self.ring, self.seq, self.taken_at = ring, seq, now

    def matches(self, ring: int, seq: int) -> bool:
        return self.taken_at is not None and (ring, seq) == (self.ring, self.seq)

    def clear(self) -> None:
        self.taken_at = None
