"""Prometheus metrics without a listener: node_exporter's textfile format, written atomically.

The device opens no port. The watchdog, which already receives every service's heartbeat, renders
their figures as Prometheus text and renames a complete file into node_exporter's textfile directory
(Debian's ``prometheus-node-exporter`` reads ``/var/lib/prometheus/node-exporter/*.prom``). Labels are
the service, the camera, the sink or a quantile: never a track, a person or anything per event. The file
says when it was written, so a supervisor that stopped writing it is seen (the figures would otherwise
stay at their last values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgecount.runtime.figures import COMMON, Figure, Sample, labelled_values
from edgecount.runtime.files import replace_text

Figures = Mapping[str, Sequence[Figure]]
"""Each stage's declared heartbeat figures (``stages.figures_by_stage()``, handed over by the CLI)."""

# The supervisor's own families; every other family is a declared figure's.
_OWN: dict[str, tuple[str, str]] = {
    "edgecount_metrics_written_timestamp_seconds": ("gauge", "when the watchdog wrote this file (alert when old)"),
    "edgecount_service_up": ("gauge", "1 while the service heartbeats (ok or degraded)"),
    "edgecount_service_degraded": ("gauge", "1 while the service reports degraded (camera down, no Edge TPU, broker)"),
    "edgecount_service_restarts_total": ("counter", "restarts of the service by the watchdog"),
}


def families(figures: Figures) -> dict[str, tuple[str, str]]:
    """Every family the file may hold: name -> (type, help), in a stable order."""
    out = dict(_OWN)
    for f in (*COMMON, *(f for figs in figures.values() for f in figs)):
        if f.metric:
            out.setdefault(f.metric, (f.kind, f.text))
    return out


def samples(services: Iterable[Mapping[str, Any]], figures: Figures,
            now: float | None = None) -> dict[str, list[Sample]]:
    """The metrics of the watchdog's status rows (``edgecount status --json``'s ``services``), written at
    wall-clock ``now``."""
    out: dict[str, list[Sample]] = {name: [] for name in families(figures)}
    if now is not None:
        out["edgecount_metrics_written_timestamp_seconds"].append(({}, round(now, 3)))
    for s in services:
        name, stats = str(s["service"]), s.get("stats") or {}
        label = {"service": name}
        out["edgecount_service_up"].append((label, float(s.get("state") in ("ok", "degraded"))))
        out["edgecount_service_degraded"].append((label, float(s.get("state") == "degraded")))
        out["edgecount_service_restarts_total"].append((label, float(s.get("restarts", 0))))
        for f in COMMON:
            if f.metric:
                out[f.metric] += [({**labels, **label}, v) for labels, v in labelled_values(f, stats)]
        stage, _, camera = name.partition("@")  # capture@door: one per camera, labelled with it
        for f in figures.get(stage, ()):
            if f.metric and f not in COMMON:
                out[f.metric] += labelled_values(f, stats, camera)
    return out


def _label_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    esc = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(esc.items())) + "}"


def _number(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)  # shortest exact text


def render(metrics: Mapping[str, list[Sample]], figures: Figures) -> str:
    """Prometheus text exposition format (one HELP and TYPE per family, samples after)."""
    lines = []
    for name, (kind, text) in families(figures).items():
        rows = metrics.get(name) or []
        if not rows:
            continue
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_label_text(labels)} {_number(value)}" for labels, value in rows]
    return "\n".join(lines) + "\n"


def write_textfile(directory: Path, text: str, name: str = "edgecount.prom") -> Path:
    """Replace ``directory/name`` atomically: node_exporter never reads half a file."""
    target = directory / name
    replace_text(target, text, 0o644, fsync=False)  # readable by node_exporter's user; rewritten every few s
    return target
