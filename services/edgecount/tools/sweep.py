"""``edgecount eval --sweep``: an evaluation the settings cannot be fitted to.

A handful of hand-placed lines invites tuning until exactly those lines come
out right. The sweep instead lays 32 lines over the whole scene (vertical,
horizontal and diagonal, long and short, beside the spot where a person
stands still, along the frame edges), splits them into a tuning half and a
held-out half (alternately within each family, so both halves cover every
kind), and runs the clip again as perturbed copies made on the spot: half and
double resolution, mirrored, every second and every third frame, darker with
less contrast, heavy JPEG compression. Ground truth is transformed with the
video, and the true counts of a copy with dropped frames come from every
frame of the original: a person who crossed, crossed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt

from edgecount_core.camera import CameraCounter
from edgecount_core.config import Config
from edgecount_core.geometry import Line
from edgecount_core.groundtruth import GroundTruth, true_count_ranges, true_line_events
from edgecount_core.linking import LinkConfig

if TYPE_CHECKING:
    from edgecount.tools.evaluate import CountedFrame
    from edgecount.tools.scenes import Scene

__all__ = ["VARIANTS", "Variant", "evaluate_variant", "make_variant", "recount", "split_lines", "summarise",
           "sweep_lines", "transform_truth"]


def _family(prefix: str, segments: Sequence[tuple[float, float, float, float]]) -> list[Line]:
    return [Line(f"{prefix}{i:02d}", (ax, ay), (bx, by)) for i, (ax, ay, bx, by) in enumerate(segments)]


def sweep_lines() -> list[Line]:
    """32 lines over the scene; names say the family (v, h, d, s = beside the standing person, e = edge)."""
    vertical = [(x, 0.25, x, 1.0) for x in (0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.92)]
    vertical += [(x, 0.5, x, 0.85) for x in (0.25, 0.45, 0.7)]
    horizontal = [(0.0, y, 1.0, y) for y in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    horizontal += [(0.2, 0.55, 0.6, 0.55), (0.2, 0.75, 0.6, 0.75), (0.5, 0.65, 0.95, 0.65)]
    diagonal = [(0.1, 0.4, 0.9, 1.0), (0.1, 1.0, 0.9, 0.4), (0.3, 0.3, 0.7, 0.9), (0.6, 0.3, 1.0, 0.8),
                (0.0, 0.6, 0.4, 0.95)]
    # The PETS09 clip has a person standing still for about a minute with feet near (0.85, 0.71).
    standing = [(0.87, 0.55, 0.87, 0.95), (0.82, 0.55, 0.82, 0.95), (0.7, 0.69, 1.0, 0.69),
                (0.7, 0.73, 1.0, 0.73)]
    # Near the frame edges, but inside where the annotators start and stop a person (15-30 px in):
    # closer than that the ground truth itself cannot say whether someone crossed.
    edge = [(0.06, 0.25, 0.06, 1.0), (0.9, 0.25, 0.9, 1.0), (0.0, 0.95, 1.0, 0.95), (0.0, 0.3, 1.0, 0.3)]
    return (_family("v", vertical) + _family("h", horizontal) + _family("d", diagonal) + _family("s", standing)
            + _family("e", edge))


def split_lines(lines: Sequence[Line]) -> tuple[list[Line], list[Line]]:
    """Tuning half and held-out half: every other line of each family."""
    tune: list[Line] = []
    held: list[Line] = []
    seen: dict[str, int] = {}
    for ln in lines:
        k = seen.get(ln.name[0], 0)
        seen[ln.name[0]] = k + 1
        (tune if k % 2 == 0 else held).append(ln)
    return tune, held


@attrs.frozen
class Variant:
    """How a copy of the clip differs from the original."""

    name: str
    scale: float = 1.0
    mirror: bool = False
    step: int = 1
    """Keep every ``step``-th frame (the copy's frame rate drops with it)."""
    dark: bool = False
    jpeg_quality: int = 0
    """Re-encode every frame as JPEG at this quality (0 = no)."""


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("original"),
    Variant("half_res", scale=0.5),
    Variant("double_res", scale=2.0),
    Variant("mirrored", mirror=True),
    Variant("every_2nd", step=2),
    Variant("every_3rd", step=3),
    Variant("dark", dark=True),
    Variant("jpeg", jpeg_quality=12),
)}


def _frame(bgr: npt.NDArray[Any], v: Variant) -> npt.NDArray[Any]:
    import cv2

    out = bgr
    if v.scale != 1.0:
        out = cv2.resize(out, None, fx=v.scale, fy=v.scale,
                         interpolation=cv2.INTER_AREA if v.scale < 1 else cv2.INTER_LINEAR)
    if v.mirror:
        out = cv2.flip(out, 1)
    if v.dark:
        # Dusk: 60 % of the contrast, then 60 % of the light.
        out = cv2.convertScaleAbs(out, alpha=0.6 * 0.6, beta=0.6 * 0.4 * 128)
    if v.jpeg_quality:
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, v.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        if decoded is None:
            raise RuntimeError("JPEG decoding failed")
        out = decoded
    return out


