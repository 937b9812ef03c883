"""On-site validation: a technician's hand tally against the device's crossings, and what the difference means.

Every installation ends with an audit: someone counts at the door for a busy quarter of an hour and the
device must agree. This module is that comparison, pure and clock-free (times are passed in): parsing a
tally file, pairing each tallied crossing with at most one device crossing of the same line and direction
within a tolerance (an optimal assignment, so the result does not depend on the order of either list),
the two accuracies vendors quote, a Wilson interval on the stricter one, and a verdict with its likely cause.
Only crossing times, lines and directions are involved: nothing about a person.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "DEFAULT_MIN_CROSSINGS", "DEFAULT_TARGET", "DEFAULT_TOLERANCE_S", "DIRECTIONS", "Direction", "LineReport",
    "Report", "Tally", "TallyError", "TimedCrossing", "compare", "match", "parse_tally", "wilson_interval",
]

DIRECTIONS = ("in", "out")
DEFAULT_TOLERANCE_S = 2.0
DEFAULT_TARGET = 0.95
DEFAULT_MIN_CROSSINGS = 50
"""Fewer tallied crossings than this cannot tell 95 % from 85 %: the 95 % interval of 30 out of 30 still
reaches down to 89 %. The README's protocol asks for at least this many, in both directions."""


class TallyError(ValueError):
    """A tally file that cannot be used; the message names the row and the fix."""


@attrs.frozen(order=True)
class TimedCrossing:
    """One crossing of one line in one direction, at ``t`` (epoch seconds, or seconds from a clip's start)."""

    t: float
    line: str
    direction: str


@attrs.frozen
class Tally:
    """What the technician counted; ``absolute`` when its times are on the device's clock (ISO-8601)."""

    crossings: tuple[TimedCrossing, ...]
    absolute: bool

    @property
    def window(self) -> tuple[float, float]:
        return (min(c.t for c in self.crossings), max(c.t for c in self.crossings))


def _parse_time(text: str, row: int) -> tuple[float, bool]:
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise TallyError(f"row {row}: time {text!r} must be seconds from the clip's start (0 or more)")
        return seconds, False
    try:
        # A time without a zone is on the device's clock in its local zone, like the device's own logs.
        return datetime.fromisoformat(text).timestamp(), True
    except ValueError:
        raise TallyError(f"row {row}: time {text!r} is neither ISO-8601 (2026-12-04T10:15:03) nor seconds from "
                         "the clip's start (12.5)") from None


