"""Issue #5 fault scenarios against a real Mosquitto broker.

(a) services killed with SIGKILL at random moments during a replay, (b) the
broker stopped for a stretch and restarted, (c) the whole process tree killed
(power cut) and restarted, (d) everything that reached the broker checked for
anything but counts.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import zmq

from edgecount.runtime import bus
from edgecount.runtime.store import Store
from edgecount.supervisor.lifetime import process_name
from edgecount.supervisor.memory import descendants
from edgecount_core.messages import EndOfStream

from ..helpers import ROOT, Broker, HealthWatcher, MqttCapture, mount_tmpfs, stop_group, umount

pytestmark = pytest.mark.slow

LINES = [("v_centre", 0.5, 0.3, 0.5, 1.0), ("v_left", 0.3, 0.3, 0.3, 1.0), ("h_mid", 0.0, 0.6, 1.0, 0.6),
         ("diag", 0.2, 0.4, 0.9, 1.0), ("v_right", 0.72, 0.3, 0.72, 1.0)]
BUCKET_S = 10


def unique_totals(records: list[dict[str, Any]]) -> tuple[dict[str, dict[str, int]], int]:
    """Per-line totals over unique record ids; also checks every copy of an id is identical."""
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["id"] in seen:
            assert seen[r["id"]] == r, f"two different records share the id {r['id']}"
        seen[r["id"]] = r
    totals: dict[str, dict[str, int]] = {}
    for r in seen.values():
        if r["kind"] == "line":
            t = totals.setdefault(r["name"], {"in": 0, "out": 0})
            t["in"] += r["in"]
            t["out"] += r["out"]
    return totals, len(records) - len(seen)


def write_config(path: Path, port: int, extra: str = "") -> Path:
    lines = "".join(f'\n[[lines]]\nname = "{n}"\na = [{ax}, {ay}]\nb = [{bx}, {by}]\n' for n, ax, ay, bx, by in LINES)
    path.write_text(f"""
[device]
site = "test"
id = "dev1"

[inference]
model = "ssd_mobilenet_v1_coco_quant"
threads = 1

[privacy]
bucket_s = {BUCKET_S}

[uplink]
sinks = ["jsonl", "mqtt"]

[uplink.mqtt]
host = "127.0.0.1"
port = {port}
max_inflight = 5
reconnect_max_s = 2

[watchdog]
heartbeat_s = 0.3
hang_timeout_s = 10
backoff_initial_s = 0.3
backoff_max_s = 1
restart_budget = 20
{extra}
{lines}""")
    return path


def run_replay(cfg: Path, runtime_dir: Path | None = None) -> subprocess.Popen[str]:
    # --publish: these runs prove delivery to a real broker (a replay delivers only to its own file otherwise).
    args = [sys.executable, "-m", "edgecount", "replay", "asset:pets09", "--config", str(cfg), "--json", "--publish"]
    if runtime_dir is not None:
        args += ["--runtime-dir", str(runtime_dir)]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def device_record_ids(state_dir: Path) -> set[str]:
    """The ids of every record the device delivered to its local sink: what the broker must get too."""
    path = state_dir / "uplink.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {r["id"] for r in rows if r["kind"] != "snapshot"}


def wait_for_records(cap: MqttCapture, expected_ids: set[str], timeout: float = 180) -> None:
    """Wait (on the condition, with a generous deadline for a loaded machine) until every id arrived."""
    assert expected_ids, "no record ids to wait for"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expected_ids <= {r["id"] for r in cap.records() + cap.totals()}:
            return
        time.sleep(0.2)
    missing = expected_ids - {r["id"] for r in cap.records() + cap.totals()}
    raise AssertionError(f"{len(missing)} records never reached the broker: {sorted(missing)[:5]}")


def stop_replay(proc: subprocess.Popen[str], watcher: HealthWatcher, runtime: Path) -> None:
    watcher.close()
    if proc.poll() is None:
        stop_group(proc)
    shutil.rmtree(runtime, ignore_errors=True)


def assert_quiet_run_counts(proc: subprocess.Popen[str], out: str, err: str, cap: MqttCapture, delivered: set[str],
                            baseline: dict[str, Any]) -> int:
    """The disturbed replay ended well, processed every frame, and both its report and the broker hold the
    undisturbed run's counts. Returns how many deliveries were repeats (same id, same content)."""
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["processed_frames"] == 795 and report["frames"] == 795
    assert report["lines"] == baseline["report"]["lines"]
    wait_for_records(cap, delivered)
    totals, duplicates = unique_totals(cap.records())
    cap.close()
    assert totals == baseline["totals"]
    return duplicates


