"""Service log files that stay inside a size budget.

Each stage writes its stderr to ``<state_dir>/logs/<stage>.log`` through a descriptor opened with
``O_APPEND``, held for the process's whole life, so the file cannot be renamed away from under it. Past the
budget the watchdog copies the file to ``<stage>.log.1`` (the one before is dropped) and truncates it in
place; the stage's next line lands at the start. Lines written between the copy and the truncation are
lost: a log, unlike a count, may lose a line. Without this, logs grow until the state partition is full.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["LOG_FILE_MAX_BYTES", "bound_log_files"]

LOG_FILE_MAX_BYTES = 8 << 20


def bound_log_files(log_dir: Path, max_bytes: int = LOG_FILE_MAX_BYTES) -> list[Path]:
    """Cut every ``*.log`` in ``log_dir`` past ``max_bytes`` back to empty, keeping one copy; those cut."""
    cut = []
    for path in sorted(log_dir.glob("*.log")):
        try:
            if path.stat().st_size <= max_bytes:
                continue
            old = path.with_name(path.name + ".1")
            old.unlink(missing_ok=True)  # room for the copy on a nearly full disk
            try:
                shutil.copyfile(path, old)
            except OSError:
                old.unlink(missing_ok=True)  # no room even for the copy: the log goes, the disk stays usable
            os.truncate(path, 0)
            cut.append(path)
        except OSError:
            continue
    return cut
