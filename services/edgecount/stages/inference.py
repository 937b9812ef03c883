"""Inference service: detects people in the frames every camera's capture announces.

One process owns the accelerator (or the CPU interpreter) for all cameras.
Reads each frame straight from its camera's shared-memory ring into the
model's input tensor. Per camera, in realtime mode only the newest announced
frame waits (older ones are counted as skipped); in replay mode every frame
does, in order. Cameras with a frame waiting take turns, one frame each, so
no camera can starve another however fast it announces.

Each detection also gets its clothing colours (:mod:`edgecount_core.colours`),
read from the same ring slot while it is still valid, so the tracker can tell
apart people who pass each other; they travel only to the counter.

With an Edge TPU configured but absent (or failing), the service switches to
the CPU fallback model, reports ``degraded`` in its heartbeats and retries the
TPU with exponential backoff.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import numpy as np

from edgecount.assets.obtain import AssetError, AssetStore
from edgecount.detection.detector import Detector, TFLiteDetector
from edgecount.detection.interpreter import DetectorError, probe_edgetpu
from edgecount.detection.model_files import cpu_twin, resolve_model
from edgecount.detection.tiling import TiledDetector, configured_detector, with_tiles
from edgecount.runtime import bus
from edgecount.runtime.backoff import Backoff
from edgecount.runtime.ring import RingError, RingReader
from edgecount.stages.base import Service
from edgecount_core.colours import describe
from edgecount_core.config import Config
from edgecount_core.frames import FramePosition, TakeTurns
from edgecount_core.messages import Detections, EndOfStream, FrameReady, Message, StatValue


@attrs.define
class CameraFeed:
    """One camera as inference sees it: its ring, its place in its stream, its figures."""

    reader: RingReader
    position: FramePosition
    processed: int = 0


class Inference(Service):
    name = "inference"

    def __init__(self, config: Config, runtime_dir: Path, process: str = "") -> None:
        super().__init__(config, runtime_dir, process)
        views = {cam: config.for_camera(cam) for cam in config.camera_names()}
        self.tiles = {cam: v.inference.tiles for cam, v in views.items()}
        self.feeds = {cam: CameraFeed(RingReader(runtime_dir, cam), FramePosition(live=v.capture.realtime))
                      for cam, v in views.items()}
        self.turns: TakeTurns[FrameReady] = TakeTurns((cam, v.capture.realtime) for cam, v in views.items())
        self.detector: Detector | None = None
        self.degraded_reason = ""
        self.retry_at = 0.0
        self.tpu_retry = Backoff(30.0, 600.0)
        self.ring_errors = 0
        self.unknown_camera = 0
        self.latencies: list[float] = []
        # Only the tracker reads colours: with colour_weight 0 nobody would, so they are not measured.
        self.measure_colours = config.tracker.colour_weight > 0
        self.torn_colours = 0

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
        turn = self.turns.take()
        if turn is not None:
            self._process(self.feeds[turn[0]], turn[1])
            return 0
        return 100

    def handle(self, topic: bytes, msg: Message) -> None:
        if not isinstance(msg, FrameReady):
            return
        if not self.turns.offer(msg.camera, msg):
            self.unknown_camera += 1  # a capture of a camera this configuration does not have

    def _detector_for(self, camera: str) -> Detector:
        """The one interpreter, over this camera's tile grid when it has its own."""
        assert self.detector is not None
        tiles = self.tiles.get(camera, self.cfg.inference.tiles)
        if tiles == self.cfg.inference.tiles or not isinstance(self.detector, TFLiteDetector | TiledDetector):
            return self.detector
        return with_tiles(self.detector, tiles, self.cfg.inference.tile_overlap)

    def _process(self, feed: CameraFeed, f: FrameReady) -> None:
        previous = feed.position.follow(f.ring)
        if previous is not None:
            self.log.info("inference.capture_restarted", camera=f.camera, ring=f.ring, previous_last_seq=previous)
        if feed.position.seen(f.seq) and not f.resend:
            return
        assert self.detector is not None
        try:
            view = feed.reader.view(f.ring, f.slot, f.seq)
        except RingError as exc:
            self.ring_errors += 1
            self.log.warning("inference.ring", camera=f.camera, reason=str(exc))
            return
        if view is None:
            return  # lapped by the writer before we got to it; counted by the reader
        t0 = time.perf_counter()
        try:
            # The frame is read, then the ring asked whether it was overwritten meanwhile (a torn input).
            detector = self._detector_for(f.camera)
            def intact() -> bool:
                return feed.reader.still_valid(f.slot, f.seq)

            det = detector.detect_checked(view, intact)
            if det is None:
                return
            colours = describe(view, det.boxes) if self.measure_colours else None
            del view
            if colours is not None and not intact():
                # Overwritten while its colours were read: the boxes stand, the tracker goes by motion alone.
                colours = None
                self.torn_colours += 1
        except RuntimeError as exc:
            if self.detector.backend == "edgetpu":
                self._fall_back(f"Edge TPU failed at run time: {exc}")
                return
            raise
        ms = (time.perf_counter() - t0) * 1000.0
        self.latencies.append(ms)
        if len(self.latencies) > 200:
            del self.latencies[:100]
        feed.position.advance(f.seq)
        feed.processed += 1
        self.pub.send(bus.DETECTIONS, Detections.from_arrays(
            seq=f.seq, ts=f.ts, width=f.width, height=f.height, boxes=det.boxes, scores=det.scores,
            classes=det.classes, latency_ms=ms, backend=self.detector.backend,
            degraded=bool(self.degraded_reason), ring=f.ring, camera=f.camera, features=colours))

    def stats(self) -> dict[str, StatValue]:
        lat = np.asarray(self.latencies[-100:])  # no latency is reported before the first frame
        feeds = self.feeds.values()
        per_camera: dict[str, StatValue] = {}
        if len(self.feeds) > 1:
            for cam, fd in self.feeds.items():
                per_camera.update({f"camera.{cam}.processed": fd.processed,
                                   f"camera.{cam}.skipped": self.turns.skipped[cam]})
        return {"processed": sum(fd.processed for fd in feeds), "skipped": sum(self.turns.skipped.values()),
                **per_camera, "unknown_camera": self.unknown_camera,
                "overwritten": sum(fd.reader.overwritten for fd in feeds), "ring_errors": self.ring_errors,
                "torn_colours": self.torn_colours,
                **({"latency_ms_p50": round(float(np.median(lat)), 2),
                    "latency_ms_p95": round(float(np.percentile(lat, 95)), 2)} if self.latencies else {}),
                "backend": self.detector.backend if self.detector else "none",
                "model": self.detector.name if self.detector else "",
                "degraded": bool(self.degraded_reason), "degraded_reason": self.degraded_reason[:200]}

    def on_eos(self, msg: EndOfStream) -> EndOfStream:
        feed = self.feeds.get(msg.camera)
        if feed is None:
            return msg
        stats = dict(msg.stats)
        stats.update({"inference_processed": feed.processed, "inference_skipped": self.turns.skipped[msg.camera],
                      "inference_overwritten": feed.reader.overwritten})
        return attrs.evolve(msg, stats=stats)

    def teardown(self) -> None:
        for feed in self.feeds.values():
            feed.reader.close()