@pytest.fixture()
def cap(broker: Broker) -> Iterator[MqttCapture]:
    """What reaches the broker during one test; closed after it, however the test ended."""
    capture = MqttCapture(broker.port)
    yield capture
    capture.close()


@pytest.fixture(scope="module")
def baseline(broker: Broker, tmp_path_factory: pytest.TempPathFactory, pets09_clip: Path, ssd_model) -> dict[str, Any]:
    """An undisturbed replay: the reference every fault scenario must reproduce."""
    cap = MqttCapture(broker.port)
    cfg = write_config(tmp_path_factory.mktemp("base") / "c.toml", broker.port)
    runtime = Path(tempfile.mkdtemp(prefix="ecl-", dir="/tmp"))
    proc = run_replay(cfg, runtime)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out)
    wait_for_records(cap, device_record_ids(runtime / "state"))
    shutil.rmtree(runtime, ignore_errors=True)
    totals, _ = unique_totals(cap.records())
    with cap.lock:
        messages = list(cap.messages)
    cap.close()
    assert sum(c["in"] + c["out"] for c in report["lines"].values()) > 20
    assert totals == report["lines"], "what reached the broker differs from what the replay reports"
    return {"report": report, "messages": messages, "totals": totals}


def test_a_random_sigkills_lose_and_double_nothing(broker: Broker, baseline: dict[str, Any], tmp_path: Path,
                                                   machine_load: str, cap: MqttCapture) -> None:
    cfg = write_config(tmp_path / "c.toml", broker.port)
    runtime = Path(tempfile.mkdtemp(prefix="ecf-", dir="/tmp"))
    proc = run_replay(cfg, runtime)
    watcher = HealthWatcher(runtime, ("counter", "privacy", "uplink"))
    rng = random.Random(int(os.environ.get("EDGECOUNT_FAULT_SEED", "5")))
    kills: list[str] = []
    try:
        watcher.wait_for(lambda h: len(h) == 3, 60, "services up")
        watcher.wait_for(lambda h: int(h["counter"].stats.get("processed", 0)) > 30, 60, "counting started")
        while proc.poll() is None and len(kills) < 9:
            watcher.pump(rng.uniform(0.1, 0.6))
            victim = ("counter", "privacy", "uplink")[len(kills) % 3] if len(kills) < 3 else \
                rng.choice(["counter", "privacy", "uplink"])
            h = watcher.latest.get(victim)
            if h is None or proc.poll() is not None:
                continue
            try:
                os.kill(h.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills.append(victim)
            old = h.pid
            # (unless the replay just finished, in which case nothing restarts)
            watcher.wait_for(lambda hh, v=victim, o=old: hh[v].pid != o or proc.poll() is not None, 30,
                             f"{victim} restarted")
        out, err = proc.communicate(timeout=900)
        delivered = device_record_ids(runtime / "state")
    finally:
        stop_replay(proc, watcher, runtime)
    assert len(kills) >= 6 and set(kills) == {"counter", "privacy", "uplink"}, kills
    duplicates = assert_quiet_run_counts(proc, out, err, cap, delivered, baseline)
    print(f"\nkills: {kills}; duplicate deliveries (same id, same content): {duplicates}")


def _fork_servers(root: int) -> list[int]:
    return [pid for pid in descendants(root) if process_name(pid) == "ec-forkserver"]


def test_a_fork_server_killed_mid_run_loses_and_doubles_nothing(broker: Broker, baseline: dict[str, Any],
                                                               tmp_path: Path, machine_load: str,
                                                               cap: MqttCapture) -> None:
    """The services' fork server dies: every service dies with it (parent-death signal) and the watchdog
    starts them again from a new server, once the old ones are gone. The counts are those of a quiet run."""
    cfg = write_config(tmp_path / "c.toml", broker.port)
    runtime = Path(tempfile.mkdtemp(prefix="ecs-", dir="/tmp"))
    proc = run_replay(cfg, runtime)
    names = ("capture", "inference", "counter", "privacy", "uplink")
    watcher = HealthWatcher(runtime, names)
    try:
        watcher.wait_for(lambda h: len(h) == 5 and int(h["counter"].stats.get("processed", 0)) > 150, 120,
                         "counting started")
        (server,) = _fork_servers(proc.pid)
        before = {k: h.pid for k, h in watcher.latest.items()}
        os.kill(server, signal.SIGKILL)
        watcher.wait_for(lambda h: all(h[k].pid != before[k] for k in names) or proc.poll() is not None, 120,
                         "every service started again")
        if proc.poll() is None:
            assert [p for p in _fork_servers(proc.pid) if p != server], "no new fork server"
        out, err = proc.communicate(timeout=900)
        delivered = device_record_ids(runtime / "state")
    finally:
        stop_replay(proc, watcher, runtime)
    assert_quiet_run_counts(proc, out, err, cap, delivered, baseline)


def test_b_broker_outage_delivers_everything_afterwards_in_order(broker: Broker, baseline: dict[str, Any],
                                                                 tmp_path: Path, machine_load: str,
                                                                 cap: MqttCapture) -> None:
    cfg = write_config(tmp_path / "c.toml", broker.port)
    runtime = Path(tempfile.mkdtemp(prefix="ecb-", dir="/tmp"))
    proc = run_replay(cfg, runtime)
    try:
        watcher = HealthWatcher(runtime, ("counter",))
        watcher.wait_for(lambda h: int(h["counter"].stats.get("processed", 0)) > 30 if "counter" in h else False,
                         300, "counting started")
        watcher.close()
        broker.stop()
        time.sleep(6)  # the replay keeps counting; records wait in the outbox
        assert proc.poll() is None, "the replay must not finish while its records cannot be delivered"
        broker.start()
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            stop_group(proc)
        if broker.proc is None or broker.proc.poll() is not None:
            broker.start()
    assert proc.returncode == 0, err[-3000:]
    uplink_log = (runtime / "state" / "logs" / "uplink.log").read_text()
    delivered = device_record_ids(runtime / "state")
    shutil.rmtree(runtime, ignore_errors=True)
    assert "mqtt.disconnected" in uplink_log and uplink_log.count("mqtt.connected") >= 2
    report = json.loads(out)
    assert report["lines"] == baseline["report"]["lines"]
    # The replay ended only once both sinks had confirmed every record (the broker's PUBACKs included).
    assert report["sinks"]["mqtt"]["confirmed"] == report["sinks"]["jsonl"]["confirmed"] == len(delivered)
    wait_for_records(cap, delivered)
    records = cap.records()
    totals, _ = unique_totals(records)
    cap.close()
    assert totals == baseline["totals"]
    first_seen: list[float] = []
    seen: set[str] = set()
    for r in records:
        if r["id"] not in seen:
            seen.add(r["id"])
            first_seen.append(r["bucket_start"])
    assert first_seen == sorted(first_seen), "records arrived out of order"


def _fill(path: Path) -> int:
    """Write ``path`` until the file system is full; the bytes written."""
    chunk, written = b"\0" * (1 << 16), 0
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                written += f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return written


def test_e_a_full_state_partition_degrades_and_resumes_losing_nothing(broker: Broker, baseline: dict[str, Any],
                                                                     tmp_path: Path, machine_load: str,
                                                                     cap: MqttCapture) -> None:
    """The state partition (a 16 MiB tmpfs) fills up mid-replay. Before: ``database or disk is full`` escaped the
    stages, the watchdog restarted them into the same full disk and gave up. Now every stage stays up,
    heartbeating, reports ``degraded`` with ``disk_full_s``, and once the space is back the replay ends with
    the undisturbed run's counts, every frame processed, and no half line in the jsonl file."""
    cfg = write_config(tmp_path / "c.toml", broker.port)
    runtime = Path(tempfile.mkdtemp(prefix="ece-", dir="/tmp"))
    state = runtime / "state"
    state.mkdir()
    why = mount_tmpfs(state, "16m")
    if why:
        shutil.rmtree(runtime, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here ({why}): needs root or passwordless sudo")
    proc = run_replay(cfg, runtime)
    names = ("counter", "privacy", "uplink")
    watcher = HealthWatcher(runtime, names)
    ballast = state / "ballast"
    try:
        watcher.wait_for(lambda h: len(h) == 3 and int(h["counter"].stats.get("processed", 0)) > 100, 300,
                         "counting started")
        pids = {k: h.pid for k, h in watcher.latest.items()}
        _fill(ballast)
        watcher.wait_for(lambda h: "disk_full_s" in h["counter"].stats and h["counter"].state == "degraded", 60,
                         "the counter reports the full disk")
        watcher.pump(8)  # longer than a crash-and-restart would take
        assert proc.poll() is None, "the replay must wait for room, not end"
        assert {k: h.pid for k, h in watcher.latest.items()} == pids, "a service was restarted"
        full_for = float(watcher.latest["counter"].stats["disk_full_s"])
        ballast.unlink()
        watcher.wait_for(lambda h: all("disk_full_s" not in h[k].stats for k in names), 120, "room again")
        out, err = proc.communicate(timeout=900)
        delivered = device_record_ids(state)  # json.loads of every line: a half line fails here
        counter_log = (state / "logs" / "counter.log").read_text()
    finally:
        watcher.close()
        if proc.poll() is None:
            stop_group(proc)
        umount(state)
        shutil.rmtree(runtime, ignore_errors=True)
    assert full_for >= 7, "the full disk was reported throughout the 8 s (the last heartbeat may be a beat old)"
    assert "service.disk_space_back" in counter_log
    assert_quiet_run_counts(proc, out, err, cap, delivered, baseline)
    print(f"\nthe disk was full for {full_for:.0f} s; counts equal the undisturbed run's")


def test_c_power_cut_loses_no_record(broker: Broker, tmp_path: Path, pets09_clip: Path, machine_load: str,
cap: MqttCapture) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="ecp-", dir="/tmp"))
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.toml", broker.port, extra=f"""
[runtime]
dir = "{runtime}"
state_dir = "{state}"

