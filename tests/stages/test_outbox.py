"""Outbox bounding (property-based) and the resend protocol between two services."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import structlog
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount.runtime.durable_log import Follower, SyncServer
from edgecount.runtime.store import Store
from edgecount_core.messages import Crossing, Message, encode
from edgecount_core.outbox import PendingRecord, plan_compaction

from ..helpers import close_service

NOW = 1_800_000_000.0


@st.composite
def outboxes(draw: Any) -> list[PendingRecord]:
    n = draw(st.integers(0, 120))
    names = draw(st.lists(st.sampled_from(["door", "gate", "stairs", "lift"]), min_size=1, max_size=4, unique=True))
    start = NOW - draw(st.integers(0, 60 * 86400))
    rows = []
    for i in range(n):
        t = start + i * 60
        name = draw(st.sampled_from(names))
        kind = draw(st.sampled_from(["line", "line", "zone", "event"]))
        rows.append(PendingRecord(i + 1, f"s/d/{kind}/{name}/{int(t)}", kind, name, t, 60.0,
                                  draw(st.integers(0, 50)), draw(st.integers(0, 50))))
    return rows


@settings(max_examples=300)
@given(outboxes(), st.integers(10, 80), st.floats(3600, 90 * 86400))
def test_compaction_bounds_the_outbox_and_accounts_for_every_count(rows: list[PendingRecord], max_rows: int,
                                                                    max_age: float) -> None:
    plan = plan_compaction(rows, max_rows, max_age, NOW, keep_recent=max_rows // 2)
    deleted = set(plan.delete)
    kept = [r for r in rows if r.row_id not in deleted] + list(plan.insert)
    assert len(kept) <= max(max_rows, 0) or not rows
    # Nothing vanishes silently: what is kept plus what is reported dropped is what there was.
    assert sum(r.n_in for r in kept) + plan.dropped_in == sum(r.n_in for r in rows)
    assert sum(r.n_out for r in kept) + plan.dropped_out == sum(r.n_out for r in rows)
    assert len({r.record_id for r in kept}) == len(kept)
    # Nothing too old survives.
    assert all(r.bucket_start + r.bucket_s >= NOW - max_age for r in kept)


@given(outboxes())
def test_small_outbox_is_left_alone(rows: list[PendingRecord]) -> None:
    recent = [r for r in rows if r.bucket_start > NOW - 86400]
    plan = plan_compaction(recent, 1000, 90 * 86400, NOW)
    assert plan.empty and plan.dropped_records == 0


def _crossing(n: int) -> Crossing:
    return Crossing(event_id=f"x:{n}", line="door", direction="in" if n % 2 else "out", ts=float(n),
                    track_id=n, seq=n, event_seq=n)


def _published_log(path: Path, n: int) -> Store:
    """A publisher's durable log holding crossings 1..n."""
    store = Store(path)
    with store.transaction():
        for k in range(1, n + 1):
            store.append(k, b"crossing", encode(_crossing(k)))
    return store


