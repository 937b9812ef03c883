"""Whether a freshly installed root file system has proved itself, from what the running appliance reports.

After an A/B update the device boots the new slot on trial. It is kept
(marked good) only once the appliance has been READY and processing frames,
without a stall, for a stretch of time; if that has not happened by a
deadline after boot, the slot has failed and the device reboots (the boot
loader returns to the old slot after three failed boots). Times are seconds
since boot, passed in.

A slot that has proved itself before (the factory image, or an update kept
earlier) is still marked good at every boot, because the boot loader counts
every boot as a try until then; but for it READY is enough. Frames are not
asked for and the deadline never reboots: a camera that is down at boot is a
site problem, and rebooting for it would spend the slot's tries and switch
the device to the other slot.
"""

from __future__ import annotations

import attrs

__all__ = ["FRESH_S", "STALL_S", "SlotTrial", "Verdict"]

STALL_S = 20.0
"""Frames must keep coming: a longer pause in the counter's progress starts the healthy stretch again."""
FRESH_S = 5.0
"""A slot is kept only while frames are moving: the last progress must be this recent (heartbeats come every
second or so)."""


@attrs.frozen
class Verdict:
    decision: str
    """``wait``, ``good`` (mark the slot good) or ``failed`` (reboot: the slot did not prove itself)."""
    reason: str = ""


@attrs.define
class SlotTrial:
    """Feeds on (time, READY, frames processed) and says when the trial is decided."""

    healthy_for_s: float
    deadline_s: float
    proven: bool = False
    """The slot proved itself at an earlier boot: READY keeps it, and it is never given up."""
    _since: float | None = None
    _last_progress: float | None = None
    _processed: int = -1
    _seen_ready: bool = False

    def observe(self, now: float, ready: bool, processed: int) -> Verdict:
        progressed = processed > self._processed >= 0
        if processed != self._processed:
            self._processed = processed
        if ready:
            self._seen_ready = True
            if self.proven:
                return Verdict("good", "READY (a slot that proved itself before)")
        if ready and progressed:
            self._last_progress = now
            if self._since is None:
                self._since = now
        stalled = self._last_progress is None or now - self._last_progress > STALL_S
        if not ready or stalled:
            self._since = None
        moving = self._last_progress is not None and now - self._last_progress <= FRESH_S
        if self._since is not None and moving and now - self._since >= self.healthy_for_s:
            return Verdict("good", f"READY and counting for {now - self._since:.0f} s")
        if now >= self.deadline_s and not self.proven:
            why = ("never READY" if not self._seen_ready else
                   "READY, but no frame was processed" if self._last_progress is None else
                   f"frames stalled or the appliance was not READY for {self.healthy_for_s:.0f} s in a row")
            return Verdict("failed", f"{why} within {self.deadline_s:.0f} s of boot")
        return Verdict("wait")
