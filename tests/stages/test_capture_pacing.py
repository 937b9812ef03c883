"""Realtime file sources are paced at their frame rate times ``capture.file_speed``."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecount.stages import capture
from edgecount_core.config import Config

pytestmark = pytest.mark.assets


def frames_played(clip: Path, runtime_dir: Path, speed: float, seconds: float,
                  monkeypatch: pytest.MonkeyPatch) -> int:
    """Frames capture reads in ``seconds`` of a simulated clock (each read costs 1 ms)."""
    clock = [1000.0]
    monkeypatch.setattr(capture.time, "monotonic", lambda: clock[0])
    cfg = Config.model_validate({"capture": {"source": str(clip), "realtime": True, "file_speed": speed}})
    cap = capture.Capture(cfg, runtime_dir)
    try:
        cap.setup()
        end = clock[0] + seconds
        while clock[0] < end:
            clock[0] += max(cap.tick(), 1) / 1000
        return cap.video.frames_read
    finally:
        cap.ring.close()
        cap.pub.sock.close(linger=0)
        cap.ctx.term()


@pytest.mark.parametrize(("speed", "expected"), [(1.0, 100), (0.25, 25), (2.0, 200)])
def test_file_speed_scales_the_frame_rate(pets09_clip: Path, runtime_dir: Path, speed: float, expected: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # PETS09 is a 10 fps clip: 10 simulated seconds hold 100 frames at normal speed.
    n = frames_played(pets09_clip, runtime_dir, speed, 10.0, monkeypatch)
    assert abs(n - expected) <= 2, n
