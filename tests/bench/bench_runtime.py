"""Runtime benchmarks (issue 2). Prints numbers; asserts nothing.

(a) handing a 768x576 frame to another process: shared-memory ring + a msgpack
    announcement on the bus, versus pickling the frame through
    ``multiprocessing.Queue``. Both are measured in one run as a ping-pong (the
    consumer acknowledges each frame over the same ZeroMQ PUSH socket), so the
    ratio compares like with like; the acknowledgement's cost is in both.
(b) end-to-end ``replay`` fps over PETS09 versus the bare detector's
    ``invoke()`` rate on the same frames with the same thread count, and where the replay's CPU goes:
    each process's CPU time per frame (read from ``/proc`` while the replay runs).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
import zmq
from bench_footprint import cpu_s

from edgecount.assets.obtain import AssetStore
from edgecount.detection.detector import TFLiteDetector
from edgecount.runtime import bus
from edgecount.runtime.ring import RingReader, RingWriter
from edgecount.runtime.settings import load_config
from edgecount.supervisor.lifetime import process_name
from edgecount.supervisor.memory import descendants
from edgecount.tools.replay import replay
from edgecount_core.config import parse_line_arg
from edgecount_core.messages import FrameReady, Marker

ROOT = Path(__file__).resolve().parents[2]
W, H, N = 768, 576, 400


def _ring_consumer(runtime_dir: str, ready: Any) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    sub = bus.Subscriber(ctx, runtime_dir, [("bench_capture", (bus.FRAME, bus.MARKER))], structlog.get_logger())
    ack = ctx.socket(zmq.PUSH)
    ack.connect(f"ipc://{runtime_dir}/ack.sock")
    reader = RingReader(runtime_dir)
    ready.set()
    checksum = 0
    while True:
        got = sub.recv(5000)
        if got is None:
            break
        msg = got[1]
        if isinstance(msg, Marker):  # baseline: the acknowledgement round trip alone
            ack.send(b"\0" * 8 + int(time.process_time() * 1e9).to_bytes(8, "little"))
            continue
        assert isinstance(msg, FrameReady)
        view = reader.view(msg.ring, msg.slot, msg.seq)
        if view is not None:
            checksum += int(view[H // 2, W // 2, 0])  # touch the pixels
            del view
            reader.still_valid(msg.slot, msg.seq)
        ack.send(msg.seq.to_bytes(8, "little") + int(time.process_time() * 1e9).to_bytes(8, "little"))
        if msg.resend:  # the producer's end marker
            break
    reader.close()


def _consumer_cpu(first: bytes, last: bytes) -> float:
    """CPU seconds the consumer spent between two acknowledgements (it reports its own clock)."""
    return (int.from_bytes(last[8:], "little") - int.from_bytes(first[8:], "little")) / 1e9


def _queue_consumer(q: Any, ack_endpoint: str) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    ack = ctx.socket(zmq.PUSH)
    ack.connect(ack_endpoint)
    while True:
        seq, frame = q.get()
        _ = int(frame[H // 2, W // 2, 0])
        ack.send(int(seq).to_bytes(8, "little", signed=True) + int(time.process_time() * 1e9).to_bytes(8, "little"))
        if seq < 0:  # the producer's end marker
            break


def bench_handoff() -> dict[str, float]:
    frames = [np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8) for i in range(4)]
    runtime_dir = tempfile.mkdtemp(prefix="ecb-", dir="/tmp")
    try:
        ctx: zmq.Context[Any] = zmq.Context()
        pub = bus.Publisher(ctx, runtime_dir, "bench_capture")
        acks = ctx.socket(zmq.PULL)
        acks.bind(f"ipc://{runtime_dir}/ack.sock")
        ring = RingWriter(runtime_dir, 8, W, H)
        ready = mp.Event()
        p = mp.Process(target=_ring_consumer, args=(runtime_dir, ready))
        p.start()
        ready.wait()
        # Warm up until the subscription is connected.
        while True:
            seq, slot = ring.write(frames[0], time.time())
            pub.send(bus.FRAME, FrameReady(seq=seq, slot=slot, ts=0.0, width=W, height=H, ring=ring.generation))
            if acks.poll(100):
                acks.recv()
                break
        for _ in range(19):
            seq, slot = ring.write(frames[0], time.time())
            pub.send(bus.FRAME, FrameReady(seq=seq, slot=slot, ts=0.0, width=W, height=H, ring=ring.generation))
            acks.recv()
        t0, c0 = time.perf_counter(), time.process_time()
        start_seq = ring.seq
        first = last = b""
        while ring.seq < start_seq + N:
            seq, slot = ring.write(frames[ring.seq % 4], time.time())
            pub.send(bus.FRAME, FrameReady(seq=seq, slot=slot, ts=0.0, width=W, height=H, ring=ring.generation))
            last = acks.recv()
            first = first or last
        ring_s = (time.perf_counter() - t0) / N
        ring_cpu = (time.process_time() - c0 + _consumer_cpu(first, last)) / N
        # Baseline: the same ping-pong with no frame at all, to subtract from both methods.
        t0, c0 = time.perf_counter(), time.process_time()
        first = last = b""
        for i in range(N):
            pub.send(bus.MARKER, Marker(token=str(i), origin_ts=0.0))
            last = acks.recv()
            first = first or last
        base_s = (time.perf_counter() - t0) / N
        base_cpu = (time.process_time() - c0 + _consumer_cpu(first, last)) / N
        seq, slot = ring.write(frames[0], time.time())
        pub.send(bus.FRAME, FrameReady(seq=seq, slot=slot, ts=0.0, width=W, height=H, ring=ring.generation,
                                       resend=True))
        acks.recv()
        p.join(10)
        ring.close()
        pub.close()

        # The same acknowledgement channel for the queue, so only the hand-off differs.
        q: Any = mp.Queue(maxsize=4)
        p = mp.Process(target=_queue_consumer, args=(q, f"ipc://{runtime_dir}/ack.sock"))
        p.start()
        for i in range(20):
            q.put((i, frames[0]))
            acks.recv()
        t0, c0 = time.perf_counter(), time.process_time()
        first = last = b""
        for i in range(20, 20 + N):
            q.put((i, frames[i % 4]))
            last = acks.recv()
            first = first or last
        queue_s = (time.perf_counter() - t0) / N
        # mp.Queue pickles in a feeder thread of this process: process_time counts it.
        queue_cpu = (time.process_time() - c0 + _consumer_cpu(first, last)) / N
        q.put((-1, frames[0]))
        acks.recv()
        p.join(10)
        acks.close()
        ctx.term()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
    return {"ring_us_per_frame": ring_s * 1e6, "queue_us_per_frame": queue_s * 1e6,
            "queue_over_ring": queue_s / ring_s, "ring_cpu_us_per_frame": ring_cpu * 1e6,
            "queue_cpu_us_per_frame": queue_cpu * 1e6, "queue_over_ring_cpu": queue_cpu / ring_cpu,
            "ack_baseline_us": base_s * 1e6, "ack_baseline_cpu_us": base_cpu * 1e6,
            "queue_over_ring_net": (queue_s - base_s) / max(ring_s - base_s, 1e-9),
            "queue_over_ring_cpu_net": (queue_cpu - base_cpu) / max(ring_cpu - base_cpu, 1e-9)}


def _echo(endpoint: str) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.connect(endpoint)
    while True:
        msg = sock.recv()
        sock.send(msg)
        if msg == b"end":
            break


def bench_floors() -> dict[str, float]:
    """What no hand-off can beat: copying the frame's bytes once, and one ipc round trip of a few bytes."""
    src = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(N):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    runtime_dir = tempfile.mkdtemp(prefix="ecf-", dir="/tmp")
    try:
        ctx: zmq.Context[Any] = zmq.Context()
        sock = ctx.socket(zmq.PAIR)
        endpoint = f"ipc://{runtime_dir}/echo.sock"
        sock.bind(endpoint)
        p = mp.Process(target=_echo, args=(endpoint,))
        p.start()
        for _ in range(50):
            sock.send(b"12345678")
            sock.recv()
        trips = []
        for _ in range(N):
            t0 = time.perf_counter()
            sock.send(b"12345678")
            sock.recv()
            trips.append(time.perf_counter() - t0)
        sock.send(b"end")
        sock.recv()
        p.join(10)
        sock.close()
        ctx.term()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
    return {"memcpy_us": float(np.median(times)) * 1e6, "ipc_round_trip_us": float(np.median(trips)) * 1e6,
            "frame_bytes": src.nbytes}


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _cpu_by_process() -> dict[str, float]:
    """CPU seconds so far of every process below this one, by the name it gave itself (``ec-<stage>``)."""
    out: dict[str, float] = {}
    for pid in descendants(os.getpid()):
        try:
            name = process_name(pid).removeprefix("ec-")
            spent = cpu_s(pid)
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + spent
    return out


