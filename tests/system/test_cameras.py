"""Several cameras on one device (issue 15): configuration, processes, fairness, per-camera records and topics.

The slow tests replay real clips through the whole pipeline: two cameras together count what each counts
alone, and killing one camera's capture mid-run changes neither camera's final counts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import cv2
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecount import stages
from edgecount.runtime.ring import segment_path
from edgecount.runtime.settings import to_toml
from edgecount.stages.ha_discovery import discovery_configs
from edgecount.stages.uplink_sinks import MqttSink, OutRow, build_sinks
from edgecount_core.config import ConfigError, parse_config
from edgecount_core.frames import TakeTurns
from edgecount_core.messages import Crossing, Health, Tracks, decode, encode
from edgecount_core.outbox import PendingRecord, plan_compaction
from edgecount_core.privacy import BucketAggregator, source_id

from ..helpers import Broker, HealthWatcher, MqttCapture, close_service, edgecount

LINE = {"name": "door", "a": [0.5, 0.1], "b": [0.5, 0.9]}


def two_cameras(**extra: Any) -> dict[str, Any]:
    return {"cameras": [{"name": "front", "source": "front.avi", "lines": [LINE]},
                        {"name": "back", "source": "rtsp://cam/back", "realtime": True, "max_fps": 5, "tiles": "2x2",
                         "lines": [LINE], "zones": [{"name": "till", "points": [[0, 0], [0.4, 0], [0.4, 0.4]]}]}],
            **extra}


# -- configuration ----------------------------------------------------------------------------------------
def test_a_file_without_cameras_is_one_camera_named_main() -> None:
    cfg = parse_config({"lines": [LINE]})
    assert cfg.camera_names() == ("main",)
    assert cfg.for_camera("main") is cfg
    assert stages.processes(cfg) == ("capture", "inference", "counter", "privacy", "uplink")
    assert not cfg.mqtt_per_camera()
    with pytest.raises(KeyError, match="one camera"):
        cfg.for_camera("front")


def test_each_camera_gets_its_own_view_of_the_configuration() -> None:
    cfg = parse_config(two_cameras())
    assert cfg.camera_names() == ("front", "back")
    front, back = cfg.for_camera("front"), cfg.for_camera("back")
    assert front.capture.source == "front.avi" and front.inference.tiles == "1x1" and front.zones == ()
    assert back.capture.source == "rtsp://cam/back" and back.capture.max_fps == 5 and back.inference.tiles == "2x2"
    assert [z.name for z in back.zones] == ["till"]
    assert back.cameras == () and cfg.mqtt_per_camera()
    # Written back to TOML (replay does) and read again, it is the same configuration.
    assert parse_config(tomllib.loads(to_toml(cfg.model_dump(mode="json")))) == cfg


@pytest.mark.parametrize(("data", "key", "fix"), [
    ({"cameras": [{"name": "a", "source": "x"}, {"name": "a", "source": "y"}]}, "names must be unique",
     "rename"),
    ({"capture": {"source": "z.avi"}, "cameras": [{"name": "a", "source": "x"}]}, "capture.source",
     "cameras[N].source"),
    ({"lines": [LINE], "cameras": [{"name": "a", "source": "x"}]}, "[[cameras.lines]]", "move them"),
    ({"cameras": [{"name": "a/b", "source": "x"}]}, "cameras[0].name", "pattern"),
    ({"cameras": [{"name": "a", "source": "x", "lines": [LINE, LINE]}]}, "camera 'a'", "unique within a camera"),
    ({"cameras": [{"name": "a", "source": "x"}, {"name": "b", "source": "y"}],
      "uplink": {"mqtt": {"topic_layout": "device"}}}, "topic_layout", "'camera' or 'auto'"),
    ({"cameras": [{"name": "a", "source": ""}]}, "cameras[0].source", "at least 1"),
])
def test_camera_mistakes_are_explained_with_the_key_and_the_fix(data: dict[str, Any], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert key in str(exc.value) and fix in str(exc.value), str(exc.value)


def test_the_socket_path_limit_counts_the_camera_names_only_when_there_are_cameras() -> None:
    runtime = {"dir": "/tmp/" + "r" * 70}  # 75 characters: room for counter.sync.sock, not capture@<24>.sock
    assert parse_config({"runtime": runtime}).camera_names() == ("main",)
    assert parse_config({"runtime": runtime, "cameras": [{"name": "door", "source": "x"}]})
    with pytest.raises(ConfigError, match="shorter camera names"):
        parse_config({"runtime": runtime, "cameras": [{"name": "d" * 24, "source": "x"}]})


def test_config_check_names_the_camera(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[cameras]]\nname = "door"\nsource = "x.avi"\n[[cameras.lines]]\nname = "l"\na = [0.1, 0.1]\n'
                   'b = [0.1, 0.1]\n')
    res = edgecount("config", "check", str(bad))
    assert res.returncode != 0 and "cameras[0].lines[0]" in res.stdout + res.stderr, res.stdout + res.stderr


# -- processes and the bus ----------------------------------------------------------------------------------
def test_run_refuses_a_camera_whose_file_is_missing_and_names_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the device started, the camera's capture crashed at every restart and the restart budget then
    stopped every camera. Now `run` refuses at once, naming each camera whose file is not there."""
    from edgecount.cli import main
    from edgecount.runtime import logs
    from edgecount.supervisor import watchdog

    starts: list[bool] = []

    def started(*_a: Any, **_k: Any) -> None:
        starts.append(True)
        raise RuntimeError("this test stands in for the supervisor")

    monkeypatch.setattr(watchdog.Watchdog, "__init__", started)
    # `run` points the process's logging at its stderr, which here is pytest's capture: keep it off the tests after.
    monkeypatch.setattr(logs, "configure", lambda *_a, **_k: structlog.get_logger())
    data = {"runtime": {"dir": str(tmp_path / "run"), "state_dir": str(tmp_path / "state")},
            "cameras": [{"name": "front", "source": "asset:pets09", "lines": [LINE]},
                        {"name": "back", "source": str(tmp_path / "gone.avi"), "lines": [LINE]},
                        {"name": "side", "source": "./also-gone.avi", "lines": [LINE]},
                        {"name": "street", "source": "rtsp://cam/street", "lines": [LINE]}]}
    cfg = tmp_path / "c.toml"
    cfg.write_text(to_toml(data))
    assert main(["run", "--config", str(cfg)]) == 2  # a configuration mistake: the unit does not restart it (issue 31)
    err = capsys.readouterr().err
    assert "camera 'back'" in err and "gone.avi" in err and "no such file" in err
    assert "camera 'side'" in err
    assert "'front'" not in err and "'street'" not in err  # a clip and a network camera are fine

    single = tmp_path / "one.toml"
    single.write_text(to_toml({"capture": {"source": str(tmp_path / "gone.avi")}, "lines": [LINE]}))
    assert main(["run", "--config", str(single)]) == 2
    err = capsys.readouterr().err
    assert "capture.source" in err and "no such file" in err
    assert not starts
    # A file that is there gets as far as the supervisor.
    ok = tmp_path / "ok.toml"
    ok.write_text(to_toml({"capture": {"source": "asset:pets09"}, "lines": [LINE],
                           "inference": {"model": "ssd_mobilenet_v1_coco_quant"}}))
    main(["run", "--config", str(ok)])
    assert starts == [True]


