"""Inference service: detects people in the frames capture announces.

Reads each frame straight from the shared-memory ring into the model's input
tensor. In realtime mode only the newest announced frame is processed (older
ones are counted as skipped); in replay mode every frame is, in order.

With an Edge TPU configured but absent (or failing), the service switches to
the CPU fallback model, reports ``degraded`` in its heartbeats and retries the
TPU with exponential backoff.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecount.detection.detector import Detector
from edgecount.detection.models import cpu_twin, resolve_model
from edgecount.detection.runtime import DetectorError, probe_edgetpu
from edgecount.detection.tiling import TiledDetector, configured_detector
from edgecount.runtime import bus
from edgecount.runtime.assets import AssetError, AssetStore
from edgecount.runtime.backoff import Backoff
from edgecount.runtime.ring import RingError, RingReader
from edgecount.stages.base import Service
from edgecount_core.config import Config
from edgecount_core.frames import FramePosition
from edgecount_core.messages import Detections, EndOfStream, FrameReady, Message, StatValue


class Inference(Service):
    name = "inference"

    def __init__(self, config: Config, runtime_dir: Path) -> None:
        super().__init__(config, runtime_dir)
        self.reader = RingReader(runtime_dir)
        self.detector: Detector | None = None
        self.degraded_reason = ""
        self.retry_at = 0.0
        self.tpu_retry = Backoff(30.0, 600.0)
        self.pending: FrameReady | None = None
        self.position = FramePosition(live=config.capture.realtime)
        self.processed = 0
        self.skipped = 0
        self.ring_errors = 0
        self.latencies: list[float] = []

    def setup(self) -> None:
        inf = self.cfg.inference
        self.store = AssetStore.for_config(self.cfg)
        if inf.device == "cpu":
            self.detector = self._build(inf.model, "cpu")
            return
        # Probe the accelerator before touching its model: without it the model is not needed.
        reason = probe_edgetpu(inf.device)
        if reason is not None:
            self._fall_back(reason)
            return
        try:
            self.detector = self._build(inf.model, inf.device)
        except (DetectorError, AssetError) as exc:
            if not inf.tpu_fallback_model:
                self._fall_back(str(exc))
                return
            # The accelerator is there but this model is not (never compiled for it): its second choice.
            self.log.error("inference.edgetpu_model_unusable", model=inf.model, reason=str(exc),
                           instead=inf.tpu_fallback_model)
            try:
                self.detector = self._build(inf.tpu_fallback_model, inf.device)
                self.state = "degraded"  # on the accelerator, but not with the model configured
            except (DetectorError, AssetError) as exc2:
                self._fall_back(f"{exc}; {inf.tpu_fallback_model}: {exc2}")

    def _build(self, model: str, device: str) -> Detector:
        inf = self.cfg.inference
        files = resolve_model(model, self.store)
        det = configured_detector(inf, files, device)
        interp = det.det if isinstance(det, TiledDetector) else det
        self.log.info("inference.model_loaded", model=files.name, backend=det.backend,
                      runtime=interp.runtime, input=interp.input_size, tiles=inf.tiles)
        return det

    def _fall_back(self, reason: str) -> None:
        inf = self.cfg.inference
        fallback = inf.fallback_model or cpu_twin(inf.model, self.store)
        if Path(fallback).suffix == ".tflite" or fallback.endswith("_edgetpu"):
            fallback = cpu_twin(Path(fallback).stem if fallback.endswith(".tflite") else fallback, self.store)
        wait = self.tpu_retry.next()
        if not self.degraded_reason:
            self.log.error("inference.edgetpu_unavailable", device=inf.device, reason=reason,
                           fallback=fallback, retry_in_s=wait)
        self.degraded_reason = reason
        self.detector = self._build(fallback, "cpu")
        self.state = "degraded"
        self.retry_at = time.monotonic() + wait

    def tick(self) -> int:
        if self.degraded_reason and time.monotonic() >= self.retry_at:
            reason = probe_edgetpu(self.cfg.inference.device)
            if reason is None:
                try:
                    self.detector = self._build(self.cfg.inference.model, self.cfg.inference.device)
                    self.degraded_reason, self.state = "", "ok"
                    self.tpu_retry.reset()
                    self.log.info("inference.edgetpu_recovered")
                except (DetectorError, AssetError) as exc:
                    self._fall_back(str(exc))
            else:
                self.retry_at = time.monotonic() + self.tpu_retry.next()
        if self.pending is not None:
            frame, self.pending = self.pending, None
            self._process(frame)
            return 0
        return 100

    def handle(self, topic: bytes, msg: Message) -> None:
        if not isinstance(msg, FrameReady):
            return
        if self.cfg.capture.realtime:
            if self.pending is not None:
                self.skipped += 1
            self.pending = msg
        else:
            self._process(msg)

    def _process(self, f: FrameReady) -> None:
        previous = self.position.follow(f.ring)
        if previous is not None:
            self.log.info("inference.capture_restarted", ring=f.ring, previous_last_seq=previous)
        if self.position.seen(f.seq) and not f.resend:
            return
        assert self.detector is not None
        try:
            view = self.reader.view(f.ring, f.slot, f.seq)
        except RingError as exc:
            self.ring_errors += 1
            self.log.warning("inference.ring", reason=str(exc))
            return
        if view is None:
            return  # lapped by the writer before we got to it; counted by the reader
        t0 = time.perf_counter()
        try:
            # The frame is read, then the ring asked whether it was overwritten meanwhile (a torn input).
            det = self.detector.detect_checked(view, lambda: self.reader.still_valid(f.slot, f.seq))
            del view
            if det is None:
                return
        except RuntimeError as exc:
            if self.detector.backend == "edgetpu":
                self._fall_back(f"Edge TPU failed at run time: {exc}")
                return
            raise
        ms = (time.perf_counter() - t0) * 1000.0
        self.latencies.append(ms)
        if len(self.latencies) > 200:
            del self.latencies[:100]
        self.position.advance(f.seq)
        self.processed += 1
        self.pub.send(bus.DETECTIONS, Detections.from_arrays(
            seq=f.seq, ts=f.ts, width=f.width, height=f.height, boxes=det.boxes, scores=det.scores,
            classes=det.classes, latency_ms=ms, backend=self.detector.backend,
            degraded=bool(self.degraded_reason), ring=f.ring))

    def stats(self) -> dict[str, StatValue]:
        lat = np.asarray(self.latencies[-100:]) if self.latencies else np.zeros(1)
        return {"processed": self.processed, "skipped": self.skipped,
                "overwritten": self.reader.overwritten, "ring_errors": self.ring_errors,
                "latency_ms_p50": round(float(np.median(lat)), 2),
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 2),
                "backend": self.detector.backend if self.detector else "none",
                "model": self.detector.name if self.detector else "",
                "degraded": bool(self.degraded_reason), "degraded_reason": self.degraded_reason[:200]}

    def on_eos(self, msg: EndOfStream) -> EndOfStream:
        stats = dict(msg.stats)
        stats.update({"inference_processed": self.processed, "inference_skipped": self.skipped,
                      "inference_overwritten": self.reader.overwritten})
        return EndOfStream(last_seq=msg.last_seq, stats=stats)

    def teardown(self) -> None:
        self.reader.close()

