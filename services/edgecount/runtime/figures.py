"""The figures a stage reports in its heartbeat, declared once by the stage that reports them.

A figure's declaration says what its key means, how Prometheus sees it (family,
type, scale, fixed labels) and how ``status`` shows it. The supervisor's
metrics, ``status`` and ``doctor`` loop over the declarations instead of
spelling keys, and a stage's heartbeat carries only figures it declared.

A key may hold ``{label}`` parts (``line.{line}.{direction}``): each becomes a
Prometheus label. Any figure may also come prefixed ``camera.NAME.`` when
several cameras share one stage; the prefix becomes the ``camera`` label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

import attrs

from edgecount_core.messages import DEFAULT_CAMERA

__all__ = ["COMMON", "DISK_FULL", "Figure", "Sample", "declared", "details", "labelled_values"]

Sample = tuple[dict[str, str], float]
_PART = re.compile(r"\{(\w+)\}")


@attrs.frozen
class Figure:
    """One heartbeat figure: its key, what it means, how it is exported and shown."""

    key: str
    text: str
    """What it means, for the Prometheus HELP line and ``status --figures``."""
    metric: str = ""
    """The Prometheus family (``""``: shown, not exported)."""
    kind: str = "gauge"
    """``gauge`` or ``counter``."""
    scale: float = 1.0
    """Metric value = figure x scale (milliseconds to seconds)."""
    fixed: tuple[tuple[str, str], ...] = ()
    """Labels every sample of this figure carries (a quantile)."""
    label: str = ""
    """How ``status``'s details column shows it: ``"fps in"`` (then the value) or ``"p50 {} ms"``; ``""``: not
    shown there."""
    alarm: bool = False
    """A true or non-zero value is trouble: ``status`` shows it (highlighted) only then."""
    each_camera: bool = False
    """Exported once per camera (``camera.NAME.`` keys, else the one camera); otherwise only the stage's total."""

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        body = _PART.sub(lambda m: f"(?P<{m.group(1)}>.+)", re.escape(self.key).replace(r"\{", "{").replace(r"\}", "}"))
        return re.compile(rf"(?:camera\.(?P<camera>[^.]+)\.)?{body}")

    def matches(self, key: str) -> dict[str, str] | None:
        """The labels ``key`` carries if it is this figure's (``camera`` when prefixed), else None."""
        m = self._pattern.fullmatch(key)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}

    def read(self, stats: Mapping[str, Any], default: float = 0.0, camera: str = "", **parts: str) -> float:
        """This figure's number in ``stats`` (``parts`` fill the key's labels), or ``default``."""
        key = self.key.format(**parts) if parts else self.key
        value = stats.get(f"camera.{camera}.{key}" if camera else key)
        if isinstance(value, bool | int | float):
            return float(value)
        try:
            return float(value) if value not in (None, "") else default
        except (TypeError, ValueError):
            return default

    def text_of(self, stats: Mapping[str, Any], **parts: str) -> str:
        value = stats.get(self.key.format(**parts) if parts else self.key)
        return "" if value is None else str(value)


DISK_FULL = Figure("disk_full_s", "how long the service has been unable to write for want of space (degraded, "
                   "waiting; absent when it can write)", "edgecount_service_disk_full_seconds",
                   label="DISK FULL for {} s", alarm=True)

#: Figures the shared stage loop adds to every stage's heartbeat.
COMMON: tuple[Figure, ...] = (
    Figure("cpu_s", "CPU seconds the process has used"),
    Figure("bad_messages", "malformed or invalid bus messages the service dropped",
           "edgecount_bus_bad_messages_total", "counter", alarm=True),
    DISK_FULL,
    Figure("log_lines_dropped", "log lines the service could not write (full disk)",
           "edgecount_log_lines_dropped_total", "counter"),
)


def declared(figures: Iterable[Figure], key: str) -> Figure | None:
    """The figure ``key`` belongs to, if any."""
    return next((f for f in figures if f.matches(key) is not None), None)


def labelled_values(figure: Figure, stats: Mapping[str, Any], camera: str = "") -> list[Sample]:
    """Every number of ``figure`` in ``stats``, with the labels its key carries, scaled for export.

    ``camera``: the camera the reporting process serves alone (``capture@door``), if it serves one.
    """
    out: list[Sample] = []
    for key, value in stats.items():
        labels = figure.matches(key)
        if labels is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        prefixed = labels.pop("camera", "")
        if prefixed and not figure.each_camera:
            continue  # the stage's total is exported; its share per camera is for status
        if figure.each_camera or camera:
            labels["camera"] = prefixed or camera or DEFAULT_CAMERA
        out.append(({**dict(figure.fixed), **labels}, float(value) * figure.scale))
    return out


def details(figures: Iterable[Figure], stats: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``status``'s details of one service: ``(text, is trouble)`` for each shown figure it reported."""
    out: list[tuple[str, bool]] = []
    for f in figures:
        value = stats.get(f.key)
        if not f.label or value is None or (f.alarm and not value):
            continue
        shown = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        if "{}" in f.label:
            out.append((f.label.format(shown), f.alarm))
        else:
            out.append((f.label if f.alarm and isinstance(value, bool) else f"{f.label} {shown}", f.alarm))
    return out
