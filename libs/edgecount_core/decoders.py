"""Turn raw detector output tensors into boxes in source-frame pixels.

Pure functions over numpy arrays: the inference service fetches the tensors
and (de)quantises them with the parameters read from the model; everything
here is testable without an interpreter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "DECODERS",
    "DecodedDetections",
    "ResizePlan",
    "classwise_nms",
    "decode_ssd_postprocess",
    "decode_yolo_raw",
    "decode_yolox",
    "decoder",
    "nms",
]

F32 = npt.NDArray[np.float32]
ResizeMode = Literal["stretch", "letterbox"]


@attrs.frozen
class ResizePlan:
    """How a source frame maps into the model input, and back.

    ``letterbox`` keeps the aspect ratio and pads right and bottom (as YOLOX
    does); ``stretch`` scales each axis to fill the input.
    """

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    mode: ResizeMode

    @property
    def scale_xy(self) -> tuple[float, float]:
        sx, sy = self.dst_w / self.src_w, self.dst_h / self.src_h
        if self.mode == "letterbox":
            s = min(sx, sy)
            return s, s
        return sx, sy

    @property
    def content_size(self) -> tuple[int, int]:
        """Size of the resized image inside the input (the rest is padding)."""
        sx, sy = self.scale_xy
        return (
            min(self.dst_w, max(1, round(self.src_w * sx))),
            min(self.dst_h, max(1, round(self.src_h * sy))),
        )

    def to_source(self, boxes_input_px: F32) -> F32:
        """Map ``[x1, y1, x2, y2]`` in model-input pixels back to source pixels, clipped."""
        sx, sy = self.scale_xy
        out = np.empty_like(boxes_input_px, dtype=np.float32)
        out[:, 0::2] = boxes_input_px[:, 0::2] / sx
        out[:, 1::2] = boxes_input_px[:, 1::2] / sy
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out


@attrs.frozen
class DecodedDetections:
    boxes: F32  # (n, 4) source pixels
    scores: F32  # (n,)
    classes: F32  # (n,) 0-based class index

    @classmethod
    def empty(cls) -> DecodedDetections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.float32)
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> DecodedDetections:
        return DecodedDetections(self.boxes[keep], self.scores[keep], self.classes[keep])


def _filter(
    boxes: F32, scores: F32, classes: F32, min_score: float, class_ids: frozenset[int] | None
) -> DecodedDetections:
    keep = scores >= min_score
    if class_ids is not None:
        keep &= np.isin(classes.astype(np.int64), list(class_ids))
    # Degenerate boxes (zero area) are noise from padding regions.
    keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return DecodedDetections(
        boxes[keep].astype(np.float32), scores[keep].astype(np.float32), classes[keep].astype(np.float32)
    )


def decode_ssd_postprocess(
    boxes: npt.ArrayLike,
    classes: npt.ArrayLike,
    scores: npt.ArrayLike,
    count: npt.ArrayLike,
    plan: ResizePlan,
    min_score: float,
    class_ids: frozenset[int] | None = None,
) -> DecodedDetections:
    """Outputs of ``TFLite_Detection_PostProcess``: normalised ``[ymin, xmin, ymax, xmax]``.

    Coordinates are relative to the model input, so padding (letterbox) is undone
    by scaling to input pixels first.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = int(np.asarray(count).reshape(-1)[0]) if np.asarray(count).size else b.shape[0]
    n = max(0, min(n, b.shape[0]))
    b = b[:n]
    c = np.asarray(classes, dtype=np.float32).reshape(-1)[:n]
    s = np.asarray(scores, dtype=np.float32).reshape(-1)[:n]
    xyxy = np.stack(
        [b[:, 1] * plan.dst_w, b[:, 0] * plan.dst_h, b[:, 3] * plan.dst_w, b[:, 2] * plan.dst_h],
        axis=1,
    ).astype(np.float32)
    return _filter(plan.to_source(xyxy), s, c, min_score, class_ids)


def nms(boxes: F32, scores: F32, iou_threshold: float) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.intp)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def classwise_nms(det: DecodedDetections, iou_threshold: float) -> DecodedDetections:
    """NMS within each class only (a person never suppresses a bicycle)."""
    if len(det) == 0:
        return det
    # Offsetting each class far apart runs one NMS that never suppresses across classes.
    offset = det.classes[:, None] * (float(det.boxes.max()) + 1.0)
    keep = nms((det.boxes + offset).astype(np.float32), det.scores, iou_threshold)
    return det.select(keep)