[capture]
source = "{pets09_clip}"
realtime = false
loop = false
""")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "edgecount", "run", "--config", str(cfg)], cwd=ROOT,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    proc = start()
    try:
        watcher = HealthWatcher(runtime, ("counter",))
        watcher.wait_for(lambda h: int(h.get("counter").stats.get("processed", 0)) > 300 if h.get("counter")
                         else False, 600, "a good part of the clip counted")
        watcher.close()
        stop_group(proc, signal.SIGKILL)  # power cut: every process at once
        # What had been made durable must all arrive eventually.
        durable: set[str] = set()
        priv = Store(state / "privacy.db")
        for _, _, payload in priv.read_from(1, 100000):
            from edgecount_core.messages import decode
            durable.add(decode(payload).record_id)  # type: ignore[union-attr]
        priv.close()
        up = Store(state / "uplink.db")
        durable |= {row[0] for row in up.db.execute("SELECT record_id FROM outbox")}
        up.close()
        proc = start()
        ctx: zmq.Context[Any] = zmq.Context()
        sub = bus.Subscriber(ctx, runtime, [("uplink", (bus.EOS,))], structlog.get_logger())
        deadline = time.monotonic() + 900
        done = False
        while time.monotonic() < deadline and not done:
            got = sub.recv(500)
            done = got is not None and isinstance(got[1], EndOfStream)
        sub.close()
        ctx.term()
        assert done, "the restarted appliance never finished the clip"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    wait_for_records(cap, durable | device_record_ids(state))
    totals, _ = unique_totals(cap.records())
    cap.close()
    counter = Store(state / "counter.db")
    crossings_logged = counter.last_seq
    counter.close()
    # Every crossing the counter ever made durable reached the broker exactly once, by id.
    assert sum(t["in"] + t["out"] for t in totals.values()) == crossings_logged
    assert crossings_logged > 0
    shutil.rmtree(runtime, ignore_errors=True)


# "camera" names the configured camera (like "device"), never anything about a person.
ALLOWED_COUNT_KEYS = {"id", "site", "device", "camera", "kind", "name", "bucket_start", "bucket_s", "in", "out"}


def test_d_only_counts_reach_the_broker(baseline: dict[str, Any]) -> None:
    messages = baseline["messages"]
    assert any("/counts/" in t for t, _ in messages)
    for topic, payload in messages:
        assert topic.startswith("edgecount/test/dev1-replay/"), topic  # a published replay is a device of its own
        assert len(payload) < 1024, f"{topic}: {len(payload)} bytes is more than a count"
        text = payload.decode("utf-8")  # image bytes would not decode
        if topic.endswith("/status"):
            assert text in ("online", "offline")
            continue
        doc = json.loads(text)
        assert isinstance(doc, dict)
        flat = json.dumps(doc).lower()
        for word in ("track", "box", "bbox", "frame", "seq", "image", "jpeg", "x1"):
            assert word not in flat, f"{topic}: {word!r} in {text}"
        for value in doc.values():
            assert not isinstance(value, list | dict), f"{topic}: nested data {value!r}"
        if "/counts/total/" in topic:
            # A line's running total of the day: from the day's start (a whole quarter hour in any time zone) to
            # the end of a bucket, and its in minus out, a count like the others. No time finer than a bucket.
            assert set(doc) == ALLOWED_COUNT_KEYS | {"occupancy"} and doc["kind"] == "total"
            assert doc["bucket_start"] % 900 == 0 and (doc["bucket_start"] + doc["bucket_s"]) % BUCKET_S == 0
        elif "/counts/" in topic:
            assert set(doc) == ALLOWED_COUNT_KEYS
            assert doc["bucket_s"] >= BUCKET_S
            assert doc["bucket_start"] % doc["bucket_s"] == 0, "a timestamp finer than the bucket"
        else:
            assert topic.endswith("/health") and set(doc) <= {"ts", "state", "backlog"}