def test_follower_recovers_gaps_and_ignores_duplicates(tmp_path: Path, runtime_dir: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    log = structlog.get_logger()
    store = _published_log(tmp_path / "pub.db", 10)
    server = SyncServer(ctx, runtime_dir, "pub", store, log)
    applied: list[int] = []

    def apply(msg: Message) -> None:
        assert isinstance(msg, Crossing)
        applied.append(msg.event_seq)

    # A subscriber that (after a restart) had applied up to 3 and then hears 7 live.
    f = Follower(ctx, runtime_dir, "pub", 3, apply, lambda m: int(getattr(m, "event_seq", 0)), log)
    f.on_message(_crossing(7))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and f.applied < 10:
        server.handle()
        f.handle()
        time.sleep(0.01)
    assert applied == list(range(4, 11))
    f.on_message(_crossing(9))  # a late live copy of something already recovered
    assert f.duplicates == 1 and applied == list(range(4, 11))
    # The acknowledgement lets the publisher trim exactly what was applied.
    f.ack()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and store.pending():
        server.handle()
        time.sleep(0.01)
    assert store.pending() == 0 and store.last_seq == 10
    f.close()
    server.close()
    store.close()
    ctx.term()


def test_store_refuses_gaps_and_rolls_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with store.transaction():
        store.append(1, b"t", b"a")
    try:
        with store.transaction():
            store.append(2, b"t", b"b")
            raise RuntimeError("killed mid-transaction")
    except RuntimeError:
        pass
    assert store.last_seq == 1 and [s for s, _, _ in store.read_from(1)] == [1]
    try:
        store.append(5, b"t", b"c")
    except ValueError as exc:
        assert "gap" in str(exc)
    else:
        raise AssertionError("a gap was accepted")
    store.close()


def test_sync_and_control_sockets_answer_garbage_with_errors(tmp_path: Path, runtime_dir: Path) -> None:
    from edgecount.runtime.settings import load_config
    from edgecount.supervisor.watchdog import Watchdog

    ctx: zmq.Context[Any] = zmq.Context()
    log = structlog.get_logger()
    store = _published_log(tmp_path / "pub.db", 5)
    server = SyncServer(ctx, runtime_dir, "pub", store, log)
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"ipc://{runtime_dir}/pub.sync.sock")

    def ask(*frames: bytes) -> dict[str, Any] | None:
        dealer.send_multipart(list(frames))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            server.handle()
            if dealer.poll(10):
                reply: dict[str, Any] = msgpack.unpackb(dealer.recv(), raw=False)
                return reply
        return None

    for bad in (b"\xc1garbage", msgpack.packb([1, 2]), msgpack.packb({"op": "fetch", "from": 1, "max": "x"}),
                msgpack.packb({"op": "fetch", "from": -5}), msgpack.packb({"op": "ack", "upto": 2**63 - 1}),
                msgpack.packb({"op": "ack", "upto": 6}), msgpack.packb({"op": "drop_table"})):
        reply = ask(bad)
        assert reply is not None and "error" in reply, bad
    assert ask(b"one", b"two") is None  # a frame too many: logged and dropped, the server lives on
    assert store.pending() == 5, "a bogus acknowledgement trimmed the log"
    assert ask(msgpack.packb({"op": "fetch", "from": 1, "max": 2}))["entries"]
    assert ask(msgpack.packb({"op": "ack", "upto": 5})) == {"acked": 5} and store.pending() == 0
    dealer.close()
    server.close()
    store.close()

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n')
    wd = Watchdog(load_config(cfg_file), cfg_file, runtime_dir, services=())
    req = ctx.socket(zmq.REQ)
    req.connect(f"ipc://{runtime_dir}/control.sock")
    for frames in ([b"one", b"two"], [b"\xc1"], [msgpack.packb(["status"])], [msgpack.packb({"cmd": "x"})],
                   [msgpack.packb({"cmd": "restart", "service": 7})]):
        req.send_multipart(frames)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not req.poll(10):
            wd._serve_control()
        reply = msgpack.unpackb(req.recv(), raw=False)
        assert reply["ok"] is False and reply["error"], frames
    req.send(msgpack.packb({"cmd": "status"}))
    while not req.poll(10):
        wd._serve_control()
    assert msgpack.unpackb(req.recv(), raw=False)["ok"] is True
    req.close()
    wd.stop_all()
    ctx.term()


