"""Capture's pure flow pieces: the pacer (file speed, max_fps) and replay's window of unacknowledged frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgecount_core.pacing import Pacer
from edgecount_core.replaywindow import ReplayWindow


@given(st.floats(0.01, 1.0), st.lists(st.floats(0.0, 3.0), min_size=1, max_size=200))
def test_the_pacer_never_runs_faster_than_its_period_plus_the_slack(period: float, gaps: list[float]) -> None:
    pacer = Pacer(slack_s=0.5)
    pacer.start(0.0)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        while pacer.take(now, period):
            taken += 1
    assert taken <= now / period + 1 + 0.5 / period + 1e-9


def test_the_pacer_waits_then_catches_up_by_no_more_than_the_slack() -> None:
    pacer = Pacer(slack_s=0.5)
    pacer.start(10.0)
    assert pacer.take(10.0, 0.1) and not pacer.take(10.05, 0.1)
    assert abs(pacer.wait_s(10.05) - 0.05) < 1e-9
    burst = 0
    while pacer.take(20.0, 0.1):  # stalled for 10 s: 5 frames' worth of catching up, not 100
        burst += 1
    assert burst == 6


def test_the_window_holds_back_acknowledges_in_order_and_resends_after_a_stall() -> None:
    w: ReplayWindow[str] = ReplayWindow(size=3, stall_s=2.0, last_progress=0.0)
    for seq in (1, 2, 3):
        assert w.has_room()
        w.sent(seq, f"frame {seq}", now=0.1)
    assert not w.has_room() and w.to_resend(now=1.0) == []
    assert w.acknowledged(2, now=1.5) and len(w) == 1 and not w.acknowledged(1, now=1.6)
    assert w.to_resend(now=3.0) == []  # 1.5 s since the acknowledgement
    assert w.to_resend(now=3.6) == ["frame 3"] and w.to_resend(now=3.7) == []
    w.sent(4, "frame 4", now=4.0)
    assert w.to_resend(now=6.1) == ["frame 3", "frame 4"]  # oldest first


def test_an_acknowledgement_of_a_frame_never_announced_is_not_taken() -> None:
    """Found by the kill test under load: the counter finished frame 202 of the capture that was killed
    and the restarted one, with frames 1..6 out, took it as covering them; its own acknowledgements (7, 8,
    ...) were then all below 202 and ignored, and the replay waited for ever."""
    w: ReplayWindow[str] = ReplayWindow(size=6, last_progress=0.0)
    for seq in range(1, 7):
        w.sent(seq, f"frame {seq}", now=0.0)
    assert not w.acknowledged(202, now=0.5) and w.stale_acks == 1 and len(w) == 6
    assert w.acknowledged(6, now=0.6) and len(w) == 0
    w.sent(7, "frame 7", now=0.7)
    assert w.acknowledged(7, now=0.8) and w.acked == 7