def make_variant(clip: Path, v: Variant, out_dir: Path) -> tuple[Path, float, tuple[int, int]]:
    """Write the copy of ``clip`` as a near-lossless MJPEG AVI; returns its path, frame rate and size."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    if not cap.isOpened():
        raise RuntimeError(f"{clip}: OpenCV cannot open this video")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 10.0)
    path = out_dir / f"{clip.stem}-{v.name}.avi"
    writer: Any = None
    size = (0, 0)
    i = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % v.step == 0:
                frame = _frame(bgr, v)
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps / v.step, size)
                    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 97)
                writer.write(frame)
            i += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if writer is None:
        raise RuntimeError(f"{clip}: no frame could be read")
    return path, fps / v.step, size


def transform_truth(gt: GroundTruth, v: Variant, width: int) -> tuple[GroundTruth, GroundTruth]:
    """Ground truth of the copy: every frame (for true counts) and the frames kept (for tracking metrics).

    ``width`` is the original frame width (mirroring flips about it).
    """
    rows = gt.rows.copy()
    if v.mirror:
        rows[:, 2] = width - rows[:, 2] - rows[:, 4]
    rows[:, 2:6] *= v.scale
    full = GroundTruth(rows)
    kept = rows[(rows[:, 0] - 1) % v.step == 0].copy()
    kept[:, 0] = (kept[:, 0] - 1) // v.step + 1
    return full, GroundTruth(kept)


def recount(tracks: Mapping[int, npt.NDArray[np.float64]], ended: Mapping[int, Sequence[int]],
            lines: Sequence[Line], width: int, height: int, fps: float, band: float,
            link: LinkConfig) -> tuple[dict[str, dict[str, int]], dict[int, CountedFrame]]:
    """Count the pipeline's raw tracks again with these linking settings (the tracker's output is unchanged)."""
    from edgecount.tools.evaluate import CountedFrame

    camera = CameraCounter(lines, link=link, band=band)
    counted: dict[int, CountedFrame] = {}
    for seq in sorted(set(tracks) | set(ended)):
        rows = tracks.get(seq, np.zeros((0, 5)))
        step = camera.count(rows, ended.get(seq, ()), seq / fps, seq, width, height)
        counted[seq] = CountedFrame(boxes=rows[:, 1:5], ids=step.ids, events=step.crossings)
    return camera.engine.totals(), counted


def summarise(errors: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Total and worst-line error, strict and tolerant, over the lines ``names`` of a :func:`count_error` report."""
    per = [errors["lines"][n] for n in names]
    true_total = sum(p["true_in"] + p["true_out"] for p in per)
    abs_error = sum(p["abs_error"] for p in per)
    tolerant = sum(p.get("tolerant_error", p["abs_error"]) for p in per)
    worst = max(per, key=lambda p: (p["abs_error"], -(p["true_in"] + p["true_out"])))
    worst_name = names[per.index(worst)]
    return {"lines": len(per), "true_total": true_total, "abs_error": abs_error, "tolerant_error": tolerant,
            "relative_error": abs_error / true_total if true_total else 0.0,
            "tolerant_relative_error": tolerant / true_total if true_total else 0.0,
            "worst_line": worst_name, "worst_abs_error": worst["abs_error"],
            "worst_true": worst["true_in"] + worst["true_out"]}


def evaluate_variant(scene: Scene, v: Variant, lines: Sequence[Line], cfg: Config, work: Path,
                     run: Callable[[str], Any]) -> dict[str, Any]:
    """Make the copy, run it through the pipeline (``run(video)`` returns a replay result) and score it."""
    from edgecount.tools.evaluate import classify_count_errors, count_error, mot_metrics

    if v.name == "original":
        video, fps = scene.video, 0.0
    else:
        video, fps, _ = make_variant(scene.video, v, work)
    res = run(str(video))
    fps = fps or res.source_fps
    tracks = res.tracks
    tw, th = res.track_size
    if tw and (tw, th) != (res.width, res.height):
        # Capture scaled the frames to fit its ring: bring the tracks back to the video's pixels.
        k = np.array([1.0, res.width / tw, res.height / th, res.width / tw, res.height / th])
        tracks = {f: rows * k for f, rows in tracks.items()}
    full, kept = transform_truth(scene.gt, v, scene.width)
    truth, truth_events = true_line_events(full, lines, res.width, res.height, fps=fps * v.step)
    ranges = true_count_ranges(full, lines, res.width, res.height)
    counts = count_error(truth, res.lines, ranges)
    frames = min(res.processed_frames, kept.frames()) if res.processed_frames else kept.frames()
    metrics = mot_metrics(kept, tracks, frames)
    c = cfg.counting
    link = LinkConfig(max_gap_s=c.link_gap_s, gate=c.link_gate)
    _, linked_frames = recount(tracks, res.ended, lines, res.width, res.height, fps, c.band, link)
    unlinked, unlinked_frames = recount(tracks, res.ended, lines, res.width, res.height, fps, c.band,
                                        LinkConfig(max_gap_s=0.0))
    tune, held = split_lines(lines)
    tn, hn = [ln.name for ln in tune], [ln.name for ln in held]
    nolink = count_error(truth, unlinked, ranges)
    # Error classes are scored on the copy's own frame numbers (every true crossing, at the frame kept).
    kept_events = [attrs.evolve(e, seq=(e.seq - 1) // v.step + 1) for e in truth_events]
    classes = {"with_linking": classify_count_errors(kept, kept_events, linked_frames, fps),
               "without_linking": classify_count_errors(kept, kept_events, unlinked_frames, fps)}
    if v.name != "original" and video != scene.video:
        video.unlink(missing_ok=True)
    return {"frames": res.frames, "processed_frames": res.processed_frames, "fps": res.fps,
            "size": [res.width, res.height], "metrics": metrics, "held_out": summarise(counts, hn),
            "tune": summarise(counts, tn), "held_out_without_linking": summarise(nolink, hn),
            "error_classes": classes,
            "lines": {n: {**counts["lines"][n], "abs_error_without_linking": nolink["lines"][n]["abs_error"]}
                      for n in counts["lines"]}}
