"""Which model the inference service loads when the Edge TPU is there but its configured model is not."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from edgecount.detection.interpreter import DetectorError
from edgecount.runtime.backoff import Backoff
from edgecount.stages import inference as inference_stage
from edgecount_core.config import parse_config


def _service(monkeypatch: pytest.MonkeyPatch, loadable: set[tuple[str, str]], **inf: Any) -> tuple[Any, list[Any]]:
    """An inference service object without sockets, whose model loading only records what it was asked."""
    cfg = parse_config({"inference": {"device": "usb", "fallback_model": "yolox_nano_int8", **inf}})
    svc = object.__new__(inference_stage.Inference)
    svc.cfg, svc.log, svc.state = cfg, structlog.get_logger(), "starting"
    svc.degraded_reason, svc.tpu_retry, svc.retry_at = "", Backoff(30.0, 600.0), 0.0
    tried: list[Any] = []

    def build(model: str, device: str) -> str:
        tried.append((model, device))
        if (model, device) not in loadable:
            raise DetectorError(f"{model} on {device}: cannot load")
        return f"{model}@{device}"

    monkeypatch.setattr(svc, "_build", build)
    monkeypatch.setattr(inference_stage, "probe_edgetpu", lambda device: None)  # a TPU is present
    monkeypatch.setattr(inference_stage.AssetStore, "for_config", classmethod(lambda cls, c: None))
    return svc, tried


def test_the_compiled_model_runs_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    svc, tried = _service(monkeypatch, {("/m/yolox_edgetpu.tflite", "usb")}, model="/m/yolox_edgetpu.tflite",
                          tpu_fallback_model="/m/ssd_edgetpu.tflite")
    svc.setup()
    assert svc.detector == "/m/yolox_edgetpu.tflite@usb" and svc.state == "starting"
    assert tried == [("/m/yolox_edgetpu.tflite", "usb")]


def test_a_missing_compiled_model_falls_back_to_the_second_tpu_model_degraded(monkeypatch: pytest.MonkeyPatch) -> None:
    svc, tried = _service(monkeypatch, {("/m/ssd_edgetpu.tflite", "usb")}, model="/m/yolox_edgetpu.tflite",
                          tpu_fallback_model="/m/ssd_edgetpu.tflite")
    svc.setup()
    assert svc.detector == "/m/ssd_edgetpu.tflite@usb" and svc.state == "degraded"
    assert tried == [("/m/yolox_edgetpu.tflite", "usb"), ("/m/ssd_edgetpu.tflite", "usb")]


def test_without_any_usable_tpu_model_the_cpu_model_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    svc, tried = _service(monkeypatch, {("yolox_nano_int8", "cpu")}, model="/m/yolox_edgetpu.tflite",
                          tpu_fallback_model="/m/ssd_edgetpu.tflite")
    svc.setup()
    assert svc.detector == "yolox_nano_int8@cpu" and svc.state == "degraded"
    assert tried[-1] == ("yolox_nano_int8", "cpu") and "cannot load" in svc.degraded_reason
