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
