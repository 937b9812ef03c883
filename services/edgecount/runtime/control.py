"""The CLI's side of the watchdog's control socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import zmq


class NotRunning(RuntimeError):
    pass


def ask(runtime_dir: Path, request: dict[str, Any], timeout_ms: int = 3000) -> dict[str, Any]:
    path = Path(runtime_dir) / "control.sock"
    if not path.exists():
        raise NotRunning(f"the appliance is not running (no control socket at {path})")
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"ipc://{path}")
        sock.send(msgpack.packb(request))
        if not sock.poll(timeout_ms):
            raise NotRunning(f"the appliance does not answer on {path} (stopped or hung)")
        reply: dict[str, Any] = msgpack.unpackb(sock.recv(), raw=False)
        return reply
    finally:
        sock.close()
        ctx.term()
