#!/usr/bin/python3
"""A network camera inside the test image: JPEG frames served as an MJPEG stream over HTTP at 10 fps.

Standard library only (runs on Debian's python3 in the guest). Killing it is the camera going away.
Usage: mjpeg_camera.py PORT FRAMES_DIR
"""

import http.server
import socketserver
import sys
import time
from pathlib import Path

FRAMES = [p.read_bytes() for p in sorted(Path(sys.argv[2]).glob("*.jpg"))]


class Stream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        n = 0
        try:
            while True:
                jpeg = FRAMES[n % len(FRAMES)]
                n += 1
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                 + jpeg + b"\r\n")
                time.sleep(0.1)
        except OSError:
            return

    def log_message(self, *args: object) -> None:
        pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("127.0.0.1", int(sys.argv[1])), Stream).serve_forever()
