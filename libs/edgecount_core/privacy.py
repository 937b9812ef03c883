"""Privacy rules: what may leave the device, reduced to counts per time bucket.

The aggregator sees individual crossings (with track ids) and emits only
:class:`~edgecount_core.messages.CountRecord` rows: per line or zone, per
bucket of ``bucket_s`` seconds, how many went in and out. A bucket is
emitted once the stream's watermark has passed its end (plus a grace period),
including buckets where nobody passed, so a consumer can tell "zero" from
"device silent". Record ids are stable (device, kind, name, bucket start),
so a consumer can de-duplicate resent records. A device with several cameras
keeps one aggregator per camera, whose ``device`` ends in the camera's name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from edgecount_core.messages import DEFAULT_CAMERA, CountRecord

__all__ = ["BucketAggregator", "record_id", "source_id"]


def source_id(site: str, device: str, camera: str) -> str:
    """What record ids start with: ``site/device``, plus ``/camera`` for any camera but ``main``."""
    return f"{site}/{device}" if camera == DEFAULT_CAMERA else f"{site}/{device}/{camera}"


def _occupancy(row: list[Any]) -> int | None:
    return None if len(row) < 5 or row[4] is None else int(row[4])


def record_id(device: str, kind: str, name: str, bucket_start: float) -> str:
    return f"{device}/{kind}/{name}/{int(bucket_start)}"


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
        bucket_s: float = 60.0,
        grace_s: float = 2.0,
        camera: str = DEFAULT_CAMERA,
    ) -> None:
        self.device = device
        self.camera = camera
        self.names = [("line", n) for n in lines] + [("zone", n) for n in zones]
        self.bucket_s = bucket_s
        self.grace_s = grace_s
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
        after it). Returns False for an event whose bucket was already emitted (too late)."""
        if occupancy is not None:
            self._occupancy[name] = occupancy
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
        """The stream reached ``watermark``: emit every bucket that ended before it."""
        cur = self._start(watermark)
        self._bucket(cur)
        # Buckets the watermark skipped over entirely still get their zero rows.
        if self._first_open is None:
            self._first_open = cur
        s = max(self._first_open, self._closed_until)
        while s < cur:
            self._bucket(s)
            s += self.bucket_s
        done = [s for s in self._open if s + self.bucket_s + self.grace_s <= watermark]
        return self._emit(done)

    def flush(self) -> list[CountRecord]:
        """Emit every open bucket (end of stream or clean shutdown)."""
        return self._emit(list(self._open))

    # -- saved state ---------------------------------------------------------------------
    STATE_VERSION = 1

    def to_state(self) -> dict[str, Any]:
        """The open buckets and the closing position as plain data (msgpack-able, no code)."""
        return {"v": self.STATE_VERSION, "bucket_s": self.bucket_s,
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
            if state["v"] != self.STATE_VERSION or float(state["bucket_s"]) != self.bucket_s:
                raise ValueError("saved with another format or bucket length")
            opened: dict[float, dict[tuple[str, str], _Bucket]] = {}
            for start, rows in state["open"]:
                opened[float(start)] = {(str(r[0]), str(r[1])): _Bucket(int(r[2]), int(r[3]), _occupancy(r))
                                        for r in rows}
            self._carried = {str(k): int(v) for k, v in (state.get("carried") or {}).items()}
            first = state["first_open"]
            closed = state["closed_until"]
            self._first_open = None if first is None else float(first)
            self._closed_until = -math.inf if closed is None else float(closed)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a saved aggregator state: {exc!r}") from None
        self._open = opened

    def _emit(self, starts: list[float]) -> list[CountRecord]:
        out: list[CountRecord] = []
        for s in sorted(starts):
            for (kind, name), b in sorted(self._open.pop(s).items()):
                occupancy = None
                if kind == "zone":  # a bucket nobody entered or left keeps the occupancy it started with
                    occupancy = b.occupancy if b.occupancy is not None else self._carried.get(name, 0)
                    self._carried[name] = occupancy
                out.append(CountRecord(record_id=record_id(self.device, kind, name, s), kind=kind,
                                       name=name, bucket_start=s, bucket_s=self.bucket_s,
                                       n_in=b.n_in, n_out=b.n_out, occupancy=occupancy, camera=self.camera))
            self._closed_until = max(self._closed_until, s + self.bucket_s)
        return out
