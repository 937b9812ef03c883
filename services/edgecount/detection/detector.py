"""Run a TFLite detector on CPU or on the Edge TPU, straight from a frame view.

The frame (BGR ``uint8``, usually a view into the shared-memory ring) is
resized directly into the interpreter's input tensor; for float models it is
resized into one preallocated scratch buffer and converted while copying. The
caller may check the ring's seqlock between :meth:`Detector.prepare` (which
reads the frame) and :meth:`Detector.run` (which no longer needs it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from edgecount.assets.obtain import ModelFiles
from edgecount.detection.interpreter import EDGETPU_LIB, DetectorError, load_runtime
from edgecount_core.decoders import DecodedDetections, ResizePlan, decoder


def write_input(dst: npt.NDArray[Any], pixels: npt.NDArray[np.uint8], lut: npt.NDArray[Any],
                value_range: tuple[float, float]) -> None:
    """Write resized pixels into the model input ``dst`` as the model expects them, without temporaries.

    Quantised inputs (uint8 or int8) go through the 256-entry table ``lut`` (``pixels`` is used as
    scratch); float inputs are converted and scaled in place to ``value_range``.
    """
    if dst.dtype in (np.uint8, np.int8):
        cv2.LUT(pixels, lut.view(np.uint8), dst=pixels)
        dst[...] = pixels.view(dst.dtype)  # same bits: int8 values travel through a uint8 table
        return
    dst[...] = pixels
    lo, hi = value_range
    if (lo, hi) != (0.0, 255.0):
        dst *= (hi - lo) / 255.0
        dst += lo


class Detector(Protocol):
    """What the inference stage and the tools need of a detector: a plain model or a tiled one."""

    name: str
    backend: str

    def detect(self, frame_bgr: npt.NDArray[np.uint8]) -> tuple[DecodedDetections, float]:
        """Detections in frame pixels and the milliseconds it took."""
        ...

    def detect_checked(self, frame_bgr: npt.NDArray[np.uint8],
                       intact: Callable[[], bool]) -> DecodedDetections | None:
        """Like :meth:`detect`, but ``None`` when ``intact()``, asked once the frame is no longer
        read, says it was overwritten meanwhile (a torn input)."""
        ...


class TFLiteDetector:
    """One model on one interpreter (CPU with XNNPACK, or the Edge TPU delegate)."""

    def __init__(
        self,
        files: ModelFiles,
        threads: int = 2,
        device: str = "cpu",
        min_score: float = 0.1,
        classes: tuple[str, ...] = ("person",),
        resize: str = "model",
    ) -> None:
        interpreter_cls, load_delegate, self.runtime = load_runtime()
        entry = files.entry
        delegates = []
        if device != "cpu":
            try:
                delegates = [load_delegate(EDGETPU_LIB, {"device": device})]
            except (OSError, ValueError, RuntimeError) as exc:
                raise DetectorError(f"Edge TPU {device!r} unavailable: {exc}") from None
        try:
            self.interp = interpreter_cls(
                model_path=str(files.model), num_threads=threads, experimental_delegates=delegates
            )
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DetectorError(f"cannot load model {files.model}: {exc}") from None
        self.backend = "edgetpu" if device != "cpu" else "cpu"
        self.name = files.name
        self.decoder = entry.decoder
        try:
            self._decode = decoder(self.decoder)
        except KeyError as exc:
            raise DetectorError(f"model {files.name}: {exc.args[0]}") from None
        self.mode = entry.resize if resize == "model" else resize
        self.color = entry.color
        self.pad_value = entry.pad_value
        self.min_score = min_score
        labels = files.label_names()
        wanted = {c.strip().lower() for c in classes}
        ids = frozenset(i for i, name in enumerate(labels) if name.strip().lower() in wanted)
        if labels and not ids:
            raise DetectorError(f"model {files.name} knows none of the classes {sorted(wanted)}")
        self.class_ids: frozenset[int] | None = ids if labels else None

        inp = self.interp.get_input_details()[0]
        _, h, w, _ = inp["shape"]
        self.input_size = (int(w), int(h))
        self._input_index = inp["index"]
        self._input_dtype = np.dtype(inp["dtype"])
        self._input_fn = self.interp.tensor(self._input_index)
        self._outputs = self.interp.get_output_details()
        self._lut = self._input_lut(inp, entry.input_range)
        self._scratch: npt.NDArray[np.uint8] | None = None
        self._plan: ResizePlan | None = None

    def _input_lut(self, inp: dict[str, Any], input_range: tuple[float, float]) -> npt.NDArray[Any] | None:
        """A 256-entry table from pixel to input value, or None when pixels go in unchanged."""
        lo, hi = input_range
        self._range = (lo, hi)
        real = lo + np.arange(256, dtype=np.float64) * (hi - lo) / 255.0
        scale, zero = inp.get("quantization", (0.0, 0))
        if self._input_dtype in (np.uint8, np.int8) and scale:
            info = np.iinfo(self._input_dtype)
            q = np.clip(np.round(real / scale + zero), info.min, info.max)
            if self._input_dtype == np.uint8 and np.abs(q - np.arange(256)).max() <= 1:
                return None  # the model's quantisation already is "pixel value"
            return np.asarray(q, dtype=self._input_dtype)
        return np.asarray(real, dtype=self._input_dtype)

    def _plan_for(self, w: int, h: int) -> ResizePlan:
        if self._plan is None or (self._plan.src_w, self._plan.src_h) != (w, h):
            iw, ih = self.input_size
            self._plan = ResizePlan(w, h, iw, ih, "letterbox" if self.mode == "letterbox" else "stretch")
            self._scratch = None
        return self._plan

    def prepare(self, frame_bgr: npt.NDArray[np.uint8]) -> None:
        """Resize the frame into the input tensor; after this the frame is no longer needed."""
        h, w = frame_bgr.shape[:2]
        plan = self._plan_for(w, h)
        cw, ch = plan.content_size
        tensor = self._input_fn()[0]
        direct = self._lut is None and self._input_dtype == np.uint8
        if direct:
            target = tensor[:ch, :cw]
        else:
            if self._scratch is None:
                self._scratch = np.empty((ch, cw, 3), np.uint8)
            target = self._scratch
        cv2.resize(frame_bgr, (cw, ch), dst=target, interpolation=cv2.INTER_LINEAR)
        if self.color == "rgb":
            # Converting the small model input, not the full frame.
            cv2.cvtColor(target, cv2.COLOR_BGR2RGB, dst=target)
        if not direct:
            assert self._lut is not None
            write_input(tensor[:ch, :cw], target, self._lut, self._range)
        if (cw, ch) != self.input_size:
            pad = self.pad_value if self._lut is None else self._lut[self.pad_value]
            tensor[ch:, :] = pad
            tensor[:ch, cw:] = pad
        del tensor, target

    def _output(self, i: int) -> npt.NDArray[np.float32]:
        d = self._outputs[i]
        raw = self.interp.get_tensor(d["index"])
        scale, zero = d.get("quantization", (0.0, 0))
        if raw.dtype != np.float32 and scale:
            return np.asarray((raw.astype(np.float32) - zero) * scale, dtype=np.float32)
        return np.asarray(raw, dtype=np.float32)

    def run(self) -> DecodedDetections:
        assert self._plan is not None, "prepare() a frame first"
        self.interp.invoke()
        outputs = [self._output(i) for i in range(len(self._outputs))]
        return self._decode(outputs, self._plan, self.min_score, self.class_ids)

    def detect(self, frame_bgr: npt.NDArray[np.uint8]) -> tuple[DecodedDetections, float]:
        t0 = time.perf_counter()
        self.prepare(frame_bgr)
        out = self.run()
        return out, (time.perf_counter() - t0) * 1000.0

    def detect_checked(self, frame_bgr: npt.NDArray[np.uint8],
                       intact: Callable[[], bool]) -> DecodedDetections | None:
        self.prepare(frame_bgr)
        if not intact():
            return None
        return self.run()