def bench_replay_vs_invoke(threads: int) -> dict[str, float]:
    cfg = load_config(ROOT / "config" / "demo.toml", overrides={"inference": {"threads": threads}})
    store = AssetStore.for_config(cfg)
    clip = store.fetch_clip("pets09")
    model = store.fetch_model(cfg.inference.model)
    det = TFLiteDetector(model, threads=cfg.inference.thread_count(os.cpu_count() or 1),
                         min_score=cfg.inference.min_score)
    cap = cv2.VideoCapture(str(clip))
    invoke_s = 0.0
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        det.prepare(bgr)
        t0 = time.perf_counter()
        det.interp.invoke()
        invoke_s += time.perf_counter() - t0
        n += 1
    invoke_fps = n / invoke_s
    lines = [parse_line_arg(f"{ln.name}:{ln.a[0]},{ln.a[1]},{ln.b[0]},{ln.b[1]}") for ln in cfg.lines]
    sampled: dict[str, Any] = {}
    own0 = _own_cpu_s()

    def sample(done: int, _expected: int) -> None:
        services = _cpu_by_process()
        if done and services:  # not the last call, made once the services are gone
            sampled.update(frames=done, cpu=services | {"watchdog + replay loop": _own_cpu_s() - own0})

    res = replay(cfg, str(clip), lines=lines, progress=sample)
    per_frame = {k: 1000 * v / sampled["frames"] for k, v in sampled.get("cpu", {}).items()}
    return {"frames": n, "invoke_fps": invoke_fps, "replay_fps": res.fps, "cpu_ms_per_frame": per_frame,
            "replay_over_invoke": res.fps / invoke_fps, "threads": cfg.inference.thread_count(os.cpu_count() or 1),
            "replay_processed": res.processed_frames, "replay_dropped": res.dropped_frames}


