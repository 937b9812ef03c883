"""A new slot is kept only after a healthy stretch, and given up at the deadline (issue 30, item 4)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount_core.slot_trial import STALL_S, SlotTrial


def _run(trial: SlotTrial, ticks: list[tuple[float, bool, int]]) -> tuple[str, float, str]:
    for now, ready, processed in ticks:
        v = trial.observe(now, ready, processed)
        if v.decision != "wait":
            return v.decision, now, v.reason
    return "wait", ticks[-1][0], ""


@settings(max_examples=60, deadline=None)
@given(start=st.floats(5, 300), healthy=st.floats(10, 120), step=st.floats(0.5, 5))
def test_a_healthy_slot_is_kept_after_its_stretch_and_not_before(start: float, healthy: float, step: float) -> None:
    ticks, t, frames = [], 0.0, 0
    while t < start + healthy + 3 * step:
        ready = t >= start
        frames += 3 if ready else 0
        ticks.append((t, ready, frames))
        t += step
    decision, at, _ = _run(SlotTrial(healthy, deadline_s=10_000), ticks)
    assert decision == "good"
    assert start + healthy - 1e-9 <= at <= start + healthy + 2 * step


def test_ready_without_frames_is_not_healthy_and_fails_at_the_deadline() -> None:
    ticks = [(float(t), True, 0) for t in range(0, 200, 2)]
    decision, at, reason = _run(SlotTrial(30, deadline_s=100), ticks)
    assert (decision, at) == ("failed", 100.0) and "no frame was processed" in reason


def test_never_ready_names_that() -> None:
    decision, _, reason = _run(SlotTrial(30, deadline_s=50), [(float(t), False, t) for t in range(0, 60, 2)])
    assert decision == "failed" and reason.startswith("never READY")


def test_a_stall_starts_the_stretch_again() -> None:
    ticks: list[tuple[float, bool, int]] = []
    frames = 0
    for t in range(0, 200, 2):
        stalled = 20 <= t < 20 + STALL_S + 10  # frames stop for longer than a stall may last
        frames += 0 if stalled else 2
        ticks.append((float(t), True, frames))
    decision, at, _ = _run(SlotTrial(30, deadline_s=1000), ticks)
    # 0..20 was healthy, but not for 30 s before the stall; then 30 s more after frames came back.
    assert decision == "good" and at >= 20 + STALL_S + 10 + 30 - 2


def test_not_ready_in_the_middle_starts_the_stretch_again() -> None:
    ticks = [(float(t), not (20 <= t < 24), t) for t in range(0, 100, 2)]
    decision, at, _ = _run(SlotTrial(30, deadline_s=1000), ticks)
    assert decision == "good" and at >= 24 + 30


def test_a_proven_slot_is_kept_at_ready_without_frames_and_never_given_up() -> None:
    # The camera is down at boot: READY, no frame. A proven slot is kept at once; one on trial is not.
    ticks = [(float(t), t >= 40, 0) for t in range(0, 400, 2)]
    assert _run(SlotTrial(30, deadline_s=100, proven=True), ticks)[:2] == ("good", 40.0)
    assert _run(SlotTrial(30, deadline_s=100), ticks)[:2] == ("failed", 100.0)
    # Never READY: a proven slot waits past the deadline (a crash loop reboots through systemd, not here).
    never = [(float(t), False, 0) for t in range(0, 400, 2)]
    assert _run(SlotTrial(30, deadline_s=100, proven=True), never)[0] == "wait"
