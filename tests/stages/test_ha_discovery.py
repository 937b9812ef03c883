"""Home Assistant MQTT discovery against the real Mosquitto (issue 18, part 1)."""

from __future__ import annotations

import json
import time
from typing import Any

import structlog

from edgecount.stages.uplink_sinks import MqttSink, OutRow, build_sinks
from edgecount_core.config import parse_config

from ..helpers import Broker, MqttCapture

# Home Assistant's documented MQTT sensor discovery keys (https://www.home-assistant.io/integrations/sensor.mqtt/)
SENSOR_KEYS = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
               "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture",
               "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
               "last_reset_value_template", "name", "object_id", "options", "origin", "payload_available",
               "payload_not_available", "platform", "qos", "state_class", "state_topic",
               "suggested_display_precision", "unique_id", "unit_of_measurement", "value_template"}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
               "name", "serial_number", "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}


def _config(port: int, lines: list[str]) -> Any:
    return parse_config({
        "device": {"site": "shop", "id": "door-1"},
        "uplink": {"sinks": ["mqtt"], "mqtt": {"host": "127.0.0.1", "port": port, "discovery": True}},
        "lines": [{"name": n, "a": [0.5, 0.1], "b": [0.5, 0.9]} for n in lines],
        "zones": [{"name": "till", "points": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]}],
    })


def _connect(cfg: Any) -> MqttSink:
    [sink] = build_sinks(cfg, structlog.get_logger())
    assert isinstance(sink, MqttSink)
    deadline = time.monotonic() + 20
    while not sink.connected and time.monotonic() < deadline:
        sink.wants()
        time.sleep(0.05)
    assert sink.connected
    return sink


def _settle(sink: MqttSink, seconds: float = 1.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sink.wants()
        time.sleep(0.05)


def _retained(cap: MqttCapture) -> dict[str, bytes]:
    with cap.lock:
        latest: dict[str, bytes] = {}
        for topic, payload in cap.messages:
            latest[topic] = payload
    return latest


def test_discovery_entities_follow_the_documented_schema_and_the_configuration(broker: Broker) -> None:
    sink = _connect(_config(broker.port, ["door", "stairs"]))
    _settle(sink)
    sink.offer([OutRow(1, {"id": "shop/door-1/zone/till/0", "site": "shop", "device": "door-1", "kind": "zone",
                           "name": "till", "bucket_start": 0.0, "bucket_s": 60.0, "in": 2, "out": 1,
                           "occupancy": 1})])
    _settle(sink)
    cap = MqttCapture(broker.port, "homeassistant/#")  # subscribes late: sees only what is retained
    time.sleep(1.5)
    configs = {t: json.loads(p) for t, p in _retained(cap).items() if p}
    cap.close()
    base = "edgecount/shop/door-1"
    node = "edgecount_shop_door-1"
    objects = {t.split("/")[3] for t in configs}
    per_line = {f"line_{ln}_{x}" for ln in ("door", "stairs")
                for x in ("in", "out", "in_today", "out_today", "occupancy")}
    assert objects == per_line | {"zone_till_entries", "zone_till_exits", "zone_till_occupancy", "health",
                                  "backlog"}, objects
    for topic, payload in configs.items():
        prefix, component, node_part, _, last = topic.split("/")
        assert (prefix, component, node_part, last) == ("homeassistant", "sensor", node, "config")
        assert set(payload) <= SENSOR_KEYS, set(payload) - SENSOR_KEYS
        assert set(payload["device"]) <= DEVICE_KEYS and set(payload["origin"]) <= ORIGIN_KEYS
        assert payload["device"]["identifiers"] == [node] and payload["device"]["suggested_area"] == "shop"
        assert payload["unique_id"].startswith(node) and payload["availability_topic"] == f"{base}/status"
        assert payload.get("state_class", "measurement") in STATE_CLASSES
        assert payload.get("entity_category", "config") in ENTITY_CATEGORIES
        # Only the existing count and health topics are state topics: nothing else is exposed.
        state = payload["state_topic"]
        assert state.startswith((f"{base}/counts/line/", f"{base}/counts/zone/", f"{base}/counts/total/")) \
            or state == f"{base}/health", state
        assert "snapshot" not in json.dumps(payload) and "track" not in json.dumps(payload)
    assert len({p["unique_id"] for p in configs.values()}) == len(configs)
    # The zone's record carries what its entities read.
    occ = configs[f"homeassistant/sensor/{node}/zone_till_occupancy/config"]
    assert occ["value_template"] == "{{ value_json.occupancy }}"
    # A line's totals of the day start again at the reset hour: total_increasing reads the drop as a reset.
    today = configs[f"homeassistant/sensor/{node}/line_door_in_today/config"]
    assert today["state_topic"] == f"{base}/counts/total/door" and today["state_class"] == "total_increasing"
    inside = configs[f"homeassistant/sensor/{node}/line_door_occupancy/config"]
    assert inside["value_template"] == "{{ value_json.occupancy }}" and inside["state_class"] == "measurement"
    sink.close()

    # The line "stairs" is removed from the configuration: its entities go, the others stay.
    sink = _connect(_config(broker.port, ["door"]))
    _settle(sink, 2.5)
    sink.close()
    cap = MqttCapture(broker.port, "homeassistant/#")
    time.sleep(1.5)
    remaining = {t.split("/")[3] for t, p in _retained(cap).items() if p}
    cap.close()
    assert remaining == {o for o in objects if not o.startswith("line_stairs_")}, remaining
