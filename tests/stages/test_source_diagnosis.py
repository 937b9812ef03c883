"""Camera failures name their cause without --verbose (issue 31): before, all of them read "delivers no frame"."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecount.stages.source_diagnosis import why_no_frames

from ..helpers import free_port


def test_files_and_devices(tmp_path: Path) -> None:
    assert why_no_frames(str(tmp_path / "door.mp4")).startswith("no such file")
    assert "is a directory" in why_no_frames(str(tmp_path))
    (bad := tmp_path / "bad.avi").write_bytes(b"not a video")
    assert "could not be decoded" in why_no_frames(str(bad))
    assert why_no_frames("/dev/video97").startswith("no such device /dev/video97")
    assert why_no_frames("97").startswith("no such device /dev/video97")


class _FakeCamera:
    """An RTSP camera that wants Digest login ``admin``/``right`` and serves only ``/live``."""

    def __init__(self, silent: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while not self.silent:
                    data = conn.recv(4096).decode()
                    if not data:
                        break
                    conn.sendall(self._answer(data).encode())
                while self.silent and conn.recv(4096):  # reads the request, never answers, until hung up
                    pass

    def _answer(self, request: str) -> str:
        uri = request.split()[1]
        auth = re.search(r'response="(\w+)"', request)
        ha1 = hashlib.md5(b"admin:cam:right").hexdigest()
        want = hashlib.md5(f"{ha1}:n0nce:{hashlib.md5(f'DESCRIBE:{uri}'.encode()).hexdigest()}".encode()).hexdigest()
        if auth is None or auth.group(1) != want:
            return 'RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Digest realm="cam", nonce="n0nce"\r\n\r\n'
        if not uri.endswith("/live"):
            return "RTSP/1.0 404 Not Found\r\nCSeq: 2\r\n\r\n"
        return "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 0\r\n\r\n"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def camera() -> Iterator[_FakeCamera]:
    cam = _FakeCamera()
    yield cam
    cam.close()


def test_network_cameras_say_which_of_login_path_port_or_address_is_wrong(camera: _FakeCamera) -> None:
    base = f"127.0.0.1:{camera.port}"
    assert "asks for a login" in why_no_frames(f"rtsp://{base}/live")
    wrong = why_no_frames(f"rtsp://admin:wrong@{base}/live")
    assert "refused the user name or password" in wrong and "wrong" not in wrong  # no password in messages
    assert "no stream at /nope" in why_no_frames(f"rtsp://admin:right@{base}/nope")
    assert "RTSP 200" in why_no_frames(f"rtsp://admin:right@{base}/live")
    assert "connection refused" in why_no_frames(f"rtsp://127.0.0.1:{free_port()}/live")
    assert "unknown host" in why_no_frames("rtsp://camera.invalid/live")


def test_a_port_that_never_speaks_rtsp() -> None:
    cam = _FakeCamera(silent=True)
    try:
        assert "does not answer RTSP" in why_no_frames(f"rtsp://127.0.0.1:{cam.port}/live", timeout_s=0.5)
    finally:
        cam.close()
