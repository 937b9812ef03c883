"""Debugging tools never touch production (issue 31): replays deliver privately by default, never as the device,
and per-service replay works on recordings made mid-stream on a live device."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import attrs
import msgpack
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgecount.runtime.settings import for_replay
from edgecount.tools.recording import normalise, read_messages, replay_service
from edgecount_core.messages import Crossing, LogTail, Watermark, decode, encode

from ..helpers import ROOT, Broker

GOLDEN = ROOT / "tests" / "golden"
PRODUCTION = {"device": {"site": "shop", "id": "door1"},
              "uplink": {"sinks": ["jsonl", "mqtt", "webhook"], "mqtt": {"host": "broker.example"},
                         "webhook": {"url": "https://counts.example/in"}}}


def test_a_replay_delivers_only_to_a_private_file_unless_told(tmp_path: Path) -> None:
    data = for_replay(json.loads(json.dumps(PRODUCTION)), tmp_path)
    assert data["uplink"]["sinks"] == ["jsonl"] and data["device"]["id"] == "door1"
    assert data["uplink"]["jsonl_path"].startswith(str(tmp_path))
    loud = for_replay(json.loads(json.dumps(PRODUCTION)), tmp_path, publish=True)
    assert loud["uplink"]["sinks"] == ["jsonl", "mqtt", "webhook"]
    assert loud["device"]["id"] == "door1-replay"  # its own topics and record ids
    client_id = loud["uplink"]["mqtt"]["client_id"]
    assert "/" in client_id and client_id != "edgecount-shop-door1"  # '/' is refused in site and device names
    assert client_id != for_replay(json.loads(json.dumps(PRODUCTION)), tmp_path, publish=True)["uplink"]["mqtt"][
        "client_id"]


def _renumbered(src: Path, dst: Path, offset: int) -> Path:
    """The golden recording as a live device would have made it: its log numbers start at 1 + offset."""
    dst.mkdir()
    shutil.copy(src / "config.toml", dst / "config.toml")
    with (dst / "messages.msgpack").open("wb") as f:
        for m in read_messages(src):
            msg = decode(m["payload"])
            if isinstance(msg, Crossing | Watermark):
                msg = attrs.evolve(msg, event_seq=msg.event_seq + offset)
            elif isinstance(msg, LogTail):
                msg = attrs.evolve(msg, last_seq=msg.last_seq + offset)
            f.write(msgpack.packb({**m, "payload": encode(msg)}, use_bin_type=True))
    return dst


def test_privacy_replays_a_recording_that_starts_mid_stream(tmp_path: Path) -> None:
    """Before: crossings numbered from 232 made a fresh filter wait for 1..231 for ever; it published 0 records
    and replay-service exited 0."""
    golden = [json.loads(line) for line in (GOLDEN / "privacy_pets09" / "expected.jsonl").read_text().splitlines()]
    rows = normalise(replay_service("privacy", _renumbered(GOLDEN / "privacy_pets09", tmp_path / "live", 231)))
    assert rows == golden


def test_a_service_that_publishes_nothing_says_why(tmp_path: Path) -> None:
    rec = _renumbered(GOLDEN / "privacy_pets09", tmp_path / "rec", 0)
    # Counted under a line this configuration no longer has, on a camera it does not know: no record can follow.
    text = (rec / "config.toml").read_text().replace('[[lines]]', '[[cameras]]\nname = "side"\nsource = "x"\n'
                                                      '[[cameras.lines]]', 1)
    (rec / "config.toml").write_text(text.replace("[[lines]]", "[[cameras.lines]]"))
    with pytest.raises(RuntimeError, match=r"privacy published nothing \(record expected"):
        replay_service("privacy", rec)
    (rec / "config.toml").write_text("[inference]\nthreads = 0\n")  # a configuration the service refuses
    with pytest.raises(RuntimeError, match="threads"):
        replay_service("privacy", rec, timeout_s=30)


@pytest.mark.slow
def test_replay_service_uplink_never_takes_the_devices_session(tmp_path: Path, broker: Broker) -> None:
    """Before: replaying the uplink logged in to the production broker with the device's own client id, Mosquitto
    closed the live device's session and its retained status flapped offline/online."""
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "config.toml").write_text((GOLDEN / "privacy_pets09" / "config.toml").read_text() +
                                     f'[uplink]\nsinks = ["jsonl", "mqtt"]\n[uplink.mqtt]\nhost = "127.0.0.1"\n'
                                     f"port = {broker.port}\n")
    records = [m for t, m in replay_service("privacy", GOLDEN / "privacy_pets09") if t == "record"]
    with (rec / "messages.msgpack").open("wb") as f:
        for k, r in enumerate(records):
            f.write(msgpack.packb({"t": k * 0.1, "service": "privacy", "topic": "record", "payload": encode(r)},
                                  use_bin_type=True))
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgecount-golden-pets09", protocol=mqtt.MQTTv5)
    seen: list[str] = []
    drops: list[object] = []
    device.on_message = lambda c, u, msg: seen.append(msg.topic)
    device.on_disconnect = lambda c, u, f, rc, p: drops.append(rc)
    device.connect("127.0.0.1", broker.port)
    device.subscribe("edgecount/#", qos=1)
    device.loop_start()
    try:
        time.sleep(0.5)
        replay_service("uplink", rec)
        time.sleep(0.5)
        assert drops == [] and device.is_connected()  # the device kept its session
        assert seen == []  # and nothing reached the broker
    finally:
        device.disconnect()
        device.loop_stop()
