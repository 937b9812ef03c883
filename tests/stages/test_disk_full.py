"""A full disk, piece by piece (issue 32, item 2): what is recognised as one, what each stage gives back
when a commit fails, and what bounds the files the appliance itself grows. The whole appliance on a full
tmpfs is ``tests/system/test_faults.py::test_e_…``."""

from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecount import stages
from edgecount.runtime.logfiles import bound_log_files
from edgecount.runtime.space import is_disk_full
from edgecount.runtime.store import Store
from edgecount.stages.uplink_sinks import JsonlSink, OutRow
from edgecount_core.messages import Crossing, Detections, Watermark

from ..helpers import close_service


def _full_store(path: Path) -> Store:
    """A store whose file may not grow: SQLite's own ``database or disk is full``."""
    store = Store(path)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    return store


def test_what_counts_as_a_full_disk(tmp_path: Path) -> None:
    store = _full_store(tmp_path / "s.db")
    with pytest.raises(sqlite3.OperationalError) as caught, store.transaction():
        store.put("k", b"x" * 100_000)
    assert is_disk_full(caught.value)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    wrapped = RuntimeError("commit failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert is_disk_full(wrapped)
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_a_failed_commit_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    store = _full_store(tmp_path / "s.db")
    before = store.last_seq
    with pytest.raises(sqlite3.OperationalError), store.transaction():
        store.append(store.next_seq(), b"t", b"x" * 100_000)
    assert store.last_seq == before and store.pending() == 0
    store.db.execute("PRAGMA max_page_count = 1000000")
    with store.transaction():
        store.append(store.next_seq(), b"t", b"y")
    assert store.last_seq == before + 1


def _config(runtime_dir: Path) -> Any:
    from edgecount.runtime.settings import load_config

    cfg = runtime_dir / "c.toml"
    cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
                   '[[lines]]\nname = "door"\na = [0.5, 0.0]\nb = [0.5, 1.0]\n')
    return load_config(cfg)


class _DiskFillsAtCommit:
    """The store's connection, but the next COMMIT that writes ``what`` fails as on a full disk (the real thing,
    a full tmpfs under the whole appliance, is ``tests/system/test_faults.py``'s): the transaction is rolled back."""

    def __init__(self, db: sqlite3.Connection, what: str) -> None:
        self.db, self.what, self.armed, self.wrote, self.refused = db, what, True, False, 0

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("BEGIN"):
            self.wrote = False
        if self.what in sql:
            self.wrote = True
        if sql == "COMMIT" and self.armed and self.wrote:
            self.armed = False
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def _walk(seq: int, x: float) -> Detections:
    box = np.array([[x - 20, 200, x + 20, 320]], np.float32)
    return Detections.from_arrays(seq=seq, ts=1000.0 + seq / 10, width=640, height=480, boxes=box,
                                  scores=np.array([0.9], np.float32), classes=np.zeros(1, np.float32))


def test_the_counter_forgets_a_frame_it_could_not_commit(runtime_dir: Path) -> None:
    """A person walks across the door line and the disk is full for the frame of the crossing. Before, the
    counter kept the frame in memory (its tracker stepped, the line crossed, the frame taken as seen), so
    the frame sent again counted nothing: the crossing was lost."""
    from edgecount.stages.counter import Counter

    svc = Counter(_config(runtime_dir), runtime_dir)
    sent: list[Any] = []
    svc.pub.send = lambda topic, msg: sent.append(msg)  # type: ignore[method-assign]
    svc.store.db = fault = _DiskFillsAtCommit(svc.store.db, "INSERT INTO log")  # type: ignore[assignment]
    try:
        for seq in range(1, 26):  # crosses x = 320 around frame 12
            frame = _walk(seq, 100 + 20 * (seq - 1))
            try:
                svc.handle(b"detections", frame)
            except sqlite3.OperationalError as exc:
                assert is_disk_full(exc)
                svc.after_write_failure()
                svc.handle(b"detections", frame)  # not acknowledged: capture sends it again
    finally:
        svc.store.db = fault.db
        close_service(svc)
    crossings = [m for m in sent if isinstance(m, Crossing)]
    assert fault.refused == 1, "the commit of the crossing was never refused"
    assert [(c.line, c.event_seq) for c in crossings] == [("door", 1)]


