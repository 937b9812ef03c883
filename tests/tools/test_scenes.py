"""Scenes for the accuracy sweep: naming them, checking a video against its ground truth, the tolerant truth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecount.assets.obtain import AssetStore
from edgecount.cli import main
from edgecount.tools.evaluate import count_error
from edgecount.tools.scenes import BUILTIN_SCENES, SceneError, load_scene, load_scenes, parse_scene
from edgecount_core.geometry import Line
from edgecount_core.groundtruth import GroundTruth, true_count_ranges, true_line_counts


def test_scene_names_resolve_to_built_ins_or_a_video_and_its_ground_truth() -> None:
    assert parse_scene("tud") == BUILTIN_SCENES["tud"]
    own = parse_scene("door=/data/door.avi,/data/gt.txt")
    assert (own.name, own.video, own.gt) == ("door", "/data/door.avi", "/data/gt.txt")
    with pytest.raises(SceneError, match=r"unknown scene 'nowhere'.*pets09, tud"):
        parse_scene("nowhere")
    with pytest.raises(SceneError, match="NAME=VIDEO,GT"):
        parse_scene("door=/data/door.avi")
    with pytest.raises(SceneError, match="letters, digits"):
        parse_scene("my door=/a.avi,/gt.txt")


def _video(path: Path, frames: int) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (160, 120))
    for i in range(frames):
        w.write(np.full((120, 160, 3), 10 * i, dtype=np.uint8))
    w.release()
    return path


def _gt(path: Path, last_frame: int) -> Path:
    path.write_text("".join(f"{f},1,{10 + f},20,20,60,1,-1,-1,-1\n" for f in range(1, last_frame + 1)))
    return path


def test_a_ground_truth_running_past_its_video_is_refused_before_any_replay(tmp_path: Path) -> None:
    store = AssetStore(cache=tmp_path / "cache", mirror=None, allow_download=False)
    video = _video(tmp_path / "door.avi", 5)
    ok = load_scene(parse_scene(f"door={video},{_gt(tmp_path / 'gt.txt', 5)}"), store)
    assert (ok.frames, ok.width, ok.height, ok.fps, ok.tuned) == (5, 160, 120, 25.0, False)
    with pytest.raises(SceneError, match=r"scene 'door'.*run 1\.\.7 but the video has 5 frames"):
        load_scene(parse_scene(f"door={video},{_gt(tmp_path / 'long.txt', 7)}"), store)
    with pytest.raises(SceneError, match="does not exist"):
        load_scene(parse_scene(f"door={tmp_path / 'gone.avi'},{tmp_path / 'gt.txt'}"), store)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SceneError, match="holds no box"):
        load_scene(parse_scene(f"door={video},{tmp_path / 'empty.txt'}"), store)
    with pytest.raises(SceneError, match="named twice"):
        load_scenes([parse_scene(f"door={video},{tmp_path / 'gt.txt'}")] * 2, store)


def test_eval_names_the_bad_scene_and_exits_2(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    video = _video(tmp_path / "door.avi", 5)
    assert main(["eval", "--sweep", "--scene", "nowhere"]) == 2
    assert "unknown scene 'nowhere'" in capfd.readouterr().err
    assert main(["eval", "--sweep", "--scene", f"door={video},{_gt(tmp_path / 'gt.txt', 9)}"]) == 2
    assert "the video has 5 frames" in capfd.readouterr().err.replace("\n", " ")
    assert main(["eval", "--scene", "tud"]) == 2
    assert "--scene goes with --sweep" in capfd.readouterr().err
    assert main(["eval", str(video)]) == 2


def _crossing_at(y_norm: float) -> GroundTruth:
    """One person walking right across x = 0.5 of a 400 x 200 frame, feet at ``y_norm``."""
    rows = [[f, 1, 100 + 25 * (f - 1) - 10, y_norm * 200 - 60, 20, 60, 1] for f in range(1, 10)]
    return GroundTruth(np.array(rows, dtype=np.float64))


def test_a_crossing_near_a_segment_end_may_be_counted_or_not() -> None:
    line = [Line("v", (0.5, 0.2), (0.5, 0.8))]
    # Ambiguous: from 0.02 inside the end (0.2) to 0.02 beyond the counter's margin of 5 % of the segment
    # (0.03): y from 0.22 down to 0.15.
    for y, expect in ((0.5, (1, 1)), (0.23, (1, 1)), (0.21, (0, 1)), (0.19, (0, 1)), (0.16, (0, 1)),
                      (0.14, (0, 0)), (0.10, (0, 0))):
        gt = _crossing_at(y)
        got = true_count_ranges(gt, line, 400, 200)["v"]["out"]
        strict = true_line_counts(gt, line, 400, 200)["v"]["out"]
        assert got == expect, y
        assert got[0] <= strict <= got[1]


def test_the_tolerant_error_forgives_only_counts_inside_the_ambiguous_range() -> None:
    truth = {"v": {"in": 3, "out": 2}}
    ranges = {"v": {"in": (2, 3), "out": (2, 4)}}
    for counted, strict, tolerant in (({"in": 2, "out": 4}, 3, 0), ({"in": 1, "out": 5}, 5, 2),
                                      ({"in": 3, "out": 2}, 0, 0)):
        got = count_error(truth, {"v": counted}, ranges)
        assert (got["abs_error"], got["tolerant_error"]) == (strict, tolerant), counted
    assert count_error(truth, {"v": {"in": 1, "out": 5}})["tolerant_error"] == 5  # no ranges: strict


@pytest.mark.parametrize(("line", "why"), [("nan,1,10,10,20,40,1", "NaN or infinite"),
                                          ("1,1,inf,10,20,40,1", "NaN or infinite"),
                                          ("0,1,10,10,20,40,1", "not a frame number"),
                                          ("2.5,1,10,10,20,40,1", "not a frame number")])
def test_a_ground_truth_with_impossible_frames_or_boxes_is_refused_naming_the_line(line: str, why: str) -> None:
    from edgecount_core.groundtruth import parse_mot

    with pytest.raises(ValueError, match=f"line 2: .*{why}"):
        parse_mot("1,1,10,10,20,40,1\n" + line + "\n")