def test_one_capture_process_per_camera_and_one_of_everything_else() -> None:
    cfg = parse_config(two_cameras())
    assert stages.processes(cfg) == ("capture@front", "capture@back", "inference", "counter", "privacy", "uplink")
    assert [up for up, _ in stages.stage("inference").subscriptions(cfg)] == ["capture@front", "capture@back"]
    assert stages.split_process("capture@back")[1] == "back"
    with pytest.raises(ValueError, match="only capture runs per camera"):
        stages.split_process("counter@back")


def test_each_camera_has_its_own_ring(tmp_path: Path) -> None:
    assert len({segment_path(tmp_path), segment_path(tmp_path, "front"), segment_path(tmp_path, "back")}) == 3
    assert segment_path(tmp_path) == segment_path(tmp_path, "main")  # a single-camera device keeps its name


def test_the_camera_travels_on_the_wire_except_main() -> None:
    main = Tracks(seq=1, ts=1.0, width=10, height=10)
    side = Tracks(seq=1, ts=1.0, width=10, height=10, camera="side")
    assert b"camera" not in encode(main)  # a single-camera device sends what it sent before cameras existed
    assert decode(encode(side)).camera == "side" and decode(encode(main)).camera == "main"
    with pytest.raises(ValueError, match="not a camera name"):
        decode(encode(Crossing(event_id="x", line="l", direction="in", ts=1.0, track_id=1, seq=1, event_seq=1,
                               camera="../etc")))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()), max_size=60),
       st.fixed_dictionaries({"a": st.booleans(), "b": st.booleans(), "c": st.booleans()}))
