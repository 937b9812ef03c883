"""How long people have been in view since each line last counted: a line drawn where nobody crosses.

A line placed beside the walking path, or with its ends short of it, counts nothing while the camera sees
people all day. Per line, this keeps the stream time during which at least one person was in view since the
line's last crossing; ``doctor`` flags a line once that passes its limit. Time is passed in; a gap between
frames longer than :data:`MAX_STEP_S` (the camera was down) adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["MAX_STEP_S", "LineActivity"]

MAX_STEP_S = 5.0


@attrs.define
class LineActivity:
    lines: tuple[str, ...]
    people_s: dict[str, float] = attrs.field(factory=dict)
    """Per line, seconds with someone in view since it last counted."""
    last_ts: float | None = None

    def update(self, ts: float, people_in_view: int, crossed: Iterable[str]) -> None:
        step = 0.0 if self.last_ts is None else ts - self.last_ts
        self.last_ts = ts
        if people_in_view and 0 < step <= MAX_STEP_S:
            for name in self.lines:
                self.people_s[name] = self.people_s.get(name, 0.0) + step
        for name in crossed:
            self.people_s[name] = 0.0
