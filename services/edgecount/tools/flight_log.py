"""The technician's flight recorder: every process's log, the watchdog's included, as one time-ordered stream.

Each process writes JSON lines to its own file (``<state>/logs/<process>.log``); to see why the device
restarted, the watchdog's ``exited with status -9`` must sit between the counter's last line before it and
its first after. Lines are merged by their timestamp. A line that is not JSON (a native library writing to
the process's stderr) is wrapped as a record with ``event = "output"`` and takes the time of the line before
it in the same file, so ``--json`` always prints JSON and the order stays the file's own.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

__all__ = ["Follower", "LogRecord", "merged_tail", "parse_line"]

TAIL_BYTES_PER_LINE = 600
"""Reading back from a file's end: about this much per line asked for (log lines are short)."""


@attrs.frozen(order=False)
class LogRecord:
    """One line of one process's log, as a record with ``timestamp``, ``service``, ``level`` and ``event``."""

    ts: str
    service: str
    record: dict[str, Any]

    def json(self) -> str:
        return json.dumps(self.record, default=str)


def parse_line(line: str, service: str, last_ts: str) -> LogRecord:
    """``line`` of ``service``'s file; ``last_ts`` is the time of the line before it in that file."""
    try:
        rec = json.loads(line)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        rec = {"timestamp": last_ts, "service": service, "level": "info", "event": "output", "line": line}
    rec.setdefault("service", service)
    ts = str(rec.get("timestamp") or last_ts)
    rec.setdefault("timestamp", ts)
    return LogRecord(ts, service, rec)


def _tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of ``path`` without reading a whole 8 MiB file when a few are asked for."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        want = max(4096, n * TAIL_BYTES_PER_LINE)
        while True:
            start = max(0, size - want)
            f.seek(start)
            data = f.read()
            lines = data.decode("utf-8", errors="replace").splitlines()
            if start > 0:
                lines = lines[1:]  # the first may be cut
            if len(lines) >= n or start == 0:
                return lines[-n:] if n else []
            want *= 4


def _records(lines: Iterable[str], service: str, last_ts: str = "") -> Iterator[LogRecord]:
    for line in lines:
        if not line.strip():
            continue
        rec = parse_line(line, service, last_ts)
        last_ts = rec.ts
        yield rec


def merged_tail(files: dict[str, Path], n: int) -> list[LogRecord]:
    """The last ``n`` records of all ``files`` (process -> path) together, oldest first."""
    per_file = []
    for service, path in files.items():
        if path.exists():
            per_file.append(list(_records(_tail_lines(path, n), service)))
    # Each file is in time order already: a merge keeps a file's own order where times tie or are missing.
    merged = list(heapq.merge(*per_file, key=lambda r: r.ts))
    return merged[-n:] if n else []


class Follower:
    """New lines of every file since it was opened, merged in time order at each poll."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.handles: dict[str, IO[str]] = {}
        self.last_ts: dict[str, str] = {}
        self.partial: dict[str, str] = {}
        """A line being written when the file was read: completed at a later poll."""
        self.files = files
        for service, path in files.items():
            self._open(service, path, at_end=True)

    def _open(self, service: str, path: Path, at_end: bool) -> None:
        if not path.exists() or service in self.handles:
            return
        fh = path.open("r", encoding="utf-8", errors="replace")
        if at_end:
            fh.seek(0, 2)
        self.handles[service] = fh

    def poll(self) -> list[LogRecord]:
        for service, path in self.files.items():
            self._open(service, path, at_end=False)  # a process that started after us
        batch: list[list[LogRecord]] = []
        for service, fh in self.handles.items():
            if fh.tell() > self.files[service].stat().st_size:
                fh.seek(0)  # cut back past its size budget (runtime/logfiles.py): read it from its new start
            text = self.partial.pop(service, "") + fh.read()
            lines = text.split("\n")
            if lines[-1]:
                self.partial[service] = lines[-1]
            recs = list(_records(lines[:-1], service, self.last_ts.get(service, "")))
            if recs:
                self.last_ts[service] = recs[-1].ts
                batch.append(recs)
        return list(heapq.merge(*batch, key=lambda r: r.ts))

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
