"""ZeroMQ PUB/SUB plumbing over ``ipc://`` sockets in the private runtime directory.

Every service binds one PUB socket, ``<runtime>/<service>.sock``, and connects
SUB sockets to the services it listens to. Binding and connecting may happen
in any order: ZeroMQ retries the connection until the peer's socket appears,
so start-up order does not matter. A wire message is two frames:
``[topic, msgpack payload]``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zmq

from edgecount.runtime.paths import RuntimePaths
from edgecount_core.config import MAX_IPC_PATH
from edgecount_core.messages import Message, MessageError, decode, encode

# Topics, chosen so that none is a prefix of another (ZeroMQ filters by prefix).
FRAME = b"frame"
DETECTIONS = b"detections"
TRACKS = b"tracks"
CROSSING = b"crossing"
ZONE = b"zone"
WATERMARK = b"watermark"
RECORD = b"record"
HEALTH = b"health"
MARKER = b"marker"
EOS = b"eos"
TAIL = b"tail"
SNAPSHOT = b"snapshot"



class BusError(RuntimeError):
    pass


def ensure_runtime_dir(path: str | os.PathLike[str]) -> Path:
    """Create the runtime directory private to this user (0700) and check it stayed so."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = p.stat()
    if st.st_uid != os.getuid():
        raise BusError(f"runtime directory {p} belongs to uid {st.st_uid}, not to this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(p, 0o700)
    return p


def endpoint(runtime_dir: str | os.PathLike[str], service: str) -> str:
    path = RuntimePaths(runtime_dir).bus(service)
    if len(str(path)) > MAX_IPC_PATH:
        raise BusError(f"ipc path {path} is too long for a unix socket; use a shorter runtime.dir")
    return f"ipc://{path}"


class Publisher:
    """The PUB socket of one service. Sending never blocks: past the HWM ZeroMQ drops."""

    def __init__(self, ctx: zmq.Context[Any], runtime_dir: str | os.PathLike[str], service: str,
                 hwm: int = 10000) -> None:
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 500)
        ep = endpoint(runtime_dir, service)
        path = ep.removeprefix("ipc://")
        if os.path.exists(path):
            os.unlink(path)  # stale socket file from a killed process
        self.sock.bind(ep)
        os.chmod(path, 0o600)

    def send(self, topic: bytes, msg: Message) -> None:
        # Past the high-water mark ZeroMQ drops: a publisher never waits for a slow subscriber.
        with contextlib.suppress(zmq.Again):
            self.sock.send_multipart([topic, encode(msg)], flags=zmq.NOBLOCK)

    def close(self) -> None:
        self.sock.close()


class Subscriber:
    """A SUB socket connected to some services, decoding and validating what arrives."""

    def __init__(self, ctx: zmq.Context[Any], runtime_dir: str | os.PathLike[str],
                 sources: Iterable[tuple[str, Iterable[bytes]]], log: Any, hwm: int = 10000) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        for service, topics in sources:
            self.sock.connect(endpoint(runtime_dir, service))
            for t in topics:
                self.sock.setsockopt(zmq.SUBSCRIBE, t)
        self.log = log
        self.bad = 0

    def recv(self, timeout_ms: int) -> tuple[bytes, Message] | None:
        """Next valid message, or ``None`` after ``timeout_ms`` (0 = do not wait)."""
        if timeout_ms and not self.sock.poll(timeout_ms):
            return None
        while True:
            try:
                parts = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return None
            if len(parts) != 2:
                self.bad += 1
                self.log.error("bus.bad_message", reason=f"expected 2 frames, got {len(parts)}")
                continue
            try:
                msg = decode(parts[1])
            except MessageError as exc:
                self.bad += 1
                self.log.error("bus.bad_message", topic=parts[0][:32].decode(errors="replace"),
                               reason=str(exc))
                continue
            return parts[0], msg

    def close(self) -> None:
        self.sock.close()
