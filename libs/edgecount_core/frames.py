"""Where a pipeline stage is in the frame stream, and which frames are new to it."""

from __future__ import annotations

import attrs

__all__ = ["FramePosition"]


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

    def advance(self, seq: int) -> None:
        self.seq = max(self.seq, seq)
