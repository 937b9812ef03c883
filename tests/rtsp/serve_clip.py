#!/usr/bin/python3
"""A real RTSP camera for the tests: GStreamer's RTSP server streaming an MJPEG AVI in a loop.

Runs under Debian's own Python (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good),
never imports edgecount. Usage: serve_clip.py CLIP.avi PORT  -> rtsp://127.0.0.1:PORT/cam
Prints "ready" once the server listens; SIGTERM stops it (the "camera goes away").
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    clip, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # multifilesrc loops the file; the server paces it on the pipeline clock like a live camera.
    factory.set_launch(f"( multifilesrc location={clip} loop=true ! avidemux ! jpegdec ! jpegenc quality=90 ! "
                       "rtpjpegpay name=pay0 pt=26 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
