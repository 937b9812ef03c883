"""Why a camera gives no frame, in the technician's words, without ``--verbose``.

OpenCV only says a source did not open. The cause decides what the technician does: a missing file, a
missing ``/dev/video7``, a permission, a refused or silent network camera, a wrong password, a wrong
stream path. Each is told apart here by looking at the source directly: the file system for files and
devices, a TCP connection and one RTSP ``DESCRIBE`` (with the URL's credentials, Basic or Digest) for a
network camera. Nothing is decoded and nothing is kept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import urllib.parse

__all__ = ["why_no_frames"]


def why_no_frames(source: str, timeout_s: float = 3.0) -> str:
    """The likely cause, with what to do; the last resort says the source answered but nothing decoded."""
    if source.startswith("/dev/video") or source.isdigit():
        return _device(source if source.startswith("/dev/") else f"/dev/video{source}")
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return _rtsp(source, timeout_s)
    if scheme in ("http", "https", "rtmp", "udp", "tcp"):
        return _network(source, timeout_s)[1] or f"{_safe(source)} answers, but no frame could be decoded from it"
    return _file(source)


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _device(path: str) -> str:
    if not os.path.exists(path):
        return (f"no such device {path}: the camera is not plugged in or has another number; fix: plug it in, "
                "list the cameras with `ls /dev/video*` and set the source")
    if not os.access(path, os.R_OK | os.W_OK):
        return f"permission denied on {path}: fix: add the service user to the 'video' group"
    return (f"{path} exists but gives no frame: another program uses it, or it is not a capture node (try the "
            "other /dev/videoN of the same camera)")


def _file(path: str) -> str:
    if not os.path.exists(path):
        return f"no such file {path}; fix: the path of a video file, rtsp://..., /dev/videoN or asset:NAME"
    if os.path.isdir(path):
        return f"{path} is a directory, not a video file"
    if not os.access(path, os.R_OK):
        return f"permission denied on {path}: the service user cannot read it"
    return f"{path} could not be decoded: the file is damaged, empty or in a codec this device lacks"


def _network(url: str, timeout_s: float) -> tuple[socket.socket | None, str]:
    """A connected socket to the URL's host and port, or the reason there is none."""
    parts = urllib.parse.urlsplit(url)
    default = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}.get(parts.scheme.lower(), 554)
    host, port = parts.hostname or "", parts.port or default
    try:
        return socket.create_connection((host, port), timeout=timeout_s), ""
    except socket.gaierror:
        return None, f"unknown host {host!r}: check the camera's address (and the device's DNS)"
    except ConnectionRefusedError:
        return None, (f"connection refused by {host}:{port}: the camera is up but nothing listens on that port; "
                      "check the port and that its streaming service is on")
    except TimeoutError:
        return None, (f"no answer from {host}:{port} within {timeout_s:g} s: wrong address, the camera is off, or "
                      "a firewall drops the traffic")
    except OSError as exc:
        return None, f"cannot reach {host}:{port}: {exc.strerror or exc}"


def _describe(sock: socket.socket, url: str, auth: str = "") -> tuple[int, str]:
    """Send one RTSP DESCRIBE; the status code and the response's headers."""
    request = f"DESCRIBE {url} RTSP/1.0\r\nCSeq: {2 if auth else 1}\r\nAccept: application/sdp\r\n"
    if auth:
        request += f"Authorization: {auth}\r\n"
    sock.sendall((request + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    m = re.match(r"RTSP/1\.\d (\d{3})", head)
    return (int(m.group(1)) if m else 0), head


def _authorization(challenge: str, user: str, password: str, url: str) -> str:
    """The answer to the camera's ``WWW-Authenticate`` challenge (Basic or Digest with MD5)."""
    if challenge.lower().startswith("basic"):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"DESCRIBE:{url}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{url}", '
            f'response="{response}"')


def _rtsp(url: str, timeout_s: float) -> str:
    parts = urllib.parse.urlsplit(url)
    bare = urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")
                                                  if parts.hostname else parts.netloc))
    sock, problem = _network(url, timeout_s)
    if sock is None:
        return problem
    try:
        sock.settimeout(timeout_s)
        code, head = _describe(sock, bare)
        if code == 401 and parts.username is not None:
            challenge = next((ln.split(":", 1)[1].strip() for ln in head.splitlines()
                              if ln.lower().startswith("www-authenticate:")), "")
            code, head = _describe(sock, bare, _authorization(challenge, urllib.parse.unquote(parts.username),
                                                              urllib.parse.unquote(parts.password or ""), bare))
    except TimeoutError:
        return (f"{parts.hostname}:{parts.port or 554} accepts connections but does not answer RTSP within "
                f"{timeout_s:g} s: is it an RTSP port?")
    except OSError as exc:
        return f"{_safe(url)}: the connection broke during the RTSP request ({exc.strerror or exc})"
    finally:
        sock.close()
    if code == 401:
        if parts.username is None:
            return (f"{_safe(url)}: the camera asks for a login (401); fix: put the user and password in the URL, "
                    "rtsp://USER:PASSWORD@host/path")
        return f"{_safe(url)}: the camera refused the user name or password (401); fix: the credentials in the URL"
    if code == 404:
        return f"{_safe(url)}: the camera has no stream at {parts.path or '/'} (404); fix: the stream path"
    if code == 0:
        return f"{_safe(url)}: the answer is not RTSP; check the port"
    if code != 200:
        return f"{_safe(url)}: the camera answered RTSP {code}"
    return f"{_safe(url)} answers (RTSP 200) but no frame could be decoded: a codec this device lacks?"
