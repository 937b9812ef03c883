"""Tiled inference for cameras where people are small relative to the model input.

The frame is cut into an overlapping grid of tiles (views, not copies); each
tile, and optionally the whole frame, goes through the model; boxes are moved
back to frame pixels and merged by NMS. It costs one inference per tile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from edgecount.assets.obtain import ModelFiles
from edgecount.detection.detector import TFLiteDetector
from edgecount_core.config import InferenceSection
from edgecount_core.decoders import DecodedDetections, classwise_nms


def tile_grid(width: int, height: int, cols: int, rows: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` of each tile; neighbours overlap by ``overlap`` of a tile."""
    tw = int(np.ceil(width / (cols - (cols - 1) * overlap)))
    th = int(np.ceil(height / (rows - (rows - 1) * overlap)))
    xs = [0] if cols == 1 else [round(i * (width - tw) / (cols - 1)) for i in range(cols)]
    ys = [0] if rows == 1 else [round(j * (height - th) / (rows - 1)) for j in range(rows)]
    return [(x, y, min(width, x + tw), min(height, y + th)) for y in ys for x in xs]


def parse_tiles(text: str) -> tuple[int, int]:
    cols, _, rows = text.lower().partition("x")
    if not (cols.isdigit() and rows.isdigit()) or int(cols) < 1 or int(rows) < 1:
        raise ValueError(f"tiles {text!r}: expected COLSxROWS such as 2x2")
    return int(cols), int(rows)


class TiledDetector:
    """A :class:`~edgecount.detection.detector.Detector` that runs one model over tiles of the frame."""

    def __init__(self, det: TFLiteDetector, cols: int, rows: int, overlap: float = 0.2,
                 include_full: bool = True, iou: float = 0.5) -> None:
        self.det = det
        self.name = det.name
        self.backend = det.backend
        self.cols, self.rows, self.overlap = cols, rows, overlap
        self.include_full = include_full
        self.iou = iou

    def _tiles(self, frame: npt.NDArray[np.uint8]) -> DecodedDetections:
        h, w = frame.shape[:2]
        parts: list[DecodedDetections] = []
        if self.include_full:
            self.det.prepare(frame)
            parts.append(self.det.run())
        for x0, y0, x1, y1 in tile_grid(w, h, self.cols, self.rows, self.overlap):
            self.det.prepare(frame[y0:y1, x0:x1])
            d = self.det.run()
            parts.append(DecodedDetections(d.boxes + np.array([x0, y0, x0, y0], np.float32), d.scores, d.classes))
        merged = DecodedDetections(np.concatenate([p.boxes for p in parts]).astype(np.float32),
                                   np.concatenate([p.scores for p in parts]).astype(np.float32),
                                   np.concatenate([p.classes for p in parts]).astype(np.float32))
        return classwise_nms(merged, self.iou)

    def detect(self, frame: npt.NDArray[np.uint8]) -> tuple[DecodedDetections, float]:
        t0 = time.perf_counter()
        out = self._tiles(frame)
        return out, (time.perf_counter() - t0) * 1000.0

    def detect_checked(self, frame: npt.NDArray[np.uint8], intact: Callable[[], bool]) -> DecodedDetections | None:
        # Every tile reads the frame, so the overwrite check comes after all of them.
        out = self._tiles(frame)
        return out if intact() else None


def with_tiles(det: TFLiteDetector | TiledDetector, tiles: str, overlap: float) -> TFLiteDetector | TiledDetector:
    """The same interpreter over another tile grid (a camera's own ``tiles``): no second model is loaded."""
    base = det.det if isinstance(det, TiledDetector) else det
    grid = parse_tiles(tiles)
    return TiledDetector(base, *grid, overlap=overlap) if grid != (1, 1) else base


def configured_detector(inf: InferenceSection, files: ModelFiles, device: str) -> TFLiteDetector | TiledDetector:
    """The detector an ``[inference]`` section describes for these model files, tiled when it asks for tiles."""
    det = TFLiteDetector(files, threads=inf.thread_count(os.cpu_count() or 1), device=device,
                         min_score=inf.min_score, classes=inf.classes, resize=inf.resize)
    return with_tiles(det, inf.tiles, inf.tile_overlap)
