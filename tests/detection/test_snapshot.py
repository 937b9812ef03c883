"""Snapshot redaction on the real photos: afterwards the face detector finds no face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecount.detection.detector import TFLiteDetector
from edgecount.detection.redaction import FaceDetector, find_faces, redact_snapshot
from edgecount_core.faces import blazeface_anchors

from ..helpers import close_service

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

    from ..helpers import ROOT


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
        assert set(s) == {"id", "site", "device", "camera", "kind", "bucket_start", "jpeg_base64"}
        assert s["bucket_start"] % 60 == 0  # no timestamp finer than the bucket
        jpeg = base64.b64decode(s["jpeg_base64"])
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] <= 640
        for det in face_detectors:
            assert len(det.detect(img)[0]) == 0
    assert json.loads(res.stdout)["processed_frames"] == 795



# -- pairing a still with its own frame's detections (issue 12, item 3) ---------------------------------
def _pets09_frames(clip: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    out, n = {}, 0
    while len(out) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        if n in wanted:
            out[n] = frame
    cap.release()
    return out


def _likeness(original: np.ndarray, still: np.ndarray, box: np.ndarray) -> float:
    """Normalised cross-correlation of a person's box between the original frame and the still (scaled to
    the still): about 1 where the person is still visible, about 0 once blanked."""
    scale = still.shape[1] / original.shape[1]
    x1, y1, x2, y2 = box.astype(int)
    a = cv2.cvtColor(original[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY).astype(np.float32)
    sx1, sy1, sx2, sy2 = (box * scale).astype(int)
    b = cv2.cvtColor(still[sy1:sy2, sx1:sx2], cv2.COLOR_BGR2GRAY).astype(np.float32)
    a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_AREA)
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-6 else 0.0


class _PrivacyHarness:
    """The privacy stage in-process, fed frames through a real ring and detections as the bus would."""

    def __init__(self, runtime_dir: Path) -> None:
        from edgecount.runtime.settings import load_config
        from edgecount.stages.privacy import Privacy

        cfg = runtime_dir / "c.toml"
        cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
                       '[privacy]\npolicy = "snapshots"\nsnapshot_interval_s = 1\n')
        self.svc = Privacy(load_config(cfg), runtime_dir)
        self.svc.setup()
        self.now = 1000.0
        assert self.svc.stills is not None
        self.svc.stills.clock = lambda: self.now

    def frame(self, ring, frame: np.ndarray) -> tuple[int, int]:
        from edgecount_core.messages import FrameReady

        seq, slot = ring.write(frame, ts=self.now)
        self.svc.handle(b"frame", FrameReady(seq=seq, slot=slot, ts=self.now, width=768, height=576,
                                             ring=ring.generation))
        return seq, ring.generation

    def detections(self, seq: int, ring_gen: int, boxes: np.ndarray) -> None:
        from edgecount_core.messages import Detections

        self.svc.handle(b"detections", Detections.from_arrays(
            seq=seq, ts=self.now, width=768, height=576, boxes=boxes.astype(np.float32),
            scores=np.ones(len(boxes), np.float32), classes=np.zeros(len(boxes), np.float32), ring=ring_gen))

    def stills(self) -> list[np.ndarray]:
        from edgecount_core.messages import Snapshot, decode

        out = []
        for _, _, payload in self.svc.store.read_from(1, 1000):
            msg = decode(payload)
            if isinstance(msg, Snapshot):
                out.append(cv2.imdecode(np.frombuffer(msg.jpeg, np.uint8), cv2.IMREAD_COLOR))
        return out

    def close(self) -> None:
        close_service(self.svc)


def test_a_still_is_redacted_with_its_own_frames_boxes_or_not_sent(runtime_dir: Path, pets09_clip: Path,
                                                                   pets09_gt: Path, face_detectors) -> None:
    from edgecount.runtime.ring import RingWriter
    from edgecount_core.groundtruth import parse_mot

    gt = parse_mot(pets09_gt.read_text())
    frames = _pets09_frames(pets09_clip, [100, 400, 401, 600, 601, 602])
    boxes = {n: gt.boxes_at(n, evaluated_only=False)[:, 1:5] for n in frames}
    people = {n: [b for b in boxes[n] if b[3] - b[1] >= 40] for n in frames}
    assert all(len(p) >= 3 for p in people.values())
    h = _PrivacyHarness(runtime_dir)
    try:
        # A still of frame 100 is taken; then capture restarts and its new ring reuses the same seq for
        # another image (frame 400), whose detections arrive.
        old = RingWriter(runtime_dir, slots=4, max_w=768, max_h=576)
        seq, old_gen = h.frame(old, frames[100])
        old.close()
        new = RingWriter(runtime_dir, slots=4, max_w=768, max_h=576)
        new.seq = seq - 1
        seq2, new_gen = h.frame(new, frames[400])
        assert seq2 == seq and new_gen != old_gen
        h.detections(seq2, new_gen, boxes[400])
        assert h.stills() == [], "a still was redacted with the boxes of another image"
        # The still's own detections never come (inference skipped it): it is given up after a bound,
        # and the next still is taken and sent.
        h.now += 11
        s, g = h.frame(new, frames[401])
        h.detections(s, g, boxes[401])
        h.now += 2
        s, g = h.frame(new, frames[600])
        h.now += 0.1
        s2, g2 = h.frame(new, frames[601])  # a newer frame does not replace the still that waits
        h.detections(s2, g2, boxes[601])
        h.detections(s, g, boxes[600])
        stills = h.stills()
        assert len(stills) == 2
        unredacted = cv2.resize(frames[600], (stills[-1].shape[1], stills[-1].shape[0]), interpolation=cv2.INTER_AREA)
        for b in people[600]:
            assert _likeness(frames[600], unredacted, b) > 0.9  # the measure does see a visible person
            assert _likeness(frames[600], stills[-1], b) < 0.6, f"the ground-truth person at {b} is visible"
        new.close()
    finally:
        h.close()


def test_stills_queued_before_the_policy_changed_are_never_sent(runtime_dir: Path) -> None:
    import json

    from edgecount.runtime.settings import load_config
    from edgecount.stages.uplink import Uplink
    from edgecount_core.messages import Snapshot

    def uplink(policy: str) -> Uplink:
        cfg = runtime_dir / f"{policy}.toml"
        cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
                       f'[privacy]\npolicy = "{policy}"\n')
        return Uplink(load_config(cfg), runtime_dir)

    def close(u: Uplink) -> None:
        close_service(u)

    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    before = uplink("snapshots")
    before.setup()
    before._apply(Snapshot(snapshot_id="d/snapshot/1", bucket_start=0.0, jpeg=jpeg, log_seq=1))
    assert before.backlog() == 1  # queued while offline, say
    close(before)
    after = uplink("counts")  # the operator switched the policy back
    after._apply(Snapshot(snapshot_id="d/snapshot/2", bucket_start=0.0, jpeg=jpeg, log_seq=2))  # made before
    after.setup()
    after._deliver()
    sent = (runtime_dir / "state" / "uplink.jsonl").read_text().splitlines() if \
        (runtime_dir / "state" / "uplink.jsonl").exists() else []
    assert not [r for r in map(json.loads, sent) if r["kind"] == "snapshot"]
    assert after.backlog() == 0 and after.outbox.get("applied") == 2  # consumed, not queued
    close(after)


def test_a_frame_of_a_ring_that_is_gone_is_skipped_not_a_crash(runtime_dir: Path) -> None:
    """Issue 32, LOW: privacy with snapshots crashed on a stale ring (capture restarted or stopped)."""
    from edgecount_core.messages import FrameReady

    h = _PrivacyHarness(runtime_dir)
    try:
        h.svc.handle(b"frame", FrameReady(seq=5, slot=1, ts=h.now, width=768, height=576, ring=12345))
        assert h.stills() == [] and h.svc.stills is not None and h.svc.stills.pending_frame is None
    finally:
        h.close()
