"""Prometheus metrics without a listener: node_exporter's textfile format, written atomically.

The device opens no port. The watchdog, which already receives every service's heartbeat, renders
their figures as Prometheus text and renames a complete file into node_exporter's textfile directory
(Debian's ``prometheus-node-exporter`` reads ``/var/lib/prometheus/node-exporter/*.prom``). Labels are
the service, the camera, the sink or a quantile: never a track, a person or anything per event. The file
says when it was written, so a supervisor that stopped writing it is seen (the figures would otherwise
stay at their last values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgecount.runtime.files import replace_text

Sample = tuple[dict[str, str], float]

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "edgecount_metrics_written_timestamp_seconds": ("gauge", "when the watchdog wrote this file (alert when old)"),
    "edgecount_service_up": ("gauge", "1 while the service heartbeats (ok or degraded)"),
    "edgecount_service_degraded": ("gauge", "1 while the service reports degraded (camera down, no Edge TPU, broker)"),
    "edgecount_service_restarts_total": ("counter", "restarts of the service by the watchdog"),
    "edgecount_bus_bad_messages_total": ("counter", "malformed or invalid bus messages the service dropped"),
    "edgecount_service_disk_full_seconds": ("gauge", "how long the service has been unable to write for want of "
                                             "space (degraded, waiting; absent when it can write)"),
    "edgecount_log_lines_dropped_total": ("counter", "log lines the service could not write (full disk)"),
    "edgecount_frames_read_total": ("counter", "frames capture read from the camera"),
    "edgecount_frames_processed_total": ("counter", "frames inference ran the detector on"),
    "edgecount_frames_skipped_total": ("counter", "frames inference skipped to keep up (live: newest frame wins)"),
    "edgecount_frames_dropped_total": ("counter", "frames overwritten in the ring before inference read them"),
    "edgecount_inference_latency_seconds": ("gauge", "detector latency over the last frames, by quantile"),
    "edgecount_events_total": ("counter", "crossings and zone changes the counter made durable"),
    "edgecount_outbox_backlog_records": ("gauge", "records some sink has not confirmed yet"),
    "edgecount_outbox_oldest_undelivered_age_seconds": ("gauge", "age of the oldest record not yet confirmed"),
    "edgecount_outbox_dropped_records_total": ("counter", "records merged or dropped to bound the outbox"),
    "edgecount_late_events_total": ("counter", "crossings privacy could not count: their bucket had been sent"),
    "edgecount_clock_steps_back_total": ("counter", "backward steps of the wall clock seen in the frame times"),
    "edgecount_bucket_clock_ahead_seconds": ("gauge", "how far bucket times run ahead of the clock after a step back"),
    "edgecount_stream_gaps_total": ("counter", "stretches without frames too long to fill with zero rows"),
    "edgecount_stream_gap_seconds_total": ("counter", "stream time in those gaps (no rows: the device did not watch)"),
    "edgecount_records_delivered_total": ("counter", "records a sink confirmed (file fsynced, MQTT PUBACK, 2xx)"),
    "edgecount_line_crossings_total": ("counter", "people the counter counted crossing a line, per camera, line "
                                       "and direction (starts again only when the lines change)"),
}

_PER_SERVICE = {"bad_messages": "edgecount_bus_bad_messages_total",
                "disk_full_s": "edgecount_service_disk_full_seconds",
                "log_lines_dropped": "edgecount_log_lines_dropped_total"}
_SERVICE_STATS = {  # (service, stat) -> metric
    ("capture", "frames_read"): "edgecount_frames_read_total",
    ("inference", "processed"): "edgecount_frames_processed_total",
    ("inference", "skipped"): "edgecount_frames_skipped_total",
    ("inference", "overwritten"): "edgecount_frames_dropped_total",
    ("counter", "events"): "edgecount_events_total",
    ("uplink", "backlog"): "edgecount_outbox_backlog_records",
    ("uplink", "oldest_undelivered_s"): "edgecount_outbox_oldest_undelivered_age_seconds",
    ("uplink", "dropped_records"): "edgecount_outbox_dropped_records_total",
    ("privacy", "late_events"): "edgecount_late_events_total",
    ("privacy", "clock_steps_back"): "edgecount_clock_steps_back_total",
    ("privacy", "clock_ahead_s"): "edgecount_bucket_clock_ahead_seconds",
    ("privacy", "stream_gaps"): "edgecount_stream_gaps_total",
    ("privacy", "stream_gap_s"): "edgecount_stream_gap_seconds_total",
}


def _line_crossings(stats: Mapping[str, Any]) -> list[Sample]:
    """The counter's ``line.NAME.in`` (one camera) or ``camera.CAM.line.NAME.in`` (several) as labelled samples."""
    out: list[Sample] = []
    for key, value in stats.items():
        if key.startswith("camera."):
            camera, found, rest = key.removeprefix("camera.").partition(".line.")
            if not found:
                continue
        elif key.startswith("line."):
            camera, rest = "main", key.removeprefix("line.")
        else:
            continue
        name, _, direction = rest.rpartition(".")  # a line's name may hold dots (door.1)
        if direction in ("in", "out") and name and isinstance(value, int) and not isinstance(value, bool):
            out.append(({"camera": camera, "line": name, "direction": direction}, float(value)))
    return out


def samples(services: Iterable[Mapping[str, Any]], now: float | None = None) -> dict[str, list[Sample]]:
    """The metrics of the watchdog's status rows (``edgecount status --json``'s ``services``), written at
    wall-clock ``now``."""
    out: dict[str, list[Sample]] = {name: [] for name in METRICS}
    if now is not None:
        out["edgecount_metrics_written_timestamp_seconds"].append(({}, round(now, 3)))
    for s in services:
        name, stats = str(s["service"]), s.get("stats") or {}
        label = {"service": name}
        out["edgecount_service_up"].append((label, float(s.get("state") in ("ok", "degraded"))))
        out["edgecount_service_degraded"].append((label, float(s.get("state") == "degraded")))
        out["edgecount_service_restarts_total"].append((label, float(s.get("restarts", 0))))
        for stat, metric in _PER_SERVICE.items():
            if isinstance(stats.get(stat), int | float):
                out[metric].append((label, float(stats[stat])))
        stage, _, camera = name.partition("@")  # capture@door: one per camera, labelled with it
        for (svc, stat), metric in _SERVICE_STATS.items():
            if svc == stage and isinstance(stats.get(stat), int | float) and not isinstance(stats[stat], bool):
                out[metric].append(({"camera": camera} if camera else {}, float(stats[stat])))
        if name == "inference":
            for q, key in (("0.5", "latency_ms_p50"), ("0.95", "latency_ms_p95")):
                if isinstance(stats.get(key), int | float) and int(stats.get("processed", 0)):
                    out["edgecount_inference_latency_seconds"].append(({"quantile": q}, float(stats[key]) / 1000))
        if name == "counter":
            out["edgecount_line_crossings_total"] += _line_crossings(stats)
        if name == "uplink":
            for key, value in stats.items():
                if key.startswith("delivered.") and isinstance(value, int | float):
                    out["edgecount_records_delivered_total"].append(({"sink": key.split(".", 1)[1]}, float(value)))
    return out


def _label_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    esc = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(esc.items())) + "}"


def _number(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)  # shortest exact text


def render(metrics: Mapping[str, list[Sample]]) -> str:
    """Prometheus text exposition format (one HELP and TYPE per family, samples after)."""
    lines = []
    for name, (kind, text) in METRICS.items():
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
