"""``edgecount doctor --view``: watch a stretch of live detections and judge the view at every counting line.

From the running appliance it listens to the inference service's detections
of the camera (nothing is added to the pipeline); without a running appliance
it opens the camera and runs the appliance's own detector on it. Either way
only the survey's aggregates (:mod:`edgecount_core.viewcheck`) are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from edgecount.assets.obtain import AssetStore, resolve_source
from edgecount.runtime import bus, logs
from edgecount.runtime.paths import RuntimePaths
from edgecount_core.config import Config
from edgecount_core.messages import Detections
from edgecount_core.viewcheck import LineView, ViewSurvey

ProgressFn = Callable[[int, int | None], None]


def survey_view(cfg: Config, camera: str, seconds: float, runtime_dir: Path,
                progress: ProgressFn | None = None) -> tuple[list[LineView], int, str]:
    """The verdict per line of ``camera``, the frames surveyed, and where they came from."""
    cam = cfg.for_camera(camera)
    survey = ViewSurvey(cam.geometry_lines())
    if RuntimePaths(runtime_dir).bus("inference").exists():
        _from_appliance(survey, runtime_dir, camera, seconds, progress)
        where = "the running appliance"
    else:
        _from_camera(survey, cam, seconds, progress)
        where = f"{cam.capture.source} (appliance not running: detected here)"
    return survey.report(), survey.frames, where


def _from_appliance(survey: ViewSurvey, runtime_dir: Path, camera: str, seconds: float,
                    progress: ProgressFn | None) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    sub = bus.Subscriber(ctx, runtime_dir, [("inference", (bus.DETECTIONS,))], logs.configure("doctor", level="error"))
    try:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if progress:
                progress(int(elapsed), int(seconds))
            got = sub.recv(200)
            if got is None:
                continue
            msg = got[1]
            if isinstance(msg, Detections) and msg.camera == camera:
                survey.add(msg.box_array(), msg.score_array(), msg.width, msg.height)
    finally:
        sub.close()
        ctx.term()


def _from_camera(survey: ViewSurvey, cfg: Config, seconds: float, progress: ProgressFn | None) -> None:
    import cv2
    import numpy as np

    from edgecount.detection.model_files import resolve_model, startup_model
    from edgecount.detection.tiling import configured_detector

    store = AssetStore.for_config(cfg)
    det = configured_detector(cfg.inference, resolve_model(startup_model(cfg, store), store), "cpu")
    source = resolve_source(cfg.capture.source, store)
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise RuntimeError(f"{cfg.capture.source}: cannot be opened")
    # A file stands in for a live camera: survey the stretch of it that ``seconds`` of live video would be.
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    is_file = Path(source).is_file()
    budget = int(seconds * fps) if is_file and fps > 0 else None
    start = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - start
            if (budget is not None and survey.frames >= budget) or (budget is None and elapsed >= seconds):
                break
            ok, frame = cap.read()
            if not ok:
                break
            d, _ = det.detect(np.asarray(frame, np.uint8))
            survey.add(d.boxes, d.scores, frame.shape[1], frame.shape[0])
            if progress:
                progress(survey.frames if budget else int(elapsed), budget or int(seconds))
    finally:
        cap.release()
