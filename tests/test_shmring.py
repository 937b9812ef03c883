"""Shared-memory frame ring: round trip, overwrite detection, stale segment replacement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from edgecount.runtime.ring import RingError, RingReader, RingWriter, segment_path


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
