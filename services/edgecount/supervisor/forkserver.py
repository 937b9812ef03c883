"""Start stages from a fork server that has already imported what they share, so they share its memory.

Every stage would otherwise load Python, NumPy, pydantic, ZeroMQ, structlog, OpenCV and the TFLite
runtime on its own. The watchdog asks a fork server, which imported them once, to fork each stage: the
pages of those modules stay shared (copy-on-write) between all stages, which lowers the appliance's total
PSS (measured in ``tests/bench/bench_footprint.py``).

The server is forked from the watchdog itself while the watchdog is still single-threaded, so the
interpreter and the libraries the watchdog imported (ZeroMQ, msgpack, pydantic, structlog) are shared with
it as well. A process that already runs threads (a replay under a progress bar, a test) must not fork: it
starts the same server as a fresh interpreter (``python -m edgecount.supervisor.forkserver FD``) instead.
Unlike multiprocessing's fork server it needs no resource-tracker process (a 7 MB interpreter we never
used: the frame rings are reclaimed by the watchdog).

A stage forked this way behaves as one started with ``python -m edgecount.stages``: its own process, logs
to its own file, dies with the supervisor. The stages are the server's children, so the server reports
their exits over its socket; :class:`StageProcess` turns that into the ``subprocess.Popen`` interface
the watchdog uses.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from edgecount.supervisor.lifetime import alive, die_with_supervisor, name_process

# The stages are started by name, across the process boundary, as `python -m edgecount.stages` is:
# the runtime never imports them.
STAGE_ENTRY = "edgecount.stages.__main__"

# A stage whose server died is reported with this code once it is gone (its real status went to init).
LOST = -int(signal.SIGKILL)


class ForkServerError(RuntimeError):
    """The fork server is gone or refused a request."""


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 2  # cannot tell: do not fork


class ForkServer:
    """The supervisor's end: start the server, ask it for processes, collect their exit codes."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.preload = tuple(preload)
        """Modules the server imports once, before it forks anything (the stages declare them: STAGES).
        Nothing in them may start a thread or open a socket at import."""
        self.pid: int | None = None
        self.mode = ""  # "fork" (shares the supervisor's memory) or "exec" (a fresh interpreter)
        self._sock: socket.socket | None = None
        self._exits: dict[int, int] = {}
        self._started: dict[int, int] = {}  # request id -> pid
        self._live: set[int] = set()
        self._orphans: set[int] = set()  # started by a server that died
        self._abandoned: set[int] = set()  # request ids we stopped waiting for
        self._next_id = 0

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if hasattr(os, "fork") and _threads() == 1:
            # Objects the server inherits are frozen here too: our collector would otherwise write to them.
            gc.collect()
            gc.freeze()
            pid = os.fork()
            if pid == 0:  # the server
                ours.close()
                code = 1
                try:
                    serve(theirs, self.preload)
                    code = 0
                except BaseException:  # a server must never return into the supervisor's code
                    traceback.print_exc()
                finally:
                    os._exit(code)
            self.mode = "fork"
        else:
            os.set_inheritable(theirs.fileno(), True)
            pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "edgecount.supervisor.forkserver",
                                                  str(theirs.fileno()), *self.preload], os.environ)
            self.mode = "exec"
        theirs.close()
        self._sock, self.pid = ours, pid

    def spawn(self, entry: str, args: list[Any], timeout: float = 60.0) -> int:
        """Fork a process that runs ``entry`` (``"module:function"``) with ``args``; its pid.

        The first request waits for the server's imports. A request not answered within ``timeout`` is
        abandoned: should the server fork it later, that process is killed at once, so a caller that
        started the work some other way never has it running twice."""
        if self._sock is None:
            self.start()
        assert self._sock is not None
        self._next_id += 1
        rid = self._next_id
        try:
            self._sock.send(json.dumps({"id": rid, "entry": entry, "args": args}).encode())
        except OSError as exc:
            self._lost()
            raise ForkServerError(f"the fork server is gone ({exc})") from exc
        deadline = time.monotonic() + timeout
        while rid not in self._started:
            if self._sock is None:
                raise ForkServerError("the fork server died before it started the process")
            left = deadline - time.monotonic()
            if left <= 0:
                self._abandoned.add(rid)
                raise ForkServerError(f"the fork server did not answer within {timeout:g} s")
            self._drain(min(left, 1.0))
        pid = self._started.pop(rid)
        if pid < 0:
            raise ForkServerError("the fork server could not fork")
        self._live.add(pid)
        return pid

    def exitcode(self, pid: int, timeout: float = 0.0) -> int | None:
        """The process's exit code (negative: killed by that signal), or None while it runs."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain(0.0)
            if pid in self._orphans and not alive(pid):
                self._orphans.discard(pid)
                self._exits[pid] = LOST
            if pid in self._exits or pid not in self._live | self._orphans:
                return self._exits.get(pid, LOST)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self._sock is not None:
                self._drain(min(left, 0.2))
            else:
                time.sleep(min(left, 0.05))

    def close(self) -> None:
        """Stop the server (it exits when its socket closes) and reap it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):
                for _ in range(100):
                    if os.waitpid(self.pid, os.WNOHANG)[0]:
                        break
                    time.sleep(0.05)
                else:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
            self.pid = None

    def _drain(self, timeout: float) -> None:
        if self._sock is None:
            return
        if not select.select([self._sock], [], [], timeout)[0]:
            return
        while True:
            try:
                data = self._sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            msg = json.loads(data)
            if msg["op"] == "started" and int(msg["id"]) in self._abandoned:
                self._abandoned.discard(int(msg["id"]))
                if int(msg["pid"]) > 0:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(msg["pid"]), signal.SIGKILL)
            elif msg["op"] == "started":
                pid = int(msg["pid"])
                # The server reaps a process before its pid can be reused and reports in order, so an exit
                # on record for this pid is an older process's: it must not make the new one look dead.
                self._exits.pop(pid, None)
                self._orphans.discard(pid)
                self._started[int(msg["id"])] = pid
            elif msg["op"] == "exited":
                pid = int(msg["pid"])
                self._live.discard(pid)
                self._exits[pid] = int(msg["code"])

    def _lost(self) -> None:
        """The server died. Its processes die with it (their parent-death signal); they are reported as
        exited once they are gone, and the next spawn starts a new server."""
        self.close()
        self._orphans |= self._live
        self._live.clear()


