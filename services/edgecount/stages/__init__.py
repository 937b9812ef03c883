"""The five pipeline stages and who feeds whom: the appliance's topology, declared once.

Three graphs are declared here: who subscribes to whom (``links``), whose
durable log a stage follows (``follows``: the loss-free path of the counts),
and which parts of the configuration a stage reads at start (``reloads_on``:
what a change of them must restart, :func:`reloaded_by`).
Every other place that needs the topology derives it from :data:`STAGES`: each
stage's subscriptions (:meth:`Stage.subscriptions`), the watchdog's children,
the ``python -m edgecount.stages NAME`` entry, record and replay-service, the
CLI's choices and the README's "What runs" table (:func:`markdown_table`, kept
equal to the README by a test). Importing this module imports no stage: the
classes are named by their import path and loaded by the process that runs
them.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module
from typing import TYPE_CHECKING

import attrs

from edgecount.runtime import bus
from edgecount.runtime.figures import COMMON, Figure
from edgecount.stages.figures import CAPTURE, COUNTER, INFERENCE, PRIVACY, UPLINK, declared_by
from edgecount_core.config import Config

if TYPE_CHECKING:
    from edgecount.stages.base import Service

#: Every stage forwards these hop by hop or sends them to the watchdog; they are not data.
CONTROL_TOPICS = (bus.HEALTH, bus.MARKER, bus.EOS)


@attrs.frozen
class Link:
    """One upstream a stage listens to, and on which topics; ``when`` limits it to a mode."""

    upstream: str
    topics: tuple[bytes, ...]
    when: str = ""  # "" always, "replay" (capture.realtime false), "snapshots" (privacy.policy)

    def active(self, config: Config) -> bool:
        if self.when == "replay":
            return not config.capture.realtime
        if self.when == "snapshots":
            return config.privacy.policy == "snapshots"
        return True


@attrs.frozen
class Stage:
    name: str
    entry: str  # "module:Class"
    job: str
    links: tuple[Link, ...]
    publishes: tuple[bytes, ...]
    follows: str = ""
    """The stage whose durable log this one applies in order (``""``: none)."""
    reloads_on: tuple[str, ...] = ()
    """Configuration parts read only at start (``lines``, ``zones``): a change of them restarts the stage."""
    heavy_imports: tuple[str, ...] = ()
    """Libraries the stage loads that are slow to import, at import or later (the Edge TPU's runtime, MQTT,
    the stills' image code): the fork server imports them once for all."""
    figures: tuple[Figure, ...] = ()
    """What its heartbeat reports (:mod:`edgecount.stages.figures`), besides the figures every stage reports."""

    def reported(self) -> tuple[Figure, ...]:
        """Every figure this stage's heartbeat may carry."""
        return (*COMMON, *self.figures)

    @property
    def module(self) -> str:
        return self.entry.split(":")[0]

    def subscriptions(self, config: Config) -> tuple[tuple[str, tuple[bytes, ...]], ...]:
        """``(upstream process, topics)`` for every link active under ``config`` (one per camera's capture)."""
        return tuple((up, ln.topics) for ln in self.links if ln.active(config)
                     for up in (capture_processes(config) if ln.upstream == "capture" else (ln.upstream,)))

    def data_inputs(self) -> tuple[tuple[str, tuple[bytes, ...]], ...]:
        """The always-on links without control topics: what a recording can feed this stage alone."""
        out = []
        for ln in self.links:
            topics = tuple(t for t in ln.topics if t not in CONTROL_TOPICS)
            if not ln.when and topics:
                out.append((ln.upstream, topics))
        return tuple(out)

    def load(self) -> type[Service]:
        module, cls = self.entry.split(":")
        loaded: type[Service] = getattr(import_module(module), cls)
        return loaded


_HOP = (bus.MARKER, bus.EOS)

STAGES: tuple[Stage, ...] = (
    Stage("capture", "edgecount.stages.capture:Capture",
          "one per camera (`capture@NAME` with `[[cameras]]`): reads a file / RTSP / V4L2 source, decodes each "
          "frame straight into that camera's shared-memory ring",
          (Link("counter", (bus.TRACKS,), when="replay"), Link("uplink", _HOP, when="replay")),
          (bus.FRAME,), heavy_imports=("numpy", "cv2", "sqlite3"), figures=declared_by(CAPTURE)),
    Stage("inference", "edgecount.stages.inference:Inference",
          "owns the CPU interpreter or Edge TPU for all cameras, serving them in turn; reads the slot into the "
          "model input (no full-frame copy)",
          (Link("capture", (bus.FRAME, *_HOP)),),
          (bus.DETECTIONS,), heavy_imports=("numpy", "cv2", "sqlite3", "ai_edge_litert.interpreter"),
          figures=declared_by(INFERENCE)),
    Stage("counter", "edgecount.stages.counter:Counter",
          "ByteTrack-class tracker, line and zone counters per camera; commits each frame before acknowledging it",
          (Link("inference", (bus.DETECTIONS, *_HOP)),),
          (bus.TRACKS, bus.CROSSING, bus.ZONE, bus.WATERMARK, bus.TAIL), reloads_on=("lines", "zones"),
          heavy_imports=("numpy", "sqlite3"), figures=declared_by(COUNTER)),
    Stage("privacy", "edgecount.stages.privacy:Privacy",
          "aggregates crossings into counts per line/zone per time bucket — the only producer for the uplink",
          (Link("counter", (bus.CROSSING, bus.ZONE, bus.WATERMARK, bus.TAIL, *_HOP)),
           Link("capture", (bus.FRAME,), when="snapshots"), Link("inference", (bus.DETECTIONS,), when="snapshots")),
          (bus.RECORD, bus.SNAPSHOT, bus.TAIL), follows="counter", reloads_on=("lines", "zones"),
          heavy_imports=("numpy", "cv2", "sqlite3"), figures=declared_by(PRIVACY)),
    Stage("uplink", "edgecount.stages.uplink:Uplink",
          "delivers records from its outbox to the sinks (JSON lines, MQTT, webhook)",
          (Link("privacy", (bus.RECORD, bus.SNAPSHOT, bus.TAIL, *_HOP)),),
          (), follows="privacy", reloads_on=("lines", "zones"),  # Home Assistant has an entity per line
          heavy_imports=("sqlite3", "paho.mqtt.client"), figures=declared_by(UPLINK)),
)

BY_NAME = {s.name: s for s in STAGES}


def preload_modules() -> tuple[str, ...]:
    """What the fork server imports before it forks any stage: every stage's heavy libraries, then the
    stages themselves (each once, in order)."""
    libraries = [m for s in STAGES for m in s.heavy_imports]
    return tuple(dict.fromkeys([*libraries, *(s.module for s in STAGES)]))
NAMES: tuple[str, ...] = tuple(BY_NAME)


def figures_by_stage() -> dict[str, tuple[Figure, ...]]:
    """Every stage's heartbeat figures, for the supervisor's metrics (it never imports a stage)."""
    return {s.name: s.reported() for s in STAGES}


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"no stage {name!r}; stages: {', '.join(NAMES)}") from None


