"""Privacy rules: what may leave the device, reduced to counts per time bucket.

The aggregator sees individual crossings (with track ids) and emits only
:class:`~edgecount_core.messages.CountRecord` rows: per line or zone, per
bucket of ``bucket_s`` seconds, how many went in and out. A bucket is
emitted once the stream's watermark has passed its end (plus a grace period),
including buckets where nobody passed, so a consumer can tell "zero" from
"device silent". A stretch without any watermark longer than ``max_zero_fill_s``
(a camera down for days, a clock stepped forward by weeks) gets no rows: the
device did not watch then, and zero rows would both lie and flood every sink.
It is counted as a gap. Times pass through a :class:`StreamClock`, so a clock
stepped back loses no crossing. Record ids are stable (device, kind, name,
bucket start, and the bucket length unless it is the default), so a consumer
can de-duplicate resent records. A device with several cameras keeps one
aggregator per camera, whose ``device`` ends in the camera's name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from edgecount_core.camera_names import scoped
from edgecount_core.messages import DEFAULT_CAMERA, CountRecord
from edgecount_core.streamclock import StreamClock

__all__ = ["DEFAULT_BUCKET_S", "DEFAULT_MAX_ZERO_FILL_S", "BucketAggregator", "StreamGap", "record_id", "source_id"]

DEFAULT_BUCKET_S = 60.0
DEFAULT_MAX_ZERO_FILL_S = 600.0


def source_id(site: str, device: str, camera: str) -> str:
    """What record ids start with: ``site/device``, plus ``/camera`` for any camera but ``main``."""
    return scoped(f"{site}/{device}", camera, "/")


def _occupancy(row: list[Any]) -> int | None:
    return None if len(row) < 5 or row[4] is None else int(row[4])


def record_id(device: str, kind: str, name: str, bucket_start: float, bucket_s: float = DEFAULT_BUCKET_S) -> str:
    """A bucket's id. A bucket of another length than the default says its length, so buckets of two
    lengths that start together (``privacy.bucket_s`` changed) never share an id: a consumer, and the
    outbox, would keep one of them and drop the other's counts."""
    suffix = "" if bucket_s == DEFAULT_BUCKET_S else f"@{bucket_s:g}"
    return f"{device}/{kind}/{name}/{int(bucket_start)}{suffix}"