def parse_tally(text: str, lines: Iterable[str] | None = None) -> Tally:
    """A tally CSV with the header ``time,line,direction``; ``lines``, when given, are the only line names allowed."""
    known = None if lines is None else set(lines)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise TallyError("the tally is empty: it needs a header row time,line,direction and one row per crossing")
    names = [h.strip().lower() for h in header]
    if sorted(names) != ["direction", "line", "time"]:
        raise TallyError(f"row 1: the header must name the columns time, line and direction (got {','.join(header)})")
    col = {n: names.index(n) for n in ("time", "line", "direction")}
    found: list[TimedCrossing] = []
    kinds: set[bool] = set()
    for row, fields in enumerate(reader, 2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != 3:
            raise TallyError(f"row {row}: expected 3 fields (time,line,direction), got {len(fields)}")
        t, absolute = _parse_time(fields[col["time"]].strip(), row)
        line = fields[col["line"]].strip()
        direction = fields[col["direction"]].strip().lower()
        if known is not None and line not in known:
            raise TallyError(f"row {row}: unknown line {line!r}; the lines are {', '.join(sorted(known)) or 'none'}")
        if direction not in DIRECTIONS:
            raise TallyError(f"row {row}: direction {fields[col['direction']].strip()!r} must be 'in' or 'out'")
        kinds.add(absolute)
        if len(kinds) > 1:
            raise TallyError(f"row {row}: mixes clock times and seconds from the start; use one kind throughout")
        found.append(TimedCrossing(t, line, direction))
    if not found:
        raise TallyError("the tally has a header but no crossing: add one row per crossing")
    return Tally(tuple(sorted(found)), absolute=kinds.pop())


def match(tally: Sequence[float], device: Sequence[float], tolerance_s: float) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of tally and device times at most ``tolerance_s`` apart: as many pairs as possible,
    and among those the smallest total time difference. Each time is used at most once."""
    if not tally or not device:
        return []
    # Imported here: the command line reads this module's defaults when it starts, and NumPy's BLAS threads
    # would make ``edgecount run`` multi-threaded before it forks the stages' server.
    import numpy as np

    from edgecount_core.assignment import linear_assignment

    dt = np.abs(np.subtract.outer(np.asarray(tally, dtype=np.float64), np.asarray(device, dtype=np.float64)))
    allowed = dt <= tolerance_s
    # A forbidden pair costs more than all allowed pairs together, so the assignment first maximises the
    # number of allowed pairs and only then minimises their time differences.
    forbidden = tolerance_s * (min(dt.shape) + 1) + 1.0
    rows, cols = linear_assignment(np.where(allowed, dt, forbidden))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); ``(0, 1)`` with no trial."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@attrs.frozen
class Direction:
    """One line in one direction: the numbers of the comparison and the times of every miss and extra."""

    tally: int
    device: int
    matched: int
    missed_at: tuple[float, ...]
    extra_at: tuple[float, ...]

    @property
    def missed(self) -> int:
        return len(self.missed_at)

    @property
    def extra(self) -> int:
        return len(self.extra_at)

    def to_json(self) -> dict[str, Any]:
        return {"tally": self.tally, "device": self.device, "matched": self.matched, "missed": self.missed,
                "extra": self.extra, "missed_at": list(self.missed_at), "extra_at": list(self.extra_at)}


@attrs.frozen
class LineReport:
    name: str
    directions: Mapping[str, Direction]
    matched_if_flipped: int = 0
    """How many tallied crossings would pair with the device's had it counted this line the other way round."""

    def looks_flipped(self) -> bool:
        tallied = sum(d.tally for d in self.directions.values())
        matched = sum(d.matched for d in self.directions.values())
        return tallied >= 4 and self.matched_if_flipped >= max(2 * matched, tallied / 2)


@attrs.frozen
class Report:
    """The whole comparison; ``verdict`` is ``PASS`` or ``CHECK``, ``causes`` say what to look at."""

    lines: tuple[LineReport, ...]
    tolerance_s: float
    target: float
    min_crossings: int

    def _sum(self, field: str) -> int:
        return sum(getattr(d, field) for ln in self.lines for d in ln.directions.values())

    @property
    def tally(self) -> int:
        return self._sum("tally")

    @property
    def device(self) -> int:
        return self._sum("device")

    @property
    def matched(self) -> int:
        return self._sum("matched")

    @property
    def missed(self) -> int:
        return self._sum("missed")

    @property
    def extra(self) -> int:
        return self._sum("extra")

    @property
    def count_error(self) -> int:
        """The sum over lines and directions of ``|device - tally|``: an extra ``in`` at one line does not make
        up for a missed ``out`` or a miss at another line (a line counted the wrong way round is all error)."""
        return sum(abs(d.device - d.tally) for ln in self.lines for d in ln.directions.values())

    @property
    def count_accuracy(self) -> float:
        """What vendors quote, ``1 - |device - tally| / tally``, with the error summed per line and direction."""
        if not self.tally:
            return 1.0 if self.device == 0 else 0.0
        return max(0.0, 1.0 - self.count_error / self.tally)

    @property
    def event_accuracy(self) -> float:
        """``matched / (tally + extra)``: every miss and every extra counts against it."""
        n = self.tally + self.extra
        return self.matched / n if n else 1.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.matched, self.tally + self.extra)

    @property
    def verdict(self) -> str:
        return "PASS" if self.count_accuracy >= self.target and self.tally >= self.min_crossings else "CHECK"

    @property
    def causes(self) -> list[str]:
        """The likely reasons for a ``CHECK``, most telling first (empty on a pass)."""
        if self.verdict == "PASS":
            return []
        out: list[str] = []
        if self.tally < self.min_crossings:
            out.append(f"only {self.tally} crossings tallied: at least {self.min_crossings} are needed before the "
                       "interval can tell a good site from a bad one; count longer, at a busier time")
        for ln in self.lines:
            if ln.looks_flipped():
                out.append(f"{ln.name}: the device's in and out look swapped: check the direction "
                           f"(edgecount lines flip {ln.name})")
        if self.missed > 2 * max(1, self.extra) and self.missed >= 3:
            out.append(f"{self.missed} tallied crossings were not counted: people crossing together or hidden "
                       "by each other; mount the camera higher or tilt it down, or move the line to where people "
                       "walk apart")
        if self.extra > 2 * max(1, self.missed) and self.extra >= 3:
            out.append(f"{self.extra} device crossings had no tally nearby: false detections, or a line drawn "
                       "where people stand or turn back; move the line off queues, doors and displays")
        if not out and self.count_accuracy < self.target:
            out.append(f"count accuracy {self.count_accuracy:.1%} is below the target {self.target:.0%}: see the "
                       "times of the misses and extras and watch what happens at the line then")
        return out

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {
            "lines": {ln.name: {d: r.to_json() for d, r in ln.directions.items()} for ln in self.lines},
            "tally": self.tally, "device": self.device, "matched": self.matched, "missed": self.missed,
            "extra": self.extra, "count_error": self.count_error, "count_accuracy": self.count_accuracy,
            "event_accuracy": self.event_accuracy,
            "ci95": [lo, hi], "verdict": self.verdict, "causes": self.causes, "tolerance_s": self.tolerance_s,
            "target": self.target, "min_crossings": self.min_crossings,
        }


def compare(tally: Iterable[TimedCrossing], device: Iterable[TimedCrossing], lines: Sequence[str], *,
            tolerance_s: float = DEFAULT_TOLERANCE_S, window: tuple[float, float] | None = None,
            target: float = DEFAULT_TARGET, min_crossings: int = DEFAULT_MIN_CROSSINGS) -> Report:
    """Compare per line and direction. A device crossing outside ``window`` (the time the technician was
    counting) may still pair with a tallied one near its edge, but is never reported as an extra."""
    tallied = list(tally)
    counted = list(device)
    reports = []
    def times(found: list[TimedCrossing], name: str, d: str) -> list[float]:
        return sorted(c.t for c in found if c.line == name and c.direction == d)

    for name in lines:
        dirs: dict[str, Direction] = {}
        flipped = sum(len(match(times(tallied, name, d), times(counted, name, o), tolerance_s))
                      for d, o in zip(DIRECTIONS, reversed(DIRECTIONS), strict=True))
        for d in DIRECTIONS:
            ts, ds = times(tallied, name, d), times(counted, name, d)
            pairs = match(ts, ds, tolerance_s)
            used_t = {i for i, _ in pairs}
            used_d = {j for _, j in pairs}
            inside = [j for j in range(len(ds)) if window is None or window[0] <= ds[j] <= window[1]]
            dirs[d] = Direction(
                tally=len(ts), device=len(set(inside) | used_d), matched=len(pairs),
                missed_at=tuple(t for i, t in enumerate(ts) if i not in used_t),
                extra_at=tuple(ds[j] for j in inside if j not in used_d))
        reports.append(LineReport(name, dirs, flipped))
    return Report(tuple(reports), tolerance_s, target, min_crossings)
