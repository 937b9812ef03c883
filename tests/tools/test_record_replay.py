"""Per-service replay: golden recordings (bus messages only) and a recording with frames made at test time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecount.tools.recording import normalise, read_messages, replay_service
from edgecount_core.messages import Detections, decode

from ..helpers import ROOT, HealthWatcher, start_appliance, stop_appliance, write_run_config

GOLDEN = ROOT / "tests" / "golden"


@pytest.mark.parametrize(("service", "recording", "must_publish"),
                         [("counter", "counter_pets09", "crossing"), ("privacy", "privacy_pets09", "record")])
def test_service_reproduces_its_golden_output(service: str, recording: str, must_publish: str) -> None:
    """A behaviour change in one service (tracker, counter, aggregation) shows up here as a diff."""
    rows = normalise(replay_service(service, GOLDEN / recording))
    expected = [json.loads(line) for line in (GOLDEN / recording / "expected.jsonl").read_text().splitlines()]
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert json.loads(json.dumps(got, sort_keys=True)) == want
    assert sum(r["topic"] == must_publish for r in rows) > 0


def test_golden_recordings_hold_no_images() -> None:
    for d in GOLDEN.iterdir():
        assert not (d / "frames").exists(), f"{d.name} contains frames"
        for m in read_messages(d):
            assert m["topic"] in ("detections", "tracks", "crossing", "zone", "watermark", "record")
            assert len(m["payload"]) < 4096


@pytest.mark.slow
def test_record_with_frames_then_replay_inference_alone(runtime_dir: Path, tmp_path: Path, pets09_clip: Path,
                                                        ssd_model) -> None:
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    proc = start_appliance(cfg)
    rec = tmp_path / "rec"
    try:
        watcher = HealthWatcher(runtime_dir)
        watcher.wait_for(lambda h: "inference" in h and int(h["inference"].stats.get("processed", 0)) > 5, 90,
                         "the appliance running")
        watcher.close()
        refused = subprocess.run([sys.executable, "-m", "edgecount", "record", "--out", str(rec), "--seconds", "1",
                                  "--topics", "frame", "--config", str(cfg)], capture_output=True, text=True,
                                 cwd=ROOT, stdin=subprocess.DEVNULL)
        assert refused.returncode == 2 and "--yes" in refused.stderr and not rec.exists()
        res = subprocess.run([sys.executable, "-m", "edgecount", "record", "--out", str(rec), "--seconds", "3",
                              "--topics", "frame,detections", "--yes", "--config", str(cfg)], capture_output=True,
                             text=True, cwd=ROOT)
        assert res.returncode == 0, res.stderr
    finally:
        stop_appliance(proc)
    recorded = {}
    for m in read_messages(rec):
        if m["topic"] == "detections":
            d = decode(m["payload"])
            assert isinstance(d, Detections)
            recorded[d.seq] = d
    frames = {int(p.stem) for p in (rec / "frames").glob("*.png")}
    assert len(frames) >= 10
    replayed = {m.seq: m for t, m in replay_service("inference", rec) if isinstance(m, Detections)}
    assert set(replayed) == frames  # every recorded frame went through inference alone
    common = set(replayed) & set(recorded)
    assert len(common) >= 5
    for seq in common:  # same model, same pixels: the same detections
        np.testing.assert_allclose(replayed[seq].box_array(), recorded[seq].box_array(), atol=0.5)

