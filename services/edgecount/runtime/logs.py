"""Structured logging: JSON lines in production, readable key=value on a terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(service: str, level: str | None = None, fmt: str | None = None, copy_to: Path | None = None) -> Any:
    """Set up structlog for this process and return a logger bound to ``service``.

    ``fmt`` is ``json`` or ``console``; by default JSON unless stderr is a terminal
    (``EDGECOUNT_LOG_FORMAT`` overrides). Logs go to stderr: the watchdog hands
    each service's stderr to the journal or to a log file. ``copy_to`` also appends every line, as JSON,
    to that file: the watchdog's own, beside its services' (``edgecount logs`` merges them).
    """
    level = (level or os.environ.get("EDGECOUNT_LOG_LEVEL") or "info").lower()
    fmt = fmt or os.environ.get("EDGECOUNT_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([_CopyToFile(copy_to)] if copy_to is not None else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=_LossyStream(sys.stderr)),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger().bind(service=service)


class _CopyToFile:
    """A structlog processor appending each event as a JSON line to a file, and passing it on unchanged."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND and held open: the size budget (logfiles.py) truncates it in place, as it does the services'.
        self.stream = _LossyStream(path.open("a", encoding="utf-8"))

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        self.stream.write(json.dumps(event, default=str) + "\n")
        self.stream.flush()
        return event


class _LossyStream:
    """stderr that drops a line it cannot write (log file on a full disk, closed pipe) instead of raising:
    a log line must never be what stops a stage. Lines dropped are counted."""

    dropped = 0

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):
            _LossyStream.dropped += 1
            return 0

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            _LossyStream.dropped += 1


def dropped_lines() -> int:
    """Log lines this process could not write."""
    return _LossyStream.dropped
