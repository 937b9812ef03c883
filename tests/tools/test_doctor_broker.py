"""`doctor`'s broker check logs in as the uplink would (issue 31): before, a TCP connect passed a wrong password."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgecount.tools.doctor import broker_check
from edgecount_core.config import parse_config

from ..helpers import free_port, make_tls_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, int]]:
    """A Mosquitto with a login on a plain port and on a TLS port."""
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    d = tmp_path_factory.mktemp("broker")
    make_tls_files(d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "counter", "s3cret-pw"], check=True)
    plain, tls = free_port(), free_port()
    (d / "m.conf").write_text(
        f"user {getpass.getuser()}\nper_listener_settings true\n"
        f"listener {plain} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n"
        f"listener {tls} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
        f"allow_anonymous false\npassword_file {d}/passwd\n")
    proc = subprocess.Popen([mosq, "-c", str(d / "m.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", tls), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield d, plain, tls
    proc.terminate()
    proc.wait(timeout=10)


def _mqtt(d: Path, port: int, password: str, **extra: object) -> object:
    pw = d / f"pw-{password}"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return parse_config({"device": {"site": "shop", "id": "dev1"}, "uplink": {"sinks": ["mqtt"], "mqtt": {
        "host": "localhost", "port": port, "username": "counter", "password_file": str(pw), **extra}}})


def test_a_wrong_password_fails_with_the_brokers_reason(secured: tuple[Path, int, int]) -> None:
    d, plain, _ = secured
    [check] = broker_check(_mqtt(d, plain, "wrong"))  # type: ignore[arg-type]
    assert check.status == "fail" and "refused the login" in check.detail, check
    assert "password" in check.fix
    [check] = broker_check(_mqtt(d, plain, "s3cret-pw"))  # type: ignore[arg-type]
    assert check.status == "pass" and "logged in as counter" in check.detail, check


def test_tls_is_checked_too(secured: tuple[Path, int, int]) -> None:
    d, _, tls = secured
    good = _mqtt(d, tls, "s3cret-pw", tls=True, ca_file=str(d / "ca.crt"))
    assert [c.status for c in broker_check(good)] == ["pass"]  # type: ignore[arg-type]
    other = d / "other"
    other.mkdir(exist_ok=True)
    make_tls_files(other)  # a CA that did not sign the broker's certificate
    [check] = broker_check(_mqtt(d, tls, "s3cret-pw", tls=True, ca_file=str(other / "ca.crt")))  # type: ignore[arg-type]
    assert check.status == "fail" and "TLS" in check.detail and "ca_file" in check.fix, check


def test_the_check_never_takes_the_devices_session(secured: tuple[Path, int, int]) -> None:
    d, plain, _ = secured
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgecount-shop-dev1", protocol=mqtt.MQTTv5)
    device.username_pw_set("counter", "s3cret-pw")
    drops: list[object] = []
    device.on_disconnect = lambda c, u, f, rc, p: drops.append(rc)
    device.connect("127.0.0.1", plain)
    device.loop_start()
    try:
        time.sleep(0.5)
        assert broker_check(_mqtt(d, plain, "s3cret-pw"))[0].status == "pass"  # type: ignore[arg-type]
        time.sleep(0.5)
        assert drops == [] and device.is_connected()
    finally:
        device.disconnect()
        device.loop_stop()
