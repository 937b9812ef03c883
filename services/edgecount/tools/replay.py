"""``edgecount replay``: the full multi-process pipeline over one video file.

The controller prepares a private runtime directory and an effective
configuration, fetches the assets once, starts the watchdog with every
service, waits for the end-of-stream to come back from the uplink (every
count flushed to the sink), then stops everything and sums what the uplink
delivered. Nothing is read from inside the services: the counts reported are
the ones that left the device.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import cv2

from edgecount import stages
from edgecount.detection.models import resolve_model, startup_model
from edgecount.runtime import bus
from edgecount.runtime.assets import AssetStore, resolve_source
from edgecount.runtime.settings import to_toml, with_private_runtime
from edgecount.runtime.watchdog import Watchdog
from edgecount_core.config import Config, LineSection, parse_config
from edgecount_core.messages import EndOfStream, Tracks

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
    width: int = 0
    height: int = 0
    source_fps: float = 0.0
    tracks: dict[int, Any] = attrs.field(factory=dict)
    """Frame number (1-based) -> rows ``id, x1, y1, x2, y2`` when asked to collect them."""
    ended: dict[int, list[int]] = attrs.field(factory=dict)
    """Frame number -> track ids the tracker gave up in it, when collecting tracks."""
    track_size: tuple[int, int] = (0, 0)
    """The frame size the tracks are in: smaller than the video's when capture scaled it to fit the ring."""

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
        sinks = {k.split(".")[1]: {"confirmed": int(v)} for k, v in self.eos_stats.items()
                 if k.startswith("sink.") and k.endswith(".confirmed")}
        out["sinks"] = sinks  # per configured sink, the records it confirmed (MQTT: PUBACK) before the end
        if self.truncated:  # only then: a complete run's output stays what consumers already parse
            out.update(truncated=True, expected_frames=self.expected_frames)
        return out


def effective_config(base: Config, source: str, realtime: bool, lines: list[LineSection] | None,
                     runtime_dir: Path) -> Config:
    data = base.model_dump(mode="json")
    data["capture"].update(source=source, realtime=realtime, loop=False)
    if lines:
        data["lines"] = [ln.model_dump(mode="json") for ln in lines]
    with_private_runtime(data, runtime_dir)
    # The replay reads its result back from the local sink; other configured sinks deliver as usual.
    data["uplink"]["sinks"] = ["jsonl", *[x for x in data["uplink"]["sinks"] if x != "jsonl"]]
    return parse_config(data, source="replay")


def sum_records(path: Path, cfg: Config) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    lines = {ln.name: {"in": 0, "out": 0} for ln in cfg.lines}
    zones = {z.name: {"entries": 0, "exits": 0} for z in cfg.zones}
    seen: set[str] = set()
    if path.exists():
        for row in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(row)
            if rec["kind"] == "snapshot":
                continue
            if rec["id"] in seen:
                continue  # a resent record: ids make delivery idempotent
            seen.add(rec["id"])
            if rec["kind"] == "line":
                c = lines.setdefault(rec["name"], {"in": 0, "out": 0})
                c["in"] += rec["in"]
                c["out"] += rec["out"]
            else:
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


def replay(base: Config, source: str, *, realtime: bool = False, lines: list[LineSection] | None = None,
           timeout_s: float = 3600.0, progress: ProgressFn | None = None, logger: Any = None,
           keep_dir: bool = False, collect_tracks: bool = False,
           runtime_dir: Path | None = None) -> ReplayResult:
    store = AssetStore.for_config(base)
    local = resolve_source(source, store)
    if not Path(local).is_file():
        raise ReplayError(f"{source}: no such video file")
    cap = cv2.VideoCapture(local)
    if not cap.isOpened():
        raise ReplayError(f"{local}: OpenCV cannot open this video")
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    source_fps = float(cap.get(cv2.CAP_PROP_FPS) or 10.0)
    cap.release()
    # Fetch once, before the services race for it: the model the pipeline cannot start without (an
    # accelerator's own model may be absent together with the accelerator, like on the device).
    resolve_model(startup_model(base, store), store)

    # ipc paths must stay short (unix socket limit), so not under a deep tmp_path.
    if runtime_dir is None:
        runtime_dir = Path(tempfile.mkdtemp(prefix="ec-", dir="/tmp"))
    else:
        keep_dir = True
        bus.ensure_runtime_dir(runtime_dir)
    failed = True
    try:
        cfg = effective_config(base, local, realtime, lines, runtime_dir)
        cfg_path = runtime_dir / "effective.toml"
        cfg_path.write_text(to_toml(cfg.model_dump(mode="json")), encoding="utf-8")
        wd = Watchdog(cfg, cfg_path, runtime_dir, services=stages.NAMES, log_dir=runtime_dir / "state" / "logs",
                      logger=logger)
        eos_sub = bus.Subscriber(wd.ctx, runtime_dir, [("uplink", (bus.EOS,))], wd.log)
        # Tracks are internal data: only an evaluation on the device itself collects them.
        tracks_sub = (bus.Subscriber(wd.ctx, runtime_dir, [("counter", (bus.TRACKS,))], wd.log, hwm=100000)
                      if collect_tracks else None)
        tracks: dict[int, Any] = {}
        ended: dict[int, list[int]] = {}
        track_size = [0, 0]
        t0 = time.monotonic()
        eos: EndOfStream | None = None
        wd.start_all()
        try:
            while eos is None:
                if time.monotonic() - t0 > timeout_s:
                    raise ReplayError(f"replay did not finish within {timeout_s:.0f}s")
                health = wd.poll(50)
                if wd.failed:
                    raise ReplayError(f"pipeline failed: {wd.failed}; logs in {runtime_dir / 'state' / 'logs'}")
                if progress is not None and health is not None and health.service == "counter":
                    progress(int(health.stats.get("processed", 0)), expected)
                got = eos_sub.recv(0)
                if got is not None and isinstance(got[1], EndOfStream):
                    eos = got[1]
                if tracks_sub is not None:
                    _drain_tracks(tracks_sub, tracks, ended, track_size)
            done_wall = time.time()
            if tracks_sub is not None:
                _drain_tracks(tracks_sub, tracks, ended, track_size)
        finally:
            eos_sub.close()
            if tracks_sub is not None:
                tracks_sub.close()
            restarts = {c.name: c.total_restarts for c in wd.children.values()}
            wd.stop_all()
        line_counts, zone_counts = sum_records((cfg.uplink.jsonl_path and Path(cfg.uplink.jsonl_path)) or
                                               runtime_dir / "state" / "uplink.jsonl", cfg)
        st = dict(eos.stats)
        # From the first frame entering the pipeline to the last count leaving it.
        duration = done_wall - float(st.get("started_wall", done_wall))
        frames = int(st.get("frames", 0))
        processed = int(st.get("counter_processed", 0))
        if progress is not None:
            progress(processed, expected or frames)
        failed = False
        return ReplayResult(source=source, frames=frames, processed_frames=processed,
                            dropped_frames=max(0, frames - processed), duration_s=duration,
                            fps=processed / duration if duration > 0 else 0.0, lines=line_counts,
                            zones=zone_counts, eos_stats=st, restarts=restarts, tracks=tracks, ended=ended,
                            track_size=(track_size[0], track_size[1]), width=width,
                            height=height, source_fps=source_fps)
    finally:
        if not keep_dir and not failed:
            shutil.rmtree(runtime_dir, ignore_errors=True)
        elif failed:
            # Keep the logs and state of a failed run for the technician; drop the sockets.
            for sock in runtime_dir.glob("*.sock"):
                sock.unlink(missing_ok=True)

