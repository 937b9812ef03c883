"""Typed bus messages and their msgpack wire format.

Every message is a msgpack map with two envelope keys, ``type`` (a short
name) and ``v`` (the schema version), followed by the message's own fields.
Decoding validates every field; anything malformed or of an unknown type or
version raises :class:`MessageError` and never anything else, so a service
can log and drop a bad message without dying.

Boxes travel as packed little-endian float32 bytes (``n * 4`` values) rather
than nested lists: it is several times cheaper to pack and unpack per frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import attrs
import msgpack

if TYPE_CHECKING:  # NumPy is imported where boxes are packed: the watchdog only reads heartbeats
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "CountRecord",
    "Crossing",
    "Detections",
    "EndOfStream",
    "FrameReady",
    "Health",
    "LogTail",
    "Marker",
    "Message",
    "MessageError",
    "Snapshot",
    "Tracks",
    "Watermark",
    "ZoneEvent",
    "decode",
    "encode",
]

StatValue: TypeAlias = int | float | str | bool

#: The camera of a single-camera device. Left off the wire (``encode``), so a single-camera device sends
#: exactly the bytes it sent before cameras existed, and recordings made then decode as camera ``main``.
DEFAULT_CAMERA = "main"
_CAMERA_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
FloatArray: TypeAlias = "npt.NDArray[np.float32]"


class MessageError(ValueError):
    """A payload that is not a valid message of a known type and version."""


# Every integer on the bus (sequence numbers, sizes, ids, counts) is non-negative and fits SQLite's int64.
MAX_INT = 2**63 - 1
MAX_SIDE = 65535  # frame width and height


def _check_frame_size(kind: str, width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise MessageError(f"{kind}: frame size {width}x{height} out of range 1..{MAX_SIDE}")


def _check_stats(kind: str, stats: Mapping[Any, Any]) -> None:
    for k, val in stats.items():
        if not isinstance(k, str) or not isinstance(val, int | float | str | bool):
            raise MessageError(f"{kind}: stat {k!r} has unsupported value type")
        if isinstance(val, float) and not math.isfinite(val):
            raise MessageError(f"{kind}: stat {k!r} is not a finite number")
        if isinstance(val, int) and not isinstance(val, bool) and abs(val) > MAX_INT:
            raise MessageError(f"{kind}: stat {k!r} is out of range")


def _pack_boxes(arr: npt.ArrayLike, width: int) -> bytes:
    import numpy as np

    a = np.ascontiguousarray(arr, dtype="<f4")
    if a.size == 0:
        return b""
    if a.ndim != 2 or a.shape[1] != width:
        raise ValueError(f"expected an (n, {width}) array, got shape {a.shape}")
    return a.tobytes()


def _unpack_boxes(raw: bytes, width: int) -> FloatArray:
    if len(raw) % (4 * width):
        raise MessageError(f"packed array of {len(raw)} bytes is not a multiple of {4 * width}")
    import numpy as np

    out: FloatArray = np.frombuffer(raw, dtype="<f4").reshape(-1, width).astype(np.float32)
    return out


@attrs.frozen
class FrameReady:
    """Capture wrote frame ``seq`` into ring slot ``slot`` (the pixels stay in shared memory)."""

    TYPE: ClassVar[str] = "frame"
    VERSION: ClassVar[int] = 1
    seq: int
    slot: int
    ts: float
    width: int
    height: int
    ring: int
    channels: int = 3
    resend: bool = False
    camera: str = DEFAULT_CAMERA

    def _validate(self) -> None:
        _check_frame_size("frame", self.width, self.height)
        if self.channels not in (1, 3, 4):
            raise MessageError(f"frame: {self.channels} channels; expected 1, 3 or 4")


@attrs.frozen
class Detections:
    """Detector output for one frame, boxes in source-frame pixels ``[x1, y1, x2, y2]``."""

    TYPE: ClassVar[str] = "detections"
    VERSION: ClassVar[int] = 1
    seq: int
    ts: float
    width: int
    height: int
    boxes: bytes = b""
    scores: bytes = b""
    classes: bytes = b""
    latency_ms: float = 0.0
    backend: str = "cpu"
    degraded: bool = False
    ring: int = 0
    """Generation of the capture ring the frame came from: with ``seq``, the frame's identity."""
    camera: str = DEFAULT_CAMERA
    features: bytes = b""
    """Each box's clothing colours (:mod:`edgecount_core.colours`), or empty when not measured.

    Pixel statistics, so they stay on the device's bus: only the counter reads them."""

    @classmethod
    def from_arrays(
        cls,
        *,
        seq: int,
        ts: float,
        width: int,
        height: int,
        boxes: npt.ArrayLike,
        scores: npt.ArrayLike,
        classes: npt.ArrayLike,
        latency_ms: float = 0.0,
        backend: str = "cpu",
        degraded: bool = False,
        ring: int = 0,
        camera: str = DEFAULT_CAMERA,
        features: npt.ArrayLike | None = None,
    ) -> Detections:
        import numpy as np

        from edgecount_core.colours import FEATURE_SIZE

        return cls(
            seq=seq,
            ts=ts,
            width=width,
            height=height,
            boxes=_pack_boxes(boxes, 4),
            scores=np.ascontiguousarray(scores, dtype="<f4").tobytes(),
            classes=np.ascontiguousarray(classes, dtype="<f4").tobytes(),
            latency_ms=latency_ms,
            backend=backend,
            degraded=degraded,
            ring=ring,
            camera=camera,
            features=b"" if features is None else _pack_boxes(features, FEATURE_SIZE),
        )

    def box_array(self) -> FloatArray:
        return _unpack_boxes(self.boxes, 4)

    def feature_array(self) -> FloatArray | None:
        """``(n, FEATURE_SIZE)`` colours of the boxes, or None when the frame came without them."""
        from edgecount_core.colours import FEATURE_SIZE

        if not self.features:
            return None
        return _unpack_boxes(self.features, FEATURE_SIZE)

    def score_array(self) -> FloatArray:
        return _unpack_boxes(self.scores, 1).reshape(-1)

    def class_array(self) -> FloatArray:
        return _unpack_boxes(self.classes, 1).reshape(-1)

    def _validate(self) -> None:
        _check_frame_size("detections", self.width, self.height)
        n = len(self.boxes) // 16
        if len(self.boxes) % 16 or len(self.scores) != 4 * n or len(self.classes) != 4 * n:
            raise MessageError("detections: boxes, scores and classes disagree in length")
        if self.features:
            from edgecount_core.colours import FEATURE_SIZE  # numpy: only readers of colours pay for it

            if len(self.features) != 4 * FEATURE_SIZE * n:
                raise MessageError(f"detections: features must be {FEATURE_SIZE} float32 values per box or absent")
            import numpy as np

            values = np.frombuffer(self.features, dtype="<f4")
            if not bool(np.all((values >= 0) & (values <= 1))):
                raise MessageError("detections: features are histogram shares and must lie in 0..1")


