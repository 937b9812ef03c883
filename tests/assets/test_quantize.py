"""`edgecount models quantize`: the int8 YOLOX is rebuilt byte for byte from the float model and the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecount.assets.quantize import QuantizeError, calibration_views, coarse_ranges, find_photos, widen

from ..helpers import edgecount


def test_every_photo_is_shown_at_six_scales(images_dir: Path) -> None:
    photos = find_photos(images_dir)
    views = list(calibration_views(photos[:2], 416, 114))
    assert len(views) == 6 * 2
    assert all(v.shape == (416, 416, 3) and v.dtype == np.uint8 for v in views)
    # Mosaics make people smaller: the 4x4 mosaic holds the photo 16 times.
    portrait = cv2.imread(str(photos[0]))
    assert portrait is not None
    whole, mosaic4 = views[1], views[5]
    assert not np.array_equal(whole, mosaic4)


def test_no_photos_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="no calibration photos"):
        find_photos(tmp_path)


def test_only_models_built_by_quantisation_can_be_quantised() -> None:
    res = edgecount("models", "quantize", "yolox_nano")
    assert res.returncode == 2 and "not built by quantisation" in res.stderr


@pytest.mark.slow
def test_the_build_reproduces_the_pinned_model(tmp_path: Path, yolox_model) -> None:
    out = tmp_path / "int8.tflite"
    res = edgecount("models", "quantize", "yolox_nano_int8", "--out", str(out), "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["matches_manifest"] and summary["calibration_views"] >= 60
    assert out.stat().st_size < 0.45 * yolox_model.model.stat().st_size
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(out))
    assert it.get_input_details()[0]["dtype"] == np.int8  # the Edge TPU needs int8 in
    assert it.get_output_details()[0]["dtype"] == np.float32  # scores keep their own range out


@given(st.floats(-1e6, 1e6, allow_nan=False, width=32), st.booleans())
def test_a_widened_range_end_is_never_inside_and_at_most_a_64th_further_out(x: float, up: bool) -> None:
    got = float(widen(np.float32(x), up))
    assert (got >= x) if up else (got <= x)
    assert abs(got - x) <= abs(x) / 64 + 1e-30
    assert float(widen(np.float32(got), up)) == got  # a widened value stays where it is


def test_calibration_noise_in_the_last_bits_gives_the_same_scales() -> None:
    rng = np.random.default_rng(7)
    ranges = {f"t{i}": {"min": -rng.uniform(0.1, 300), "max": rng.uniform(0.1, 300)} for i in range(200)}
    noisy = {k: {"min": v["min"] * (1 + 1e-6 * rng.standard_normal()),
                 "max": v["max"] * (1 + 1e-6 * rng.standard_normal())} for k, v in ranges.items()}
    a, b = coarse_ranges(ranges), coarse_ranges(noisy)
    same = sum(float(a[k]["min"]) == float(b[k]["min"]) and float(a[k]["max"]) == float(b[k]["max"]) for k in a)
    assert same >= 198   # only a value within 1e-6 of a grid step can move: rare, not never
    raw_same = sum(ranges[k]["min"] == noisy[k]["min"] for k in ranges)
    assert raw_same < 10  # the noise itself reached almost every raw range
