"""Decoding MediaPipe's BlazeFace face-detector outputs (SSD anchors, fixed anchor size).

Short range: 128x128 input, strides 8, 16, 16, 16, two anchors per layer ->
896 anchors. Full range: 192x192 input, one stride-4 layer, one anchor ->
2304 anchors. Regressors are offsets in input pixels relative to each
anchor's centre; scores are logits.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["blazeface_anchors", "decode_blazeface"]

F32 = npt.NDArray[np.float32]


def blazeface_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> F32:
    """Anchor centres ``(n, 2)`` in 0..1; layers with the same stride share cells (MediaPipe's order)."""
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        same = 0
        while i < len(strides) and strides[i] == stride:
            same += 1
            i += 1
        cells = int(np.ceil(input_size / stride))
        for y in range(cells):
            for x in range(cells):
                out.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * (anchors_per_layer * same))
    return np.asarray(out, dtype=np.float32)


def decode_blazeface(regressors: npt.ArrayLike, logits: npt.ArrayLike, anchors: F32, input_size: int,
                     min_score: float = 0.5) -> tuple[F32, F32]:
    """Face boxes ``(n, 4)`` as ``[x1, y1, x2, y2]`` in 0..1 of the (square) input, and their scores."""
    reg = np.asarray(regressors, dtype=np.float32).reshape(-1, 16)
    raw = np.clip(np.asarray(logits, dtype=np.float32).reshape(-1), -80.0, 80.0)
    scores = (1.0 / (1.0 + np.exp(-raw))).astype(np.float32)
    keep = scores >= min_score
    reg, scores, anc = reg[keep], scores[keep], anchors[keep]
    cx = reg[:, 0] / input_size + anc[:, 0]
    cy = reg[:, 1] / input_size + anc[:, 1]
    w = reg[:, 2] / input_size
    h = reg[:, 3] / input_size
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    return boxes, scores
