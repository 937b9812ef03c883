"""Clock steps and long silences lose no count, flood no sink and wedge no stage (issue 32, items 1, 3, 9).

The stream clock and the aggregator are checked as pure code with hypothesis; the privacy stage is run
in-process on real SQLite with the faults as they were measured: the wall clock stepped forward by 30
days with 4 lines, stepped back by 600 s after 20 minutes, and ``privacy.bucket_s`` changed mid-bucket.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount import stages
from edgecount_core.messages import CountRecord, Crossing, Watermark, decode
from edgecount_core.privacy import BucketAggregator, record_id
from edgecount_core.streamclock import CATCH_UP_RATE, StreamClock

from ..helpers import close_service

LINES = ["north", "south", "east", "west"]
DAY = 86400.0


# -- the stream clock ------------------------------------------------------------------------------

jumps = st.lists(st.floats(-7200, 7200, allow_nan=False), min_size=1, max_size=60)


@given(st.floats(1e9, 2e9), jumps)
def test_stream_time_never_runs_back_more_than_the_tolerance(start: float, steps: list[float]) -> None:
    clock = StreamClock(tolerance_s=2.0)
    ts, newest = start, -math.inf
    for step in steps:
        ts += step
        t = clock.map(ts)
        assert t >= newest - 2.0
        assert clock.ahead_s >= 0
        newest = max(newest, t)


@given(st.floats(3, 86400))
def test_after_a_step_back_the_clock_catches_up_at_half_speed(step: float) -> None:
    clock = StreamClock()
    clock.map(1e9)
    assert clock.map(1e9 - step) == 1e9  # holds where it was
    assert clock.steps_back == 1
    half_way = clock.map(1e9 - step + step / CATCH_UP_RATE / 2)
    assert math.isclose(half_way - (1e9 - step + step / CATCH_UP_RATE / 2), step / 2, rel_tol=1e-9, abs_tol=1e-6)
    caught_up = 1e9 - step + step / CATCH_UP_RATE + 1
    assert clock.map(caught_up) == caught_up and clock.ahead_s == 0


def test_a_late_event_within_the_tolerance_is_not_a_step() -> None:
    clock = StreamClock(tolerance_s=2.0)
    clock.map(100.0)
    assert clock.map(98.5) == 98.5
    assert clock.steps_back == 0 and clock.map(101.0) == 101.0


@pytest.mark.parametrize("state", [{"newest": None}, {"newest": 1.0, "ahead_s": -1, "steps_back": 0},
                                   {"newest": 1.0, "ahead_s": math.inf, "steps_back": 0}, "x"])
def test_a_damaged_saved_clock_is_refused(state: Any) -> None:
    with pytest.raises(ValueError, match="stream clock"):
        StreamClock.from_state(state, 2.0)


# -- the aggregator --------------------------------------------------------------------------------

def _drain(agg: BucketAggregator, out: list[CountRecord]) -> None:
    out.extend(agg.flush())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(-1800, 300, allow_nan=False), st.integers(0, 6), st.booleans()),
                min_size=1, max_size=50))
def test_any_clock_steps_lose_no_crossing_and_reuse_no_id(steps: list[tuple[float, int, bool]]) -> None:
    """Whatever the clock does between frames, every crossing is in exactly one emitted bucket."""
    agg = BucketAggregator("s/d", lines=LINES, bucket_s=60)
    ts, crossed, out = 1.7e9, 0, []
    for step, n, watermark in steps:
        ts += step
        for i in range(n):
            assert agg.add("line", LINES[i % 4], "in" if i % 2 else "out", ts)
            crossed += 1
        if watermark:
            out += agg.advance(ts)
    _drain(agg, out)
    assert sum(r.n_in + r.n_out for r in out) == crossed
    assert len({r.record_id for r in out}) == len(out)


def test_a_month_without_frames_sends_no_rows_for_it_and_says_so() -> None:
    agg = BucketAggregator("s/d", lines=LINES, bucket_s=60, max_zero_fill_s=600)
    agg.add("line", "north", "in", 1_200.0)
    first = agg.advance(1_230.0)
    later = agg.advance(1_230.0 + 30 * DAY)
    assert first == [] and sum(r.n_in for r in later) == 1
    assert len(later) == len(LINES)  # the bucket with the crossing, not 43,200 empty ones per line
    [gap] = agg.take_gaps()
    assert gap.start == 1_260.0 and gap.seconds >= 30 * DAY - 120
    agg.add("line", "south", "out", 1_231.0 + 30 * DAY)
    after = agg.advance(1_400.0 + 30 * DAY)
    assert sum(r.n_out for r in after) == 1 and agg.gap_count == 1 and agg.take_gaps() == []
    # the silence is not filled later either
    assert all(r.bucket_start >= 1_200.0 + 30 * DAY for r in after)


def test_a_short_silence_still_gets_its_zero_rows() -> None:
    agg = BucketAggregator("s/d", lines=["door"], bucket_s=60, max_zero_fill_s=600)
    agg.advance(0.0)
    rows = agg.advance(540.0)
    assert [r.bucket_start for r in rows] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 420.0]
    assert agg.gap_count == 0


def test_buckets_of_two_lengths_never_share_an_id() -> None:
    assert record_id("s/d", "line", "door", 120.0) == "s/d/line/door/120"  # unchanged for the default
    assert record_id("s/d", "line", "door", 120.0, 30.0) == "s/d/line/door/120@30"
    assert record_id("s/d", "line", "door", 120.0, 30.0) != record_id("s/d", "line", "door", 120.0, 60.0)


def test_a_state_saved_before_the_stream_clock_is_still_read() -> None:
    agg = BucketAggregator("s/d", lines=["door"], bucket_s=60)
    agg.add("line", "door", "in", 10.0)
    state = agg.to_state()
    old = {k: v for k, v in state.items() if k not in ("clock", "gap_count", "gap_s")} | {"v": 1}
    again = BucketAggregator("s/d", lines=["door"], bucket_s=60)
    again.restore(old)
    assert [r.n_in for r in again.flush()] == [1]


# -- the privacy stage, on real SQLite -------------------------------------------------------------

class _Privacy:
    """The privacy stage in-process, fed the counter's crossings and watermarks as the bus would."""

    def __init__(self, runtime_dir: Path, bucket_s: float = 60.0) -> None:
        from edgecount.runtime.settings import load_config
        from edgecount.stages.privacy import Privacy

        cfg = runtime_dir / "c.toml"
        lines = "".join(f'[[lines]]\nname = "{n}"\na = [0.1, {0.1 + i / 5}]\nb = [0.9, {0.1 + i / 5}]\n'
                        for i, n in enumerate(LINES))
        cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
                       f'[privacy]\nbucket_s = {bucket_s}\n{lines}')
        self.svc = Privacy(load_config(cfg), runtime_dir)
        self.event_seq = self.svc.follower.applied
        self.frame = 0

    def crossing(self, ts: float, line: str = "north", direction: str = "in") -> None:
        self.event_seq += 1
        self.svc.handle(b"crossing", Crossing(event_id=f"c:{self.event_seq}", line=line, direction=direction,
                                              ts=ts, track_id=self.event_seq, seq=self.frame,
                                              event_seq=self.event_seq))

    def watermark(self, ts: float) -> None:
        self.frame += 1
        self.svc.handle(b"watermark", Watermark(ts=ts, seq=self.frame, event_seq=self.event_seq))

    def records(self) -> list[CountRecord]:
        out = []
        for _, _, payload in self.svc.store.read_from(1, 10**7):
            msg = decode(payload)
            if isinstance(msg, CountRecord):
                out.append(msg)
        return out

    def flush(self) -> None:
        for agg in self.svc.aggs.values():
            self.svc._publish(self.svc._commit(agg.flush(), changed=[agg]))

    def close(self) -> None:
        close_service(self.svc)