@attrs.frozen
class Tracks:
    """Confirmed tracks after frame ``seq``: rows ``[track_id, x1, y1, x2, y2, score]``.

    Internal to the device: the privacy filter never forwards these.
    """

    TYPE: ClassVar[str] = "tracks"
    VERSION: ClassVar[int] = 1
    seq: int
    ts: float
    width: int
    height: int
    rows: bytes = b""
    ended: list[int] = attrs.field(factory=list)
    camera: str = DEFAULT_CAMERA

    def row_array(self) -> FloatArray:
        return _unpack_boxes(self.rows, 6)

    def _validate(self) -> None:
        _check_frame_size("tracks", self.width, self.height)
        if len(self.rows) % 24:
            raise MessageError("tracks: packed rows are not a multiple of 6 float32 values")
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_INT for t in self.ended):
            raise MessageError("tracks: ended must be a list of integer track ids")


@attrs.frozen
class Crossing:
    """One track crossed one line (internal: carries the track id)."""

    TYPE: ClassVar[str] = "crossing"
    VERSION: ClassVar[int] = 1
    event_id: str
    line: str
    direction: str
    ts: float
    track_id: int
    seq: int
    event_seq: int
    """Position in the counter's durable event log (gap-free, survives restarts)."""
    camera: str = DEFAULT_CAMERA

    def _validate(self) -> None:
        if self.direction not in ("in", "out"):
            raise MessageError(f"crossing: direction must be 'in' or 'out', got {self.direction!r}")


@attrs.frozen
class ZoneEvent:
    """A track entered or left a zone (internal: carries the track id)."""

    TYPE: ClassVar[str] = "zone"
    VERSION: ClassVar[int] = 1
    event_id: str
    zone: str
    kind: str
    ts: float
    track_id: int
    occupancy: int
    event_seq: int
    dwell_s: float = 0.0
    camera: str = DEFAULT_CAMERA

    def _validate(self) -> None:
        if self.kind not in ("enter", "exit"):
            raise MessageError(f"zone: kind must be 'enter' or 'exit', got {self.kind!r}")


