"""Detectors on the real models and photos; the Edge TPU's absence is detected."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecount.assets.obtain import AssetStore
from edgecount.detection.detector import DetectorError, TFLiteDetector
from edgecount.detection.interpreter import probe_edgetpu
from edgecount_core.decoders import ResizePlan, decode_ssd_postprocess, decode_yolox, nms

pytestmark = pytest.mark.assets


def _bgr(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return bgr


# The int8 YOLOX was calibrated on these photos (activation ranges only; no weight was fitted to them).
@pytest.mark.parametrize("model_fixture", ["ssd_model", "yolox_model", "yolox_int8_model"])
def test_finds_the_person_in_grace_hopper(model_fixture: str, request, images_dir: Path) -> None:
    det = TFLiteDetector(request.getfixturevalue(model_fixture), threads=1, min_score=0.5)
    img = _bgr(images_dir / "grace_hopper.bmp")
    out, _ = det.detect(img)
    assert len(out) >= 1
    # The portrait's person fills most of the frame, in source pixels.
    x1, y1, x2, y2 = out.boxes[int(np.argmax(out.scores))]
    assert (x2 - x1) > 0.4 * img.shape[1] and (y2 - y1) > 0.4 * img.shape[0]
    assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
    assert set(out.classes.astype(int)) == {0}  # only people were kept


@pytest.mark.parametrize("model_fixture", ["ssd_model", "yolox_model", "yolox_int8_model"])
def test_people_on_every_coco_photo_and_both_models_agree(model_fixture: str, request,
                                                          images_dir: Path) -> None:
    det = TFLiteDetector(request.getfixturevalue(model_fixture), threads=1, min_score=0.4)
    photos = sorted((images_dir / "coco").glob("*.jpg"))
    assert len(photos) == 10
    found = sum(1 for p in photos if len(det.detect(_bgr(p))[0]) > 0)
    assert found >= 8


def test_letterbox_boxes_map_back_to_source_pixels(yolox_model, images_dir: Path) -> None:
    det = TFLiteDetector(yolox_model, threads=1, min_score=0.5)
    img = _bgr(images_dir / "grace_hopper.bmp")
    a, _ = det.detect(img)
    # The same picture on a canvas twice as wide: boxes must land on the same pixels.
    wide = np.zeros((img.shape[0], img.shape[1] * 2, 3), np.uint8)
    wide[:, : img.shape[1]] = img
    b, _ = det.detect(wide)
    best_a = a.boxes[int(np.argmax(a.scores))]
    best_b = b.boxes[int(np.argmax(b.scores))]
    assert np.abs(best_a - best_b).max() < 0.08 * img.shape[0]


def test_ssd_decoder_handles_count_and_coordinates() -> None:
    plan = ResizePlan(800, 600, 300, 300, "stretch")
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0]]], np.float32)
    out = decode_ssd_postprocess(boxes, np.array([[0, 2, 0]]), np.array([[0.9, 0.8, 0.7]]),
                                 np.array([2.0]), plan, 0.5, frozenset({0}))
    assert len(out) == 1
    np.testing.assert_allclose(out.boxes[0], [160, 60, 480, 300], atol=1e-3)


def test_yolox_decoder_scores_and_nms() -> None:
    plan = ResizePlan(416, 416, 416, 416, "letterbox")
    rows = np.zeros((1, 3, 7), np.float32)
    rows[0, 0] = [100, 100, 50, 100, 0.9, 0.9, 0.1]
    rows[0, 1] = [102, 101, 50, 100, 0.8, 0.9, 0.1]  # duplicate of the first
    rows[0, 2] = [300, 300, 40, 80, 0.9, 0.1, 0.95]  # another class
    out = decode_yolox(rows, plan, 0.3)
    assert sorted(out.classes.tolist()) == [0.0, 1.0]
    np.testing.assert_allclose(out.scores[out.classes == 0], [0.81], atol=1e-6)
    keep = nms(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32),
               np.array([0.5, 0.9, 0.4], np.float32), 0.5)
    assert keep.tolist() == [1, 2]


# ai-edge-litert's Delegate.__del__ trips over its own failed construction; harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_edgetpu_absence_is_detected(ssd_model) -> None:
    reason = probe_edgetpu("usb")
    assert reason is not None and "libedgetpu" in reason
    with pytest.raises(DetectorError, match="Edge TPU"):
        TFLiteDetector(ssd_model, device="usb")


@pytest.mark.parametrize("model_fixture", ["ssd_model", "yolox_model"])
def test_hot_path_makes_no_full_frame_copy(model_fixture: str, request, runtime_dir: Path) -> None:
    """From the ring slot into the input tensor without copying the frame (issue #3, zero-copy)."""
    import tracemalloc

    from edgecount.runtime.ring import RingReader, RingWriter

    det = TFLiteDetector(request.getfixturevalue(model_fixture), threads=1, min_score=0.5)
    ring = RingWriter(runtime_dir, 3, 768, 576)
    reader = RingReader(runtime_dir)
    try:
        seq, slot = ring.write(np.random.default_rng(1).integers(0, 255, (576, 768, 3), dtype=np.uint8), 0.0)
        view = reader.view(ring.generation, slot, seq)
        assert view is not None
        det.prepare(view)  # first call sizes the scratch buffers
        tracemalloc.start()
        for _ in range(5):
            det.prepare(view)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        frame_bytes = 576 * 768 * 3
        assert peak < frame_bytes // 8, f"prepare() allocated {peak} bytes, a frame is {frame_bytes}"
        del view
    finally:
        reader.close()
        ring.close()


def test_yolo_raw_decoders_v5_and_v8_layouts() -> None:
    """No YOLOv5/v8 model is in the asset mirror: the layouts are checked on constructed tensors."""
    from edgecount_core.decoders import decode_yolo_raw

    plan = ResizePlan(640, 480, 320, 320, "letterbox")  # scale 0.5, content 320x240
    # v5: [1, N, 5 + C] with objectness; two overlapping person rows and one car row.
    v5 = np.zeros((1, 3, 7), np.float32)
    v5[0, 0] = [100, 80, 40, 80, 0.9, 0.95, 0.05]
    v5[0, 1] = [102, 81, 40, 80, 0.8, 0.90, 0.05]
    v5[0, 2] = [200, 100, 60, 30, 0.9, 0.10, 0.90]
    out = decode_yolo_raw(v5, plan, 0.3, version="v5", class_ids=frozenset({0}))
    assert len(out) == 1 and out.classes[0] == 0
    np.testing.assert_allclose(out.boxes[0], [160, 80, 240, 240], atol=1e-3)  # back in source pixels
    # v8: [1, 4 + C, N] transposed, no objectness, coordinates normalised to 0..1.
    # (Real exports have thousands of anchors, more than 4 + C rows: that is how the layout is told apart.)
    v8 = np.zeros((1, 6, 8), np.float32)
    v8[0, :, 0] = [0.5, 0.5, 0.25, 0.5, 0.8, 0.1]
    v8[0, :, 1] = [0.2, 0.2, 0.1, 0.1, 0.1, 0.7]
    out8 = decode_yolo_raw(v8, plan, 0.5, version="v8")
    assert sorted(out8.classes.tolist()) == [0.0, 1.0]
    person = out8.boxes[out8.classes == 0][0]
    np.testing.assert_allclose(person, [240, 160, 400, 480], atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float32])
