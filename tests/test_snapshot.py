"""Snapshot redaction on the real photos: afterwards the face detector finds no face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecount.detection.detector import TFLiteDetector
from edgecount.detection.redaction import FaceDetector, find_faces, redact_snapshot
from edgecount_core.faces import blazeface_anchors

pytestmark = pytest.mark.assets


def test_anchor_counts_match_the_models() -> None:
    assert len(blazeface_anchors(128, (8, 16, 16, 16), 2)) == 896
    assert len(blazeface_anchors(192, (4,), 1)) == 2304


@pytest.fixture(scope="module")
def face_detectors(store) -> list[FaceDetector]:
    try:
        return [FaceDetector(store.fetch_model(n)) for n in ("face_detection_short_range", "face_detection_full_range")]
    except Exception as exc:
        pytest.fail(f"face models unavailable: {exc}")


def test_redacted_photos_show_no_face(face_detectors: list[FaceDetector], yolox_model, images_dir: Path) -> None:
    person = TFLiteDetector(yolox_model, threads=1, min_score=0.3)
    photos = [images_dir / "grace_hopper.bmp", images_dir / "kite_and_cold.jpg",
              *sorted((images_dir / "coco").glob("*.jpg"))]
    faces_before = 0
    for p in photos:
        img = cv2.imread(str(p))
        original = img.copy()
        boxes = person.detect(img)[0].boxes
        faces_before += len(find_faces(img, face_detectors, boxes))
        jpeg = redact_snapshot(img, boxes, face_detectors)
        assert np.array_equal(img, original)  # the caller's frame is untouched
        assert jpeg[:2] == b"\xff\xd8" and b"Exif" not in jpeg[:64]  # a bare JPEG, no metadata
        red = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert red.shape[1] <= 640
        for det in face_detectors:
            found, scores = det.detect(red)
            assert len(found) == 0, f"{p.name}: face left at score {scores.max():.2f}"
    # The check is not vacuous: the same detectors do find faces in the originals.
    assert faces_before >= 5


@pytest.mark.slow
def test_snapshots_policy_sends_only_redacted_stills(tmp_path: Path, face_detectors: list[FaceDetector],
                                                     pets09_clip: Path, ssd_model) -> None:
    import base64
    import json
    import subprocess
    import sys

    from .helpers import ROOT


    cfg = tmp_path / "c.toml"
    cfg.write_text('[privacy]\npolicy = "snapshots"\nsnapshot_interval_s = 3\nbucket_s = 60\n'
                   '[[lines]]\nname = "v"\na = [0.5, 0.3]\nb = [0.5, 1.0]\n')
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="ecs-", dir="/tmp"))
    res = subprocess.run([sys.executable, "-m", "edgecount", "replay", str(pets09_clip), "--config", str(cfg),
                          "--json", "--runtime-dir", str(runtime)], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in (runtime / "state" / "uplink.jsonl").read_text().splitlines()]
    snaps = [r for r in rows if r["kind"] == "snapshot"]
    assert snaps, "no snapshot was sent under the snapshots policy"
    for s in snaps:
        assert set(s) == {"id", "site", "device", "kind", "bucket_start", "jpeg_base64"}
        assert s["bucket_start"] % 60 == 0  # no timestamp finer than the bucket
        jpeg = base64.b64decode(s["jpeg_base64"])
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] <= 640
        for det in face_detectors:
            assert len(det.detect(img)[0]) == 0
    assert json.loads(res.stdout)["processed_frames"] == 795