@attrs.frozen
class CountRecord:
    """Aggregated counts for one line or zone in one time bucket: what may leave the device."""

    TYPE: ClassVar[str] = "record"
    VERSION: ClassVar[int] = 1
    record_id: str
    kind: str
    name: str
    bucket_start: float
    bucket_s: float
    n_in: int
    n_out: int
    log_seq: int = 0
    """Position in the privacy filter's durable record log."""
    occupancy: int | None = None
    """Zones: how many people were inside at the end of the bucket; a line's daily ``total``: its in minus out,
    never below zero (a count, like ``n_in``)."""
    camera: str = DEFAULT_CAMERA

    def _validate(self) -> None:
        if self.occupancy is not None and (self.kind not in ("zone", "total") or self.occupancy < 0):
            raise MessageError("record: occupancy is a non-negative count, for zones and daily totals only")
        if self.kind not in ("line", "zone", "event", "total"):
            raise MessageError(f"record: kind must be 'line', 'zone', 'event' or 'total', got {self.kind!r}")
        if self.n_in < 0 or self.n_out < 0:
            raise MessageError("record: counts must be non-negative")
        if self.bucket_s <= 0:
            raise MessageError("record: bucket_s must be positive")


@attrs.frozen
class Health:
    """Heartbeat of one service, with its current figures."""

    TYPE: ClassVar[str] = "health"
    VERSION: ClassVar[int] = 1
    service: str
    pid: int
    ts: float
    state: str
    stats: dict[str, StatValue] = attrs.field(factory=dict)

    def _validate(self) -> None:
        if self.state not in ("starting", "ok", "degraded", "stopping"):
            raise MessageError(f"health: unknown state {self.state!r}")
        _check_stats("health", self.stats)


@attrs.frozen
class Marker:
    """A token forwarded hop by hop through the pipeline: proves every link is connected."""

    TYPE: ClassVar[str] = "marker"
    VERSION: ClassVar[int] = 1
    token: str
    origin_ts: float


@attrs.frozen
class Watermark:
    """The counter has processed the stream up to ``ts``: buckets ending before it may close."""

    TYPE: ClassVar[str] = "watermark"
    VERSION: ClassVar[int] = 1
    ts: float
    seq: int
    event_seq: int = 0
    """The counter's last event sequence number when the watermark was taken."""
    camera: str = DEFAULT_CAMERA


@attrs.frozen
class Snapshot:
    """A redacted still (policy ``snapshots`` only): people and faces blanked, no metadata."""

    TYPE: ClassVar[str] = "snapshot"
    VERSION: ClassVar[int] = 1
    snapshot_id: str
    bucket_start: float
    jpeg: bytes
    log_seq: int = 0
    camera: str = DEFAULT_CAMERA

    def _validate(self) -> None:
        if not self.jpeg.startswith(b"\xff\xd8"):
            raise MessageError("snapshot: payload is not a JPEG")


@attrs.frozen
class LogTail:
    """The newest sequence number in a service's durable log: lets subscribers notice a lost tail."""

    TYPE: ClassVar[str] = "tail"
    VERSION: ClassVar[int] = 1
    service: str
    last_seq: int


@attrs.frozen
class EndOfStream:
    """The source ended after frame ``last_seq``; each stage adds its figures to ``stats``.

    The end travels capture -> ... -> uplink and back to whoever replays, and each durable stage holds it
    until what came before it is safe downstream. Those hand-overs are typed fields, not ``stats`` keys:
    a stage downstream of a log waits until it has applied the log up to the mark its upstream set.
    """

    TYPE: ClassVar[str] = "eos"
    VERSION: ClassVar[int] = 1
    last_seq: int
    stats: dict[str, StatValue] = attrs.field(factory=dict)
    camera: str = DEFAULT_CAMERA
    counter_events_upto: int | None = None
    """The counter's log holds every event of this stream up to this sequence number (privacy waits for it)."""
    privacy_records_upto: int | None = None
    """Privacy's log holds every record of this stream up to this sequence number (the uplink waits for it)."""
    confirmed: dict[str, int] | None = None
    """Per sink, how many records it had confirmed (MQTT: PUBACK) when the uplink let the end pass."""

    def _validate(self) -> None:
        _check_stats("eos", self.stats)
        for sink, n in (self.confirmed or {}).items():
            if not isinstance(sink, str) or not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_INT:
                raise MessageError(f"eos: confirmed[{sink!r}] must be a count of records")


Message: TypeAlias = (
    FrameReady | Detections | Tracks | Crossing | ZoneEvent | CountRecord | Health | Marker
    | Watermark | LogTail | Snapshot | EndOfStream
)
_CLASSES: dict[str, type[Any]] = {
    c.TYPE: c
    for c in (
        FrameReady, Detections, Tracks, Crossing, ZoneEvent, CountRecord, Health, Marker,
        Watermark, LogTail, Snapshot, EndOfStream,
    )
}

