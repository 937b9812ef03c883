"""Totals operators expect (issue 31): per line today, occupancy from in minus out, reset at a local hour."""

from __future__ import annotations

import types
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from edgecount import stages
from edgecount.stages.outbox import Outbox
from edgecount.stages.uplink import Uplink
from edgecount.supervisor.metrics import render, samples
from edgecount_core.config import parse_config
from edgecount_core.daily_totals import day_start, running_total
from edgecount_core.messages import CountRecord
from edgecount_core.outbox import PendingRecord, plan_compaction

BERLIN = ZoneInfo("Europe/Berlin")


def _t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def test_the_day_starts_at_the_local_reset_hour_across_daylight_saving() -> None:
    assert day_start(_t("2026-12-04T10:15:00"), 0, BERLIN) == _t("2026-12-04T00:00:00")
    assert day_start(_t("2026-12-04T03:59:00"), 4, BERLIN) == _t("2026-12-03T04:00:00")
    assert day_start(_t("2026-12-04T04:00:00"), 4, BERLIN) == _t("2026-12-04T04:00:00")
    # 29 March 2026: clocks go forward at 02:00; the day still starts at 04:00 on the clock (23 h after the last).
    assert day_start(_t("2026-03-29T12:00:00"), 4, BERLIN) == _t("2026-03-29T04:00:00")
    assert _t("2026-03-29T04:00:00") - day_start(_t("2026-03-29T03:00:00"), 4, BERLIN) == 23 * 3600


def test_occupancy_is_in_minus_out_never_below_zero() -> None:
    # Three already inside at the reset walk out first: nobody is -3 people inside.
    total = running_total([(60.0, 2, 0), (0.0, 0, 3), (120.0, 1, 1)])
    assert (total.n_in, total.n_out, total.occupancy) == (3, 4, 2)


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=50))
def test_occupancy_bounds(buckets: list[tuple[int, int]]) -> None:
    total = running_total([(60.0 * k, i, o) for k, (i, o) in enumerate(buckets)])
    assert max(0, total.n_in - total.n_out) <= total.occupancy <= total.n_in


def _record(name: str, start: float, n_in: int, n_out: int, seq: int) -> CountRecord:
    return CountRecord(record_id=f"s/d/line/{name}/{int(start)}", kind="line", name=name, bucket_start=start,
                       bucket_s=60.0, n_in=n_in, n_out=n_out, log_seq=seq)


def test_the_uplink_queues_each_lines_running_total_and_it_survives_a_restart(tmp_path: Path) -> None:
    cfg = parse_config({"uplink": {"daily_reset_hour": 4}})
    day = _t("2026-12-04T04:00:00")
    totals = []
    for restart, records in enumerate(([_record("door", day - 120, 5, 1, 1), _record("door", day + 60, 2, 0, 2)],
                                       [_record("door", day + 120, 0, 3, 3), _record("side", day + 120, 1, 0, 4)])):
        outbox = Outbox(tmp_path / "uplink.db")  # opened afresh: the day so far comes from the history
        shell = types.SimpleNamespace(outbox=outbox, cfg=cfg, zone=BERLIN)
        for r in records:
            outbox.add_record(r)
            total = Uplink._day_total(shell, r)  # type: ignore[arg-type]
            outbox.add_record(total)
            totals.append(total)
        outbox.store.close()
        assert restart in (0, 1)
    before, first, after, side = totals
    assert before.bucket_start == day - 86400 and (before.n_in, before.n_out, before.occupancy) == (5, 1, 4)
    assert first.bucket_start == day and (first.n_in, first.n_out, first.occupancy) == (2, 0, 2)
    assert (after.n_in, after.n_out, after.occupancy) == (2, 3, 0) and after.bucket_s == 180.0
    assert (side.name, side.n_in) == ("side", 1)
    assert after.record_id == "s/d/line/door/" + str(int(day + 120)) + "/total"
    rows = Outbox(tmp_path / "uplink.db").rows_after(0, 100, "s", "d")
    kinds = [r.record["kind"] for r in rows]
    assert kinds.count("total") == 4 and kinds.count("line") == 4
    door = [r.record for r in rows if r.record["kind"] == "total" and r.record["name"] == "door"]
    assert door[-1]["occupancy"] == 0 and door[-1]["in"] == 2 and "occupancy" not in rows[0].record


def test_compaction_keeps_the_newest_total_and_never_adds_totals_up() -> None:
    day = 1_796_000_000.0
    pending = [PendingRecord(k, f"s/d/line/door/{k}/total", "total", "door", day, 60.0 * k, k, 0)
               for k in range(1, 6)]
    plan = plan_compaction(pending, max_rows=1, max_age_s=1e9, now=day + 600)
    assert set(plan.delete) == {1, 2, 3, 4} and plan.insert == ()
    assert plan.dropped_in == 0 and plan.dropped_records == 0


def test_prometheus_counts_per_camera_line_and_direction() -> None:
    figs = stages.figures_by_stage()
    stats = {"line.door.in": 7, "line.door.out": 2, "line.door.people_s_since_count": 3.5, "events": 9}
    text = render(samples([{"service": "counter", "state": "ok", "stats": stats}], figs), figs)
    assert 'edgecount_line_crossings_total{camera="main",direction="in",line="door"} 7' in text
    assert 'edgecount_line_crossings_total{camera="main",direction="out",line="door"} 2' in text
    assert "people_s" not in text
    several = {"camera.front.line.door.1.in": 4}
    text = render(samples([{"service": "counter", "state": "ok", "stats": several}], figs), figs)
    assert 'edgecount_line_crossings_total{camera="front",direction="in",line="door.1"} 4' in text
