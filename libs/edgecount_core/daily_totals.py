"""The totals operators expect: per line, what passed today, and how many are inside by its in minus out.

Counts leave the device per bucket (a minute). Operators want "today": a running total per line that starts
again at a local hour they choose (``uplink.daily_reset_hour``, midnight by default), and, for a door, the
people inside as ``in - out``. That difference never goes below zero: people already inside at the reset
and walking out would make it negative, and nobody is ever -3 people inside. Each bucket a line delivers
yields the line's new running total as a record of kind ``total`` of its own, so it travels the same
loss-free path as the counts and survives restarts (it is recomputed from the device's history).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo

import attrs

from edgecount_core.messages import CountRecord
from edgecount_core.outbox import TOTAL

__all__ = ["DayTotal", "day_start", "running_total", "total_record"]


def day_start(ts: float, reset_hour: int, tz: tzinfo) -> float:
    """When the day that ``ts`` belongs to began: the last ``reset_hour`` o'clock (in ``tz``) at or before it.
    With a zone that has daylight-saving time, that is the hour on the clock, whatever the offset that day."""
    local = datetime.fromtimestamp(ts, tz)
    day = local.date() if local.hour >= reset_hour else local.date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, reset_hour, tzinfo=tz).timestamp()


@attrs.frozen
class DayTotal:
    n_in: int
    n_out: int
    occupancy: int
    """``in - out`` over the day, never below zero at any moment."""


def running_total(buckets: Iterable[tuple[float, int, int]]) -> DayTotal:
    """The day's total from its buckets ``(bucket_start, in, out)``, in any order."""
    n_in = n_out = inside = 0
    for _, i, o in sorted(buckets):
        n_in, n_out = n_in + i, n_out + o
        inside = max(0, inside + i - o)
    return DayTotal(n_in, n_out, inside)


def total_record(source: CountRecord, start: float, total: DayTotal) -> CountRecord:
    """The running total a line's bucket ``source`` brings: from ``start`` up to that bucket's end."""
    return CountRecord(record_id=f"{source.record_id}/total", kind=TOTAL, name=source.name, bucket_start=start,
                       bucket_s=max(0.0, source.bucket_start + source.bucket_s - start), n_in=total.n_in,
                       n_out=total.n_out, log_seq=source.log_seq, occupancy=total.occupancy,
                       camera=source.camera)
