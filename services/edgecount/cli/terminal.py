"""Keep the technician's terminal clean: native libraries' chatter goes to the log, errors come as one line.

FFmpeg, V4L2, TFLite/XNNPACK and ZeroMQ write straight to file descriptor 2, around Python. For the
duration of a command, fd 2 is a pipe drained into the structured log at debug level (and echoed with
``--verbose``), while Python's own ``sys.stderr`` — the command's messages, tables and progress bars —
keeps the real terminal. Finalizer noise ("Exception ignored in ...", e.g. from a half-built Edge TPU
delegate when libedgetpu is missing) goes to the log too. An unexpected exception becomes one line
naming the cause and the file holding the full trace.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from edgecount.runtime import logs


@contextlib.contextmanager
def native_output_to_log(verbose: bool) -> Iterator[None]:
    """Route fd 2 (native libraries) into the log for the duration; Python's stderr stays the terminal."""
    sys.stderr.flush()
    saved_logging = structlog.get_config()
    terminal_fd = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    old_stderr, old_hook = sys.stderr, sys.unraisablehook
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(terminal_fd), "wb", buffering=0), encoding="utf-8",
                                  errors="replace", line_buffering=True, write_through=True)
    # Rich looks sys.stderr up when it prints; structlog is configured again to write there too.
    log = logs.configure("cli", level="debug" if verbose else "warning")

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    log.debug("native.output", line=line[:500])

    def unraisable(u: Any) -> None:
        log.debug("python.unraisable", object=repr(u.object)[:200],
                  error=f"{type(u.exc_value).__name__}: {u.exc_value}"[:300])

    sys.unraisablehook = unraisable
    reader = threading.Thread(target=drain, name="native-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        import gc

        gc.collect()  # finalizers of failed native objects run now, into the log
        sys.stderr.flush()
        os.dup2(terminal_fd, 2)  # closes the pipe's write end: the reader sees EOF
        os.close(terminal_fd)
        reader.join(timeout=2)
        sys.stderr = old_stderr
        sys.unraisablehook = old_hook
        structlog.configure(**saved_logging)  # whoever configured logging before gets it back as it was


def report_unexpected(exc: BaseException, command: str) -> str:
    """Write the full trace to a file; return the one line the technician sees."""
    trace = "".join(traceback.format_exception(exc))
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    for directory in (Path(base) / "edgecount", Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "cli-errors.log"
            with path.open("a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} edgecount {command}\n{trace}\n")
            where = str(path)
            break
        except OSError:
            continue
    else:
        where = "nowhere (no writable state or temporary directory)"
    cause = str(exc).splitlines()[0] if str(exc) else ""
    return f"unexpected error in `edgecount {command}`: {type(exc).__name__}: {cause} (full trace in {where})"
