"""Test helpers that talk to a running appliance over its real bus."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import zmq

from edgecount import stages
from edgecount.runtime import bus
from edgecount_core.messages import Health

ROOT = Path(__file__).resolve().parents[1]


def edgecount(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgecount", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


class HealthWatcher:
    """Collects the heartbeats every service publishes."""

    def __init__(self, runtime_dir: Path, services: tuple[str, ...] = stages.NAMES) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sub = bus.Subscriber(self.ctx, runtime_dir, [(s, (bus.HEALTH,)) for s in services],
                                  structlog.get_logger())
        self.latest: dict[str, Health] = {}

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got = self.sub.recv(50)
            if got and isinstance(got[1], Health):
                self.latest[got[1].service] = got[1]

    def wait_for(self, cond: Callable[[dict[str, Health]], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump(0.2)
            if cond(self.latest):
                return
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: "
                             f"{ {k: (v.pid, v.state) for k, v in self.latest.items()} }")

    def close(self) -> None:
        self.sub.close()
        self.ctx.term()


def write_run_config(path: Path, runtime_dir: Path, clip: Path | str, capture: str = "", **extra: str) -> Path:
    """A fast-reacting appliance configuration looping over the clip (or reading a camera URL); ``capture``
    adds lines to the [capture] section."""
    text = f"""
[runtime]
dir = "{runtime_dir}"
state_dir = "{runtime_dir / 'state'}"

[capture]
source = "{clip}"
realtime = true
loop = true
{capture}

[inference]
model = "{extra.get('model', 'ssd_mobilenet_v1_coco_quant')}"
threads = 1

[[lines]]
name = "v"
a = [0.5, 0.2]
b = [0.5, 1.0]

[watchdog]
heartbeat_s = 0.2
hang_timeout_s = {extra.get('hang', '3')}
startup_grace_s = {extra.get('grace', '20')}
backoff_initial_s = 0.2
backoff_max_s = 1
restart_budget = {extra.get('budget', '10')}
restart_window_s = 60
"""
    path.write_text(text)
    return path


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=20)


def start_appliance(cfg: Path, stderr: Any = subprocess.DEVNULL,
                    env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
    """`edgecount run` in its own process group (so a test can kill the whole tree)."""
    return subprocess.Popen([sys.executable, "-m", "edgecount", "run", "--config", str(cfg)], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
                            text=stderr is subprocess.PIPE, env=env)


def stop_appliance(proc: subprocess.Popen[Any], timeout: float = 30) -> str:
    """Stop it as systemd would (SIGTERM), killing the group if it hangs; returns its stderr if piped."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            stop_group(proc)
    return stderr or ""


# -- MQTT: a real broker and an observer -------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A private Mosquitto on a free loopback port, with persistence so sessions survive a restart."""

    def __init__(self, workdir: Path) -> None:
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.exe).exists():
            pytest.fail("mosquitto is not installed (`just test-deps` installs it)")
        self.port = free_port()
        self.dir = workdir
        self.conf = workdir / "mosquitto.conf"
        import getpass

        # Run as ourselves: as root, mosquitto would switch to its own user, who cannot read our temp dir.
        self.conf.write_text(f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence true\n"
                             f"persistence_location {workdir}/\nautosave_interval 1\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


class MqttCapture:
    """A subscriber with a persistent session that records every message under edgecount/#.

    Each capture has a client id of its own: two clients with one id take the session from each other in
    turn, and a capture an earlier test left connected would receive half of a later test's records."""

    _made = itertools.count()

    def __init__(self, port: int, topic_filter: str = "edgecount/#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-capture-{port}-{os.getpid()}-{next(self._made)}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        time.sleep(0.5)

    def _on_message(self, c: Any, u: Any, m: Any) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload)))

    def records(self) -> list[dict[str, Any]]:
        """The bucket records (lines, zones, events): what sums to the people counted. A line's running total
        of the day (``counts/total/...``) restates them and is left out; see :meth:`totals`."""
        with self.lock:
            return [json.loads(p) for t, p in self.messages if "/counts/" in t and "/counts/total/" not in t]

    def totals(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if "/counts/total/" in t]

    def close(self) -> None:
        """Stop receiving (idempotent)."""
        self.client.loop_stop()
        self.client.disconnect()


# -- TLS: a throw-away CA and a server certificate for 127.0.0.1 ---------------------------
def make_tls_files(d: Path) -> tuple[Path, Path, Path]:
    """``(ca.crt, server.crt, server.key)`` made with openssl in ``d``, valid for localhost and 127.0.0.1."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=edgecount test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.crt", d / "server.crt", d / "server.key"


# -- HTTP: a webhook receiver ------------------------------------------------------------
class WebhookReceiver:
    """A local HTTP(S) server that records POSTed JSON arrays and the Authorization header of every request.

    ``mode`` chooses the answer: "ok" (204), "fail" (503), "redirect" (302 to ``redirect_to``), "garbage"
    (not HTTP at all), "long_header" (a header line longer than any client accepts), "hang" (no answer).
    """

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.received: list[Any] = []
        self.auth: list[str] = []
        self.requests: list[str] = []
        self.mode = "ok"
        self.fail_next = 0
        self.redirect_to = ""
        self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                receiver.requests.append(self.command)
                receiver.auth.append(self.headers.get("Authorization", ""))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = "fail" if receiver.fail_next else receiver.mode
                receiver.fail_next = max(0, receiver.fail_next - 1)
                if mode == "ok":
                    receiver.received.extend(json.loads(body))
                    self.send_response(204)
                    self.end_headers()
                elif mode == "fail":
                    self.send_response(503)
                    self.end_headers()
                elif mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", receiver.redirect_to)
                    self.end_headers()
                elif mode == "garbage":
                    self.wfile.write(b"\x00\x01 this is not HTTP\r\n\r\n")
                elif mode == "long_header":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
                elif mode == "hang":
                    receiver.release.wait(30)

            do_POST = do_GET = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}/counts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def mount_tmpfs(path: Path, size: str) -> str:
    """Mount a tmpfs of ``size`` on ``path`` (root, or sudo without a password); "" or why it could not."""
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)]
    if os.geteuid() != 0:
        cmd = ["sudo", "-n", *cmd]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


def umount(path: Path) -> None:
    cmd = ["umount", "-l", str(path)]
    subprocess.run(cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd], capture_output=True, timeout=30)


def close_service(svc: Any) -> None:
    """Stop a stage built in-process (no loop was started): its resources, then its sockets."""
    svc.teardown()
    svc.pub.close()
    for sub in svc.subs:
        sub.close()
    svc.ctx.term()