def test_privacy_applies_again_what_it_could_not_commit(runtime_dir: Path) -> None:
    """Before, the crossing whose commit failed stayed counted in memory and was counted again when the
    counter's log sent it once more: one person, two in the record."""
    from edgecount.stages.privacy import Privacy

    svc = Privacy(_config(runtime_dir), runtime_dir)
    published: list[Any] = []
    svc.pub.send = lambda topic, msg: published.append(msg)  # type: ignore[method-assign]
    try:
        def crossing(n: int) -> Crossing:
            return Crossing(event_id=f"c:{n}", line="door", direction="in", ts=1000.0 + n, track_id=n, seq=n,
                            event_seq=n)

        svc.handle(b"crossing", crossing(1))
        svc.store.db = fault = _DiskFillsAtCommit(svc.store.db, "INSERT INTO kv")  # type: ignore[assignment]
        for n in (2, 3):
            try:
                svc.handle(b"crossing", crossing(n))
            except sqlite3.OperationalError as exc:
                assert is_disk_full(exc)
                svc.after_write_failure()
                svc.handle(b"crossing", crossing(n))  # the counter's log sends it again
        svc.handle(b"watermark", Watermark(ts=1200.0, seq=9, event_seq=3))
        svc.store.db = fault.db
        applied = svc.follower.applied
    finally:
        close_service(svc)
    door = [m for m in published if getattr(m, "name", "") == "door"]
    assert fault.refused == 1 and applied == 3
    assert sum(r.n_in for r in door) == 3


def _rows(start: int, n: int) -> list[OutRow]:
    return [OutRow(i, {"id": f"r{i}", "kind": "line", "in": 1, "out": 0, "pad": "x" * 200})
            for i in range(start, start + n)]


def test_the_jsonl_file_is_rotated_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "uplink.jsonl"
    sink = JsonlSink(path, max_bytes=10_000, keep=2)
    for batch in range(20):
        sink.offer(_rows(batch * 10 + 1, 10))
    sink.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["uplink.jsonl", "uplink.jsonl.1", "uplink.jsonl.2"]
    assert all(f.stat().st_size < 10_000 + 10 * 300 for f in files)
    ids = [json.loads(line)["id"] for f in (files[2], files[1], files[0]) for line in f.read_text().splitlines()]
    assert ids == [f"r{i}" for i in range(int(ids[0][1:]), 201)]  # the newest, in order, no half line
    assert sink.confirmed() == 200 and sink.rotations >= 2


def test_a_jsonl_write_on_a_full_disk_confirms_nothing(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "uplink.jsonl")
    sink.offer(_rows(1, 3))
    sink.close()
    sink.fd = JsonlSink(Path("/dev/full")).fd  # every write: ENOSPC
    with pytest.raises(OSError) as caught:
        sink.offer(_rows(4, 3))
    assert is_disk_full(caught.value) and sink.confirmed() == 3


def test_service_logs_are_cut_back_past_their_budget(tmp_path: Path) -> None:
    big, small = tmp_path / "counter.log", tmp_path / "uplink.log"
    big.write_bytes(b"line\n" * 3000)
    small.write_bytes(b"line\n")
    with big.open("ab") as writer:  # a stage's O_APPEND descriptor, held across the cut
        assert bound_log_files(tmp_path, max_bytes=10_000) == [big]
        writer.write(b"after\n")
    assert big.read_bytes() == b"after\n" and (tmp_path / "counter.log.1").stat().st_size == 15_000
    assert small.read_bytes() == b"line\n" and not (tmp_path / "uplink.log.1").exists()


def test_a_service_waiting_for_room_shows_in_metrics_and_doctor(tmp_path: Path) -> None:
    from edgecount.runtime.settings import load_config
    from edgecount.supervisor.metrics import render, samples
    from edgecount.tools.doctor import _disk

    rows = [{"service": "counter", "state": "degraded", "stats": {"disk_full_s": 42.0, "log_lines_dropped": 3}},
            {"service": "uplink", "state": "ok", "stats": {}}]
    figs = stages.figures_by_stage()
    text = render(samples(rows, figs), figs)
    assert 'edgecount_service_disk_full_seconds{service="counter"} 42' in text
    assert 'edgecount_log_lines_dropped_total{service="counter"} 3' in text
    assert 'disk_full_seconds{service="uplink"}' not in text
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[runtime]\nstate_dir = "{tmp_path}/state"\n')
    check = _disk(load_config(cfg), {"services": rows})
    assert check.status == "fail" and "counter for 42 s" in check.detail
    assert _disk(load_config(cfg), {"services": rows[1:]}).status == "pass"