# The runtime type each field must have on the wire; ints are accepted where floats are.
_WIRE_TYPES: dict[type[Any], tuple[type[Any], ...]] = {
    int: (int,),
    float: (float, int),
    str: (str,),
    bool: (bool,),
    bytes: (bytes,),
    dict: (dict,),
}


def _instance_check(allowed: tuple[type[Any], ...], exclude_bool: bool) -> Callable[[Any], bool]:
    # bool is a subclass of int in Python, but True is not a valid sequence number.
    def check(v: Any) -> bool:
        return isinstance(v, allowed) and not (exclude_bool and isinstance(v, bool))

    return check


def _field_checker(annotation: Any) -> Callable[[Any], bool]:
    text = str(annotation)
    for py, allowed in (
        ("int", _WIRE_TYPES[int]),
        ("float", _WIRE_TYPES[float]),
        ("str", _WIRE_TYPES[str]),
        ("bool", _WIRE_TYPES[bool]),
        ("bytes", _WIRE_TYPES[bytes]),
    ):
        if text == py:
            return _instance_check(allowed, exclude_bool=py in ("int", "float"))
    if text == "int | None":
        return lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool))
    if text.startswith("dict"):
        return _instance_check((dict,), exclude_bool=False)
    if text.startswith("list"):
        return _instance_check((list,), exclude_bool=False)
    raise TypeError(f"no wire check for annotation {annotation!r}")


_CHECKERS: dict[type[Any], dict[str, tuple[Callable[[Any], bool], bool]]] = {
    cls: {
        f.name: (_field_checker(f.type), f.default is attrs.NOTHING)
        for f in attrs.fields(cls)
    }
    for cls in _CLASSES.values()
}


_ANNOTATIONS: dict[type[Any], dict[str, str]] = {
    cls: {f.name: str(f.type) for f in attrs.fields(cls)} for cls in _CLASSES.values()
}


def encode(msg: Message) -> bytes:
    """Serialise a message to msgpack bytes."""
    body: dict[str, Any] = {"type": msg.TYPE, "v": msg.VERSION}
    # An optional field left unset is not sent: the wire format of older builds stays as it was.
    body.update({k: v for k, v in attrs.asdict(msg, recurse=False).items()
                 if v is not None and not (k == "camera" and v == DEFAULT_CAMERA)})
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def decode(payload: bytes) -> Message:
    """Parse and validate msgpack bytes; raise :class:`MessageError` on anything wrong."""
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MessageError(f"not msgpack: {exc.__class__.__name__}: {exc}") from None
    return from_mapping(body)


def from_mapping(body: Any) -> Message:
    """Validate an already-unpacked map (used by :func:`decode` and by recordings)."""
    if not isinstance(body, Mapping):
        raise MessageError(f"message must be a map, got {type(body).__name__}")
    kind = body.get("type")
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"unknown message type {kind!r}")
    version = body.get("v")
    if version != cls.VERSION:
        raise MessageError(f"{kind}: unsupported version {version!r} (this build reads v{cls.VERSION})")
    kwargs: dict[str, Any] = {}
    checks = _CHECKERS[cls]
    for name, (check, required) in checks.items():
        if name not in body:
            if required:
                raise MessageError(f"{kind}: missing field {name!r}")
            continue
        value = body[name]
        if not check(value):
            raise MessageError(f"{kind}: field {name!r} has wrong type {type(value).__name__}")
        # NaN/inf times and negative or 2**64 sequence numbers are well typed but break what follows.
        if isinstance(value, float) and not math.isfinite(value):
            raise MessageError(f"{kind}: field {name!r} is not a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_INT \
                and _ANNOTATIONS[cls][name] in ("int", "int | None"):
            raise MessageError(f"{kind}: field {name!r} = {value} out of range 0..2**63-1")
        kwargs[name] = value
    unknown = set(body) - set(checks) - {"type", "v"}
    if unknown:
        raise MessageError(f"{kind}: unknown fields {sorted(unknown)}")
    camera = kwargs.get("camera")
    if camera is not None and not (0 < len(camera) <= 64 and set(camera) <= _CAMERA_CHARS):
        raise MessageError(f"{kind}: camera {camera[:70]!r} is not a camera name (letters, digits, '_', '-')")
    msg = cls(**kwargs)
    validate = getattr(msg, "_validate", None)
    if validate is not None:
        validate()
    result: Message = msg
    return result
