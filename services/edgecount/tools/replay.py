"""``edgecount replay``: the full multi-process pipeline over one video file, or several at once.

The controller prepares a private runtime directory and an effective
configuration, fetches the assets once, starts the watchdog with every
service, waits for each camera's end-of-stream to come back from the uplink
(every count flushed to the sink), then stops everything and sums what the
uplink delivered. The counts reported are the ones that left the device;
only the crossing times on-site validation compares come from the counter's
own journal. Several files run as several
cameras of one pipeline (:func:`replay_cameras`), each frame of each processed.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import cv2

from edgecount import stages
from edgecount.assets.obtain import AssetStore, resolve_source
from edgecount.detection.model_files import resolve_model, startup_model
from edgecount.runtime import bus
from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.settings import for_replay, state_dir, to_toml
from edgecount.stages.crossing_journal import read_crossings
from edgecount.stages.figures import COUNTER
from edgecount.supervisor.watchdog import Watchdog
from edgecount_core.config import Config, LineSection, parse_config
from edgecount_core.messages import DEFAULT_CAMERA, EndOfStream, Tracks
from edgecount_core.validation import TimedCrossing

ProgressFn = Callable[[int, int], None]


class ReplayError(RuntimeError):
    pass


@attrs.frozen
class ReplayResult:
    source: str
    frames: int
    processed_frames: int
    dropped_frames: int
    duration_s: float
    fps: float
    lines: dict[str, dict[str, int]]
    zones: dict[str, dict[str, int]]
    eos_stats: dict[str, Any]
    restarts: dict[str, int]
    confirmed: dict[str, int] = attrs.field(factory=dict)
    """Per configured sink, the records it confirmed (MQTT: PUBACK) before the end came back."""
    width: int = 0
    height: int = 0
    source_fps: float = 0.0
    tracks: dict[int, Any] = attrs.field(factory=dict)
    """Frame number (1-based) -> rows ``id, x1, y1, x2, y2`` when asked to collect them."""
    ended: dict[int, list[int]] = attrs.field(factory=dict)
    """Frame number -> track ids the tracker gave up in it, when collecting tracks."""
    track_size: tuple[int, int] = (0, 0)
    """The frame size the tracks are in: smaller than the video's when capture scaled it to fit the ring."""
    crossings: tuple[TimedCrossing, ...] = ()
    """Every crossing the counter decided, timed in seconds from the clip's first frame."""

    @property
    def truncated(self) -> bool:
        """The file ended before the frame count its header announced (cut short or damaged)."""
        return bool(self.eos_stats.get("truncated"))

    @property
    def expected_frames(self) -> int:
        return int(self.eos_stats.get("expected_frames") or self.frames)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "frames": self.frames,
                               "processed_frames": self.processed_frames, "dropped_frames": self.dropped_frames,
                               "duration_s": round(self.duration_s, 3), "fps": round(self.fps, 2),
                               "lines": self.lines}
        out["sinks"] = {name: {"confirmed": n} for name, n in self.confirmed.items()}
        if self.truncated:  # only then: a complete run's output stays what consumers already parse
            out.update(truncated=True, expected_frames=self.expected_frames)
        return out


def effective_config(base: Config, source: str, realtime: bool, lines: list[LineSection] | None,
                     runtime_dir: Path, publish: bool = False) -> Config:
    data = base.model_dump(mode="json")
    data["capture"].update(source=source, realtime=realtime, loop=False)
    if lines:
        data["lines"] = [ln.model_dump(mode="json") for ln in lines]
    return _replay_config(data, runtime_dir, publish)


def _replay_config(data: dict[str, Any], runtime_dir: Path, publish: bool = False) -> Config:
    """A replay's configuration: private runtime and state, and the local sink its result is read back from
    (the configured broker and webhook only with ``publish``, under an identity of its own: ``for_replay``)."""
    return parse_config(for_replay(data, runtime_dir, publish), source="replay")


Counts = tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]