def reloaded_by(part: str) -> tuple[str, ...]:
    """The stages to restart, in pipeline order, once ``part`` of the configuration (``lines``) changed."""
    return tuple(s.name for s in STAGES if part in s.reloads_on)


PER_CAMERA = "capture"


def capture_process(config: Config, camera: str) -> str:
    """The process that captures ``camera``: ``capture`` in a file without ``[[cameras]]``, else ``capture@NAME``."""
    return f"{PER_CAMERA}@{camera}" if config.cameras else PER_CAMERA


def capture_processes(config: Config) -> tuple[str, ...]:
    return tuple(capture_process(config, cam) for cam in config.camera_names())


def processes(config: Config) -> tuple[str, ...]:
    """Every process the watchdog runs for ``config``: one capture per camera, then the shared stages."""
    return (*capture_processes(config), *(s.name for s in STAGES if s.name != PER_CAMERA))


def split_process(process: str) -> tuple[Stage, str | None]:
    """``capture@door`` -> (the capture stage, ``"door"``); ``counter`` -> (the counter stage, ``None``)."""
    name, at, camera = process.partition("@")
    st = stage(name)
    if at and (name != PER_CAMERA or not camera):
        raise ValueError(f"no process {process!r}: only {PER_CAMERA} runs per camera, as {PER_CAMERA}@CAMERA")
    return st, (camera or None)


def replayable() -> tuple[str, ...]:
    """Stages a recording can be fed into alone (they have an always-on upstream)."""
    return tuple(s.name for s in STAGES if s.data_inputs())


def publishers_of(topic: bytes) -> tuple[str, ...]:
    return tuple(s.name for s in STAGES if topic in s.publishes)


def data_topics() -> tuple[bytes, ...]:
    """Every topic a stage publishes, in pipeline order, without duplicates."""
    seen: dict[bytes, None] = {}
    for s in STAGES:
        for t in s.publishes:
            seen.setdefault(t, None)
    return tuple(seen)


def _topics(topics: Iterable[bytes]) -> str:
    return ", ".join(f"`{t.decode()}`" for t in topics if t not in CONTROL_TOPICS) or "—"


def markdown_table() -> str:
    """The README's "What runs" table, rendered from :data:`STAGES`."""
    rows = ["| process | job | listens to | publishes |", "| --- | --- | --- | --- |"]
    for s in STAGES:
        links = []
        for ln in s.links:
            data = [t for t in ln.topics if t not in CONTROL_TOPICS]
            what = f"`{ln.upstream}` ({_topics(data)})" if data else f"`{ln.upstream}` (markers, end of stream)"
            links.append(f"{what}{f' — {ln.when} only' if ln.when else ''}")
        rows.append(f"| `{s.name}` | {s.job} | {'; '.join(links) or '—'} | {_topics(s.publishes)} |")
    rows.append("| watchdog | starts all of the above, restarts on exit or silence, talks to systemd "
                "| every `health` | — |")
    return "\n".join(rows)
