"""Redaction: people and faces made unrecognisable, for snapshots and for the technician's preview.

Every detected person box and every face the MediaPipe face detector finds is
pixelated (irreversibly: the pixels are replaced by block averages), the
image is downscaled, and it is re-encoded as a JPEG with no metadata. Faces
are searched with both face models, on the whole frame and inside each
person box (small faces), before anything is pixelated.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edgecount.assets.obtain import ModelFiles
from edgecount.detection.interpreter import load_runtime
from edgecount_core.faces import blazeface_anchors, decode_blazeface

_SPECS = {128: ((8, 16, 16, 16), 2), 192: ((4,), 1)}


def pixelate(img: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32], block: int = 12,
             max_cells: int = 0) -> None:
    """Irreversibly pixelate every box in place (a little larger than the box).

    With ``max_cells`` the blocks grow so a box is at most that many blocks across: coarse enough
    that nothing face-like survives at any size.
    """
    h, w = img.shape[:2]
    for x1, y1, x2, y2 in boxes:
        pw, ph = (x2 - x1) * 0.1, (y2 - y1) * 0.1
        a, b = max(0, int(x1 - pw)), max(0, int(y1 - ph))
        c, d = min(w, int(x2 + pw)), min(h, int(y2 + ph))
        if c - a < 2 or d - b < 2:
            continue
        roi = img[b:d, a:c]
        size = max(block, min(c - a, d - b) // max_cells) if max_cells else block
        small = cv2.resize(roi, (max(1, (c - a) // size), max(1, (d - b) // size)), interpolation=cv2.INTER_AREA)
        roi[...] = cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_NEAREST)


class FaceDetector:
    def __init__(self, files: ModelFiles, threads: int = 1) -> None:
        interpreter_cls, _, _ = load_runtime()
        self.interp = interpreter_cls(model_path=str(files.model), num_threads=threads)
        self.interp.allocate_tensors()
        inp = self.interp.get_input_details()[0]
        self.size = int(inp["shape"][1])
        self.index = inp["index"]
        strides, per_layer = _SPECS[self.size]
        self.anchors = blazeface_anchors(self.size, strides, per_layer)
        outs = sorted(self.interp.get_output_details(), key=lambda d: int(d["shape"][-1]), reverse=True)
        self.reg_index, self.score_index = outs[0]["index"], outs[1]["index"]

    def detect(self, bgr: npt.NDArray[np.uint8], min_score: float = 0.5) -> tuple[Any, Any]:
        """Faces as ``[x1, y1, x2, y2]`` in pixels of ``bgr``, with scores."""
        h, w = bgr.shape[:2]
        side = max(h, w)
        square = np.zeros((side, side, 3), np.uint8)
        square[:h, :w] = bgr
        small = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
        self.interp.set_tensor(self.index, rgb[None])
        self.interp.invoke()
        boxes, scores = decode_blazeface(self.interp.get_tensor(self.reg_index),
                                         self.interp.get_tensor(self.score_index), self.anchors, self.size,
                                         min_score)
        return boxes * side, scores


def find_faces(bgr: npt.NDArray[np.uint8], detectors: list[FaceDetector], person_boxes: Any,
               min_score: float = 0.5) -> npt.NDArray[np.float32]:
    found = []
    for det in detectors:
        b, _ = det.detect(bgr, min_score)
        found.append(b)
        for x1, y1, x2, y2 in np.asarray(person_boxes, dtype=np.float32).reshape(-1, 4):
            a, c = max(0, int(x1)), min(bgr.shape[1], int(x2))
            t, d = max(0, int(y1)), min(bgr.shape[0], int(y2))
            if c - a < 8 or d - t < 8:
                continue
            crop = np.ascontiguousarray(bgr[t:d, a:c])
            b2, _ = det.detect(crop, min_score)
            found.append(b2 + np.array([a, t, a, t], np.float32))
    return np.concatenate(found).astype(np.float32) if found else np.zeros((0, 4), np.float32)


def redact_snapshot(bgr: npt.NDArray[np.uint8], person_boxes: Any, detectors: list[FaceDetector],
                    max_width: int = 640, jpeg_quality: int = 80) -> bytes:
    """A redacted, downscaled JPEG (no metadata) of ``bgr``; the input is not modified."""
    img = bgr.copy()
    faces = find_faces(img, detectors, person_boxes)
    boxes = np.concatenate([np.asarray(person_boxes, np.float32).reshape(-1, 4), faces])
    # One block per box: nothing of a face or a body survives, at any size.
    pixelate(img, boxes, block=16, max_cells=1)
    h, w = img.shape[:2]
    if w > max_width:
        img = np.asarray(cv2.resize(img, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA),
                         np.uint8)
    # Check what will actually leave: anything still face-like in the encoded image is blanked too.
    for _ in range(4):
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        if decoded is None:
            raise RuntimeError("the encoded JPEG does not decode")
        found = [d.detect(np.asarray(decoded, np.uint8))[0] for d in detectors]
        left = np.concatenate(found) if found else np.zeros((0, 4))
        if len(left) == 0:
            return bytes(jpeg.tobytes())
        pixelate(img, left.astype(np.float32), block=16, max_cells=1)
    raise RuntimeError("could not redact every face; no snapshot is sent")