def _cxcywh_to_xyxy(a: F32) -> F32:
    out = np.empty_like(a)
    out[:, 0] = a[:, 0] - a[:, 2] / 2
    out[:, 1] = a[:, 1] - a[:, 3] / 2
    out[:, 2] = a[:, 0] + a[:, 2] / 2
    out[:, 3] = a[:, 1] + a[:, 3] / 2
    return out


def decode_yolox(
    output: npt.ArrayLike,
    plan: ResizePlan,
    min_score: float,
    iou_threshold: float = 0.45,
    class_ids: frozenset[int] | None = None,
) -> DecodedDetections:
    """YOLOX-style decoded output ``[1, N, 5 + classes]``: cx, cy, w, h (input px), obj, classes."""
    a = np.asarray(output, dtype=np.float32)
    a = a.reshape(-1, a.shape[-1])
    if a.shape[1] < 6:
        raise ValueError(f"YOLOX output needs at least 6 columns, got {a.shape[1]}")
    cls_scores = a[:, 5:] * a[:, 4:5]
    cls = np.argmax(cls_scores, axis=1).astype(np.float32)
    score = cls_scores[np.arange(a.shape[0]), cls.astype(np.int64)]
    boxes = plan.to_source(_cxcywh_to_xyxy(a[:, :4]))
    det = _filter(boxes, score, cls, min_score, class_ids)
    return classwise_nms(det, iou_threshold)


def decode_yolo_raw(
    output: npt.ArrayLike,
    plan: ResizePlan,
    min_score: float,
    version: Literal["v5", "v8"],
    iou_threshold: float = 0.45,
    class_ids: frozenset[int] | None = None,
    normalised: bool | None = None,
) -> DecodedDetections:
    """YOLOv5 ``[1, N, 5 + C]`` (with objectness) or YOLOv8 ``[1, 4 + C, N]`` (transposed, none).

    Exported TFLite models often give box coordinates normalised to 0..1; that is
    detected from the values when ``normalised`` is not given.
    """
    a = np.asarray(output, dtype=np.float32)
    a = a.reshape(a.shape[-2], a.shape[-1]) if a.ndim >= 2 else a.reshape(1, -1)
    if version == "v8":
        if a.shape[0] < a.shape[1]:
            a = a.T
        cls_scores = a[:, 4:]
    else:
        cls_scores = a[:, 5:] * a[:, 4:5]
    cls = np.argmax(cls_scores, axis=1).astype(np.float32)
    score = cls_scores[np.arange(a.shape[0]), cls.astype(np.int64)]
    xywh = a[:, :4].copy()
    if normalised is None:
        normalised = bool(xywh.size) and float(np.abs(xywh).max()) <= 2.0
    if normalised:
        xywh[:, 0::2] *= plan.dst_w
        xywh[:, 1::2] *= plan.dst_h
    boxes = plan.to_source(_cxcywh_to_xyxy(xywh))
    det = _filter(boxes, score, cls, min_score, class_ids)
    return classwise_nms(det, iou_threshold)


#: A decoder takes the model's (dequantised) output tensors in the model's order.
Decoder = Callable[[Sequence[F32], ResizePlan, float, "frozenset[int] | None"], DecodedDetections]

#: The manifest's ``decoder`` names. A new output layout is one entry here and one pure function above.
DECODERS: dict[str, Decoder] = {
    "ssd_postprocess": lambda out, plan, s, ids: decode_ssd_postprocess(out[0], out[1], out[2], out[3], plan, s, ids),
    "yolox": lambda out, plan, s, ids: decode_yolox(out[0], plan, s, class_ids=ids),
    "yolov5": lambda out, plan, s, ids: decode_yolo_raw(out[0], plan, s, version="v5", class_ids=ids),
    "yolov8": lambda out, plan, s, ids: decode_yolo_raw(out[0], plan, s, version="v8", class_ids=ids),
}


def decoder(name: str) -> Decoder:
    """The decoder registered as ``name``; ``KeyError`` names the known ones."""
    try:
        return DECODERS[name]
    except KeyError:
        raise KeyError(f"unknown decoder {name!r}; known: {', '.join(sorted(DECODERS))}") from None
