"""Keeping the uplink outbox bounded while the device is offline for a long time.

Pure planning over the undelivered records: nothing here touches storage.
When the outbox holds more than ``max_rows`` records, the oldest are merged
into coarser buckets (an hour, then a day) per camera and line or zone, which keeps
every count; only when even that is not enough, or records are older than
``max_age_s``, are the oldest dropped, and what they held is reported so the
device can say exactly how much it lost.

Sinks deliver at their own pace (the file while the broker is down), so a row
may already be delivered to one sink and not to another. Rows are merged only
with rows every sink has delivered or not alike (never across a sink's
cursor), and a merged row takes the place of the newest row it replaces: a
sink that had the originals is past it and never gets the sum again, a sink
that had none of them gets the sum once.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import attrs

from edgecount_core.messages import DEFAULT_CAMERA

__all__ = ["CompactionPlan", "PendingRecord", "plan_compaction"]

COARSER = (3600.0, 86400.0)
TOTAL = "total"
"""The kind of a line's running daily total (``edgecount_core.daily_totals``)."""


@attrs.frozen
class PendingRecord:
    row_id: int
    record_id: str
    kind: str
    name: str
    bucket_start: float
    bucket_s: float
    n_in: int
    n_out: int
    camera: str = DEFAULT_CAMERA


@attrs.frozen
class CompactionPlan:
    delete: tuple[int, ...] = ()
    insert: tuple[PendingRecord, ...] = ()
    dropped_records: int = 0
    dropped_in: int = 0
    dropped_out: int = 0

    @property
    def empty(self) -> bool:
        return not self.delete and not self.insert


def _merge(records: Sequence[PendingRecord], coarse_s: float, cursors: Sequence[int]) -> list[PendingRecord]:
    groups: dict[tuple[int, str, str, str, float], list[PendingRecord]] = {}
    for r in records:
        start = math.floor(r.bucket_start / coarse_s) * coarse_s
        segment = bisect.bisect_left(cursors, r.row_id)  # which sinks have it: those whose cursor is past it
        groups.setdefault((segment, r.camera, r.kind, r.name, start), []).append(r)
    merged = []
    for (_, camera, kind, name, start), rs in groups.items():
        if kind == TOTAL:
            # A day's running total replaces the ones before it: keep the newest, never add them up.
            merged.append(max(rs, key=lambda r: r.row_id))
            continue
        if len(rs) == 1 and rs[0].bucket_s >= coarse_s:
            merged.append(rs[0])
            continue
        # Ids end in the bucket start; the merged record keeps the rest (device, kind, name) and says which row
        # it stands in: two merges of one hour on either side of a cursor must not share an id.
        prefix = rs[0].record_id.rsplit("/", 1)[0] if "/" in rs[0].record_id else rs[0].record_id
        row_id = max(r.row_id for r in rs)
        merged.append(PendingRecord(
            row_id=row_id, record_id=f"{prefix}/{int(start)}/{int(coarse_s)}s@{row_id}", kind=kind, name=name,
            bucket_start=start, bucket_s=coarse_s, n_in=sum(r.n_in for r in rs), n_out=sum(r.n_out for r in rs),
            camera=camera))
    return sorted(merged, key=lambda r: r.row_id)


def plan_compaction(pending: Sequence[PendingRecord], max_rows: int, max_age_s: float, now: float,
                    keep_recent: int = 0, cursors: Sequence[int] = ()) -> CompactionPlan:
    """What to delete and insert so at most ``max_rows`` records remain, oldest affected first.

    ``pending`` is in delivery order (oldest first). The newest ``keep_recent``
    records are never merged, so recent data keeps its full resolution.
    ``cursors`` are the row ids each sink has delivered up to; an inserted
    record reuses the row id of the newest record it replaces (delete first).
    """
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    cursors = sorted(set(cursors))
    records = sorted(pending, key=lambda r: r.row_id)
    dropped: list[PendingRecord] = [r for r in records if r.bucket_start + r.bucket_s < now - max_age_s]
    too_old = {r.row_id for r in dropped}
    records = [r for r in records if r.row_id not in too_old]
    if len(records) > max_rows:
        for coarse in COARSER:
            if len(records) <= max_rows:
                break
            split = max(0, len(records) - max(keep_recent, 0))
            old, recent = records[:split], records[split:]
            merged = _merge(old, coarse, cursors)
            records = merged + recent
        if len(records) > max_rows:
            excess = len(records) - max_rows
            dropped.extend(records[:excess])
            records = records[excess:]
    originals = set(pending)
    kept = {r for r in records if r in originals}
    delete = tuple(r.row_id for r in pending if r not in kept)
    inserted = [r for r in records if r not in originals]
    # A dropped running total loses no count: the buckets it summed are records of their own.
    lost = [r for r in dropped if r.kind != TOTAL]
    return CompactionPlan(delete=delete, insert=tuple(inserted), dropped_records=len(lost),
                          dropped_in=sum(r.n_in for r in lost), dropped_out=sum(r.n_out for r in lost))
