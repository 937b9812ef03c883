"""A ring of frame slots in shared memory, one writer (capture) and many readers.

Layout of the segment (a file in ``/dev/shm``, mode 0600)::

    [ header: 64 B ][ slot headers: 64 B x N ][ pad to 4 KiB ][ slot 0 ] ... [ slot N-1 ]

Each slot header holds ``start_seq`` and ``end_seq`` (a seqlock): the writer
sets ``start_seq`` before it touches the pixels and ``end_seq`` after. A
reader takes a frame only if ``end_seq`` equals the sequence number it was
told about, and, after it has used the pixels, checks that ``start_seq``
still equals it; otherwise the writer lapped it and the frame is dropped.
The writer never waits for readers.

Ownership is explicit: the writer holds an exclusive ``flock`` on the
segment for as long as it lives (the kernel drops it when the process dies,
even by SIGKILL). A segment nobody holds is garbage, whoever left it:
:func:`reclaim_stale_segments` removes every such ``edgecount-*`` segment of
this user, so a killed replay or appliance never leaks shared memory.

Frames are stored as BGR ``uint8`` (OpenCV's order: capture decodes
straight into the slot). The segment's name derives from the
runtime directory, so a restarted capture finds and replaces a segment left
behind by a killed one instead of leaking it. That name can be guessed: if
another user holds it (squatting), the writer takes an unguessable one and
says so in a pointer file in the private runtime directory, where readers
look first; a reader maps only a segment of its own user. The segment's
memory is allocated when it is made: a ring that does not fit the shared
memory is refused then, with its size and what is free, instead of killing
the writer with SIGBUS at the first frame that lands past the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import secrets
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgecount.runtime.segments import _held, current_segment, reclaim_stale_segments, ring_pointer, segment_path
from edgecount_core.messages import DEFAULT_CAMERA

__all__ = ["RingError", "RingReader", "RingWriter", "reclaim_stale_segments", "segment_path"]

MAGIC = b"ECRING01"
_HDR = 64
_SLOT_HDR = 64
_PAGE = 4096
# slot header u64 fields
_START, _END, _TS, _W, _H, _C = range(6)



class RingError(RuntimeError):
    pass


def _layout(slots: int, slot_bytes: int) -> tuple[int, int]:
    data_off = -(-(_HDR + _SLOT_HDR * slots) // _PAGE) * _PAGE
    slot_stride = -(-slot_bytes // _PAGE) * _PAGE
    return data_off, slot_stride


class _Mapped:
    def __init__(self, mm: mmap.mmap) -> None:
        self._mm = mm
        if len(mm) < _HDR or bytes(mm[:8]) != MAGIC:
            raise RingError("shared-memory segment is not an edgecount frame ring")
        head = np.frombuffer(mm, dtype="<u8", count=_HDR // 8, offset=0)
        self.generation = int(head[1])
        self.slots = int(head[2])
        self.slot_bytes = int(head[3])
        del head
        # A header whose geometry does not fit the file would map pixels past its end or into the next slot.
        if not (1 <= self.slots <= 4096 and 1 <= self.slot_bytes <= 1 << 32):
            raise RingError(f"frame ring header is damaged: {self.slots} slots of {self.slot_bytes} bytes")
        self.data_off, self.stride = _layout(self.slots, self.slot_bytes)
        if self.data_off + self.stride * self.slots > len(mm):
            raise RingError(f"frame ring header describes {self.data_off + self.stride * self.slots} bytes "
                            f"but the segment has {len(mm)}")
        self.slot_hdr: npt.NDArray[np.uint64] = np.frombuffer(
            mm, dtype="<u8", count=self.slots * _SLOT_HDR // 8, offset=_HDR
        ).reshape(self.slots, _SLOT_HDR // 8)
        self.ts: npt.NDArray[np.float64] = self.slot_hdr.view("<f8")

    def pixels(self, slot: int, h: int, w: int, c: int) -> npt.NDArray[np.uint8]:
        if not (0 <= slot < self.slots and h > 0 and w > 0 and c in (1, 3, 4) and h * w * c <= self.slot_bytes):
            raise RingError(f"slot {slot} announces a {w}x{h}x{c} frame that does not fit its slot")
        off = self.data_off + slot * self.stride
        return np.frombuffer(self._mm, dtype=np.uint8, count=h * w * c, offset=off).reshape(h, w, c)

    def close(self) -> None:
        # numpy views keep exported buffers alive; drop ours before unmapping.
        self.slot_hdr = self.ts = None  # type: ignore[assignment]
        # A caller may still hold a frame view (BufferError); the OS unmaps at exit then.
        with contextlib.suppress(BufferError):
            self._mm.close()


class RingWriter:
    """Creates (replacing any stale one) and writes the frame ring. One per camera."""

    def __init__(self, runtime_dir: str | os.PathLike[str], slots: int, max_w: int, max_h: int,
                 camera: str = DEFAULT_CAMERA) -> None:
        self.path = segment_path(runtime_dir, camera)
        self.pointer = ring_pointer(runtime_dir, camera)
        self.squatted: Path | None = None
        """The usual name, when another user held it and this ring took another."""
        slot_bytes = max_w * max_h * 3
        data_off, stride = _layout(slots, slot_bytes)
        size = data_off + stride * slots
        if self._owned_by_another_user():
            self.squatted = self.path
            self.path = self.path.with_name(f"{self.path.stem}-{secrets.token_hex(8)}.ring")
        else:
            self._replace_stale()
        # Built under a private name, locked, then renamed into place: no reclaimer can ever see it unlocked.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                free = os.statvfs(tmp.parent)
                raise RingError(f"a frame ring of {size / 2**20:.0f} MiB does not fit {tmp.parent} "
                                f"({free.f_bavail * free.f_frsize / 2**20:.0f} MiB free: {exc.strerror}); fix: "
                                "lower capture.ring_slots/max_width/max_height or enlarge /dev/shm") from None
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            os.rename(tmp, self.path)
            self._point_readers_here()
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self._lock_fd = fd  # held open (and locked) for the writer's lifetime
        self.generation = secrets.randbits(62)
        head = np.frombuffer(mm, dtype="<u8", count=_HDR // 8, offset=0)
        head[1], head[2], head[3] = self.generation, slots, slot_bytes
        mm[:8] = MAGIC
        del head
        self._ring = _Mapped(mm)
        self.max_w, self.max_h = max_w, max_h
        self.seq = 0

    def _owned_by_another_user(self) -> bool:
        try:
            return self.path.stat().st_uid != os.getuid()
        except FileNotFoundError:
            return False

    def _point_readers_here(self) -> None:
        tmp = self.pointer.with_name(f".{self.pointer.name}.{os.getpid()}")
        tmp.write_text(str(self.path))
        os.replace(tmp, self.pointer)

    def _replace_stale(self) -> None:
        """Remove a segment a killed writer left at our path; refuse one a live writer or another user holds."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if st.st_uid != os.getuid():
            raise RingError(f"shared-memory segment {self.path} belongs to uid {st.st_uid}, not to this user "
                            f"(uid {os.getuid()}): another user's appliance uses the same runtime directory; "
                            "fix: give each instance its own runtime.dir")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if _held(fd):
                raise RingError(f"shared-memory segment {self.path} is held by a running capture; fix: stop "
                                "the other instance or give this one its own runtime.dir")
        finally:
            os.close(fd)
        self.path.unlink(missing_ok=True)

    @property
    def slots(self) -> int:
        return self._ring.slots

    def begin(self, width: int, height: int) -> tuple[int, int, npt.NDArray[np.uint8]]:
        """Claim the next slot: returns ``(seq, slot, view)``; fill ``view`` then call :meth:`commit`."""
        if width > self.max_w or height > self.max_h:
            raise RingError(f"frame {width}x{height} exceeds ring slots of {self.max_w}x{self.max_h}")
        self.seq += 1
        slot = self.seq % self._ring.slots
        hdr = self._ring.slot_hdr[slot]
        hdr[_START] = self.seq
        hdr[_W], hdr[_H], hdr[_C] = width, height, 3
        return self.seq, slot, self._ring.pixels(slot, height, width, 3)

    def commit(self, seq: int, ts: float) -> None:
        slot = seq % self._ring.slots
        self._ring.ts[slot, _TS] = ts
        self._ring.slot_hdr[slot, _END] = seq

    def write(self, frame_rgb: npt.NDArray[np.uint8], ts: float) -> tuple[int, int]:
        h, w = frame_rgb.shape[:2]
        seq, slot, view = self.begin(w, h)
        view[...] = frame_rgb
        self.commit(seq, ts)
        return seq, slot

    def close(self, unlink: bool = True) -> None:
        self._ring.close()
        if unlink:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                if self.pointer.read_text() == str(self.path):
                    self.pointer.unlink()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the lock: a segment left behind is now reclaimable
            self._lock_fd = -1


