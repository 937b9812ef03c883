"""Where the frame rings live in shared memory, and removing the ones nobody holds.

Apart from :mod:`edgecount.runtime.ring` (which maps them with NumPy) so that the watchdog, which only
names and reclaims segments, does not load NumPy.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from edgecount.runtime.paths import RuntimePaths
from edgecount_core.camera_names import scoped
from edgecount_core.messages import DEFAULT_CAMERA

SHM_DIR = Path(os.environ.get("EDGECOUNT_SHM_DIR", "/dev/shm"))
PREFIX = "edgecount-"


def _held(fd: int) -> bool:
    """True if another open file description holds the writer's lock on this segment."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def reclaim_stale_segments(shm_dir: Path | None = None) -> list[Path]:
    """Remove every frame ring of this user that no live writer holds; returns what was removed."""
    removed = []
    for path in sorted((shm_dir or SHM_DIR).glob(f"{PREFIX}*.ring")):
        try:
            if path.stat().st_uid != os.getuid():
                continue  # another user's appliance: not ours to judge
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not _held(fd):
                path.unlink(missing_ok=True)
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def segment_path(runtime_dir: str | os.PathLike[str], camera: str = DEFAULT_CAMERA) -> Path:
    """The shared-memory file of one camera of the appliance instance using ``runtime_dir``."""
    ident = scoped(str(Path(runtime_dir).resolve()), camera)
    key = hashlib.sha1(ident.encode()).hexdigest()[:12]
    base = SHM_DIR if SHM_DIR.is_dir() else Path(runtime_dir)
    return base / f"{PREFIX}{key}.ring"


def ring_pointer(runtime_dir: str | os.PathLike[str], camera: str = DEFAULT_CAMERA) -> Path:
    """Where the writer says which segment it uses: in the private runtime directory, which no other user
    can write, so a reader never follows a name someone else chose."""
    return RuntimePaths(runtime_dir).ring_pointer(camera)


def current_segment(runtime_dir: str | os.PathLike[str], camera: str = DEFAULT_CAMERA) -> Path:
    """The segment a reader should map: the writer's pointer if it left a sound one, else the usual name."""
    try:
        named = Path(ring_pointer(runtime_dir, camera).read_text().strip())
    except (OSError, UnicodeDecodeError):
        return segment_path(runtime_dir, camera)
    usual = segment_path(runtime_dir, camera)
    if named.parent == usual.parent and named.name.startswith(PREFIX) and named.suffix == ".ring":
        return named
    return usual