def test_cameras_take_turns_and_live_ones_keep_only_their_newest_frame(
        events: list[tuple[str, bool]], live: dict[str, bool]) -> None:
    """``events``: (camera, take-a-turn-after-announcing). Whatever the interleaving, a camera with a frame
    waiting is served within one round of the others, a live camera is always given its newest frame, and a
    replayed one every frame in order."""
    turns: TakeTurns[int] = TakeTurns(live.items())
    sent: dict[str, list[int]] = {c: [] for c in live}
    served: dict[str, list[int]] = {c: [] for c in live}
    since_served: dict[str, int] = dict.fromkeys(live, 0)
    for n, (cam, take) in enumerate(events):
        assert turns.offer(cam, n)
        sent[cam].append(n)
        if take:
            got = turns.take()
            assert got is not None
            served[got[0]].append(got[1])
            for c in live:
                since_served[c] = 0 if c == got[0] else since_served[c] + (1 if turns.waiting[c] else 0)
                assert since_served[c] < len(live), f"camera {c} starved"
            if live[got[0]]:
                assert got[1] == sent[got[0]][-1]  # the newest frame, never a stale one
    while (got := turns.take()) is not None:
        served[got[0]].append(got[1])
    for c in live:
        if live[c]:
            assert len(served[c]) + turns.skipped[c] == len(sent[c])
        else:
            assert served[c] == sent[c] and turns.skipped[c] == 0
    assert not turns.offer("nobody", 1)


def test_a_camera_with_its_own_tiles_shares_the_one_interpreter(ssd_model: Any) -> None:
    from edgecount.detection.detector import TFLiteDetector
    from edgecount.detection.tiling import TiledDetector
    from edgecount.stages import inference as inference_stage

    cfg = parse_config(two_cameras())  # "back" asks for 2x2 tiles, "front" keeps [inference]'s 1x1
    svc = object.__new__(inference_stage.Inference)
    svc.cfg, svc.tiles = cfg, {c: cfg.for_camera(c).inference.tiles for c in cfg.camera_names()}
    svc.detector = TFLiteDetector(ssd_model, threads=1)
    front, back = svc._detector_for("front"), svc._detector_for("back")
    assert front is svc.detector
    assert isinstance(back, TiledDetector) and back.det is svc.detector and (back.cols, back.rows) == (2, 2)


# -- records, outbox, topics ----------------------------------------------------------------------------------
def test_the_same_line_name_on_two_cameras_gives_two_records_with_distinct_ids() -> None:
    recs = []
    for cam in ("main", "back"):
        agg = BucketAggregator(source_id("shop", "d1", cam), ["door"], bucket_s=60, camera=cam)
        agg.add("line", "door", "in", 10.0)
        recs += agg.flush()
    assert [r.camera for r in recs] == ["main", "back"]
    assert recs[0].record_id == "shop/d1/line/door/0" and recs[1].record_id == "shop/d1/back/line/door/0"