def test_input_is_written_as_the_model_expects(dtype) -> None:
    """uint8/int8 through the quantisation table, float scaled to the model's range (issue #3)."""
    from edgecount.detection.detector import write_input

    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    real = -1.0 + np.arange(256) * 2.0 / 255.0  # the model's input range is [-1, 1]
    if dtype == np.float32:
        lut = real.astype(np.float32)
        expected = lut[pixels]
    else:
        scale, zero = (0.0078125, 0) if dtype == np.int8 else (0.0078125, 128)
        info = np.iinfo(dtype)
        lut = np.clip(np.round(real / scale + zero), info.min, info.max).astype(dtype)
        expected = lut[pixels]
    dst = np.zeros((16, 16, 3), dtype=dtype)
    write_input(dst, pixels.copy(), lut, (-1.0, 1.0))
    np.testing.assert_allclose(dst.astype(np.float64), expected.astype(np.float64), atol=1e-5)


def test_falls_back_to_tflite_runtime_when_ai_edge_litert_is_absent(ssd_model, images_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Mendel ships tflite_runtime, not ai-edge-litert. It is not installable here (2.14 breaks with numpy 2),
    # so a stand-in module of that name exposes the same Interpreter/load_delegate API.
    import sys
    import types

    import ai_edge_litert.interpreter as litert

    standin = types.ModuleType("tflite_runtime.interpreter")
    standin.Interpreter = litert.Interpreter  # type: ignore[attr-defined]
    standin.load_delegate = litert.load_delegate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", standin)
    det = TFLiteDetector(ssd_model, threads=1, min_score=0.5)
    assert det.runtime == "tflite_runtime"
    out, _ = det.detect(_bgr(images_dir / "grace_hopper.bmp"))
    assert len(out) >= 1

    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(DetectorError, match="no TFLite runtime: install ai-edge-litert"):
        TFLiteDetector(ssd_model, threads=1)


def test_preview_detects_as_the_appliance_does(store: AssetStore, tmp_path: Path) -> None:
    """Issue 28: `preview` built a plain detector by hand and ignored tiles, resize and classes, so the
    technician's preview detected differently from the device."""
    from edgecount.detection.tiling import TiledDetector
    from edgecount.runtime.settings import load_config
    from edgecount.tools.preview import preview_detector

    cfg = tmp_path / "c.toml"
    cfg.write_text('[inference]\nmodel = "ssd_mobilenet_v1_coco_quant"\ntiles = "2x1"\ntile_overlap = 0.1\n'
                   'resize = "letterbox"\nclasses = ["person", "bicycle"]\n')
    det = preview_detector(load_config(cfg), store)
    assert isinstance(det, TiledDetector) and (det.cols, det.rows, det.overlap) == (2, 1, 0.1)
    plain = det.det
    assert len(plain.class_ids) == 2 and plain.mode == "letterbox"
