"""A full disk is a state the appliance reports and waits out, never a crash.

SQLite says ``database or disk is full`` and file writes fail with ENOSPC (or EDQUOT). Let either escape a
stage and the watchdog restarts it into the same full disk until it gives up, and nothing is counted while
the disk stays full. Stages instead roll back to what they last committed, report ``degraded``, keep
heartbeating and try again after a pause; counting resumes by itself once there is room.
"""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["describe", "is_disk_full"]

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says there is no room left to write."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.OperationalError) and "disk is full" in str(seen):
            return True
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