def test_compaction_merges_per_camera_never_across_cameras() -> None:
    rows = [PendingRecord(i, f"id{i}", "line", "door", 60.0 * (i // 2), 60.0, 1, 0, camera=("a", "b")[i % 2])
            for i in range(40)]
    plan = plan_compaction(rows, max_rows=10, max_age_s=1e9, now=3000.0)
    kept = [r for r in rows if r.row_id not in plan.delete] + list(plan.insert)
    for cam in ("a", "b"):
        assert sum(r.n_in for r in kept if r.camera == cam) == 20
    assert {r.camera for r in plan.insert} == {"a", "b"}


def test_discovery_has_an_entity_per_camera_line_on_the_camera_topics() -> None:
    cfg = parse_config(two_cameras(device={"site": "shop", "id": "d1"}, uplink={"mqtt": {"discovery": True}}))
    topics = {p["state_topic"] for p in discovery_configs(cfg).values()}
    assert {"edgecount/shop/d1/front/counts/line/door", "edgecount/shop/d1/back/counts/line/door",
            "edgecount/shop/d1/back/counts/zone/till"} <= topics
    # 2 cameras x door (in/out per bucket and today, occupancy), till x3, health, backlog
    assert len(discovery_configs(cfg)) == 2 * 5 + 3 + 2


def _row(i: int, camera: str) -> OutRow:
    return OutRow(i, {"id": f"r{i}", "site": "s", "device": "d", "camera": camera, "kind": "line", "name": "door",
                      "bucket_start": 0.0, "bucket_s": 60.0, "in": i, "out": 0})


@pytest.mark.parametrize(("layout", "cameras", "expected"), [
    ("auto", True, {"edgecount/s/d/front/counts/line/door", "edgecount/s/d/back/counts/line/door"}),
    ("auto", False, {"edgecount/s/d/counts/line/door"}),
    ("camera", False, {"edgecount/s/d/main/counts/line/door"}),
])
def test_mqtt_topics_carry_the_camera_unless_the_single_camera_layout_is_kept(
        broker: Broker, layout: str, cameras: bool, expected: set[str]) -> None:
    data: dict[str, Any] = {"device": {"site": "s", "id": "d"},
                            "uplink": {"sinks": ["mqtt"], "mqtt": {"host": "127.0.0.1", "port": broker.port,
                                                                   "topic_layout": layout}}}
    if cameras:
        data.update(two_cameras())
    [sink] = build_sinks(parse_config(data), structlog.get_logger())
    assert isinstance(sink, MqttSink)
    cap = MqttCapture(broker.port, "edgecount/s/d/#")
    try:
        deadline = time.monotonic() + 20
        names = ("front", "back") if cameras else ("main",)
        while sink.confirmed() < len(names) and time.monotonic() < deadline:
            if sink.wants():
                sink.offer([_row(i + 1, c) for i, c in enumerate(names)])
            time.sleep(0.05)
        time.sleep(0.5)
        with cap.lock:
            got = {t for t, _ in cap.messages if "/counts/" in t}
        assert got == expected
        assert {r["camera"] for r in cap.records()} == set(names)
    finally:
        cap.close()
        sink.close()


# -- the whole pipeline ----------------------------------------------------------------------------------------
LINES = ["--line", "centre:0.5,0.0,0.5,1.0", "--line", "low:0.0,0.75,1.0,0.75"]


@pytest.fixture(scope="module")
def mirrored_clip(pets09_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PETS09 flipped left-right, made here with OpenCV (lossless MJPG at high quality is enough)."""
    out = tmp_path_factory.mktemp("mirror") / "pets09_mirrored.avi"
    src = cv2.VideoCapture(str(pets09_clip))
    fps = src.get(cv2.CAP_PROP_FPS) or 7.0
    w, h = int(src.get(cv2.CAP_PROP_FRAME_WIDTH)), int(src.get(cv2.CAP_PROP_FRAME_HEIGHT))
    dst = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    dst.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    while True:
        ok, frame = src.read()
        if not ok:
            break
        dst.write(cv2.flip(frame, 1))
    src.release()
    dst.release()
    return out


def _replay_json(*args: str) -> dict[str, Any]:
    res = edgecount("replay", *args, "--config", "config/demo.toml", *LINES, "--json", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


@pytest.fixture(scope="module")
def alone(pets09_clip: Path, mirrored_clip: Path) -> dict[str, dict[str, Any]]:
    return {"cam1": _replay_json(str(pets09_clip))["lines"], "mirror": _replay_json(str(mirrored_clip))["lines"]}


@pytest.mark.slow
def test_two_cameras_replayed_together_count_what_each_counts_alone(
        pets09_clip: Path, mirrored_clip: Path, alone: dict[str, dict[str, Any]]) -> None:
    got = _replay_json(str(pets09_clip), f"mirror={mirrored_clip}")
    assert set(got) == {"cameras", "duration_s", "fps"}
    assert list(got["cameras"]) == ["cam1", "mirror"]
    for cam, clip in (("cam1", pets09_clip), ("mirror", mirrored_clip)):
        one = got["cameras"][cam]
        assert one["source"] == str(clip) and one["dropped_frames"] == 0
        assert one["processed_frames"] == one["frames"] > 700
        assert one["lines"] == alone[cam], cam
    # The mirrored camera is a different view, not a copy of the first: its counts differ somewhere.
    assert alone["cam1"] != alone["mirror"]
    assert sum(c["in"] + c["out"] for c in alone["cam1"].values()) > 10


@pytest.mark.slow
def test_killing_one_cameras_capture_mid_run_changes_no_count(
        pets09_clip: Path, mirrored_clip: Path, alone: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    from edgecount.runtime.settings import load_config
    from edgecount.tools.replay import replay_cameras
    from edgecount_core.config import parse_line_arg

    runtime = Path("/tmp") / f"ec-kill-{os.getpid()}"
    lines = [parse_line_arg(x) for x in LINES[1::2]]
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["res"] = replay_cameras(load_config("config/demo.toml"),
                                           {"cam1": str(pets09_clip), "mirror": str(mirrored_clip)},
                                           lines={"cam1": lines, "mirror": lines}, runtime_dir=runtime,
                                           timeout_s=900)
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        time.sleep(1.0)
        watcher = HealthWatcher(runtime, ("capture@cam1", "capture@mirror", "counter"))
        watcher.wait_for(lambda h: "capture@cam1" in h and int(h["capture@cam1"].stats.get("frames_read", 0)) > 200,
                         300, "camera cam1 a third of the way through")
        victim: Health = watcher.latest["capture@cam1"]
        os.kill(victim.pid, signal.SIGKILL)
        watcher.wait_for(lambda h: h["capture@cam1"].pid != victim.pid, 120, "capture@cam1 restarted")
        watcher.close()
    finally:
        worker.join(900)
        shutil.rmtree(runtime, ignore_errors=True)
    assert "error" not in result, result.get("error")
    res = result["res"]
    assert res.restarts["capture@cam1"] >= 1 and res.restarts["capture@mirror"] == 0
    for cam in ("cam1", "mirror"):
        assert res.cameras[cam].dropped_frames == 0
        assert res.cameras[cam].lines == alone[cam], cam


# -- the technician's commands ----------------------------------------------------------------------------------
def _cameras_file(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    f = tmp_path / "c.toml"
    f.write_text(f'[runtime]\nstate_dir = "{state}"\n\n# the shop\'s two doors\n[[cameras]]\nname = "front"\n'
                 'source = "front.avi"\n\n[[cameras.lines]]\nname = "door"\na = [0.5, 0.1]\nb = [0.5, 0.9]\n\n'
                 '[[cameras]]\nname = "back"\nsource = "back.avi"\n')
    return f


def test_lines_set_edits_the_named_cameras_lines_and_asks_which_when_unsaid(tmp_path: Path) -> None:
    from edgecount.tools.config_edit import set_line
    from edgecount_core.config import parse_line_arg

    f = _cameras_file(tmp_path)
    set_line(f, parse_line_arg("door:0.1,0.6,0.9,0.6"), "back")
    set_line(f, parse_line_arg("door:0.4,0.1,0.4,0.9"), "front")
    cfg = parse_config(tomllib.loads(f.read_text()))
    assert [(ln.name, ln.a) for ln in cfg.for_camera("back").lines] == [("door", (0.1, 0.6))]
    assert [(ln.name, ln.a) for ln in cfg.for_camera("front").lines] == [("door", (0.4, 0.1))]
    assert "# the shop's two doors" in f.read_text()  # the technician's comments stay
    for camera, message in ((None, "--camera"), ("side", "no camera 'side'")):
        with pytest.raises(ConfigError, match=message):
            set_line(f, parse_line_arg("x:0.1,0.1,0.9,0.9"), camera)


def test_counts_group_by_camera(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    from edgecount.cli import main
    from edgecount.stages.outbox import FIRST_SCHEMA

    f = _cameras_file(tmp_path)
    con = sqlite3.connect(tmp_path / "state" / "uplink.db")
    con.executescript(FIRST_SCHEMA)
    con.execute("ALTER TABLE history ADD COLUMN camera TEXT NOT NULL DEFAULT 'main'")
    start = (time.time() - 600) // 60 * 60
    con.executemany("INSERT INTO history VALUES (?, 'line', 'door', ?, 60.0, ?, ?, ?)",
                    [(f"s/d/line/door/{start}", start, 3, 1, "front"),
                     (f"s/d/back/line/door/{start}", start, 5, 2, "back")])
    con.commit()
    con.close()
    assert main(["counts", "--json", "--config", str(f)]) == 0
    got = json.loads(capsys.readouterr().out)["cameras"]
    assert got["front"]["last hour"]["line:door"] == {"in": 3, "out": 1}
    assert got["back"]["last hour"]["line:door"] == {"in": 5, "out": 2}
    assert main(["counts", "--chart", "--since", "1h", "--by", "30m", "--json", "--config", str(f)]) == 0
    series = json.loads(capsys.readouterr().out)["series"]
    assert sum(series["front/line:door"]["in"]) == 3 and sum(series["back/line:door"]["in"]) == 5


@pytest.mark.slow
def test_a_dead_camera_is_degraded_on_its_own_and_stalls_no_other(runtime_dir: Path, pets09_clip: Path,
                                                                    ssd_model: Any) -> None:
    """Live: one camera plays the clip, the other's stream refuses every connection. The good camera keeps
    counting at its rate, `status` shows only the dead one degraded, and the watchdog never restarts either."""
    from ..helpers import free_port, start_appliance, stop_appliance

    cfg = runtime_dir / "c.toml"
    cfg.write_text(f"""
[runtime]
dir = "{runtime_dir}"
state_dir = "{runtime_dir / 'state'}"

[capture]
realtime = true
loop = true
reconnect_initial_s = 0.5
reconnect_max_s = 2.0

[inference]
model = "ssd_mobilenet_v1_coco_quant"
threads = 1

[watchdog]
heartbeat_s = 0.2
hang_timeout_s = 6
metrics_dir = ""

[[cameras]]
name = "good"
source = "{pets09_clip}"

[[cameras.lines]]
name = "v"
a = [0.5, 0.2]
b = [0.5, 1.0]

[[cameras]]
name = "dead"
source = "rtsp://127.0.0.1:{free_port()}/nothing"
""")
    proc = start_appliance(cfg)
    try:
        watcher = HealthWatcher(runtime_dir, ("capture@good", "capture@dead", "inference", "counter"))
        watcher.wait_for(lambda h: "inference" in h and int(h["inference"].stats.get("camera.good.processed", 0))
                         > 30 and "capture@dead" in h and h["capture@dead"].state == "degraded", 120,
                         "the good camera counting while the dead one is degraded")
        first = int(watcher.latest["inference"].stats["camera.good.processed"])
        watcher.pump(3.0)
        rate = (int(watcher.latest["inference"].stats["camera.good.processed"]) - first) / 3.0
        watcher.close()
        assert rate > 5, f"the good camera slowed to {rate:.1f} fps beside the dead one"
        res = edgecount("status", "--json", "--config", str(cfg))
        st = json.loads(res.stdout)
        assert st["cameras"]["dead"]["state"] == "degraded" and st["cameras"]["good"]["state"] == "ok"
        assert float(st["cameras"]["dead"]["source_down_s"]) > 0
        assert st["device"]["state"] == "degraded" and st["device"]["degraded"] == ["capture@dead"]
        assert all(s["restarts"] == 0 for s in st["services"]), st["services"]
        doctor = json.loads(edgecount("doctor", "--json", "--config", str(cfg)).stdout)
        checks = {c["name"]: c["status"] for c in doctor["checks"]}
        assert checks["camera good"] == "pass" and checks["camera dead"] == "fail", checks
    finally:
        stop_appliance(proc)


def test_line_names_that_read_the_same_once_sanitised_keep_an_entity_each() -> None:
    """Issue 32, LOW: 'door.1' and 'door_1' gave one discovery topic, so one entity deleted the other's."""
    cfg = parse_config({"device": {"site": "shop", "id": "d1"}, "uplink": {"mqtt": {"discovery": True}},
                        "lines": [{"name": "door.1", "a": [0.2, 0.1], "b": [0.2, 0.9]},
                                  {"name": "door_1", "a": [0.6, 0.1], "b": [0.6, 0.9]}]})
    configs = discovery_configs(cfg)
    topics = {p["state_topic"] for p in configs.values()}
    assert {"edgecount/shop/d1/counts/line/door.1", "edgecount/shop/d1/counts/line/door_1"} <= topics
    assert len(configs) == 2 * 5 + 2
    assert len({p["unique_id"] for p in configs.values()}) == len(configs)


def test_the_number_of_cameras_is_bounded() -> None:
    """Issue 32, LOW: 3,000 cameras were accepted (a capture process and a ring each)."""
    cams = [{"name": f"c{i}", "source": f"rtsp://cam{i}/s", "lines": []} for i in range(17)]
    with pytest.raises(ConfigError, match="cameras"):
        parse_config({"cameras": cams})
    parse_config({"cameras": cams[:16]})


def test_per_camera_capture_figures_and_the_write_time_reach_the_metrics() -> None:
    """Issue 32, LOW: with [[cameras]] the capture processes are capture@NAME and their frames were missing
    from the metrics; and a file no one rewrites any more looked as fresh as a new one."""
    from edgecount.supervisor.metrics import render, samples

    figs = stages.figures_by_stage()
    rows = [{"service": "capture@front", "state": "ok", "stats": {"frames_read": 10}},
            {"service": "capture@back", "state": "ok", "stats": {"frames_read": 7}}]
    text = render(samples(rows, figs, now=1.7e9), figs)
    assert 'edgecount_frames_read_total{camera="front"} 10' in text
    assert 'edgecount_frames_read_total{camera="back"} 7' in text
    assert "edgecount_metrics_written_timestamp_seconds 1700000000" in text


def test_moving_to_cameras_sends_the_open_bucket_instead_of_dropping_it(runtime_dir: Path) -> None:
    """Issue 32, LOW: the single-camera file's open bucket was saved as main's, and no camera of the new
    [[cameras]] file read it: those crossings were never sent."""
    from edgecount.runtime.settings import load_config
    from edgecount.stages.privacy import Privacy
    from edgecount.stages.saved_buckets import AGG_KEY
    from edgecount_core.messages import CountRecord, Crossing, decode

    head = f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n'
    single = runtime_dir / "single.toml"
    single.write_text(head + '[[lines]]\nname = "door"\na = [0.5, 0.1]\nb = [0.5, 0.9]\n')
    svc = Privacy(load_config(single), runtime_dir)
    try:
        for n in (1, 2, 3):
            svc.handle(b"crossing", Crossing(event_id=f"s:{n}", line="door", direction="in", ts=1000.0 + n,
                                             track_id=n, seq=n, event_seq=n))
    finally:
        close_service(svc)
    multi = runtime_dir / "multi.toml"
    multi.write_text(head + '[[cameras]]\nname = "front"\nsource = "rtsp://cam/s"\n'
                     '[[cameras.lines]]\nname = "door"\na = [0.5, 0.1]\nb = [0.5, 0.9]\n')
    svc = Privacy(load_config(multi), runtime_dir)
    try:
        records = [m for _, _, p in svc.store.read_from(1, 1000) if isinstance(m := decode(p), CountRecord)]
        kept = svc.store.get(AGG_KEY)
    finally:
        close_service(svc)
    door = [r for r in records if r.name == "door"]
    assert sum(r.n_in for r in door) == 3 and {r.camera for r in door} == {"main"}
    assert kept is None  # sent once: a restart does not send it again
