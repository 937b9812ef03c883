"""A damaged or deleted state file (issue 32, item 5): the service starts, and nothing downstream takes the
new log's entries for duplicates of the old one's.

Before: a counter.db that SQLite could not read kept the counter from ever starting (a restart loop), and
deleting it, the obvious fix, made the counter number its events from 1 again while privacy, which had
applied up to N, dropped every new event as a duplicate: counts silently gone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog
import zmq

from edgecount.runtime.durable_log import Follower, SyncServer
from edgecount.runtime.store import Store
from edgecount_core.messages import Crossing, Message, encode


def _crossing(n: int) -> Crossing:
    return Crossing(event_id=f"x:{n}", line="door", direction="in", ts=float(n), track_id=n, seq=n, event_seq=n)


def test_a_damaged_store_is_set_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    path = tmp_path / "counter.db"
    path.write_bytes(b"this is not an SQLite database" * 200)
    store = Store(path)
    assert store.set_aside is not None and store.set_aside.read_bytes().startswith(b"this is not")
    assert store.last_seq == 0
    with store.transaction():
        store.append(1, b"crossing", encode(_crossing(1)))
    store.close()
    again = Store(path)  # the fresh one is fine: kept
    assert again.set_aside is None and again.last_seq == 1
    again.close()


def test_a_truncated_store_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "privacy.db"
    store = Store(path)
    with store.transaction():
        for n in range(1, 300):
            store.append(n, b"crossing", encode(_crossing(n)) * 20)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a power cut on a card that lies about fsync
    fresh = Store(path)
    assert fresh.set_aside is not None and fresh.last_seq == 0
    fresh.close()


def _pump(follower: Follower, server: SyncServer, seconds: float = 2.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        server.handle()
        follower.handle()
        time.sleep(0.01)


def test_a_follower_follows_a_log_that_started_again(tmp_path: Path, runtime_dir: Path) -> None:
    """The counter's log was set aside (or deleted) after privacy had applied 40 events: the new log's
    events 1..5 are new, and all five are applied once."""
    ctx: zmq.Context[Any] = zmq.Context()
    log = structlog.get_logger()
    store = Store(tmp_path / "counter.db")
    with store.transaction():
        for n in range(1, 6):
            store.append(n, b"crossing", encode(_crossing(n)))
    server = SyncServer(ctx, runtime_dir, "counter", store, log)
    applied: list[int] = []

    def apply(msg: Message) -> None:
        applied.append(int(getattr(msg, "event_seq", 0)))

    follower = Follower(ctx, runtime_dir, "counter", 40, apply, lambda m: int(getattr(m, "event_seq", 0)), log)
    try:
        follower.on_message(_crossing(3))  # live, before anything says the log restarted: not yet applied
        follower.on_tail(store.last_seq)  # the counter's periodic tail: last 5, below our 40
        _pump(follower, server)
        follower.ack()
        _pump(follower, server, 0.3)
    finally:
        follower.close()
        server.close()
        ctx.term()
    assert applied == [1, 2, 3, 4, 5] and follower.applied == 5 and follower.resets == 1
    assert store.first_seq() == 6  # trimmed only after they were applied
    store.close()


def test_a_follower_that_lost_its_state_goes_on_from_the_logs_first_entry(tmp_path: Path, runtime_dir: Path) -> None:
    """Privacy's state was lost (applied 0) while the counter's log, trimmed to 231, still holds 232..236. Before,
    the follower asked for 1 and got 232.. again and again, for ever (it handled only an empty answer)."""
    ctx: zmq.Context[Any] = zmq.Context()
    log = structlog.get_logger()
    store = Store(tmp_path / "counter.db")
    with store.transaction():
        store.last_seq = 231
        for n in range(232, 237):
            store.append(n, b"crossing", encode(_crossing(n)))
    server = SyncServer(ctx, runtime_dir, "counter", store, log)
    applied: list[int] = []
    follower = Follower(ctx, runtime_dir, "counter", 0, lambda m: applied.append(int(getattr(m, "event_seq", 0))),
                        lambda m: int(getattr(m, "event_seq", 0)), log)
    try:
        _pump(follower, server)
    finally:
        follower.close()
        server.close()
        ctx.term()
    assert applied == [232, 233, 234, 235, 236] and follower.lost == 231
    store.close()