@attrs.frozen
class StreamGap:
    """A stretch of stream time without any watermark, longer than the aggregator fills with zeros."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@attrs.define
class _Bucket:
    n_in: int = 0
    n_out: int = 0
    occupancy: int | None = None  # zones: people inside after the bucket's last event


class BucketAggregator:
    def __init__(
        self,
        device: str,
        lines: Iterable[str],
        zones: Iterable[str] = (),
        bucket_s: float = DEFAULT_BUCKET_S,
        grace_s: float = 2.0,
        camera: str = DEFAULT_CAMERA,
        max_zero_fill_s: float = DEFAULT_MAX_ZERO_FILL_S,
    ) -> None:
        self.device = device
        self.camera = camera
        self.names = [("line", n) for n in lines] + [("zone", n) for n in zones]
        self.bucket_s = bucket_s
        self.grace_s = grace_s
        self.max_zero_fill_s = max_zero_fill_s
        self.clock = StreamClock(tolerance_s=grace_s)
        self.now = -math.inf
        """Stream time of the last event or watermark (what an event record's time is cut from)."""
        self.gaps: list[StreamGap] = []
        """Gaps found since the caller last took them (:meth:`take_gaps`)."""
        self.gap_count = 0
        self.gap_s = 0.0
        self._open: dict[float, dict[tuple[str, str], _Bucket]] = {}
        self._first_open: float | None = None
        self._closed_until = -math.inf
        self._occupancy: dict[str, int] = {}  # zone -> people inside, as last reported
        self._carried: dict[str, int] = {}  # zone -> occupancy at the end of the last emitted bucket

    def _start(self, ts: float) -> float:
        return math.floor(ts / self.bucket_s) * self.bucket_s

    def _bucket(self, start: float) -> dict[tuple[str, str], _Bucket]:
        if start not in self._open:
            self._open[start] = {k: _Bucket() for k in self.names}
        return self._open[start]

    def add(self, kind: str, name: str, direction: str, ts: float, occupancy: int | None = None) -> bool:
        """Count one crossing (``in``/``out``) or zone change (``enter``/``exit``, with the zone's occupancy
        after it), at wall-clock ``ts``. Returns False for an event whose bucket was already emitted (too
        late: only an event more than the grace older than the stream, which the counter never sends)."""
        if occupancy is not None:
            self._occupancy[name] = occupancy
        ts = self.now = self.clock.map(ts)
        start = self._start(ts)
        if start < self._closed_until:
            return False
        b = self._bucket(start).setdefault((kind, name), _Bucket())
        if direction in ("in", "enter"):
            b.n_in += 1
        else:
            b.n_out += 1
        if occupancy is not None:
            b.occupancy = occupancy
        return True

    def advance(self, watermark: float) -> list[CountRecord]:
        """The stream reached wall-clock ``watermark``: emit every bucket that ended before it."""
        watermark = self.now = self.clock.map(watermark)
        cur = self._start(watermark)
        known_end = max([s + self.bucket_s for s in self._open if s < cur], default=self._closed_until)
        self._bucket(cur)
        if self._first_open is None:
            self._first_open = cur
        elif math.isfinite(known_end) and cur - known_end > self.max_zero_fill_s:
            gap = StreamGap(known_end, cur)
            self.gaps.append(gap)
            self.gap_count += 1
            self.gap_s += gap.seconds
            self._first_open = cur  # nothing before the gap is filled any more
        # Buckets the watermark skipped over (a short silence) still get their zero rows.
        s = max(self._first_open, self._closed_until)
        while s < cur:
            self._bucket(s)
            s += self.bucket_s
        done = [s for s in self._open if s + self.bucket_s + self.grace_s <= watermark]
        return self._emit(done)

    def take_gaps(self) -> list[StreamGap]:
        """The gaps found since the last call (to report them once)."""
        gaps, self.gaps = self.gaps, []
        return gaps

    def flush(self) -> list[CountRecord]:
        """Emit every open bucket (end of stream or clean shutdown)."""
        return self._emit(list(self._open))

    # -- saved state ---------------------------------------------------------------------
    STATE_VERSION = 2
    READABLE_VERSIONS = (1, 2)  # 1: before the stream clock (a fresh clock takes over)

    def to_state(self) -> dict[str, Any]:
        """The open buckets and the closing position as plain data (msgpack-able, no code)."""
        return {"v": self.STATE_VERSION, "bucket_s": self.bucket_s, "clock": self.clock.to_state(),
                "gap_count": self.gap_count, "gap_s": self.gap_s,
                "open": [[s, [[k, n, b.n_in, b.n_out, b.occupancy] for (k, n), b in sorted(bs.items())]]
                         for s, bs in sorted(self._open.items())],
                "carried": dict(self._carried),
                "first_open": self._first_open,
                "closed_until": None if self._closed_until == -math.inf else self._closed_until}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take over saved open buckets; ``ValueError`` if ``state`` is not a saved state of this kind.

        The names (lines and zones) stay this aggregator's: they may have changed since the save.
        """
        try:
            if state["v"] not in self.READABLE_VERSIONS or float(state["bucket_s"]) != self.bucket_s:
                raise ValueError("saved with another format or bucket length")
            saved_clock = state.get("clock")
            clock = StreamClock(tolerance_s=self.grace_s) if saved_clock is None else \
                StreamClock.from_state(saved_clock, self.grace_s)
            gap_count, gap_s = int(state.get("gap_count", 0)), float(state.get("gap_s", 0.0))
            opened: dict[float, dict[tuple[str, str], _Bucket]] = {}
            for start, rows in state["open"]:
                opened[float(start)] = {(str(r[0]), str(r[1])): _Bucket(int(r[2]), int(r[3]), _occupancy(r))
                                        for r in rows}
            self._carried = {str(k): int(v) for k, v in (state.get("carried") or {}).items()}
            first = state["first_open"]
            closed = state["closed_until"]
            self._first_open = None if first is None else float(first)
            self._closed_until = -math.inf if closed is None else float(closed)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a saved aggregator state: {exc!r}") from None
        self._open = opened
        self.clock, self.gap_count, self.gap_s = clock, gap_count, gap_s

    def _emit(self, starts: list[float]) -> list[CountRecord]:
        out: list[CountRecord] = []
        for s in sorted(starts):
            for (kind, name), b in sorted(self._open.pop(s).items()):
                occupancy = None
                if kind == "zone":  # a bucket nobody entered or left keeps the occupancy it started with
                    occupancy = b.occupancy if b.occupancy is not None else self._carried.get(name, 0)
                    self._carried[name] = occupancy
                out.append(CountRecord(record_id=record_id(self.device, kind, name, s, self.bucket_s), kind=kind,
                                       name=name, bucket_start=s, bucket_s=self.bucket_s,
                                       n_in=b.n_in, n_out=b.n_out, occupancy=occupancy, camera=self.camera))
            self._closed_until = max(self._closed_until, s + self.bucket_s)
        return out