def test_privacy_survives_a_clock_stepped_forward_30_days(runtime_dir: Path) -> None:
    """Before: 172,800 empty records in one 3.6 s transaction (and a crash loop past 15 s)."""
    p = _Privacy(runtime_dir)
    try:
        t = 1.7e9
        for i in range(120):
            p.crossing(t + i, LINES[i % 4])
            p.watermark(t + i)
        before = len(p.records())
        p.crossing(t + 30 * DAY + 1, "north")
        p.watermark(t + 30 * DAY + 1)
        sent_at_step = len(p.records()) - before
        stats = p.svc.stats()
        assert sent_at_step <= 2 * len(LINES), f"{sent_at_step} records for one watermark"
        assert stats["stream_gaps"] == 1 and stats["stream_gap_s"] >= 30 * DAY - 180
        p.flush()
        assert sum(r.n_in for r in p.records()) == 121
    finally:
        p.close()


def test_privacy_counts_every_crossing_after_the_clock_steps_back_600_s(runtime_dir: Path) -> None:
    """Before: stepping back 600 s after 20 minutes lost 58 of 240 crossings (``late_events``, no metric)."""
    p = _Privacy(runtime_dir)
    try:
        t0, crossed = 1.7e9, 0
        for second in range(1200):  # 20 minutes at one frame a second, a crossing every 10 s
            if second % 10 == 0:
                p.crossing(t0 + second, LINES[crossed % 4], "in")
                crossed += 1
            p.watermark(t0 + second)
        for second in range(1200):  # the clock stepped back 600 s; 20 more minutes
            ts = t0 + 600 + second
            if second % 10 == 0:
                p.crossing(ts, LINES[crossed % 4], "out")
                crossed += 1
            p.watermark(ts)
        p.flush()
        records = p.records()
        stats = p.svc.stats()
    finally:
        p.close()
    assert crossed == 240
    assert sum(r.n_in + r.n_out for r in records) == 240 and stats["late_events"] == 0
    assert len({r.record_id for r in records}) == len(records)
    assert stats["clock_steps_back"] == 1
    starts = sorted({r.bucket_start for r in records})
    assert starts == [starts[0] + 60 * i for i in range(len(starts))]  # buckets stay in order, none skipped


