"""Shared-memory frame ring: round trip, overwrite detection, stale segment replacement."""

from __future__ import annotations

import os
import signal
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecount.runtime.ring import RingError, RingReader, RingWriter, reclaim_stale_segments, segment_path


def _frame(value: int, w: int = 64, h: int = 48) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_round_trip_and_private_mode(runtime_dir: Path) -> None:
    w = RingWriter(runtime_dir, slots=4, max_w=64, max_h=48)
    try:
        seq, slot = w.write(_frame(7), ts=1.5)
        r = RingReader(runtime_dir)
        view = r.view(w.generation, slot, seq)
        assert view is not None and view.shape == (48, 64, 3) and int(view[0, 0, 0]) == 7
        assert r.still_valid(slot, seq)
        assert stat.S_IMODE(os.stat(w.path).st_mode) == 0o600
        del view
        r.close()
    finally:
        w.close()
    assert not segment_path(runtime_dir).exists()


def test_reader_detects_a_slot_overwritten_before_and_while_reading(runtime_dir: Path) -> None:
    w = RingWriter(runtime_dir, slots=3, max_w=64, max_h=48)
    r = RingReader(runtime_dir)
    try:
        seq1, slot1 = w.write(_frame(1), ts=0.0)
        view = r.view(w.generation, slot1, seq1)
        assert view is not None
        # The writer laps the ring while we hold the view: the check after use catches it.
        for i in range(3):
            w.write(_frame(10 + i), ts=0.0)
        assert not r.still_valid(slot1, seq1)
        del view
        # Announced frame already gone before we looked at it.
        assert r.view(w.generation, slot1, seq1) is None
        assert r.overwritten == 2
        # A slot that is being written (start set, end not yet) is not handed out.
        seq, slot, v = w.begin(64, 48)
        assert r.view(w.generation, slot, seq) is None
        w.commit(seq, 0.0)
        assert r.view(w.generation, slot, seq) is not None
        del v
    finally:
        r.close()
        w.close()


def test_writer_never_waits_for_readers(runtime_dir: Path) -> None:
    w = RingWriter(runtime_dir, slots=3, max_w=64, max_h=48)
    r = RingReader(runtime_dir)
    try:
        seq, slot = w.write(_frame(0), ts=0.0)
        held = r.view(w.generation, slot, seq)
        for i in range(100):  # would deadlock if the writer honoured readers
            w.write(_frame(i % 250), ts=float(i))
        assert w.seq == 101
        del held
    finally:
        r.close()
        w.close()


def test_restarted_writer_replaces_a_stale_segment_and_readers_follow(runtime_dir: Path) -> None:
    w1 = RingWriter(runtime_dir, slots=3, max_w=64, max_h=48)
    w1.close(unlink=False)  # as if capture was killed: the segment stays behind
    assert segment_path(runtime_dir).exists()
    w2 = RingWriter(runtime_dir, slots=3, max_w=64, max_h=48)
    r = RingReader(runtime_dir)
    try:
        assert w2.generation != w1.generation
        seq, slot = w2.write(_frame(5), ts=0.0)
        v = r.view(w2.generation, slot, seq)
        assert v is not None and int(v[0, 0, 0]) == 5
        del v
        with pytest.raises(RingError, match="replaced"):
            r.view(w1.generation, slot, seq)
    finally:
        r.close()
        w2.close()
    assert [p for p in segment_path(runtime_dir).parent.glob(segment_path(runtime_dir).name)] == []


def test_oversized_frame_is_refused(runtime_dir: Path) -> None:
    w = RingWriter(runtime_dir, slots=3, max_w=32, max_h=32)
    try:
        with pytest.raises(RingError, match="exceeds"):
            w.write(_frame(1, 64, 48), ts=0.0)
    finally:
        w.close()


_WRITER = """
import sys, time
from edgecount.runtime.ring import RingWriter
w = RingWriter(sys.argv[1], slots=3, max_w=64, max_h=48)
print(w.path, flush=True)
time.sleep(600)
"""


