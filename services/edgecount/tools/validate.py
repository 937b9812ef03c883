"""``edgecount validate``'s work: where the device's crossings come from, the live tally, the kept result.

Three ways to get the two lists :func:`edgecount_core.validation.compare` pairs up:

- live, on the device: the technician presses a key per crossing (:class:`LiveTally`) while the counter's
  crossings of the same minutes are read from its journal (:mod:`edgecount.stages.crossing_journal`);
- a tally file against the device: the file's clock times select the journal's crossings;
- a tally file against a recorded clip: the clip is replayed through the whole pipeline first.

Device crossings are always read locally, never through the uplink, and carry the capture time of the
frame they were decided on, so both lists are on the device's clock. The last result is kept in the state
directory for ``status``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from edgecount.runtime.files import replace_text
from edgecount.runtime.settings import state_dir
from edgecount.stages.crossing_journal import KEEP_S, read_crossings
from edgecount_core.config import Config, LineSection
from edgecount_core.messages import DEFAULT_CAMERA
from edgecount_core.validation import Report, Tally, TimedCrossing, compare

__all__ = ["KEY_PAIRS", "LiveTally", "ValidationError", "device_crossings", "last_result", "save_result",
           "summary", "validate_clip", "validate_file"]

KEY_PAIRS = (("i", "o"), ("1", "2"), ("3", "4"), ("5", "6"), ("7", "8"))
"""The keys for in and out of the first, second ... line: ``i``/``o`` first, then pairs of digits."""
RESULT_FILE = "validation.json"


class ValidationError(RuntimeError):
    """Validation cannot run as asked; the message says why and what to do."""


def line_names(cfg: Config, camera: str) -> list[str]:
    return [ln.name for ln in cfg.for_camera(camera).lines]


def device_crossings(cfg: Config, since: float, until: float, camera: str = DEFAULT_CAMERA) -> list[TimedCrossing]:
    return read_crossings(state_dir(cfg) / "counter.db", since, until, camera)


def validate_file(cfg: Config, tally: Tally, *, camera: str, tolerance_s: float, target: float,
                  min_crossings: int, now: float) -> Report:
    """A tally file with clock times against what the device counted over the file's time window."""
    if not tally.absolute:
        raise ValidationError("the tally's times are seconds from a start: compare it with the clip it was counted "
                              "on (edgecount validate CLIP --tally FILE), or write clock times (ISO-8601)")
    first, last = tally.window
    if first < now - KEEP_S:
        raise ValidationError(f"the tally starts {_ago(now - first)} ago; the device keeps crossing times for "
                              f"{_ago(KEEP_S)}")
    if last > now + 60:
        raise ValidationError(f"the tally ends {_ago(last - now)} in the future: are the device's clock and the "
                              "file's time zone right?")
    device = device_crossings(cfg, first - tolerance_s, last + tolerance_s, camera)
    return compare(tally.crossings, device, line_names(cfg, camera), tolerance_s=tolerance_s,
                   window=(first - tolerance_s, last + tolerance_s), target=target, min_crossings=min_crossings)


def validate_clip(cfg: Config, clip: str, tally: Tally, lines: list[LineSection] | None, *, tolerance_s: float,
                  target: float, min_crossings: int, progress: Any = None,
                  logger: Any = None) -> tuple[Report, Any]:
    """A tally file in seconds from the clip's start against the pipeline run over the clip."""
    from edgecount.tools.replay import replay

    if tally.absolute:
        raise ValidationError("a clip's tally gives seconds from the clip's start (12.5), not clock times")
    names = [ln.name for ln in (lines or cfg.lines)]
    unknown = sorted({c.line for c in tally.crossings} - set(names))
    if unknown:
        raise ValidationError(f"the tally names line {unknown[0]!r}, which is not counted; lines: "
                              f"{', '.join(names) or 'none (pass --line NAME:AX,AY,BX,BY)'}")
    res = replay(cfg, clip, lines=lines, progress=progress, logger=logger)
    report = compare(tally.crossings, res.crossings, names, tolerance_s=tolerance_s, target=target,
                     min_crossings=min_crossings)
    return report, res


def _ago(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


@attrs.define
class LiveTally:
    """The technician's key presses during a live validation; time is passed in."""

    lines: Sequence[str]
    started: float
    presses: list[TimedCrossing] = attrs.field(factory=list)

    @property
    def keys(self) -> dict[str, tuple[str, str]]:
        """Key -> (line, direction), for the first :data:`KEY_PAIRS` lines."""
        out: dict[str, tuple[str, str]] = {}
        for name, (k_in, k_out) in zip(self.lines, KEY_PAIRS, strict=False):
            out[k_in], out[k_out] = (name, "in"), (name, "out")
        return out

    def press(self, key: str, now: float) -> bool:
        """Tally the crossing ``key`` stands for; ``u`` takes the last one back. False for another key."""
        if key == "u":
            if self.presses:
                self.presses.pop()
            return True
        hit = self.keys.get(key)
        if hit is None:
            return False
        self.presses.append(TimedCrossing(now, *hit))
        return True

    def count(self, line: str, direction: str) -> int:
        return sum(1 for p in self.presses if p.line == line and p.direction == direction)


def save_result(cfg: Config, report: Report, source: str, now: float) -> Path:
    """Keep ``report`` as the site's last validation (status shows it)."""
    path = state_dir(cfg) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"at": now, "source": source, **report.to_json()}
    replace_text(path, json.dumps(data, indent=1), 0o644)
    return path


def last_result(cfg: Config) -> dict[str, Any] | None:
    """The kept result, or ``None`` when the site was never validated (or the file is unreadable)."""
    try:
        data = json.loads((state_dir(cfg) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and isinstance(data.get("at"), (int, float)) and math.isfinite(data["at"])
    return data if ok and data.get("verdict") in ("PASS", "CHECK") else None


def summary(data: dict[str, Any], now: float) -> str:
    """One line for ``status``: when the site was last validated and with what result."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(data["at"])))
    return (f"last validated {when} ({_ago(max(0.0, now - float(data['at'])))} ago): {data['verdict']}, count "
            f"accuracy {float(data.get('count_accuracy', 0)):.1%} over {data.get('tally', 0)} tallied crossings")
