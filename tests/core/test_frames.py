"""Which frames are new to a stage: (ring generation, seq) on live sources, seq alone in replay."""

from __future__ import annotations

from edgecount_core.frames import FramePosition


def test_a_restarted_live_capture_starts_a_new_stream() -> None:
    pos = FramePosition(live=True)
    assert pos.follow(7) is None  # the first ring replaces nothing
    pos.advance(120)
    assert pos.seen(5) and pos.seen(120) and not pos.seen(121)
    assert pos.follow(7) is None  # same ring: nothing changes
    assert pos.follow(9) == 120  # a new capture: its seq 1 is new
    assert not pos.seen(1)


def test_replay_ignores_the_ring_because_seq_is_the_file_position() -> None:
    pos = FramePosition(live=False)
    pos.advance(120)
    assert pos.follow(9) is None
    assert pos.seen(1) and pos.seen(120)


def test_advance_never_goes_back() -> None:
    pos = FramePosition(live=True, ring=3)
    pos.advance(10)
    pos.advance(4)
    assert pos.seq == 10


def test_replay_takes_frames_only_in_order_live_skips_freely() -> None:
    """A cumulative acknowledgement of frame 100 must never cover a lost frame 99 (issue 17)."""
    replay = FramePosition(live=False)
    assert not replay.skips_ahead(1)
    replay.advance(97)
    assert not replay.skips_ahead(98)
    assert replay.skips_ahead(100) and replay.skips_ahead(99 + 5)
    live = FramePosition(live=True, ring=3)
    live.advance(97)
    assert not live.skips_ahead(140)  # live sources drop frames on purpose (latest frame wins)


def test_a_still_waits_for_its_own_frame_for_a_bounded_time() -> None:
    from edgecount_core.frames import StillPairing

    p = StillPairing(max_wait_s=10.0)
    assert not p.waiting(0.0) and not p.matches(1, 5)
    p.take(ring=1, seq=5, now=100.0)
    assert p.waiting(105.0) and p.matches(1, 5)
    assert not p.matches(2, 5), "the same seq from a restarted capture is another image"
    assert not p.matches(1, 6)
    assert p.expired(110.5) and not p.waiting(110.5)
    p.clear()
    assert not p.expired(200.0) and not p.matches(1, 5)