def _writer_process(runtime_dir: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(runtime_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_writers_ring_is_reclaimed_a_live_ones_is_not(tmp_path: Path) -> None:
    import tempfile

    dirs = [Path(tempfile.mkdtemp(prefix="ecr-", dir="/tmp")) for _ in range(2)]
    killed, killed_path = _writer_process(dirs[0])
    alive, alive_path = _writer_process(dirs[1])
    try:
        killed.send_signal(signal.SIGKILL)  # like a replay killed by the technician: no clean-up at all
        killed.wait(timeout=10)
        assert killed_path.exists()
        removed = reclaim_stale_segments()
        assert killed_path in removed and not killed_path.exists()
        assert alive_path.exists() and alive_path not in removed
        with pytest.raises(RingError, match="held by a running capture"):
            RingWriter(dirs[1], slots=3, max_w=64, max_h=48)  # never steal a live writer's ring
    finally:
        alive.kill()
        alive.wait(timeout=10)
        reclaim_stale_segments()
    assert not alive_path.exists()


@pytest.mark.parametrize("damage", ["slots", "slot_bytes", "short", "magic"])
def test_a_reader_rejects_a_ring_whose_geometry_does_not_fit(runtime_dir: Path, damage: str) -> None:
    w = RingWriter(runtime_dir, slots=3, max_w=64, max_h=48)
    try:
        seq, slot = w.write(_frame(1), ts=0.0)
        with open(w.path, "r+b") as f:
            if damage == "slots":
                f.seek(16)
                f.write(struct.pack("<Q", 2**40))
            elif damage == "slot_bytes":
                f.seek(24)
                f.write(struct.pack("<Q", 64 * 48 * 3 * 1000))
            elif damage == "short":
                f.truncate(8)
            else:
                f.write(b"NOTARING")
        r = RingReader(runtime_dir)
        with pytest.raises(RingError):
            r.view(w.generation, slot, seq)
        r.close()
    finally:
        w.close()


def test_a_frame_header_larger_than_its_slot_is_rejected(runtime_dir: Path) -> None:
    w = RingWriter(runtime_dir, slots=3, max_w=64, max_h=48)
    r = RingReader(runtime_dir)
    try:
        seq, slot = w.write(_frame(1), ts=0.0)
        with open(w.path, "r+b") as f:  # the slot header's width field claims a far wider frame
            f.seek(64 + slot * 64 + 3 * 8)
            f.write(struct.pack("<Q", 10**6))
        with pytest.raises(RingError, match="does not fit"):
            r.view(w.generation, slot, seq)
    finally:
        r.close()
        w.close()


def test_a_squatted_ring_name_is_left_to_its_owner_and_readers_follow_ours(runtime_dir: Path) -> None:
    """Another user made a segment under our ring's (guessable) name. Before: capture refused to start, and
    restarted until the watchdog gave up. Now the ring takes an unguessable name, the pointer in the
    private runtime directory leads readers to it, and no reader maps the squatter's segment."""
    if os.getuid() != 0:
        pytest.skip("needs root to create a segment owned by another user")
    path = segment_path(runtime_dir)
    path.write_bytes(b"x" * 4096)
    os.chown(path, 65534, 65534)
    try:
        with pytest.raises(RingError, match="belongs to uid 65534"):
            RingReader(runtime_dir).view(1, 0, 1)  # no pointer yet: the usual name, and it is not ours
        w = RingWriter(runtime_dir, slots=3, max_w=64, max_h=48)
        assert w.squatted == path and w.path != path and w.path.name.startswith("edgecount-")
        seq, slot, view = w.begin(64, 48)
        view[:] = 7
        w.commit(seq, 1.0)
        got = RingReader(runtime_dir).view(w.generation, slot, seq)
        assert got is not None and int(got[0, 0, 0]) == 7
        w.close(unlink=True)
        assert not w.path.exists() and path.exists()  # the squatter's file is not ours to remove
    finally:
        path.unlink()


@pytest.fixture
def small_shm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Shared memory of 2 MiB (a tmpfs in place of /dev/shm); unmounted after, which leaves the directory."""
    import edgecount.runtime.segments as segments

    from ..helpers import mount_tmpfs, umount

    shm = tmp_path / "shm"
    shm.mkdir()
    why = mount_tmpfs(shm, "2m")
    if why:
        pytest.skip(f"cannot mount a small tmpfs here ({why})")
    monkeypatch.setattr(segments, "SHM_DIR", shm)
    try:
        yield shm
    finally:
        umount(shm)


def test_a_ring_that_does_not_fit_the_shared_memory_is_refused_at_once(small_shm: Path, tmp_path: Path) -> None:
    """Before: the segment was made sparse and the capture died of SIGBUS at the first frame past the free
    memory (every camera's capture, the whole device)."""
    with pytest.raises(RingError, match="does not fit"):
        RingWriter(tmp_path, slots=8, max_w=640, max_h=480)
    assert not list(small_shm.iterdir())  # nothing half-made left behind
    small = RingWriter(tmp_path, slots=3, max_w=64, max_h=48)
    small.close(unlink=True)


def test_a_capture_without_room_for_its_ring_waits_degraded(small_shm: Path, runtime_dir: Path,
                                                           pets09_clip: Path) -> None:
    """The capture stays up, heartbeating and degraded with the reason, and makes its ring once there is
    room; before, it died (SIGBUS) and was restarted until the watchdog gave up on the whole device."""
    from edgecount.runtime.settings import load_config
    from edgecount.stages.capture import Capture

    from ..helpers import umount

    cfg = runtime_dir / "c.toml"
    cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
                   f'[capture]\nsource = "{pets09_clip}"\nring_slots = 8\nmax_width = 768\nmax_height = 576\n')
    svc = Capture(load_config(cfg), runtime_dir)
    try:
        svc.setup()
        assert svc.state == "degraded" and "does not fit" in str(svc.stats()["ring_error"])
        assert not svc.video.is_open
        umount(small_shm)  # room again: the same directory, no longer a 2 MiB tmpfs
        svc.outage.retry_at = 0.0  # not waiting out the back-off
        svc.tick()
        assert svc.state == "ok" and svc.stats()["ring_error"] == "" and svc.video.is_open
    finally:
        svc.teardown()
        svc.pub.close()
        svc.ctx.term()
