"""``edgecount preview``: one frame with the lines, zones and detections drawn, people pixelated.

From the running appliance it takes the newest frame from the shared-memory
ring and the newest detections from the bus; otherwise it opens the camera
and runs the detector itself. People are pixelated unless the technician asks
for an unredacted image on the device itself. The JPEG carries no metadata.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import zmq

from edgecount.detection.detector import TFLiteDetector
from edgecount.detection.models import resolve_model, startup_model
from edgecount.detection.redaction import pixelate
from edgecount.detection.tiling import TiledDetector, configured_detector
from edgecount.runtime import bus, logs
from edgecount.runtime.assets import AssetStore, resolve_source
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.ring import RingReader
from edgecount.stages import capture_process
from edgecount.stages.source_diagnosis import why_no_frames
from edgecount.stages.video_source import open_source
from edgecount_core.config import Config
from edgecount_core.messages import DEFAULT_CAMERA, Detections, FrameReady


def draw(img: npt.NDArray[np.uint8], cfg: Config, boxes: npt.NDArray[np.float32],
         scores: npt.NDArray[np.float32], redact: bool, show_score: float = 0.5) -> int:
    """Draw onto ``img``; returns how many people are shown. Redaction covers even weak detections."""
    h, w = img.shape[:2]
    if redact:
        pixelate(img, boxes)
    shown = boxes[scores >= show_score]
    for x1, y1, x2, y2 in shown:
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (0, 200, 255), 2)
    for z in cfg.zones:
        pts = np.array([[int(x * w), int(y * h)] for x, y in z.points], np.int32)
        cv2.polylines(img, [pts], True, (255, 160, 0), 2)
        cv2.putText(img, z.name, tuple(pts[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 160, 0), 2)
    for ln in cfg.lines:
        a = (int(ln.a[0] * w), int(ln.a[1] * h))
        b = (int(ln.b[0] * w), int(ln.b[1] * h))
        cv2.line(img, a, b, (0, 255, 0), 2)
        cv2.putText(img, f"{ln.name} A", a, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 2)
        cv2.putText(img, "B", b, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 2)
        # An arrow from the midpoint towards the "in" side (right of A->B on screen).
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        dx, dy = b[0] - a[0], b[1] - a[1]
        n = max(1.0, float(np.hypot(dx, dy)))
        tip = (int(mx - dy / n * 30), int(my + dx / n * 30))
        cv2.arrowedLine(img, (int(mx), int(my)), tip, (0, 255, 0), 2, tipLength=0.4)
        cv2.putText(img, "in", tip, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
    return len(shown)


def from_appliance(cfg: Config, runtime_dir: Path, camera: str = DEFAULT_CAMERA,
                   timeout_s: float = 5.0) -> tuple[Any, Any, Any] | None:
    """One frame of ``camera`` and its detections from the running appliance (None if it is not running)."""
    process = capture_process(cfg, camera)
    if not RuntimePaths(runtime_dir).bus(process).exists():
        return None
    ctx: zmq.Context[Any] = zmq.Context()
    sub = bus.Subscriber(ctx, runtime_dir, [(process, (bus.FRAME,)), ("inference", (bus.DETECTIONS,))],
                         logs.configure("preview", level="error"))
    reader = RingReader(runtime_dir, camera)
    frames: dict[int, Any] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = sub.recv(200)
            if got is None:
                continue
            msg = got[1]
            if isinstance(msg, FrameReady):
                view = reader.view(msg.ring, msg.slot, msg.seq)
                if view is not None:
                    copy = view.copy()
                    del view
                    if reader.still_valid(msg.slot, msg.seq):
                        frames[msg.seq] = copy
            elif isinstance(msg, Detections) and msg.camera == camera and msg.seq in frames:
                return frames[msg.seq], msg.box_array(), msg.score_array()
    finally:
        reader.close()
        sub.close()
        ctx.term()
    return None


def preview_detector(cfg: Config, store: AssetStore) -> TFLiteDetector | TiledDetector:
    """The appliance's own construction (tiles, resize, classes), on the CPU: the preview must detect what
    the device does. Before, it built a plain detector and ignored all three."""
    return configured_detector(cfg.inference, resolve_model(startup_model(cfg, store), store), device="cpu")


def from_camera(cfg: Config) -> tuple[Any, Any, Any]:
    store = AssetStore.for_config(cfg)
    source = resolve_source(cfg.capture.source, store)
    cap = open_source(source)
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    cap.release()
    if not ok:
        raise RuntimeError(f"no frame: {why_no_frames(source)}")
    d, _ = preview_detector(cfg, store).detect(np.asarray(frame, np.uint8))
    return frame, d.boxes, d.scores
