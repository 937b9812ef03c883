"""A bus fuzzer (issue 12, item 10): garbage on every socket a local process can reach changes nothing.

Two parts. Each stage alone, fed its golden recording by replay-service with random bytes, near-valid
messages and out-of-range values interleaved on the very socket its upstream publishes on: its output
equals the golden one and every piece of garbage is counted in ``bad_messages``. Then the whole
pipeline over PETS09 while the counter's and privacy filter's sync sockets and the watchdog's control
socket are flooded with garbage: no service restarts and the counts equal an undisturbed run.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from edgecount.tools.recording import normalise, read_messages, replay_service
from edgecount_core.messages import Health

from ..helpers import ROOT, edgecount

pytestmark = pytest.mark.slow
GOLDEN = ROOT / "tests" / "golden"


def _pack(**fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def garbage(topic: bytes, rng: random.Random) -> Iterator[list[bytes]]:
    """Endless bad messages on ``topic``: each is one the subscriber must drop and count."""
    near_valid = [
        _pack(type="detections", v=1, seq="7", ts=1.0, width=768, height=576),  # wrong type
        _pack(type="detections", v=2, seq=7, ts=1.0, width=768, height=576),  # unknown version
        _pack(type="detections", v=1, seq=-7, ts=1.0, width=768, height=576),  # out of range
        _pack(type="detections", v=1, seq=7, ts=float("nan"), width=768, height=576),
        _pack(type="detections", v=1, seq=2**63, ts=1.0, width=768, height=576),
        _pack(type="detections", v=1, seq=7, ts=1.0, width=-768, height=576),
        _pack(type="detections", v=1, seq=7, ts=1.0, width=768, height=576, boxes=b"\x00" * 17),
        _pack(type="crossing", v=1, event_id="x", line="v", direction="sideways", ts=1.0, track_id=1, seq=1,
              event_seq=1),
        _pack(type="crossing", v=1, event_id="x", line="v", direction="in", ts=float("inf"), track_id=1, seq=1,
              event_seq=2**64 - 1),
        _pack(type="watermark", v=1, ts=float("-inf"), seq=1),
        _pack(type="record", v=1, record_id="r", kind="line", name="v", bucket_start=0.0, bucket_s=0.0, n_in=1,
              n_out=0),
        _pack(type="eos", v=1, last_seq=1, stats={"x": [1, 2]}),
        _pack(type="marker", v=1, token=7, origin_ts=1.0),
        _pack(type="no-such-type", v=1),
        msgpack.packb([1, 2, 3]),
    ]
    while True:
        kind = rng.randrange(3)
        if kind == 0:
            yield [topic, rng.randbytes(rng.randrange(0, 200))]
        elif kind == 1:
            yield [topic, rng.choice(near_valid)]
        else:
            yield [topic, rng.choice(near_valid), b"extra frame"]


@pytest.mark.parametrize(("service", "recording", "topic"),
                         [("counter", "counter_pets09", b"detections"), ("privacy", "privacy_pets09", b"crossing")])
def test_garbage_on_a_stages_upstream_is_counted_and_changes_nothing(service: str, recording: str,
                                                                     topic: bytes) -> None:
    health: list[Health] = []
    rows = normalise(replay_service(service, GOLDEN / recording, noise=garbage(topic, random.Random(7)),
                                    health=health))
    expected = [json.loads(line) for line in (GOLDEN / recording / "expected.jsonl").read_text().splitlines()]
    assert [json.loads(json.dumps(r, sort_keys=True)) for r in rows] == expected
    inputs = len(list(read_messages(GOLDEN / recording)))
    assert health, "no heartbeat from the service after the garbage"
    assert int(health[-1].stats["bad_messages"]) >= inputs  # one piece of garbage after every input
    assert health[-1].state in ("ok", "degraded")


def _flood(runtime: Path, stop: threading.Event, sent: dict[str, int]) -> None:
    rng = random.Random(11)
    ctx: zmq.Context[Any] = zmq.Context()
    socks: dict[str, zmq.Socket[Any]] = {}
    try:
        while not stop.is_set():
            for name, kind in (("counter.sync.sock", zmq.DEALER), ("privacy.sync.sock", zmq.DEALER),
                               ("control.sock", zmq.DEALER)):
                path = runtime / name
                if name not in socks and path.exists():
                    s = ctx.socket(kind)
                    s.setsockopt(zmq.LINGER, 0)
                    s.connect(f"ipc://{path}")
                    socks[name] = s
            for name, s in socks.items():
                frames = [b""] if name == "control.sock" else []  # a DEALER speaks to REP behind an empty frame
                payload = rng.choice([
                    rng.randbytes(rng.randrange(1, 64)),
                    _pack(op="fetch", **{"from": 1, "max": "x"}),
                    _pack(op="fetch", **{"from": -3}),
                    _pack(op="ack", upto=2**63 - 1),
                    _pack(op="ack", upto=10**9),
                    _pack(cmd="restart", service=["x"]),
                    _pack(cmd="stop-everything"),
                    msgpack.packb(["status"]),
                ])
                extra = [b"surplus"] if rng.random() < 0.2 else []
                try:
                    s.send_multipart([*frames, payload, *extra], flags=zmq.NOBLOCK)
                    sent[name] = sent.get(name, 0) + 1
                except zmq.Again:
                    pass
                while s.poll(0):
                    s.recv_multipart()
            time.sleep(0.02)
    finally:
        for s in socks.values():
            s.close()
        ctx.term()


LINES = ["v:0.5,0.3,0.5,1.0", "h:0.0,0.6,1.0,0.6", "d:0.2,0.4,0.9,1.0"]


def _replay(runtime: Path | None = None) -> tuple[dict[str, Any], str]:
    args = ["replay", "asset:pets09", "--json"] + [a for line in LINES for a in ("--line", line)]
    if runtime is not None:
        args += ["--runtime-dir", str(runtime)]
    res = edgecount(*args, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    report: dict[str, Any] = json.loads(res.stdout)
    return report, res.stderr


def test_garbage_on_sync_and_control_sockets_changes_no_count(ssd_model, pets09_clip: Path) -> None:
    import shutil
    import tempfile

    clean, _ = _replay()
    runtime = Path(tempfile.mkdtemp(prefix="ecz-", dir="/tmp"))
    stop, sent = threading.Event(), {}
    flooder = threading.Thread(target=_flood, args=(runtime, stop, sent), daemon=True)
    flooder.start()
    try:
        fuzzed, stderr = _replay(runtime)
    finally:
        stop.set()
        flooder.join(timeout=10)
    logs = runtime / "state" / "logs"
    assert sent.get("counter.sync.sock", 0) > 50 and sent.get("privacy.sync.sock", 0) > 50
    assert sent.get("control.sock", 0) > 50
    assert "restart_scheduled" not in stderr and "hung" not in stderr, stderr[-2000:]
    assert fuzzed["lines"] == clean["lines"]
    assert fuzzed["processed_frames"] == clean["processed_frames"] == 795
    crashed = [f.name for f in logs.glob("*.log") if "service.crashed" in f.read_text(errors="replace")]
    assert not crashed, f"services crashed under the fuzzer: {crashed}"
    refused = sum(f.read_text(errors="replace").count("sync.bad_request") for f in logs.glob("*.log"))
    assert refused > 0  # the garbage did arrive and was answered with an error
    shutil.rmtree(runtime, ignore_errors=True)