def sum_records(path: Path, cfg: Config, camera: str = DEFAULT_CAMERA) -> Counts:
    """One camera's line and zone totals from what the jsonl sink received."""
    view = cfg.for_camera(camera)
    lines = {ln.name: {"in": 0, "out": 0} for ln in view.lines}
    zones = {z.name: {"entries": 0, "exits": 0} for z in view.zones}
    seen: set[str] = set()
    if path.exists():
        for row in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(row)
            if rec["kind"] == "snapshot" or rec.get("camera", DEFAULT_CAMERA) != camera:
                continue
            if rec["id"] in seen:
                continue  # a resent record: ids make delivery idempotent
            seen.add(rec["id"])
            if rec["kind"] == "line":
                c = lines.setdefault(rec["name"], {"in": 0, "out": 0})
                c["in"] += rec["in"]
                c["out"] += rec["out"]
            elif rec["kind"] == "zone":  # not events (each restates a line's count) nor a day's running total
                z = zones.setdefault(rec["name"], {"entries": 0, "exits": 0})
                z["entries"] += rec["in"]
                z["exits"] += rec["out"]
    return lines, zones


def _drain_tracks(sub: bus.Subscriber, into: dict[int, Any], ended: dict[int, list[int]],
                  size: list[int]) -> None:
    got = sub.recv(0)
    while got is not None:
        msg = got[1]
        if isinstance(msg, Tracks):
            into[msg.seq] = msg.row_array()[:, :5].astype("float64")
            size[:] = [msg.width, msg.height]
            if msg.ended:
                ended[msg.seq] = list(msg.ended)
        got = sub.recv(0)


@attrs.frozen
class _Probe:
    local: str
    frames: int
    width: int
    height: int
    fps: float


def _probe(source: str, store: AssetStore) -> _Probe:
    local = resolve_source(source, store)
    if not Path(local).is_file():
        raise ReplayError(f"{source}: no such video file")
    cap = cv2.VideoCapture(local)
    if not cap.isOpened():
        raise ReplayError(f"{local}: OpenCV cannot open this video")
    try:
        return _Probe(local, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                      int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), float(cap.get(cv2.CAP_PROP_FPS) or 10.0))
    finally:
        cap.release()


@attrs.define
class _Run:
    """What one pipeline run brought back: each camera's end-of-stream, as the uplink forwarded it."""

    eos: dict[str, EndOfStream]
    done_wall: float
    restarts: dict[str, int]
    jsonl: Path
    tracks: dict[int, Any] = attrs.field(factory=dict)
    ended: dict[int, list[int]] = attrs.field(factory=dict)
    track_size: tuple[int, int] = (0, 0)
    epochs: dict[str, float] = attrs.field(factory=dict)
    """Per camera, the stream time of the clip's first frame (capture stamps frame ``i`` with it + ``i / fps``)."""

    @property
    def started_wall(self) -> float:
        return min(float(e.stats.get("started_wall", self.done_wall)) for e in self.eos.values())


def _run_pipeline(cfg: Config, runtime_dir: Path, expected: int, *, timeout_s: float, progress: ProgressFn | None,
                  logger: Any, collect_tracks: bool) -> _Run:
    """Start every process of ``cfg``, wait until every camera's end-of-stream came back from the uplink."""
    cfg_path = runtime_dir / "effective.toml"
    cfg_path.write_text(to_toml(cfg.model_dump(mode="json")), encoding="utf-8")
    wd = Watchdog(cfg, cfg_path, runtime_dir, services=stages.processes(cfg), log_dir=runtime_dir / "state" / "logs",
                  logger=logger, preload=stages.preload_modules(), figures=stages.figures_by_stage())
    eos_sub = bus.Subscriber(wd.ctx, runtime_dir, [("uplink", (bus.EOS,))], wd.log)
    # Tracks are internal data: only an evaluation on the device itself collects them.
    tracks_sub = (bus.Subscriber(wd.ctx, runtime_dir, [("counter", (bus.TRACKS,))], wd.log, hwm=100000)
                  if collect_tracks else None)
    run = _Run(eos={}, done_wall=0.0, restarts={}, jsonl=(cfg.uplink.jsonl_path and Path(cfg.uplink.jsonl_path))
               or runtime_dir / "state" / "uplink.jsonl")
    size = [0, 0]
    cameras = set(cfg.camera_names())
    t0 = time.monotonic()
    wd.start_all()
    try:
        while set(run.eos) != cameras:
            if time.monotonic() - t0 > timeout_s:
                raise ReplayError(f"replay did not finish within {timeout_s:.0f}s")
            health = wd.poll(50)
            if wd.failed:
                raise ReplayError(f"pipeline failed: {wd.failed}; logs in {runtime_dir / 'state' / 'logs'}")
            if progress is not None and health is not None and health.service == "counter":
                progress(int(COUNTER.processed.read(health.stats)), expected)
            got = eos_sub.recv(0)
            if got is not None and isinstance(got[1], EndOfStream) and got[1].camera in cameras:
                run.eos.setdefault(got[1].camera, got[1])
            if tracks_sub is not None:
                _drain_tracks(tracks_sub, run.tracks, run.ended, size)
        run.done_wall = time.time()
        # Read before the processes stop: a capture's time origin is removed with its other leftovers.
        run.epochs = {cam: float(RuntimePaths(runtime_dir).epoch(stages.capture_process(cfg, cam)).read_text())
                      for cam in cameras}
        if tracks_sub is not None:
            _drain_tracks(tracks_sub, run.tracks, run.ended, size)
    finally:
        eos_sub.close()
        if tracks_sub is not None:
            tracks_sub.close()
        run.restarts = {c.name: c.total_restarts for c in wd.children.values()}
        wd.stop_all()
    run.track_size = (size[0], size[1])
    return run


