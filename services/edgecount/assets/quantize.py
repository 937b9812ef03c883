"""``edgecount models quantize``: the int8 YOLOX-nano, made reproducibly from the float one.

Google's ``ai-edge-quantizer`` (no TensorFlow needed) quantises weights and
activations to int8 with a recipe kept in ``models/recipes/``. The recipe
keeps the decode tail in float: box coordinates (pixels) and scores (0..1)
share one output tensor, and one int8 scale for both would crush the scores.

Calibration never uses the evaluation clip. It uses the photos of the asset
mirror (COCO people, the beach with kites, the Grace Hopper portrait), each
shown to the network at several scales: close-up crops, the whole photo, and
mosaics of 2x2, 3x3 and 4x4 copies where people are as small as on a
surveillance camera. Activation ranges are min/max over that set, so the
scales it covers are the scales the model keeps.

The build is deterministic (same float model, recipe, photos and quantizer
version give the same bytes): the manifest pins the result's sha256. The
calibration pass runs the float model on this CPU's kernels, whose last bits
differ between CPUs and library builds; every activation range is therefore
widened to a coarse grid (:func:`coarse_ranges`) before it sets a scale, so
that noise does not reach the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["QuantizeError", "calibration_views", "coarse_ranges", "letterbox", "quantize_model", "widen"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
RANGE_BITS = 6
"""A range's ends are rounded outward to 1/64 of their power of two: at most 1.6 % wider, never narrower."""


class QuantizeError(RuntimeError):
    pass


def letterbox(bgr: npt.NDArray[Any], size: int, pad: int) -> npt.NDArray[Any]:
    """The frame scaled into a ``size`` square at the top-left, padded like the detector does."""
    import cv2

    h, w = bgr.shape[:2]
    r = min(size / w, size / h)
    cw, ch = max(1, round(w * r)), max(1, round(h * r))
    out = np.full((size, size, 3), pad, np.uint8)
    out[:ch, :cw] = cv2.resize(bgr, (cw, ch), interpolation=cv2.INTER_LINEAR)
    return out


def _mosaic(bgr: npt.NDArray[Any], n: int) -> npt.NDArray[Any]:
    return np.concatenate([np.concatenate([bgr] * n, axis=1)] * n, axis=0)


def calibration_views(photos: list[Path], size: int, pad: int) -> Iterator[npt.NDArray[Any]]:
    """Each photo at close-up, whole, mirrored and as 2x2 / 3x3 / 4x4 mosaics, letterboxed to ``size``."""
    import cv2

    for p in photos:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise QuantizeError(f"{p}: not an image OpenCV can read")
        h, w = bgr.shape[:2]
        yield letterbox(bgr[h // 4: h - h // 4, w // 4: w - w // 4], size, pad)  # close-up: centre half
        yield letterbox(bgr, size, pad)
        yield letterbox(cv2.flip(bgr, 1), size, pad)
        for n in (2, 3, 4):
            yield letterbox(_mosaic(bgr, n), size, pad)


def widen(x: npt.ArrayLike, up: bool) -> npt.NDArray[np.float32]:
    """``x`` rounded away from the range's inside (up for a maximum) to ``RANGE_BITS`` significant bits."""
    v = np.asarray(x, dtype=np.float64)
    magnitude = np.where(v == 0, 1.0, np.abs(v))
    step = np.exp2(np.floor(np.log2(magnitude)) - RANGE_BITS)
    out: npt.NDArray[np.float32] = ((np.ceil(v / step) if up else np.floor(v / step)) * step).astype(np.float32)
    return out


def coarse_ranges(calibration: dict[str, Any]) -> dict[str, Any]:
    """The quantizer's calibration result with every tensor's min and max widened (:func:`widen`).

    Differences in the last bits of a range (another CPU's kernels) then give the same scale."""
    return {name: {**qsv, "min": widen(qsv["min"], up=False), "max": widen(qsv["max"], up=True)}
            if "min" in qsv and "max" in qsv else qsv for name, qsv in calibration.items()}


def find_photos(images_dir: Path) -> list[Path]:
    photos = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise QuantizeError(f"no calibration photos under {images_dir} (expected .jpg/.png/.bmp files)")
    return photos


def quantize_model(float_model: Path, recipe: Path, photos: list[Path], out: Path,
                   size: int = 416, pad: int = 114) -> dict[str, Any]:
    """Quantise ``float_model`` with ``recipe``, calibrated on ``photos``; returns a summary."""
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise QuantizeError("quantising needs Google's ai-edge-quantizer: pip install 'edgecount[quantize]'") from None
    views = [v.astype(np.float32)[None] for v in calibration_views(photos, size, pad)]
    q = quantizer.Quantizer(str(float_model), json.loads(recipe.read_text(encoding="utf-8")))
    # One thread: the calibration ranges must not depend on the machine.
    calib = q.calibrate({"serving_default": [{"images": v} for v in views]}, num_threads=1)
    result = q.quantize(coarse_ranges(calib), enable_progress_report=False)
    model = bytes(result.quantized_model or b"")
    if not model:
        raise QuantizeError("the quantizer returned no model")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    tmp.write_bytes(model)
    tmp.replace(out)
    import hashlib

    return {"model": str(out), "bytes": len(model), "sha256": hashlib.sha256(model).hexdigest(),
            "calibration_views": len(views), "photos": len(photos)}