def test_the_uplinks_health_carries_the_whole_devices_state(tmp_path: Path, runtime_dir: Path) -> None:
    """A camera down makes the device "degraded" in the health the operator receives (issue 12, item 1)."""
    from edgecount.runtime.settings import load_config
    from edgecount.stages.uplink import Uplink

    ctx: zmq.Context[Any] = zmq.Context()
    watchdog = ctx.socket(zmq.REP)  # stands in for the supervisor's control socket
    watchdog.bind(f"ipc://{runtime_dir}/control.sock")
    answer = threading.Thread(target=lambda: (watchdog.recv(), watchdog.send(msgpack.packb(
        {"ok": True, "state": "degraded", "degraded": ["capture"]}))), daemon=True)
    answer.start()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n')
    up = Uplink(load_config(cfg), runtime_dir)
    try:
        assert up._device_state() == ("degraded", ["capture"])
        answer.join(timeout=5)
        watchdog.close()
        (runtime_dir / "control.sock").unlink()
        assert up._device_state() == ("ok", [])  # no supervisor (replay-service): its own state
    finally:
        close_service(up)
        ctx.term()


@settings(max_examples=300)
@given(outboxes(), st.integers(10, 80), st.lists(st.integers(0, 130), min_size=1, max_size=3),
       st.booleans())
def test_compaction_never_gives_a_sink_a_count_twice(rows: list[PendingRecord], max_rows: int, cursors: list[int],
                                                    ancient: bool) -> None:
    """Each sink has delivered the rows up to its cursor (the file ahead, the broker behind). Before, merged
    rows got new ids at the end and a sink that had the originals got their sum again: 60 people became 115."""
    max_age = 1e9 if not ancient else 30 * 86400
    plan = plan_compaction(rows, max_rows, max_age, NOW, keep_recent=max_rows // 2, cursors=cursors)
    deleted = set(plan.delete)
    after = [r for r in rows if r.row_id not in deleted] + list(plan.insert)
    assert len({r.row_id for r in after}) == len(after), "two rows share a row id"
    assert len({r.record_id for r in after}) == len(after)
    total = sum(r.n_in for r in rows)
    for cursor in cursors:
        had = sum(r.n_in for r in rows if r.row_id <= cursor)
        gets = sum(r.n_in for r in after if r.row_id > cursor)
        assert had + gets <= total, f"a sink at {cursor} counts {had + gets} of {total}"
        if plan.dropped_records == 0:
            assert had + gets == total


def test_compaction_with_the_broker_down_does_not_double_the_file(tmp_path: Path, runtime_dir: Path) -> None:
    """jsonl + MQTT, the broker unreachable, a small outbox: the file delivers everything at once and the
    broker's backlog is merged. Before: 60 people became 115 in the jsonl file."""
    import socket

    from edgecount.runtime.settings import load_config
    from edgecount.stages.uplink import Uplink
    from edgecount_core.messages import CountRecord

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
                   '[uplink]\nsinks = ["jsonl", "mqtt"]\n[uplink.outbox]\nmax_rows = 10\n'
                   f'[uplink.mqtt]\nhost = "127.0.0.1"\nport = {port}\n')
    up = Uplink(load_config(cfg), runtime_dir)
    up.setup()
    try:
        hour_ago = (int(time.time()) // 3600 - 1) * 3600
        for n in range(1, 61):  # one person a minute for the last hour
            start = hour_ago + (n - 1) * 60
            up._apply(CountRecord(record_id=f"s/d/line/door/{start}", kind="line", name="door",
                                  bucket_start=float(start), bucket_s=60.0, n_in=1, n_out=0, log_seq=n))
            up._deliver()
            if n % 5 == 0:
                up._housekeeping()
        up._deliver()
        backlog = up.backlog()
        queued = up.outbox.store.db.execute("SELECT SUM(n_in) FROM outbox WHERE kind = 'line'").fetchone()[0]
    finally:
        close_service(up)
    rows = [json.loads(x) for x in (runtime_dir / "state" / "uplink.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows)
    lines = [r for r in rows if r["kind"] == "line"]  # the running totals of the day restate them
    assert sum(r["in"] for r in lines) == 60
    assert 0 < backlog <= 20 and queued == 60  # the broker's share: merged, every person still in it