def _in_private_dir(runtime_dir: Path | None, keep_dir: bool, work: Callable[[Path], Any]) -> Any:
    """Run ``work`` in a private runtime directory; keep it (without sockets) when the run failed."""
    # ipc paths must stay short (unix socket limit), so not under a deep tmp_path.
    if runtime_dir is None:
        runtime_dir = Path(tempfile.mkdtemp(prefix="ec-", dir="/tmp"))
    else:
        keep_dir = True
        bus.ensure_runtime_dir(runtime_dir)
    failed = True
    try:
        result = work(runtime_dir)
        failed = False
        return result
    finally:
        if not keep_dir and not failed:
            shutil.rmtree(runtime_dir, ignore_errors=True)
        elif failed:
            # Keep the logs and state of a failed run for the technician; drop the sockets.
            for sock in RuntimePaths(runtime_dir).sockets():
                sock.unlink(missing_ok=True)


def replay(base: Config, source: str, *, realtime: bool = False, lines: list[LineSection] | None = None,
           timeout_s: float = 3600.0, progress: ProgressFn | None = None, logger: Any = None,
           keep_dir: bool = False, collect_tracks: bool = False,
           runtime_dir: Path | None = None, publish: bool = False) -> ReplayResult:
    store = AssetStore.for_config(base)
    probe = _probe(source, store)
    # Fetch once, before the services race for it: the model the pipeline cannot start without (an
    # accelerator's own model may be absent together with the accelerator, like on the device).
    resolve_model(startup_model(base, store), store)

    def work(rdir: Path) -> ReplayResult:
        cfg = effective_config(base, probe.local, realtime, lines, rdir, publish)
        run = _run_pipeline(cfg, rdir, probe.frames, timeout_s=timeout_s, progress=progress, logger=logger,
                            collect_tracks=collect_tracks)
        res = _camera_result(cfg, DEFAULT_CAMERA, source, probe, run)
        if progress is not None:
            progress(res.processed_frames, probe.frames or res.frames)
        return attrs.evolve(res, tracks=run.tracks, ended=run.ended, track_size=run.track_size,
                            crossings=_clip_crossings(cfg, run.epochs[DEFAULT_CAMERA], DEFAULT_CAMERA))

    result: ReplayResult = _in_private_dir(runtime_dir, keep_dir, work)
    return result


def _clip_crossings(cfg: Config, epoch: float, camera: str) -> tuple[TimedCrossing, ...]:
    """The counter's crossings of ``camera``, read back from its journal, timed from the clip's first frame."""
    found = read_crossings(state_dir(cfg) / "counter.db", -math.inf, math.inf, camera)
    return tuple(attrs.evolve(c, t=round(c.t - epoch, 6)) for c in found)


def _camera_result(cfg: Config, camera: str, source: str, probe: _Probe, run: _Run) -> ReplayResult:
    line_counts, zone_counts = sum_records(run.jsonl, cfg, camera)
    st = dict(run.eos[camera].stats)
    # From the first frame entering the pipeline to the last count leaving it.
    duration = run.done_wall - run.started_wall
    frames = int(st.get("frames", 0))
    processed = int(st.get("counter_processed", 0))
    return ReplayResult(source=source, frames=frames, processed_frames=processed,
                        dropped_frames=max(0, frames - processed), duration_s=duration,
                        fps=processed / duration if duration > 0 else 0.0, lines=line_counts,
                        zones=zone_counts, eos_stats=st, restarts=run.restarts,
                        confirmed=dict(run.eos[camera].confirmed or {}), width=probe.width,
                        height=probe.height, source_fps=probe.fps)


