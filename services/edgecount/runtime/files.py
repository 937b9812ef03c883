"""Replacing a file so that a reader sees the old content or the new, never half of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_text(path: Path, text: str, mode: int, fsync: bool = True) -> None:
    """Write ``text`` to a temporary file beside ``path`` with ``mode``, then rename it over ``path``.

    ``fsync`` makes the content durable before the rename (a configuration); a file rewritten every few
    seconds anyway (metrics) can skip it.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
