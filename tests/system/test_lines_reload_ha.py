"""A line added with `lines set` on a running appliance gets its Home Assistant entities (issue 28).

Before: `lines set` restarted only the counter and privacy, and the uplink (which announces one entity per line)
kept announcing the old lines until it restarted for some other reason. `STAGES` now declares who reads the lines
at start (`reloads_on`), and `lines set` restarts exactly those.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecount import stages

from ..helpers import ROOT, Broker, HealthWatcher, MqttCapture, start_appliance, stop_appliance, write_run_config

pytestmark = pytest.mark.slow


def _announced_lines(port: int) -> set[str]:
    """The lines whose retained `_in` discovery config is on the broker now."""
    cap = MqttCapture(port, "homeassistant/#")
    time.sleep(1.0)
    with cap.lock:
        latest = dict(cap.messages)
    cap.close()
    objects = {topic.split("/")[3] for topic, payload in latest.items() if payload}
    return {o.removeprefix("line_").removesuffix("_in") for o in objects if o.startswith("line_") and
            o.endswith("_in") and not o.endswith("_today_in")}


def test_a_line_set_on_a_running_appliance_appears_in_home_assistant(
        runtime_dir: Path, pets09_clip: Path, ssd_model: object, broker: Broker) -> None:
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    cfg.write_text(cfg.read_text() + f'\n[uplink]\nsinks = ["mqtt"]\n\n[uplink.mqtt]\nhost = "127.0.0.1"\n'
                   f"port = {broker.port}\ndiscovery = true\n")
    assert stages.reloaded_by("lines") == ("counter", "privacy", "uplink")
    proc = start_appliance(cfg)
    try:
        watcher = HealthWatcher(runtime_dir)
        watcher.wait_for(lambda h: "uplink" in h and h["uplink"].stats.get("broker_connected") is True, 90,
                         "the uplink connected to the broker")
        watcher.close()
        deadline = time.monotonic() + 30
        while (before := _announced_lines(broker.port)) != {"v"} and time.monotonic() < deadline:
            pass
        assert before == {"v"}

        res = subprocess.run([sys.executable, "-m", "edgecount", "lines", "set", "gate", "0.2,0.2,0.2,0.9",
                              "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "reloaded: counter, privacy, uplink" in res.stdout

        deadline = time.monotonic() + 60
        while (after := _announced_lines(broker.port)) != {"v", "gate"} and time.monotonic() < deadline:
            pass
        assert after == {"v", "gate"}
    finally:
        stop_appliance(proc)
