"""Home Assistant MQTT discovery: the device's counts and health appear as entities by themselves.

Retained ``<prefix>/sensor/<node>/<object>/config`` messages describe, per line, its ``in`` and ``out``
counts per bucket and today, and its occupancy (in minus out today); per zone its entries, exits and
occupancy; and the device's health and backlog, all grouped under one device. Their state topics are the
count and health topics the uplink already publishes (no second data path) and their availability is the
retained ``status`` topic with its ``offline`` last will. Only counts and health are described: nothing
per person, no snapshot.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from edgecount import __version__
from edgecount_core.config import Config

Payload = dict[str, Any]


def _safe_id(text: str) -> str:
    """An id for a discovery topic level: Home Assistant allows letters, digits, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def node_id(site: str, device: str) -> str:
    """The device's id in discovery topics."""
    return _safe_id(f"edgecount_{site}_{device}")


def discovery_configs(cfg: Config) -> dict[str, Payload]:
    """Discovery topic -> config payload for every entity of this configuration."""
    m, site, device = cfg.uplink.mqtt, cfg.device.site, cfg.device.id
    base = f"{m.topic_prefix}/{site}/{device}"
    node = node_id(site, device)
    common: Payload = {
        "availability_topic": f"{base}/status", "payload_available": "online", "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": f"edgecount {site}/{device}", "manufacturer": "edgecount",
                   "model": "edgecount people counter", "sw_version": __version__, "suggested_area": site},
        "origin": {"name": "edgecount", "sw_version": __version__,
                   "support_url": "https://github.com/edgecount/edgecount"},
    }
    per_bucket = f"per {cfg.privacy.bucket_s:g} s"
    entities: list[tuple[str, Payload]] = []
    for camera in cfg.camera_names():
        view = cfg.for_camera(camera)
        # With the camera level in topics, entity ids and names carry the camera too.
        cbase = f"{base}/{camera}" if cfg.mqtt_per_camera() else base
        oid, label = (f"{camera}_", f"{camera} ") if cfg.cameras else ("", "")
        for ln in view.lines:
            total_topic = f"{cbase}/counts/total/{ln.name}"
            for direction, icon in (("in", "mdi:account-arrow-right"), ("out", "mdi:account-arrow-left")):
                entities.append((f"{oid}line_{ln.name}_{direction}", {
                    "name": f"{label}{ln.name} {direction} ({per_bucket})",
                    "state_topic": f"{cbase}/counts/line/{ln.name}",
                    "value_template": f"{{{{ value_json['{direction}'] }}}}", "unit_of_measurement": "people",
                    "state_class": "measurement", "force_update": True, "icon": icon}))
                # Starts again every day: total_increasing takes the drop to 0 as a reset, not as negative people.
                entities.append((f"{oid}line_{ln.name}_{direction}_today", {
                    "name": f"{label}{ln.name} {direction} today", "state_topic": total_topic,
                    "value_template": f"{{{{ value_json['{direction}'] }}}}", "unit_of_measurement": "people",
                    "state_class": "total_increasing", "icon": icon}))
            entities.append((f"{oid}line_{ln.name}_occupancy", {
                "name": f"{label}{ln.name} occupancy (in - out today)", "state_topic": total_topic,
                "value_template": "{{ value_json.occupancy }}", "unit_of_measurement": "people",
                "state_class": "measurement", "icon": "mdi:account-group"}))
        for z in view.zones:
            topic = f"{cbase}/counts/zone/{z.name}"
            entities += [
                (f"{oid}zone_{z.name}_entries", {
                    "name": f"{label}{z.name} entries ({per_bucket})", "state_topic": topic,
                    "value_template": "{{ value_json['in'] }}", "unit_of_measurement": "people",
                    "state_class": "measurement", "force_update": True, "icon": "mdi:location-enter"}),
                (f"{oid}zone_{z.name}_exits", {
                    "name": f"{label}{z.name} exits ({per_bucket})", "state_topic": topic,
                    "value_template": "{{ value_json['out'] }}", "unit_of_measurement": "people",
                    "state_class": "measurement", "force_update": True, "icon": "mdi:location-exit"}),
                (f"{oid}zone_{z.name}_occupancy", {
                    "name": f"{label}{z.name} occupancy", "state_topic": topic,
                    "value_template": "{{ value_json.occupancy }}", "unit_of_measurement": "people",
                    "state_class": "measurement", "icon": "mdi:account-group"}),
            ]
    entities += [
        ("health", {"name": "health", "state_topic": f"{base}/health", "value_template": "{{ value_json.state }}",
                    "entity_category": "diagnostic", "icon": "mdi:heart-pulse"}),
        ("backlog", {"name": "undelivered records", "state_topic": f"{base}/health",
                     "value_template": "{{ value_json.backlog }}", "unit_of_measurement": "records",
                     "state_class": "measurement", "entity_category": "diagnostic", "icon": "mdi:tray-full"}),
    ]
    out: dict[str, Payload] = {}
    taken: set[str] = set()
    for object_id, fields in sorted(entities, key=lambda e: e[0]):
        oid = _safe_id(object_id)
        if oid in taken:  # "door.1" and "door_1" read the same once sanitised: one would replace the other
            oid = f"{oid}_{hashlib.sha1(object_id.encode()).hexdigest()[:6]}"
        taken.add(oid)
        out[f"{m.discovery_prefix}/sensor/{node}/{oid}/config"] = {
            **fields, "unique_id": f"{node}_{oid}", "object_id": f"{node}_{oid}", **common}
    return out


def own_config_filter(cfg: Config) -> str:
    """The subscription that finds this device's retained discovery messages (to retire stale ones)."""
    return f"{cfg.uplink.mqtt.discovery_prefix}/+/{node_id(cfg.device.site, cfg.device.id)}/+/config"


class Announcer:
    """Publishes this device's discovery messages (retained) on every connection, and retires the entities
    of lines and zones no longer configured: the broker hands back what it retained under our node, and an
    empty retained message removes each one we do not announce any more."""

    def __init__(self, configs: dict[str, Payload], own_filter: str, log: Any) -> None:
        self.configs = configs
        self.own_filter = own_filter
        self.log = log

    def connected(self, client: Any) -> None:
        for topic, payload in self.configs.items():
            client.publish(topic, json.dumps(payload, sort_keys=True), qos=1, retain=True)
        client.subscribe(self.own_filter, qos=1)  # the broker answers with what it retained

    def retained(self, client: Any, topic: str, size: int) -> None:
        if size and topic not in self.configs:
            client.publish(topic, b"", qos=1, retain=True)
            self.log.info("mqtt.discovery_removed", topic=topic)


def announcer(cfg: Config, log: Any) -> Announcer | None:
    """The configured device's announcer (``None`` with ``uplink.mqtt.discovery`` off)."""
    return Announcer(discovery_configs(cfg), own_config_filter(cfg), log) if cfg.uplink.mqtt.discovery else None
