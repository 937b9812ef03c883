"""Replacing a file so that a reader sees the old content or the new, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_text(path: Path, text: str, mode: int, fsync: bool = True, owner: tuple[int, int] | None = None,
                 unless_changed_from: str | None = None) -> None:
    """Write ``text`` to a temporary file beside ``path`` with ``mode``, then rename it over ``path``.

    ``fsync`` makes the content durable before the rename (a configuration); a file rewritten every few
    seconds anyway (metrics) can skip it. ``owner`` (uid, gid) is given to the new file where this user may.
    With ``unless_changed_from``, ``FileChangedError`` if the file no longer holds that text (someone else
    saved it meanwhile): nothing is written.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            with contextlib.suppress(PermissionError):
                os.chown(tmp, *owner)
        if unless_changed_from is not None and path.read_text(encoding="utf-8") != unless_changed_from:
            raise FileChangedError(f"{path} was changed by someone else while it was being edited")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


class FileChangedError(RuntimeError):
    """The file changed between reading it and replacing it."""
