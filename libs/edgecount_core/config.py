"""The appliance's one configuration, validated at start-up.

:func:`parse_config` takes the already-parsed TOML mapping and returns a
frozen :class:`Config`, or raises :class:`ConfigError` whose message names
every bad key, what was found and what is expected.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgecount_core.geometry import Line, Polygon
from edgecount_core.messages import DEFAULT_CAMERA

if TYPE_CHECKING:  # the counting chain needs NumPy; the watchdog and uplink read this file without it
    from edgecount_core.camera import CameraCounter

__all__ = ["DEFAULT_CAMERA", "Config", "ConfigError", "parse_config", "parse_line_arg"]

MAX_CAMERA_NAME = 24


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _repeated(names: Sequence[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


# The longest fixed ipc socket name under runtime.dir, and the unix socket path limit. A camera's capture
# socket (``capture@NAME.sock``) may be longer: the check below uses the configured names.
_LONGEST_SOCKET = len("/counter.sync.sock")
MAX_IPC_PATH = 100
# The frame ring lives in /dev/shm (half the RAM by default): a generous cap that still fits small boards.
MAX_RING_BYTES = 1 << 30


def _topic_level(v: str) -> str:
    """A value used as one MQTT topic level: no wildcards, separators, NUL or control characters."""
    bad = sorted({c for c in v if c in "+#/" or not c.isprintable()})
    if bad:
        raise ValueError(f"is used as an MQTT topic level and must not contain {''.join(repr(c) for c in bad)}"
                         " (wildcards '+' '#', the level separator '/', NUL or control characters)")
    return v


class DeviceSection(_Section):
    site: str = Field("default", min_length=1, description="site name, used in MQTT topics")
    id: str = Field("edgecount-1", min_length=1, description="device id, used in MQTT topics")

    _levels = field_validator("site", "id")(_topic_level)


class RuntimeSection(_Section):
    dir: str = Field(
        "",
        description="private directory for ipc sockets; empty = $XDG_RUNTIME_DIR/edgecount or /run/edgecount",
    )
    state_dir: str = Field(
        "",
        description="directory for the outbox and sinks; empty = ~/.local/state/edgecount",
    )


class AssetsSection(_Section):
    mirror: str = Field(
        "",
        description="local directory that mirrors model/clip downloads (env EDGECOUNT_ASSET_MIRROR"
        " overrides)",
    )
    cache: str = Field("", description="where fetched models and clips are kept; empty = ~/.cache/edgecount")
    allow_download: bool = Field(
        True,
        description="fall back to the official URLs when the mirror lacks a file",
    )


class CaptureSection(_Section):
    source: str = Field("asset:pets09", description="video file, rtsp:// URL, /dev/videoN, or asset:NAME")
    realtime: bool = Field(
        True,
        description="pace file sources at their frame rate and drop frames when behind",
    )
    loop: bool = Field(False, description="restart a file source at its end (demo appliance)")
    file_speed: float = Field(
        1.0, gt=0, le=16,
        description="realtime file sources play at this multiple of their frame rate (below 1 for slow CPUs)",
    )
    ring_slots: int = Field(8, ge=3, le=256, description="number of shared-memory frame slots (3..256)")
    max_width: int = Field(1920, ge=16, description="largest frame width the ring accepts")
    max_height: int = Field(1080, ge=16, description="largest frame height the ring accepts")
    reconnect_initial_s: float = Field(1.0, gt=0, description="first wait before reopening a lost camera")
    reconnect_max_s: float = Field(30.0, gt=0, description="longest wait between camera reopen attempts")
    open_timeout_s: float | None = Field(
        None, gt=0, description="give up opening a network stream after this long; empty = 10 s, at most half "
        "of watchdog.hang_timeout_s")
    read_timeout_s: float | None = Field(
        None, gt=0, description="a stream that stalls this long counts as lost; empty = 5 s, at most half of "
        "watchdog.hang_timeout_s")
    max_fps: float | None = Field(
        None, gt=0, le=120, description="realtime: announce at most this many frames a second (the rest are read "
        "and dropped, so a 25 fps camera costs the detector 10); empty = every frame")

    @model_validator(mode="after")
    def _limits(self) -> CaptureSection:
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError(f"capture.reconnect_initial_s ({self.reconnect_initial_s}) is above "
                             f"capture.reconnect_max_s ({self.reconnect_max_s}); fix: lower the first or raise "
                             "the second")
        size = self.max_width * self.max_height * 3 * self.ring_slots
        if size > MAX_RING_BYTES:
            raise ValueError(f"the frame ring would need {size / 2**20:.0f} MiB of shared memory "
                             f"(max_width x max_height x 3 x ring_slots), more than {MAX_RING_BYTES >> 20} MiB; "
                             "fix: lower capture.max_width/max_height or ring_slots")
        return self


class InferenceSection(_Section):
    model: str = Field(
        "yolox_nano",
        description="model name from models/manifest.toml, or a .tflite path",
    )
    device: str = Field("cpu", description="'cpu', or an Edge TPU: 'usb', 'usb:N', 'pci', 'pci:N'")
    fallback_model: str = Field(
        "",
        description="CPU model to use when the Edge TPU is absent; empty = the CPU twin from the manifest",
    )
    tpu_fallback_model: str = Field(
        "",
        description="Edge TPU model to try when `model` cannot be loaded on a present Edge TPU (missing file)",
    )
    threads: int | Literal["auto"] = Field(
        2, description="CPU interpreter threads, or 'auto': one fewer than the cores (decoding, tracking and the "
                       "other services keep one), at least 1 and at most 4")

    @field_validator("threads")
    @classmethod
    def _threads(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 64:
            raise ValueError("must be 1..64 or 'auto'")
        return v

    def thread_count(self, cpu_count: int) -> int:
        """The interpreter threads to use on a machine with ``cpu_count`` cores."""
        if self.threads == "auto":
            return max(1, min(4, cpu_count - 1))
        return self.threads
    min_score: float = Field(
        0.1, ge=0.0, le=1.0,
        description="drop detections below this score (the tracker uses low ones too)",
    )
    classes: tuple[str, ...] = Field(("person",), min_length=1, description="labels to keep")
    resize: Literal["model", "stretch", "letterbox"] = Field(
        "model",
        description="'model' uses the manifest's setting",
    )

    tiles: str = Field("1x1", pattern=r"^[1-4]x[1-4]$", description="tiled inference grid COLSxROWS, e.g. 2x2")
    tile_overlap: float = Field(0.2, ge=0.0, le=0.5, description="overlap between neighbouring tiles")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        kind, _, idx = v.partition(":")
        if kind not in ("cpu", "usb", "pci") or (idx and (kind == "cpu" or not idx.isdigit())):
            raise ValueError("must be 'cpu', 'usb', 'usb:N', 'pci' or 'pci:N'")
        return v


class TrackerSection(_Section):
    high_score: float = Field(0.6, ge=0, le=1, description="detections at or above this go to the first association")
    low_score: float = Field(0.1, ge=0, le=1, description="weaker detections only keep existing tracks alive")
    new_track_score: float = Field(0.7, ge=0, le=1, description="score needed to start a track")
    min_hits: int = Field(2, ge=1, le=30, description="matches before a track is confirmed (and may count)")
    confirm_s: float = Field(0.2, ge=0, le=5, description="...and the time they must span (rate-independent)")
    max_lost_s: float = Field(1.5, gt=0, description="seconds a lost track may be re-found")
    match_iou: float = Field(0.3, gt=0, lt=1, description="least IoU for the first association")
    recovery_distance: float = Field(0.5, ge=0, description="lost-track recovery gate, in track heights")
    colour_weight: float = Field(2.0, ge=0, le=20, description="how much clothing colour weighs when telling "
                                 "people apart who pass each other; 0 tracks by motion alone (and the "
                                 "inference service no longer measures colours)")

    @model_validator(mode="after")
    def _order(self) -> TrackerSection:
        if self.low_score > self.high_score:
            raise ValueError(f"tracker.low_score ({self.low_score}) is above tracker.high_score "
                             f"({self.high_score}); fix: low_score <= high_score")
        return self


LINK_FIELDS = {"link_gap_s": "max_gap_s", "link_gate": "gate"}
"""[counting] keys that set the linker, and the linker's field each sets."""