def _preload(modules: Sequence[str]) -> None:
    for name in modules:  # one that is not installed here (the Edge TPU's runtime) is imported when needed
        with contextlib.suppress(ImportError):
            import_module(name)
    # The collector would otherwise walk (and so write to) every object imported here, in every forked
    # stage, turning shared pages private.
    gc.collect()
    gc.freeze()


def serve(sock: socket.socket, preload: Sequence[str] = ()) -> None:
    """The server's loop: fork a process per request, report each one's pid and exit code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us, also on a terminal's Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_supervisor(os.getppid())
    name_process("ec-forkserver")
    server = os.getpid()
    _preload(preload)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready = select.select([sock.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        _report_exits(sock)
        if sock.fileno() in ready:
            data = sock.recv(65536)
            if not data:
                return  # the supervisor closed its end or died
            req = json.loads(data)
            try:
                pid = os.fork()
            except OSError:
                pid = -1
            if pid == 0:
                sock.close()
                os.close(wake_r)
                os.close(wake_w)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                os._exit(_child(server, str(req["entry"]), list(req["args"])))
            sock.send(json.dumps({"op": "started", "id": req["id"], "pid": pid}).encode())


def _report_exits(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            sock.send(json.dumps({"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _child(server: int, entry: str, args: list[Any]) -> int:
    code = 1
    try:
        # Dying with the server tells the supervisor when it is safe to start another in our place.
        die_with_supervisor(server)
        module, func = entry.split(":")
        result = getattr(import_module(module), func)(*args)
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # report it as a crashed process, never return into the server
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    return code


def run_stage(name: str, config: str, runtime_dir: str, log_path: str | None, watchdog_pid: int) -> int:
    """The forked stage: its own log file on stdout/stderr, stdin from /dev/null, then the stage's loop."""
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    entry = import_module(STAGE_ENTRY)
    return int(entry.run_forked(name, config, runtime_dir, watchdog_pid))


class StageProcess:
    """A forked stage with the part of the ``subprocess.Popen`` interface the watchdog uses."""

    def __init__(self, server: ForkServer, name: str, config: Path, runtime_dir: Path,
                 log_path: Path | None) -> None:
        self._server = server
        self.pid: int = server.spawn(f"{__name__}:run_stage", [name, str(config), str(runtime_dir),
                                                              str(log_path) if log_path else None, os.getpid()])
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        if self._code is None:
            self._code = self._server.exitcode(self.pid)
        return self._code

    def wait(self, timeout: float | None = None) -> int:
        if self._code is None:
            self._code = self._server.exitcode(self.pid, 1e9 if timeout is None else timeout)
        if self._code is None:
            raise subprocess.TimeoutExpired(f"edgecount stage {self.pid}", timeout or 0.0)
        return self._code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """``python -m edgecount.supervisor.forkserver FD [MODULE...]``: serve on the inherited socket FD, having
    imported the modules."""
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    serve(sock, args[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
