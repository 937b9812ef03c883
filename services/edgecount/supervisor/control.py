"""The watchdog's control socket, both sides: the supervisor answers on it, the CLI asks on it.

A 0600 unix socket in the private runtime directory (``control.sock``), one msgpack map per request and per
reply. The server answers every request it took, a malformed one with ``{"ok": False, "error": ...}``; what
a command does is the supervisor's (:meth:`ControlServer.serve` takes the handler).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

from edgecount.runtime.paths import RuntimePaths


class NotRunning(RuntimeError):
    pass


def ask(runtime_dir: Path, request: dict[str, Any], timeout_ms: int = 3000) -> dict[str, Any]:
    path = RuntimePaths(runtime_dir).control
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


class ControlServer:
    """The supervisor's end: bound at ``<runtime_dir>/control.sock``, answering without blocking."""

    def __init__(self, ctx: zmq.Context[Any], runtime_dir: Path) -> None:
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        path = RuntimePaths(runtime_dir).control
        path.unlink(missing_ok=True)
        self.sock.bind(f"ipc://{path}")
        path.chmod(0o600)

    def serve(self, handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Answer every request waiting now with ``handle(request)``."""
        while True:
            try:
                parts = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            # REP must answer every request it took, so a malformed one gets an error reply.
            reply: dict[str, Any]
            if len(parts) != 1:
                reply = {"ok": False, "error": f"bad request: expected 1 frame, got {len(parts)}"}
            else:
                try:
                    req = msgpack.unpackb(parts[0], raw=False)
                    reply = handle(req) if isinstance(req, dict) else {
                        "ok": False, "error": "bad request: a request is a map"}
                except Exception as exc:
                    reply = {"ok": False, "error": f"bad request: {type(exc).__name__}"}
            self.sock.send(msgpack.packb(reply, use_bin_type=True))

    def close(self) -> None:
        self.sock.close()
