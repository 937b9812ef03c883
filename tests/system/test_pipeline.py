"""The whole multi-process pipeline over PETS09 against the same library code run in-process."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import cv2
import pytest

from edgecount.detection.detector import TFLiteDetector
from edgecount_core.colours import describe
from edgecount_core.config import parse_config
from edgecount_core.geometry import Line

from ..helpers import edgecount

LINES = ["v:0.5,0.3,0.5,1.0", "h:0.0,0.6,1.0,0.6", "d:0.2,0.4,0.9,1.0"]

pytestmark = pytest.mark.slow


def _in_process_counts(clip: Path, model) -> dict[str, dict[str, int]]:
    det = TFLiteDetector(model, threads=2, min_score=0.1)
    lines = []
    for spec in LINES:
        name, coords = spec.split(":")
        ax, ay, bx, by = (float(v) for v in coords.split(","))
        lines.append(Line(name, (ax, ay), (bx, by)))
    camera = parse_config({}).camera_counter(lines)  # the settings the replay runs with
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        d, _ = det.detect(bgr)
        ts = 1000.0 + i / fps
        camera.step(d.boxes, d.scores, ts, i + 1, bgr.shape[1], bgr.shape[0], describe(bgr, d.boxes))
        i += 1
    return camera.engine.totals()


def test_replay_counts_equal_the_library_run_in_process(pets09_clip: Path, yolox_model) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="ecp-", dir="/tmp"))
    args = ["replay", str(pets09_clip), "--json", "--runtime-dir", str(runtime)]
    for ln in LINES:
        args += ["--line", ln]
    res = edgecount(*args)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert set(report) == {"source", "frames", "processed_frames", "dropped_frames", "duration_s", "fps",
                           "lines", "sinks"}
    assert set(report["sinks"]) == {"jsonl"} and report["sinks"]["jsonl"]["confirmed"] > 0
    assert report["frames"] == 795 and report["processed_frames"] == 795
    assert report["dropped_frames"] == 0
    assert report["fps"] > 0 and report["duration_s"] > 0
    expected = _in_process_counts(pets09_clip, yolox_model)  # the default configuration's model
    assert report["lines"] == expected
    assert sum(c["in"] + c["out"] for c in expected.values()) > 20  # people really were counted
    # Each line's running total of the day, sent after every bucket, ends at what the buckets add up to
    # (issue 31); grouped by day, in case the run crossed the reset hour.
    rows = [json.loads(x) for x in (runtime / "state" / "uplink.jsonl").read_text().splitlines()]
    shutil.rmtree(runtime, ignore_errors=True)
    for name in expected:
        totals = [r for r in rows if r["kind"] == "total" and r["name"] == name]
        buckets = [r for r in rows if r["kind"] == "line" and r["name"] == name]
        assert len(totals) == len(buckets) > 0
        last = {t["bucket_start"]: t for t in totals}  # per day, the latest (rows are in delivery order)
        assert sum(t["in"] for t in last.values()) == expected[name]["in"]
        assert sum(t["out"] for t in last.values()) == expected[name]["out"]
        assert all(0 <= t["occupancy"] <= t["in"] for t in totals)


def test_truncated_video_is_reported_and_counted_as_far_as_it_goes(pets09_clip: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    data = pets09_clip.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 5])
    res = edgecount("replay", str(cut), "--json", "--line", "v:0.5,0.3,0.5,1.0")
    assert res.returncode == 1, res.stderr  # counted as far as it goes, but not a success
    report = json.loads(res.stdout)
    assert 0 < report["frames"] < 795
    assert report["processed_frames"] == report["frames"]
    assert report["truncated"] is True and report["expected_frames"] == 795
    assert "truncated" in res.stderr


def test_missing_source_and_missing_model_are_clear_errors(tmp_path: Path) -> None:
    res = edgecount("replay", str(tmp_path / "nope.avi"), "--line", "v:0.5,0,0.5,1")
    assert res.returncode == 1 and "no such video file" in res.stderr
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video" * 100)
    res = edgecount("replay", str(garbage), "--line", "v:0.5,0,0.5,1")
    assert res.returncode == 1 and "cannot open" in res.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text('[inference]\nmodel = "/nonexistent/detect.tflite"\n')
    res = edgecount("replay", "asset:pets09", "--config", str(cfg), "--line", "v:0.5,0,0.5,1")
    assert res.returncode == 1 and "no such file" in res.stderr
    res = edgecount("replay", "asset:pets09", "--line", "v:0.5,0,0.5")
    assert res.returncode == 2 and "NAME:AX,AY,BX,BY" in res.stderr