def test_a_changed_bucket_length_keeps_every_count_under_its_own_id(runtime_dir: Path) -> None:
    """Before: the 30 s bucket starting with the flushed 60 s bucket had its id and the outbox dropped it."""
    t = 1_700_000_040.0  # a multiple of 60 (and of 30)
    p = _Privacy(runtime_dir, bucket_s=60)
    try:
        for i in range(10):
            p.crossing(t + i, "north")
            p.watermark(t + i)
    finally:
        p.close()
    p = _Privacy(runtime_dir, bucket_s=30)  # restart with the new length mid-bucket
    try:
        for i in range(10, 20):
            p.crossing(t + i, "north")
            p.watermark(t + i)
        p.watermark(t + 100)
        records = p.records()
    finally:
        p.close()
    ids = Counter(r.record_id for r in records)
    assert max(ids.values()) == 1
    north = [r for r in records if r.name == "north" and r.bucket_start == t]
    assert sorted((r.bucket_s, r.n_in) for r in north) == [(30.0, 10), (60.0, 10)]


def test_the_clock_faults_reach_the_metrics() -> None:
    from edgecount.supervisor.metrics import render, samples

    figs = stages.figures_by_stage()
    stats = {"late_events": 0, "clock_steps_back": 1, "clock_ahead_s": 412.5, "stream_gaps": 2, "stream_gap_s": 86400}
    text = render(samples([{"service": "privacy", "state": "ok", "stats": stats}], figs), figs)
    assert "edgecount_clock_steps_back_total 1" in text
    assert "edgecount_bucket_clock_ahead_seconds 412.5" in text
    assert "edgecount_stream_gaps_total 2" in text and "edgecount_late_events_total 0" in text


def test_saved_state_with_a_stepped_clock_round_trips() -> None:
    agg = BucketAggregator("s/d", lines=["door"], bucket_s=60)
    agg.add("line", "door", "in", 1000.0)
    agg.advance(1000.0)
    agg.add("line", "door", "in", 400.0)  # stepped back 600 s
    again = BucketAggregator("s/d", lines=["door"], bucket_s=60)
    again.restore(msgpack.unpackb(msgpack.packb(agg.to_state()), raw=False, strict_map_key=False))
    assert again.clock == agg.clock
    assert again.advance(500.0) == agg.advance(500.0)


def test_the_counter_keeps_sending_watermarks_after_the_clock_steps_back(runtime_dir: Path) -> None:
    """Before: no watermark until the clock passed the old mark again, so no bucket closed for 600 s."""
    import numpy as np

    from edgecount.runtime.settings import load_config
    from edgecount.stages.counter import Counter as CounterStage
    from edgecount_core.messages import Detections

    cfg = runtime_dir / "c.toml"
    cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
                   '[[lines]]\nname = "door"\na = [0.5, 0.0]\nb = [0.5, 1.0]\n')
    svc = CounterStage(load_config(cfg), runtime_dir)
    sent: list[Any] = []
    svc.pub.send = lambda topic, msg: sent.append(msg)  # type: ignore[method-assign]
    try:
        times = [1000.0 + i for i in range(10)] + [400.0 + i for i in range(10)]
        for seq, ts in enumerate(times, start=1):
            svc.handle(b"detections", Detections.from_arrays(
                seq=seq, ts=ts, width=640, height=480, boxes=np.zeros((0, 4), np.float32),
                scores=np.zeros(0, np.float32), classes=np.zeros(0, np.float32)))
    finally:
        close_service(svc)
    marks = [m.ts for m in sent if isinstance(m, Watermark)]
    assert marks[-1] == 409.0 and 400.0 in marks