@attrs.frozen
class CamerasResult:
    """Several files replayed together, one camera each."""

    cameras: dict[str, ReplayResult]
    duration_s: float
    restarts: dict[str, int]

    @property
    def processed_frames(self) -> int:
        return sum(r.processed_frames for r in self.cameras.values())

    @property
    def fps(self) -> float:
        return self.processed_frames / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        cams: dict[str, dict[str, Any]] = {}
        for name, r in self.cameras.items():
            one = r.to_json()
            cams[name] = {k: one[k] for k in ("source", "frames", "processed_frames", "dropped_frames", "lines",
                                              "truncated", "expected_frames") if k in one}
            if r.zones:
                cams[name]["zones"] = r.zones
        return {"cameras": cams, "duration_s": round(self.duration_s, 3), "fps": round(self.fps, 2)}


def camera_sources(args: list[str]) -> dict[str, str]:
    """``A.avi NAME=B.avi ...`` -> camera name -> source; unnamed ones are ``cam1``, ``cam2``... by position."""
    out: dict[str, str] = {}
    for i, arg in enumerate(args, 1):
        name, eq, src = arg.partition("=")
        if not eq or "/" in name or not name or not all(c.isalnum() or c in "_-" for c in name):
            name, src = f"cam{i}", arg
        if name in out:
            raise ReplayError(f"camera {name!r} is given twice; name each source once (NAME=SOURCE)")
        out[name] = src
    return out


def cameras_config(base: Config, sources: dict[str, str], realtime: bool, lines: dict[str, list[LineSection]],
                   runtime_dir: Path, publish: bool = False) -> Config:
    """``base`` with one ``[[cameras]]`` per source. A camera's lines are its ``--line``s if any, else those of
    the camera of that name in ``base``, else ``base``'s top-level lines (the same view filmed twice)."""
    data = base.model_dump(mode="json")
    known = {c["name"]: c for c in data.get("cameras", [])}
    cams = []
    for name, src in sources.items():
        cam = dict(known.get(name) or {"lines": data.get("lines", []), "zones": data.get("zones", [])})
        cam.update(name=name, source=src, realtime=realtime, loop=False)
        if lines.get(name):
            cam["lines"] = [ln.model_dump(mode="json") for ln in lines[name]]
        cams.append(cam)
    unknown = sorted(set(lines) - set(sources))
    if unknown:
        raise ReplayError(f"--line names camera {unknown[0]!r}, which is not replayed; cameras: "
                          f"{', '.join(sources)}")
    data.update(cameras=cams, lines=[], zones=[])
    data["capture"].pop("source", None)
    data["capture"].update(realtime=realtime, loop=False)
    return _replay_config(data, runtime_dir, publish)


def replay_cameras(base: Config, sources: dict[str, str], *, realtime: bool = False,
                   lines: dict[str, list[LineSection]] | None = None, timeout_s: float = 3600.0,
                   progress: ProgressFn | None = None, logger: Any = None, keep_dir: bool = False,
                   runtime_dir: Path | None = None, publish: bool = False) -> CamerasResult:
    """Replay several files through one pipeline, one camera each (every frame of each, unless ``realtime``)."""
    store = AssetStore.for_config(base)
    probes = {name: _probe(src, store) for name, src in sources.items()}
    resolve_model(startup_model(base, store), store)

    def work(rdir: Path) -> CamerasResult:
        cfg = cameras_config(base, {n: p.local for n, p in probes.items()}, realtime, lines or {}, rdir, publish)
        total = sum(p.frames for p in probes.values())
        run = _run_pipeline(cfg, rdir, total, timeout_s=timeout_s, progress=progress, logger=logger,
                            collect_tracks=False)
        results = {n: _camera_result(cfg, n, sources[n], probes[n], run) for n in sources}
        if progress is not None:
            progress(sum(r.processed_frames for r in results.values()), total)
        return CamerasResult(cameras=results, duration_s=run.done_wall - run.started_wall, restarts=run.restarts)

    result: CamerasResult = _in_private_dir(runtime_dir, keep_dir, work)
    return result
