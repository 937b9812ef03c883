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

from edgecount.assets.obtain import AssetStore, resolve_source
from edgecount.detection.detector import TFLiteDetector
from edgecount.detection.model_files import resolve_model, startup_model
from edgecount.detection.redaction import pixelate
from edgecount.detection.tiling import TiledDetector, configured_detector
from edgecount.runtime import bus, logs
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.ring import RingReader
from edgecount.stages import capture_process
from edgecount.stages.source_diagnosis import why_no_frames
from edgecount.stages.video_source import open_source
from edgecount_core.config import Config
from edgecount_core.messages import DEFAULT_CAMERA, Detections, FrameReady

# One colour per line (BGR), told apart on a grey street and by the colour-blind (Okabe-Ito).
LINE_COLOURS = ((0, 159, 230), (233, 180, 86), (115, 158, 0), (66, 228, 240), (178, 114, 0), (0, 94, 213),
                (167, 121, 204))


def draw(img: npt.NDArray[np.uint8], cfg: Config, boxes: npt.NDArray[np.float32],
         scores: npt.NDArray[np.float32], redact: bool, show_score: float = 0.5,
         heat: npt.NDArray[np.int32] | None = None) -> int:
    """Draw onto ``img``: where feet were seen (``heat``), a normalised grid, zones, detections and each line in
    its own colour with its direction; returns how many people are shown. Redaction covers even weak ones."""
    h, w = img.shape[:2]
    scale = max(0.45, min(w, h) / 700)  # text readable on a 1080p frame and on a 320x240 one
    if redact:
        pixelate(img, boxes)
    if heat is not None and heat.max() > 0:
        _heat(img, heat)
    _grid(img, scale)
    shown = boxes[scores >= show_score]
    for x1, y1, x2, y2 in shown:
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (0, 200, 255), 2)
    for z in cfg.zones:
        pts = np.array([[int(x * w), int(y * h)] for x, y in z.points], np.int32)
        cv2.polylines(img, [pts], True, (255, 160, 0), 2)
        _label(img, z.name, (int(pts[0][0]), int(pts[0][1])), (255, 160, 0), scale)
    for k, ln in enumerate(cfg.lines):
        _line(img, ln.name, ln.a, ln.b, LINE_COLOURS[k % len(LINE_COLOURS)], scale)
    return len(shown)


def _heat(img: npt.NDArray[np.uint8], heat: npt.NDArray[np.int32]) -> None:
    """Cells where feet were seen, coloured by how often (log scale), blended over the picture."""
    h, w = img.shape[:2]
    level = np.log1p(heat.astype(np.float32))
    level = (255 * level / level.max()).astype(np.uint8)
    big = cv2.resize(level, (w, h), interpolation=cv2.INTER_NEAREST)
    colour = cv2.applyColorMap(big, cv2.COLORMAP_INFERNO)
    seen = big > 0
    img[seen] = (0.45 * img[seen] + 0.55 * colour[seen]).astype(np.uint8)


def _grid(img: npt.NDArray[np.uint8], scale: float) -> None:
    """Thin lines every 0.1 with their value at the edges: lines are set in these coordinates."""
    h, w = img.shape[:2]
    for k in range(1, 10):
        x, y = int(k * w / 10), int(k * h / 10)
        cv2.line(img, (x, 0), (x, h - 1), (200, 200, 200), 1)
        cv2.line(img, (0, y), (w - 1, y), (200, 200, 200), 1)
        _label(img, f"{k / 10:.1f}", (x + 2, int(14 * scale) + 2), (230, 230, 230), scale * 0.7)
        _label(img, f"{k / 10:.1f}", (2, y - 3), (230, 230, 230), scale * 0.7)


def _label(img: npt.NDArray[np.uint8], text: str, at: tuple[int, int], colour: tuple[int, int, int],
           scale: float) -> None:
    """Text with a dark outline, readable on any background."""
    thick = max(1, round(2 * scale))
    cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, thick, cv2.LINE_AA)


def _line(img: npt.NDArray[np.uint8], name: str, a_n: tuple[float, float], b_n: tuple[float, float],
          colour: tuple[int, int, int], scale: float) -> None:
    """The segment, its name at A, and an arrow across its middle towards ``in`` (right of A->B on screen)."""
    h, w = img.shape[:2]
    a, b = (int(a_n[0] * w), int(a_n[1] * h)), (int(b_n[0] * w), int(b_n[1] * h))
    cv2.line(img, a, b, (0, 0, 0), max(3, round(5 * scale)), cv2.LINE_AA)
    cv2.line(img, a, b, colour, max(2, round(3 * scale)), cv2.LINE_AA)
    _label(img, f"{name} (A)", (a[0] + 4, a[1] - 6), colour, scale)
    _label(img, "B", (b[0] + 4, b[1] - 6), colour, scale)
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = max(1.0, float(np.hypot(dx, dy)))
    reach = 45 * scale
    ux, uy = -dy / n, dx / n  # towards the "in" side
    tail = (int(mx - ux * reach), int(my - uy * reach))
    tip = (int(mx + ux * reach), int(my + uy * reach))
    cv2.arrowedLine(img, tail, tip, (0, 0, 0), max(3, round(5 * scale)), cv2.LINE_AA, tipLength=0.3)
    cv2.arrowedLine(img, tail, tip, colour, max(2, round(3 * scale)), cv2.LINE_AA, tipLength=0.3)
    _label(img, "in", (int(tip[0] + ux * 12 * scale) - 8, int(tip[1] + uy * 12 * scale) + 6), colour, scale)
    _label(img, "out", (int(tail[0] - ux * 12 * scale) - 14, int(tail[1] - uy * 12 * scale) + 6), colour, scale)


def foot_heat(cfg: Config, camera: str, now: float, max_age_s: float = 900.0) -> npt.NDArray[np.int32] | None:
    """The running counter's grid of where feet were seen, when it is recent (``None`` otherwise)."""
    import json

    from edgecount.runtime.settings import state_dir
    from edgecount_core.camera_names import scoped
    from edgecount_core.foot_heat import FootHeat

    try:
        data = json.loads((state_dir(cfg) / f"{scoped('feet', camera)}.json").read_text(encoding="utf-8"))
        grid = FootHeat.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return grid if now - float(data.get("until", 0)) <= max_age_s else None


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
