"""Capture's flow pieces: pacing (file speed, max_fps), the input rate, the source's outage, and replay's
handshake, stamps and window of unacknowledged frames."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from edgecount.runtime.backoff import Backoff, Outage
from edgecount.stages.replay_feed import ReplayFeed
from edgecount_core.messages import FrameReady, Marker
from edgecount_core.pacing import LivePace, Pacer, RateMeter
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


def test_live_pace_plays_a_file_at_its_speed_and_skips_frames_over_the_cap() -> None:
    pace = LivePace(speed=2.0, max_fps=5.0)
    pace.start(0.0)
    assert pace.file_wait_s(0.0, 10.0) == 0.0  # the first frame is due at once
    wait = pace.file_wait_s(0.01, 10.0)  # a 10 fps file at double speed: next frame 50 ms after the first
    assert abs(wait - 0.04) < 1e-9
    read = skipped = 0
    for i in range(250):  # a 25 fps camera for 10 s, capped at 5 fps
        if pace.over_cap(i * 0.04):
            skipped += 1
        else:
            read += 1
    assert 49 <= read <= 52 and read + skipped == 250
    assert not LivePace().over_cap(0.0) and not LivePace().over_cap(0.0)  # no cap: every frame is read


def test_the_rate_meter_follows_a_changing_rate() -> None:
    meter = RateMeter()
    for i in range(200):
        meter.tick(i * 0.1)
    assert abs(meter.rate - 10.0) < 1e-6
    for i in range(200):
        meter.tick(20.0 + i * 0.04)
    assert abs(meter.rate - 25.0) < 0.1


def test_an_outage_counts_from_the_first_loss_and_backs_off_until_it_is_over() -> None:
    out = Outage(Backoff(1.0, 4.0))
    assert out.failed(10.0, gone=False) == 1.0 and out.gone_s(10.5) == 0.0  # never there yet: not "gone"
    assert out.failed(11.0) == 2.0 and out.failed(13.0) == 4.0 and out.failed(17.0) == 4.0
    assert out.gone_s(20.0) == 9.0 and out.retry_in_s(20.0) == 1.0 and not out.due(20.0) and out.due(21.0)
    assert out.over(22.0) == 11.0 and out.gone_s(23.0) == 0.0
    assert out.failed(30.0) == 1.0  # the back-off starts again


def test_the_replay_feed_connects_first_and_stamps_frames_as_the_first_run_did(tmp_path: Path) -> None:
    epoch = tmp_path / "epoch"
    feed = ReplayFeed(4, epoch, now=0.0)
    first = feed.marker_due(0.0)
    assert first is not None and feed.marker_due(0.1) is None and feed.marker_due(0.25) is not None
    assert feed.marker_back(Marker(token="someone else's", origin_ts=0.0)) is None and not feed.synced
    assert feed.marker_back(first) is not None and feed.synced and feed.marker_due(1.0) is None
    assert feed.marker_back(first) is None  # coming round again changes nothing
    t0 = float(epoch.read_text())
    assert feed.stamp(25, 10.0) == t0 + 2.5
    again = ReplayFeed(4, epoch, now=0.0)  # a restarted capture of the same run
    assert again.marker_back(again.marker_due(0.0)) is not None  # type: ignore[arg-type]
    assert again.stamp(25, 10.0) == t0 + 2.5


def test_the_replay_feed_announces_again_what_went_unacknowledged() -> None:
    feed = ReplayFeed(4, Path("/nonexistent/epoch"), now=0.0)
    frames = [FrameReady(seq=s, slot=s % 6, ts=float(s), width=4, height=4, ring=1) for s in (1, 2, 3)]
    for f in frames:
        feed.window.sent(f.seq, f, 0.0)
    feed.window.acknowledged(1, 0.5)
    lost = feed.lost(1000.0)
    assert [f.seq for f in lost] == [2, 3] and all(f.resend for f in lost) and feed.resends == 2
