"""The uplink over TLS with a password read from a 0600 file, against a real Mosquitto."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..helpers import ROOT, MqttCapture, free_port, make_tls_files

pytestmark = pytest.mark.slow


def test_uplink_delivers_over_tls_with_password(tmp_path: Path, pets09_clip: Path, ssd_model) -> None:
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosq).exists() or not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.fail("needs mosquitto, mosquitto_passwd and openssl (installed by .ci/run)")
    d = tmp_path
    make_tls_files(d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "counter", "s3cret-pw"], check=True)
    tls_port, plain_port = free_port(), free_port()
    import getpass

    (d / "m.conf").write_text(
        f"user {getpass.getuser()}\nper_listener_settings true\n"
        f"listener {tls_port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
        f"allow_anonymous false\npassword_file {d}/passwd\n"
        f"listener {plain_port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([mosq, "-c", str(d / "m.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        cap = MqttCapture(plain_port)  # a local observer on a plain listener of the same broker
        pw = d / "mqtt.pw"
        pw.write_text("s3cret-pw\n")
        pw.chmod(0o600)
        cfg = d / "c.toml"
        cfg.write_text(f"""
[device]
site = "tls"
id = "dev1"
[privacy]
bucket_s = 10
[uplink]
sinks = ["jsonl", "mqtt"]
[uplink.mqtt]
host = "localhost"
port = {tls_port}
tls = true
ca_file = "{d}/ca.crt"
username = "counter"
password_file = "{pw}"
[[lines]]
name = "v"
a = [0.5, 0.3]
b = [0.5, 1.0]
""")
        res = subprocess.run([sys.executable, "-m", "edgecount", "replay", str(pets09_clip), "--config", str(cfg),
                              "--json", "--publish", "--runtime-dir", str(d / "rt")], capture_output=True, text=True,
                             cwd=ROOT, timeout=400)
        assert res.returncode == 0, res.stderr[-2000:]
        report = json.loads(res.stdout)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not cap.records():
            time.sleep(0.2)
        recs = {r["id"]: r for r in cap.records()}
        cap.close()
        assert recs, "nothing arrived over TLS"
        total = sum(r["in"] + r["out"] for r in recs.values())
        assert total == report["lines"]["v"]["in"] + report["lines"]["v"]["out"]
        log = (d / "rt" / "state" / "logs" / "uplink.log").read_text()
        assert "s3cret-pw" not in log and "mqtt.connected" in log
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)
