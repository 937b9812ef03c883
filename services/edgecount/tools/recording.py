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
                   health: list[Health] | None = None, publish: bool = False) -> list[tuple[str, Message]]:
    """Feed a recording into ``service`` alone; returns what it published (topic, message), in order.

    ``noise`` (a fuzzer) gives raw multipart messages sent on the same upstream socket after every input;
    ``health`` receives the service's heartbeats, the last one taken after everything was handled. The
    service's sinks are private unless ``publish`` (``settings.for_replay``). A stage that follows a durable
    log finds the recording's entries served as that log (:class:`RecordedLog`), numbered as recorded.
    ``RuntimeError`` with the service's own error output when it fails, or publishes nothing the recording
    implies.
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
    cfg_text = _with_runtime(cfg_text, runtime, publish)
    (runtime / "config.toml").write_text(cfg_text, encoding="utf-8")
    ctx: zmq.Context[Any] = zmq.Context()
    upstream = links[0][0]
    pub = bus.Publisher(ctx, runtime, upstream)
    listen = bus.Subscriber(ctx, runtime, [(service, (*ALL_TOPICS, bus.MARKER))],
                            logs.configure("replay-service", level="error"), hwm=1000000)
    ring = RingWriter(runtime, 4, 1920, 1080) if service == "inference" else None
    follows = stages.stage(service).follows
    log = RecordedLog(runtime, follows, read_messages(directory)) if follows else None
    errors = (runtime / "service.log").open("wb")  # what the service says, shown when it fails
    proc = subprocess.Popen([sys.executable, "-m", "edgecount.stages", service, "--config",
                             str(runtime / "config.toml"), "--runtime-dir", str(runtime)],
                            stdout=errors, stderr=errors)
    beats = bus.Subscriber(ctx, runtime, [(service, (bus.HEALTH,))], logs.configure("replay-service", level="error"))
    outputs: list[tuple[str, Message]] = []
    failure: Exception | None = None
    try:
        _handshake(pub, listen, proc, outputs)
        for m in inputs:
            if log is not None:
                log.offer(m)
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
        if log is not None:
            log.wait_applied(listen, outputs, proc, timeout_s)
        _handshake(pub, listen, proc, outputs)  # everything before this marker was handled
        if health is not None:
            _collect_health(beats, health, proc)
    except RuntimeError as exc:
        failure = exc
    finally:
        beats.close()
        proc.terminate()
        proc.wait(timeout=20)
        errors.close()
        if log is not None:
            log.close()
        said = _error_lines(runtime / "service.log")
        if ring is not None:
            ring.close()
        pub.close()
        listen.close()
        ctx.term()
        jsonl_rows = _count_lines(runtime / "state" / "uplink.jsonl")
        shutil.rmtree(runtime, ignore_errors=True)
    if failure is not None:
        raise RuntimeError(f"{service}: {failure}" + (f"; it said: {said}" if said else "")) from None
    published = [(t, m) for t, m in outputs if t not in ("marker", "health")]
    implied = _implied(service, inputs)
    if implied and not any(t in implied for t, _ in published) and not (service == "uplink" and jsonl_rows):
        raise RuntimeError(f"{service} published nothing ({', '.join(implied)} expected from {len(inputs)} "
                           "recorded inputs)" + (f"; it said: {said}" if said else "; it logged no error"))
    return published


def _implied(service: str, inputs: list[dict[str, Any]]) -> tuple[str, ...]:
    """What ``service`` must publish when fed ``inputs``: its data topics once it got data to work on."""
    data = {"inference": ("frame",), "counter": ("detections",), "privacy": ("watermark",),
            "uplink": ("record",)}.get(service, ())
    if not any(m["topic"] in data for m in inputs):
        return ()
    return {"inference": ("detections",), "counter": ("tracks",), "privacy": ("record",),
            "uplink": ("record",)}[service]


def _count_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        return 0


def _error_lines(path: Path, last: int = 5) -> str:
    """The service's last warnings and errors (JSON log lines), else its last lines of output."""
    import json

    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    picked = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            if rec.get("level") in ("warning", "error", "critical"):
                extra = {k: v for k, v in rec.items() if k not in ("event", "level", "timestamp", "service")}
                picked.append(f"{rec.get('event')} {extra}" if extra else str(rec.get("event")))
        elif line.strip():
            picked.append(line.strip())
    return " | ".join(picked[-last:])[:1500]


class RecordedLog:
    """The durable log of the stage a replayed service follows, grown from the recording as the replay sends it
    and served on that stage's sync socket (the ZeroMQ guide's Clone pattern, as the appliance runs it). A
    recording made on a live device starts mid-stream (its first crossing is number 232): the log starts
    there, so the follower learns where it begins instead of waiting for 1..231, which no recording holds."""

    def __init__(self, runtime: Path, upstream: str, messages: Iterator[dict[str, Any]]) -> None:
        import threading

        from edgecount.runtime.store import Store

        self.upstream = upstream
        seqs = [self.seq_of(m) for m in messages if m["service"] == upstream]
        self.first = min((q for q in seqs if q), default=1)
        self.store = Store(runtime / f"recorded-{upstream}.db", synchronous="OFF")
        with self.store.transaction():
            self.store.last_seq = self.first - 1
            self.store.put_int("log.last_seq", self.first - 1)
        self.acked = 0
        self._lock = threading.Lock()  # one SQLite connection, two threads: the replay appends, the server reads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(runtime,), daemon=True)
        self._thread.start()

    def seq_of(self, m: dict[str, Any]) -> int:
        """The log number of a recorded message of the upstream's log (crossing, zone, record), else 0."""
        if m["topic"] not in ("crossing", "zone", "record"):
            return 0
        try:
            msg = decode(m["payload"])
        except MessageError:
            return 0
        return int(getattr(msg, "event_seq", 0) or getattr(msg, "log_seq", 0) or 0)

    def offer(self, m: dict[str, Any]) -> None:
        """The replay sends ``m`` now: an entry of the log from now on (in order; a gap ends the log there)."""
        seq = self.seq_of(m) if m["service"] == self.upstream else 0
        with self._lock:
            if seq == self.store.last_seq + 1:
                with self.store.transaction():
                    self.store.append(seq, m["topic"].encode(), m["payload"])

    def _serve(self, runtime: Path) -> None:
        from edgecount.runtime.durable_log import SyncServer

        ctx: zmq.Context[Any] = zmq.Context()
        server = SyncServer(ctx, runtime, self.upstream, self.store, logs.configure("replay-service", level="error"))
        poller = zmq.Poller()
        poller.register(server.sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(100):
                    with self._lock:
                        server.handle()
                    self.acked = server.acked
        finally:
            server.close()
            ctx.term()

    def wait_applied(self, listen: bus.Subscriber, outputs: list[tuple[str, Message]], proc: Any,
                     timeout_s: float) -> None:
        """Until the service acknowledged the whole log (made it durable), at most ``timeout_s``."""
        deadline = time.monotonic() + min(timeout_s, 30.0)
        while self.acked < self.store.last_seq and time.monotonic() < deadline and proc.poll() is None:
            _drain(listen, outputs)
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.store.close()


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


def _with_runtime(cfg_text: str, runtime: Path, publish: bool = False) -> str:
    import tomllib

    from edgecount.runtime.settings import for_replay, to_toml

    return to_toml(for_replay(tomllib.loads(cfg_text), runtime, publish))


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
