"""Tiled inference for cameras where people are small relative to the model input.

The frame is cut into an overlapping grid of tiles (views, not copies); each
tile, and optionally the whole frame, goes through the model; boxes are moved
back to frame pixels and merged by NMS. It costs one inference per tile.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgecount.detector import TFLiteDetector
from edgecount_core.decoders import DecodedDetections, nms


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
    def __init__(self, det: TFLiteDetector, cols: int, rows: int, overlap: float = 0.2,
                 include_full: bool = True, iou: float = 0.5) -> None:
        self.det = det
        self.cols, self.rows, self.overlap = cols, rows, overlap
        self.include_full = include_full
        self.iou = iou

    def detect(self, frame: npt.NDArray[np.uint8]) -> DecodedDetections:
        h, w = frame.shape[:2]
        parts: list[DecodedDetections] = []
        if self.include_full:
            self.det.prepare(frame)
            parts.append(self.det.run())
        for x0, y0, x1, y1 in tile_grid(w, h, self.cols, self.rows, self.overlap):
            self.det.prepare(frame[y0:y1, x0:x1])
            d = self.det.run()
            parts.append(DecodedDetections(d.boxes + np.array([x0, y0, x0, y0], np.float32), d.scores, d.classes))
        boxes = np.concatenate([p.boxes for p in parts]).astype(np.float32)
        scores = np.concatenate([p.scores for p in parts]).astype(np.float32)
        classes = np.concatenate([p.classes for p in parts]).astype(np.float32)
        merged = DecodedDetections(boxes, scores, classes)
        if len(merged) == 0:
            return merged
        offset = classes[:, None] * (float(boxes.max()) + 1.0)
        keep = nms((boxes + offset).astype(np.float32), scores, self.iou)
        return merged.select(keep)
