"""Recording what flows on the bus, and replaying it into one service alone.

On-disk format of a recording directory::

    config.toml        the appliance configuration at the time of recording
    messages.msgpack   a stream of msgpack maps, one per bus message, in arrival order:
                       {"t": seconds since the start, "service": publisher, "topic": str,
                        "payload": bytes (the message exactly as it was on the bus)}
    frames/SEQ.png     only with frames recorded (explicitly confirmed): the pixels of
                       frame SEQ, lossless

``replay-service`` starts one service with the recorded configuration in a
private runtime directory, plays its recorded inputs into it from stand-in
upstream sockets (frames go through a real shared-memory ring), and collects
everything it publishes, in order. A marker sent after the last input comes
back once the service has handled everything before it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import cv2
import msgpack
import numpy as np
import zmq

from edgecount import stages
from edgecount.runtime import bus, logs
from edgecount.runtime.ring import RingReader, RingWriter
from edgecount_core.camera_names import scoped
from edgecount_core.config import parse_config
from edgecount_core.messages import (
    DEFAULT_CAMERA,
    FrameReady,
    Health,
    Marker,
    Message,
    MessageError,
    decode,
    encode,
)

# Stills are redacted images meant for the operator, not pipeline data: they are never recorded.
ALL_TOPICS = tuple(t for t in stages.data_topics() if t != bus.SNAPSHOT)


def record(runtime_dir: Path, config_text: str, out: Path, seconds: float, topics: list[bytes],
           with_frames: bool) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(config_text, encoding="utf-8")
    frames_dir = out / "frames"
    if with_frames:
        frames_dir.mkdir(exist_ok=True)
    ctx: zmq.Context[Any] = zmq.Context()
    quiet = logs.configure("record", level="error")
    cfg = parse_config(tomllib.loads(config_text))
    # One socket per process (each camera's capture too), so every message is recorded with its publisher.
    subs = {proc: bus.Subscriber(ctx, runtime_dir, [(proc, wanted)], quiet, hwm=100000)
            for s in stages.STAGES if (wanted := tuple(t for t in topics if t in s.publishes))
            for proc in (stages.capture_processes(cfg) if s.name == stages.PER_CAMERA else (s.name,))}
    poller = zmq.Poller()
    for sub in subs.values():
        poller.register(sub.sock, zmq.POLLIN)
    readers = {cam: RingReader(runtime_dir, cam) for cam in cfg.camera_names()} if with_frames else {}
    counts: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        with (out / "messages.msgpack").open("wb") as f:
            while time.monotonic() - t0 < seconds:
                ready = dict(poller.poll(100))
                for service, sub in subs.items():
                    while sub.sock in ready and (got := sub.recv(0)) is not None:
                        topic = _record_one(f, got, service, readers, frames_dir, t0)
                        if topic:
                            counts[topic] = counts.get(topic, 0) + 1
    finally:
        for reader in readers.values():
            reader.close()
        for sub in subs.values():
            sub.close()
        ctx.term()
    return counts


def _record_one(f: IO[bytes], got: tuple[bytes, Message], service: str, readers: dict[str, RingReader],
                frames_dir: Path, t0: float) -> str:
    """Append one message (and its frame when frames are recorded: ``frames/SEQ.png``, or
    ``frames/CAMERA/SEQ.png`` for a camera other than ``main``); its topic, or "" if it was skipped."""
    topic, msg = got
    reader = readers.get(msg.camera) if isinstance(msg, FrameReady) else None
    if isinstance(msg, FrameReady) and reader is not None:
        view = reader.view(msg.ring, msg.slot, msg.seq)
        if view is None:
            return ""
        png = cv2.imencode(".png", view)[1].tobytes()
        del view
        if not reader.still_valid(msg.slot, msg.seq):
            return ""
        folder = Path(scoped(str(frames_dir), msg.camera, "/"))
        folder.mkdir(exist_ok=True)
        (folder / f"{msg.seq}.png").write_bytes(png)
    f.write(msgpack.packb({"t": round(time.monotonic() - t0, 4), "service": service,
                           "topic": topic.decode(), "payload": encode(msg)}, use_bin_type=True))
    return topic.decode()


def read_messages(directory: Path) -> Iterator[dict[str, Any]]:
    with (directory / "messages.msgpack").open("rb") as f:
        yield from msgpack.Unpacker(f, raw=False)


def replay_service(service: str, directory: Path, timeout_s: float = 300.0,
                   noise: Iterator[list[bytes]] | None = None,
                   health: list[Health] | None = None) -> list[tuple[str, Message]]:
    """Feed a recording into ``service`` alone; returns what it published (topic, message), in order.

    ``noise`` (a fuzzer) gives raw multipart messages sent on the same upstream socket after every input;
    ``health`` receives the service's heartbeats, the last one taken after everything was handled.
    """
    if service not in stages.replayable():
        raise ValueError(f"replay-service supports {', '.join(stages.replayable())}; not {service!r}")
    links = stages.stage(service).data_inputs()
    if service == "inference" and (directory / "frames").is_dir() and any(
            d.is_dir() for d in (directory / "frames").iterdir()):
        raise ValueError("replay-service inference takes a single-camera recording (this one has frames of "
                         "several cameras); replay the cameras' files with `edgecount replay A B ...` instead")
    wanted = {(upstream, t.decode()) for upstream, topics in links for t in topics}
    inputs = [m for m in read_messages(directory) if (m["service"], m["topic"]) in wanted]
    runtime = Path(tempfile.mkdtemp(prefix="ecr-", dir="/tmp"))
    cfg_text = (directory / "config.toml").read_text(encoding="utf-8")
    # The service gets its own state, so a replay never resumes from an earlier one.
    cfg_text = _with_runtime(cfg_text, runtime)
    (runtime / "config.toml").write_text(cfg_text, encoding="utf-8")
    ctx: zmq.Context[Any] = zmq.Context()
    upstream = links[0][0]
    pub = bus.Publisher(ctx, runtime, upstream)
    listen = bus.Subscriber(ctx, runtime, [(service, (*ALL_TOPICS, bus.MARKER))],
                            logs.configure("replay-service", level="error"), hwm=1000000)
    ring = RingWriter(runtime, 4, 1920, 1080) if service == "inference" else None
    proc = subprocess.Popen([sys.executable, "-m", "edgecount.stages", service, "--config",
                             str(runtime / "config.toml"), "--runtime-dir", str(runtime)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    beats = bus.Subscriber(ctx, runtime, [(service, (bus.HEALTH,))], logs.configure("replay-service", level="error"))
    outputs: list[tuple[str, Message]] = []
    try:
        _handshake(pub, listen, proc, outputs)
        for m in inputs:
            raw = m["payload"]
            if ring is not None and m["topic"] == "frame":
                raw = _frame_through_ring(ring, directory, raw)
                if raw is None:
                    continue
                # One frame in flight at a time: the ring is small and inference must see every frame.
                pub.sock.send_multipart([m["topic"].encode(), raw])
                _wait_for(listen, outputs, lambda topic, msg: topic == "detections", proc, timeout_s)
                continue
            pub.sock.send_multipart([m["topic"].encode(), raw])
            if noise is not None:
                pub.sock.send_multipart(next(noise))
            _drain(listen, outputs)
        _handshake(pub, listen, proc, outputs)  # everything before this marker was handled
        if health is not None:
            _collect_health(beats, health, proc)
    finally:
        beats.close()
        proc.terminate()
        proc.wait(timeout=20)
        if ring is not None:
            ring.close()
        pub.close()
        listen.close()
        ctx.term()
        shutil.rmtree(runtime, ignore_errors=True)
    return [(t, m) for t, m in outputs if t not in ("marker", "health")]


def _collect_health(beats: bus.Subscriber, into: list[Health], proc: Any, wait_s: float = 5.0) -> None:
    """Every heartbeat so far, and the next one (sent after the final marker was handled)."""
    while (got := beats.recv(0)) is not None:
        if isinstance(got[1], Health):
            into.append(got[1])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        got = beats.recv(100)
        if got is not None and isinstance(got[1], Health):
            into.append(got[1])
            return


def _with_runtime(cfg_text: str, runtime: Path) -> str:
    import tomllib

    from edgecount.runtime.settings import to_toml, with_private_runtime

    return to_toml(with_private_runtime(tomllib.loads(cfg_text), runtime))


def _frame_through_ring(ring: RingWriter, directory: Path, raw: bytes) -> bytes | None:
    try:
        msg = decode(raw)
    except MessageError:
        return None
    assert isinstance(msg, FrameReady)
    png = directory / "frames" / f"{msg.seq}.png"
    if not png.exists():
        return None
    img = cv2.imread(str(png))
    if img is None:
        return None
    ring.seq = max(ring.seq, msg.seq - 1)  # keep the recorded frame numbers
    seq, slot, view = ring.begin(img.shape[1], img.shape[0])
    view[...] = img
    del view
    ring.commit(seq, msg.ts)
    return encode(FrameReady(seq=seq, slot=slot, ts=msg.ts, width=img.shape[1], height=img.shape[0],
                             ring=ring.generation))


def _drain(listen: bus.Subscriber, outputs: list[tuple[str, Message]]) -> None:
    got = listen.recv(0)
    while got is not None:
        outputs.append((got[0].decode(), got[1]))
        got = listen.recv(0)


def _wait_for(listen: bus.Subscriber, outputs: list[tuple[str, Message]], cond: Any, proc: Any,
              timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with status {proc.returncode} during the replay")
        got = listen.recv(100)
        if got is None:
            continue
        outputs.append((got[0].decode(), got[1]))
        if cond(got[0].decode(), got[1]):
            return
    raise RuntimeError("the service did not answer in time")


def _handshake(pub: bus.Publisher, listen: bus.Subscriber, proc: Any, outputs: list[tuple[str, Message]]) -> None:
    token = secrets.token_hex(6)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with status {proc.returncode}")
        pub.send(bus.MARKER, Marker(token=token, origin_ts=time.time()))
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            got = listen.recv(50)
            if got is None:
                continue
            outputs.append((got[0].decode(), got[1]))
            if isinstance(got[1], Marker) and got[1].token == token:
                return
    raise RuntimeError("the service never connected")



def normalise(outputs: list[tuple[str, Message]]) -> list[dict[str, Any]]:
    """A stable, diffable form of a service's outputs (golden files).

    Wall-clock-driven messages (``tail``, heartbeats) and per-run random ids are left out;
    coordinates are rounded to 0.1 px. The camera is shown only when it is not ``main`` (as on the wire).
    """
    import attrs

    from edgecount_core.messages import Crossing, Detections, Tracks, ZoneEvent

    rows: list[dict[str, Any]] = []
    for topic, msg in outputs:
        if topic in ("tail", "health", "marker", "eos"):
            continue
        d: dict[str, Any] = {"topic": topic}
        if isinstance(msg, Detections):
            d.update(seq=msg.seq, boxes=np.round(msg.box_array(), 1).tolist(),
                     scores=np.round(msg.score_array(), 3).tolist())
        elif isinstance(msg, Tracks):
            d.update(seq=msg.seq, rows=np.round(msg.row_array(), 1).tolist(), ended=sorted(msg.ended))
        else:
            d.update({k: v for k, v in attrs.asdict(msg).items() if k != "event_id" and v is not None
                      and not (k == "camera" and v == DEFAULT_CAMERA)})
            if isinstance(msg, Crossing | ZoneEvent):
                d["ts"] = round(msg.ts, 3)
        rows.append(d)
    return rows