class RingReader:
    """Maps the ring read-only and hands out frame views with an overwrite check."""

    def __init__(self, runtime_dir: str | os.PathLike[str], camera: str = DEFAULT_CAMERA) -> None:
        self.runtime_dir = runtime_dir
        self.camera = camera
        self.path = segment_path(runtime_dir, camera)
        self._ring: _Mapped | None = None
        self.overwritten = 0

    def _open(self) -> _Mapped:
        self.path = current_segment(self.runtime_dir, self.camera)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise RingError(f"frame ring {self.path} does not exist (is capture running?)") from None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid():
                raise RingError(f"frame ring {self.path} belongs to uid {st.st_uid}, not to this user: refused "
                                "(someone else's frames)")
            size = st.st_size
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        return _Mapped(mm)

    def _ensure(self, generation: int) -> _Mapped:
        if self._ring is None or self._ring.generation != generation:
            if self._ring is not None:
                self._ring.close()
            self._ring = self._open()
            if self._ring.generation != generation:
                raise RingError("frame ring was replaced; waiting for the next announcement")
        return self._ring

    def view(self, generation: int, slot: int, seq: int) -> npt.NDArray[np.uint8] | None:
        """The frame's pixels, or ``None`` if the slot no longer holds frame ``seq``."""
        ring = self._ensure(generation)
        if not 0 <= slot < ring.slots:
            raise RingError(f"slot {slot} out of range (ring has {ring.slots})")
        hdr = ring.slot_hdr[slot]
        if int(hdr[_END]) != seq:
            self.overwritten += 1
            return None
        return ring.pixels(slot, int(hdr[_H]), int(hdr[_W]), int(hdr[_C]))

    def still_valid(self, slot: int, seq: int) -> bool:
        """True if the writer has not started another frame in ``slot`` since ``seq``."""
        assert self._ring is not None
        ok = int(self._ring.slot_hdr[slot, _START]) == seq
        if not ok:
            self.overwritten += 1
        return ok

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None