class CountingSection(_Section):
    band: float = Field(0.1, ge=0, le=1, description="hysteresis band around each line, as a fraction of the "
                        "person's box height (so it holds at any resolution and distance)")
    link_gap_s: float = Field(2.0, ge=0, le=10, description="a track that vanished at most this long ago is "
                              "continued by a new one appearing where it was heading (0 = off)")
    link_gate: float = Field(0.8, gt=0, le=5, description="how far from the predicted foot point a new track may "
                             "appear and still be joined, in the person's heights")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "band_px" in data:
            raise ValueError("counting.band_px was replaced by counting.band, a fraction of the person's height "
                             "(pixels meant a different band at every resolution); fix: band = 0.1")
        return data


class LineSection(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    a: tuple[float, float]
    b: tuple[float, float]

    @model_validator(mode="after")
    def _valid(self) -> LineSection:
        Line(self.name, self.a, self.b)
        return self


class ZoneSection(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    points: tuple[tuple[float, float], ...]

    @model_validator(mode="after")
    def _valid(self) -> ZoneSection:
        Polygon(self.name, self.points)
        return self


MAX_CAMERAS = 16  # a capture process and a frame ring each: far beyond what an edge board runs


class PrivacySection(_Section):
    policy: Literal["counts", "events", "snapshots"] = Field(
        "counts",
        description="what may leave the device",
    )
    bucket_s: float = Field(60.0, ge=1.0, le=86400.0, description="aggregation bucket length in seconds")
    max_zero_fill_s: float = Field(
        600.0, ge=0.0, le=86400.0,
        description="a stretch without frames up to this long still gets zero rows (nobody passed); a longer one "
        "(camera down, clock stepped forward) gets none, since the device did not watch, and is reported as a gap")
    snapshot_interval_s: float = Field(600.0, ge=1.0, description="policy 'snapshots': one redacted still per interval")
    event_resolution_s: float = Field(
        10.0, ge=1.0, le=3600.0, description="policy 'events': crossing times are rounded down to this")


class MqttSection(_Section):
    host: str = Field("localhost", min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 for TLS)")
    topic_prefix: str = Field("edgecount", min_length=1, description="topics are <prefix>/<site>/<device>/...")
    client_id: str = Field("", description="empty = edgecount-<site>-<device>")
    tls: bool = Field(False, description="use TLS (set ca_file, and cert_file/key_file for a client certificate)")
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password_file: str = Field("", description="file holding the password, mode 0600; never logged")
    keepalive_s: float = Field(30.0, ge=5, le=65535, description="MQTT keep-alive (the protocol's limit is 65535)")
    max_inflight: int = Field(10, ge=1, le=1000, description="records awaiting PUBACK at once")
    reconnect_max_s: float = Field(30.0, ge=1, le=3600)
    ack_timeout_s: float = Field(
        60.0, ge=1, le=3600,
        description="a record without PUBACK for this long: the broker is taken as stuck, the sink reconnects "
        "(the outbox sends again) and reports degraded")
    topic_layout: Literal["auto", "camera", "device"] = Field(
        "auto", description="'camera': <prefix>/<site>/<device>/<camera>/counts/<kind>/<name>; 'device': the "
        "single-camera layout <prefix>/<site>/<device>/counts/<kind>/<name>; 'auto': 'device' for a file without "
        "[[cameras]], else 'camera'")
    discovery: bool = Field(False, description="publish Home Assistant MQTT discovery (entities appear by themselves)")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant's discovery prefix")

    _prefix = field_validator("topic_prefix", "discovery_prefix")(_topic_level)


def url_problem(url: str) -> str:
    """Why ``url`` cannot be POSTed to ("" when it can): checked here, not when the first record is sent."""

    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # reading it checks it
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "the scheme must be https:// (or http://)"
    if not parts.hostname:
        return "no host name"
    if port == 0:
        return "port 0"
    return ""


class WebhookSection(_Section):
    url: str = Field("", description="HTTPS endpoint receiving POSTed JSON arrays of records")
    ca_file: str = ""
    token_file: str = Field("", description="file holding a bearer token, mode 0600; never logged")
    timeout_s: float = Field(5.0, gt=0, description="per connect/send/receive; 2 x this must stay under the "
                             "watchdog's hang_timeout_s")

    @model_validator(mode="after")
    def _token_over_https(self) -> WebhookSection:
        if self.token_file and not self.url.startswith("https://"):
            raise ValueError("uplink.webhook.token_file is set but the url is not https://; a bearer token is "
                             "never sent in clear text (fix: use https://)")
        return self


class OutboxSection(_Section):
    max_rows: int = Field(200_000, ge=10, description="undelivered records kept; beyond, oldest are merged")
    max_age_days: float = Field(30.0, gt=0, description="undelivered records older than this are dropped (counted)")


class UplinkSection(_Section):
    sinks: tuple[Literal["jsonl", "mqtt", "webhook"], ...] = Field(("jsonl",), min_length=1)
    jsonl_path: str = Field(
        "",
        description="file the jsonl sink appends to; empty = <state_dir>/uplink.jsonl",
    )
    daily_reset_hour: int = Field(
        0, ge=0, le=23,
        description="local hour (0-23) at which each line's daily totals and its in-minus-out occupancy start again")
    jsonl_max_mb: float = Field(
        32.0, gt=0, le=1_000_000,
        description="past this size the jsonl file is rotated to <file>.1, .2 (older ones deleted): "
        "the default sink must not be what fills the state partition")
    jsonl_keep: int = Field(2, ge=0, le=100, description="rotated jsonl files kept")
    mqtt: MqttSection = MqttSection()
    webhook: WebhookSection = WebhookSection()
    outbox: OutboxSection = OutboxSection()

    @model_validator(mode="after")
    def _sinks_configured(self) -> UplinkSection:
        if "webhook" in self.sinks and not self.webhook.url.startswith(("https://", "http://")):
            raise ValueError("sink 'webhook' needs uplink.webhook.url (https://...)")
        if "webhook" in self.sinks:
            problem = url_problem(self.webhook.url)
            if problem:
                raise ValueError(f"uplink.webhook.url {self.webhook.url!r}: {problem}; fix: "
                                 "https://HOST[:PORT]/PATH, an IPv6 address in brackets")
        if self.mqtt.tls and self.mqtt.port == 1883:
            raise ValueError("uplink.mqtt.tls is on but port is 1883; TLS brokers listen on 8883")
        dup = sorted({x for x in self.sinks if self.sinks.count(x) > 1})
        if dup:
            raise ValueError(f"uplink.sinks lists {dup} more than once; each sink is listed once")
        return self


class WatchdogSection(_Section):
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    hang_timeout_s: float = Field(15.0, gt=0, description="restart a service silent for this long")
    startup_grace_s: float = Field(
        60.0, gt=0,
        description="time a (re)started service has to send its first heartbeat",
    )
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    restart_budget: int = Field(10, ge=1, description="restarts allowed per service within restart_window_s")
    restart_window_s: float = Field(600.0, gt=0)
    metrics_dir: str = Field(
        "/var/lib/prometheus/node-exporter",
        description="node_exporter's textfile directory: edgecount.prom is written there (empty = off)")
    metrics_interval_s: float = Field(15.0, ge=1, description="how often the metrics file is rewritten")
    fork_server: bool = Field(
        True, description="start services from a fork server that imported their libraries once, so they "
        "share that memory (false: each service is a fresh interpreter)")

    @model_validator(mode="after")
    def _timing(self) -> WatchdogSection:
        if self.heartbeat_s >= self.hang_timeout_s:
            raise ValueError(f"watchdog.heartbeat_s ({self.heartbeat_s}) must be below hang_timeout_s "
                             f"({self.hang_timeout_s}), or every healthy service is restarted as hung")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError(f"watchdog.backoff_initial_s ({self.backoff_initial_s}) is above backoff_max_s "
                             f"({self.backoff_max_s})")
        return self


class UpdateSection(_Section):
    """How a freshly updated root file system proves itself before it is kept (RAUC A/B slots)."""

    mark_good_after_s: float = Field(
        60.0, gt=0, description="the new slot is marked good once the appliance is READY and frames have been "
        "processed without a stall for this long")
    boot_deadline_s: float = Field(
        900.0, gt=0, description="a new slot not healthy this long after boot reboots; after 3 such boots the "
        "boot loader goes back to the old slot")
    keyring: str = Field("/etc/rauc/keyring.pem", description="certificates a bundle's signature must chain to")
    system_conf: str = Field("/etc/rauc/system.conf", description="RAUC's slot description (its compatible "
                             "string is what a bundle must match)")

    @model_validator(mode="after")
    def _order(self) -> UpdateSection:
        if self.mark_good_after_s >= self.boot_deadline_s:
            raise ValueError(f"update.mark_good_after_s ({self.mark_good_after_s}) must be below boot_deadline_s "
                             f"({self.boot_deadline_s}), or no new slot could ever be kept")
        return self


class CameraSection(_Section):
    """One camera: its source, its own lines and zones, and the capture settings it changes."""

    name: str = Field(min_length=1, max_length=MAX_CAMERA_NAME, pattern=r"^[A-Za-z0-9_-]+$",
                      description="the camera's name: in process names, messages, records and MQTT topics")
    source: str = Field(min_length=1, description="video file, rtsp:// URL, /dev/videoN, or asset:NAME")
    realtime: bool | None = Field(None, description="as capture.realtime, for this camera; empty = capture's")
    loop: bool | None = Field(None, description="as capture.loop, for this camera; empty = capture's")
    file_speed: float | None = Field(None, gt=0, le=16, description="as capture.file_speed; empty = capture's")
    max_fps: float | None = Field(None, gt=0, le=120, description="as capture.max_fps; empty = capture's")
    tiles: str | None = Field(None, pattern=r"^[1-4]x[1-4]$", description="as inference.tiles, for this camera")
    lines: tuple[LineSection, ...] = ()
    zones: tuple[ZoneSection, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> CameraSection:
        dup = _repeated([ln.name for ln in self.lines] + [z.name for z in self.zones])
        if dup:
            raise ValueError(f"camera {self.name!r}: line/zone names must be unique within a camera; repeated: "
                             f"{dup}")
        return self


class Config(_Section):
    device: DeviceSection = DeviceSection()
    runtime: RuntimeSection = RuntimeSection()
    assets: AssetsSection = AssetsSection()
    capture: CaptureSection = CaptureSection()
    inference: InferenceSection = InferenceSection()
    tracker: TrackerSection = TrackerSection()
    counting: CountingSection = CountingSection()
    lines: tuple[LineSection, ...] = ()
    zones: tuple[ZoneSection, ...] = ()
    privacy: PrivacySection = PrivacySection()
    uplink: UplinkSection = UplinkSection()
    watchdog: WatchdogSection = WatchdogSection()
    update: UpdateSection = UpdateSection()
    cameras: tuple[CameraSection, ...] = Field(
        (), max_length=MAX_CAMERAS,
        description="several cameras, each [[cameras]] with name, source, lines and zones; empty = the one "
        "camera of [capture] and the top-level lines and zones, named 'main'")

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        dup = _repeated([ln.name for ln in self.lines] + [z.name for z in self.zones])
        if dup:
            raise ValueError(f"line/zone names must be unique; repeated: {dup}")
        return self

    @model_validator(mode="after")
    def _cameras(self) -> Config:
        if not self.cameras:
            return self
        dup = _repeated([c.name for c in self.cameras])
        if dup:
            raise ValueError(f"cameras: names must be unique; repeated: {dup} (fix: rename one of them)")
        if self.lines or self.zones:
            raise ValueError("top-level [[lines]]/[[zones]] cannot be used together with [[cameras]]: a line "
                             "belongs to one camera (fix: move them into that camera as [[cameras.lines]] / "
                             "[[cameras.zones]])")
        if self.capture.source != CaptureSection.model_fields["source"].default:
            raise ValueError("capture.source is not used with [[cameras]]; each camera names its own (fix: remove "
                             "capture.source, set cameras[N].source)")
        if self.uplink.mqtt.topic_layout == "device" and len(self.cameras) > 1:
            raise ValueError("uplink.mqtt.topic_layout = 'device' has no camera level, so the counts of "
                             f"{len(self.cameras)} cameras would share topics (fix: 'camera' or 'auto')")
        return self

    @model_validator(mode="after")
    def _fits_together(self) -> Config:
        longest = max([_LONGEST_SOCKET, *(len(f"/capture@{c.name}.sock") for c in self.cameras)])
        if self.runtime.dir and len(self.runtime.dir.rstrip("/")) + longest > MAX_IPC_PATH:
            raise ValueError(f"runtime.dir is {len(self.runtime.dir)} characters; its socket paths would exceed the "
                             f"{MAX_IPC_PATH}-character unix socket limit (fix: a directory of at most "
                             f"{MAX_IPC_PATH - longest} characters, or shorter camera names)")
        c, hang = self.capture, self.watchdog.hang_timeout_s
        for key, value in (("open_timeout_s", c.open_timeout_s), ("read_timeout_s", c.read_timeout_s)):
            if value is not None and value >= hang:
                raise ValueError(f"capture.{key} ({value}) must stay below watchdog.hang_timeout_s ({hang}): "
                                 "capture cannot heartbeat while it waits for the camera")
        if "webhook" in self.uplink.sinks and 2 * self.uplink.webhook.timeout_s >= self.watchdog.hang_timeout_s:
            raise ValueError(f"uplink.webhook.timeout_s ({self.uplink.webhook.timeout_s}) would let one slow delivery "
                             f"outlast watchdog.hang_timeout_s ({self.watchdog.hang_timeout_s}) and get the uplink "
                             "killed as hung (fix: timeout_s below half of hang_timeout_s)")
        return self

    def capture_timeouts(self) -> tuple[float, float]:
        """(open, read) time-outs for network sources: as set, else 10 s and 5 s capped at half the hang time-out."""
        cap = self.watchdog.hang_timeout_s / 2
        c = self.capture
        return (c.open_timeout_s if c.open_timeout_s is not None else min(10.0, cap),
                c.read_timeout_s if c.read_timeout_s is not None else min(5.0, cap))

    # -- cameras --------------------------------------------------------------------------
    def camera_names(self) -> tuple[str, ...]:
        """Every camera, in configuration order: ``("main",)`` for a file without ``[[cameras]]``."""
        return tuple(c.name for c in self.cameras) or (DEFAULT_CAMERA,)

    def for_camera(self, name: str) -> Config:
        """The single-camera view of one camera: its source, capture overrides, tiles, lines and zones.

        Capture, counting and the CLI tools work on this view, so each sees the one-camera file it was written
        for. ``KeyError`` for an unknown camera.
        """
        if not self.cameras:
            if name != DEFAULT_CAMERA:
                raise KeyError(f"no camera {name!r}; this configuration has one camera, {DEFAULT_CAMERA!r}")
            return self
        cam = {c.name: c for c in self.cameras}.get(name)
        if cam is None:
            raise KeyError(f"no camera {name!r}; cameras: {', '.join(self.camera_names())}")
        overrides = {k: v for k, v in (("source", cam.source), ("realtime", cam.realtime), ("loop", cam.loop),
                                       ("file_speed", cam.file_speed), ("max_fps", cam.max_fps)) if v is not None}
        inference = self.inference if cam.tiles is None else self.inference.model_copy(update={"tiles": cam.tiles})
        return self.model_copy(update={"capture": self.capture.model_copy(update=overrides), "inference": inference,
                                       "lines": cam.lines, "zones": cam.zones, "cameras": ()})

    def mqtt_per_camera(self) -> bool:
        """Whether MQTT topics carry a camera level (``uplink.mqtt.topic_layout``, resolved)."""
        layout = self.uplink.mqtt.topic_layout
        return layout == "camera" or (layout == "auto" and bool(self.cameras))

    def geometry_lines(self) -> list[Line]:
        return [Line(ln.name, ln.a, ln.b) for ln in self.lines]

    def geometry_zones(self) -> list[Polygon]:
        return [Polygon(z.name, z.points) for z in self.zones]

    def camera_counter(self, lines: Sequence[Line] | None = None) -> CameraCounter:
        """The tracker, linker and counting engine these settings describe (``lines`` replace the configured)."""
        from edgecount_core.camera import CameraCounter
        from edgecount_core.linking import LinkConfig
        from edgecount_core.tracker import TrackerConfig

        c = self.counting
        # Every [tracker] key is the tracker's field of that name: built by name, so none can be forgotten
        # (tests/core/test_config.py checks that the defaults agree).
        tracker = TrackerConfig(**{name: getattr(self.tracker, name) for name in TrackerSection.model_fields})
        return CameraCounter(
            self.geometry_lines() if lines is None else lines, self.geometry_zones(), tracker=tracker,
            link=LinkConfig(**{LINK_FIELDS[name]: getattr(c, name) for name in LINK_FIELDS}), band=c.band)


class ConfigError(ValueError):
    """The configuration is invalid; the message lists each problem with its key."""


def _describe(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            return ""
        info = fields[part]
        if info.description and part == loc[-1]:
            return str(info.description)
        ann = info.annotation
        inner = getattr(ann, "__args__", None)
        cur = inner[0] if inner and isinstance(inner[0], type) else ann
    return ""


def parse_config(data: Mapping[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (typo? remove it or check the spelling against config/edgecount.toml)"
            hint = _describe(Config, loc)
            got = err.get("input")
            line = f"{source}: {key or '<top>'}: {msg}"
            if got is not None and err["type"] != "extra_forbidden" and not isinstance(got, dict):
                line += f" (got {got!r})"
            if hint:
                line += f" — expected: {hint}"
            problems.append(line)
        raise ConfigError("\n".join(problems)) from None


def parse_line_arg(text: str) -> LineSection:
    """Parse ``NAME:AX,AY,BX,BY`` (normalised coordinates) from the command line."""
    name, sep, coords = text.partition(":")
    parts = coords.split(",")
    if not sep or len(parts) != 4:
        raise ConfigError(f"--line {text!r}: expected NAME:AX,AY,BX,BY with normalised coordinates")
    try:
        ax, ay, bx, by = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--line {text!r}: coordinates must be numbers") from None
    try:
        return LineSection(name=name, a=(ax, ay), b=(bx, by))
    except ValidationError as exc:
        raise ConfigError(f"line {text!r}: " + "; ".join(_plain(e) for e in exc.errors())) from None
    except ValueError as exc:
        raise ConfigError(f"line {text!r}: {exc}") from None


def _plain(error: Any) -> str:
    """One validation error of a line, in the technician's words, naming the field and the fix."""
    field = str(error["loc"][0]) if error["loc"] else ""
    if field == "name":
        return "the name may hold only letters, digits, '_', '.' and '-' (no spaces): e.g. front_door"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{field}: {msg}" if field else msg.split(": ", 1)[-1]