def main() -> int:
    os.environ.setdefault("EDGECOUNT_LOG_LEVEL", "warning")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    print(f"# edgecount runtime benchmark ({os.cpu_count()} CPUs, python {sys.version.split()[0]})")
    a = bench_handoff()
    print(f"(a) frame hand-off 768x576, wall per ping-pong: ring+bus {a['ring_us_per_frame']:.0f} us, "
          f"mp.Queue {a['queue_us_per_frame']:.0f} us -> ring {a['queue_over_ring']:.1f}x cheaper (target >= 20x)")
    print(f"    CPU of both processes per frame: ring+bus {a['ring_cpu_us_per_frame']:.0f} us, "
          f"mp.Queue {a['queue_cpu_us_per_frame']:.0f} us -> ring {a['queue_over_ring_cpu']:.1f}x cheaper")
    print(f"    minus the acknowledgement alone ({a['ack_baseline_us']:.0f} us wall, "
          f"{a['ack_baseline_cpu_us']:.0f} us CPU): ring {a['queue_over_ring_net']:.1f}x cheaper in wall time, "
          f"{a['queue_over_ring_cpu_net']:.1f}x in CPU", flush=True)
    f = bench_floors()
    floor = f["memcpy_us"] + f["ipc_round_trip_us"]
    print(f"    floors on this machine: one {f['frame_bytes'] / 1e6:.2f} MB memcpy {f['memcpy_us']:.0f} us + one ipc "
          f"round trip {f['ipc_round_trip_us']:.0f} us = {floor:.0f} us; ring+bus is "
          f"{a['ring_us_per_frame'] / floor:.2f}x the floor, mp.Queue {a['queue_us_per_frame'] / floor:.1f}x",
          flush=True)
    a.update(f)
    results = {}
    for threads in (1, 2):
        b = bench_replay_vs_invoke(threads)
        results[f"threads_{threads}"] = b
        print(f"(b) replay {b['replay_fps']:.1f} fps ({b['replay_processed']} frames, {b['replay_dropped']} "
              f"dropped) vs bare invoke() {b['invoke_fps']:.1f} fps at {threads} thread(s) -> ratio "
              f"{b['replay_over_invoke']:.2f} (target >= 0.9)", flush=True)
        cpu = b["cpu_ms_per_frame"]
        budget = 1000 * (os.cpu_count() or 1) / b["invoke_fps"]
        print(f"    CPU per frame: {sum(cpu.values()):.1f} ms in all ("
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
              + f"); at the bare invoke() rate the {os.cpu_count()} cores give {budget:.1f} ms per frame", flush=True)
    print(json.dumps({"handoff": a, "replay": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
