"""Brokers that acknowledge and discard, and brokers that never acknowledge (issue 32, items 6 and 7).

A real Mosquitto whose ACL denies the count topics (as an ACL written for single-camera topics does once
``[[cameras]]`` adds a level), and a fake broker that accepts the connection and every publish but never
sends PUBACK. Before: 50 of 50 records confirmed and deleted with the ACL denying them all; 0 of 500
confirmed in 30 s with nothing timing out and health ``ok``. Now the records stay in the outbox, the sink
says why it is degraded, and they are delivered once the broker takes them.
"""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from edgecount.stages.uplink_sinks import MqttSink, OutRow
from edgecount_core.config import MqttSection

from ..helpers import Broker, MqttCapture

pytestmark = pytest.mark.slow


def _rows(n: int) -> list[OutRow]:
    return [OutRow(i, {"id": f"test/dev1/line/door/{i * 60}", "site": "test", "device": "dev1", "camera": "main",
                       "kind": "line", "name": "door", "bucket_start": i * 60, "bucket_s": 60, "in": 1, "out": 0})
            for i in range(1, n + 1)]


def _deliver(sink: MqttSink, rows: list[OutRow], seconds: float) -> None:
    """What the uplink does every turn: offer what the sink wants after what it confirmed."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n = sink.wants()
        if n:
            after = sink.offered_upto(sink.confirmed())
            sink.offer([r for r in rows if r.row_id > after][:n])
        time.sleep(0.05)


def _wait(cond: Any, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


class _AclBroker(Broker):
    """Mosquitto allowing anonymous clients only the topics of ``allowed`` (reloaded on SIGHUP)."""

    def __init__(self, workdir: Path, allowed: list[str]) -> None:
        super().__init__(workdir)
        self.acl = workdir / "acl"
        self.allow(allowed)
        self.conf.write_text(self.conf.read_text() + f"acl_file {self.acl}\n")

    def allow(self, topics: list[str]) -> None:
        self.acl.write_text("".join(f"topic readwrite {t}\n" for t in topics))
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)


def test_a_publish_the_acl_denies_stays_in_the_outbox_and_is_reported(tmp_path: Path) -> None:
    broker = _AclBroker(tmp_path, ["edgecount/test/dev1/status", "edgecount/test/dev1/health",
                                   "edgecount/test/dev1/main/counts/#"])  # written for another topic layout
    broker.start()
    cap = MqttCapture(broker.port)
    sink = MqttSink(MqttSection(host="127.0.0.1", port=broker.port, reconnect_max_s=2), "test", "dev1",
                    structlog.get_logger())
    rows = _rows(50)
    try:
        assert _wait(lambda: sink.wants() > 0, 20), "the sink never connected"
        _deliver(sink, rows, 3)
        status = sink.status()
        assert sink.confirmed() == 0, "a record the broker refused counted as delivered"
        assert status["mqtt_refused"] >= 1 and status["sink_degraded"]
        assert "Not authorized" in status["mqtt_error"] and "counts/line/door" in status["mqtt_error"]
        assert not [r for r in cap.records() if r.get("kind") == "line"]
        broker.allow(["edgecount/#"])  # the operator fixes the ACL
        _deliver(sink, rows, 1)
        assert _wait(lambda: (_deliver(sink, rows, 0.3), sink.confirmed())[1] == 50, 30), sink.status()
        assert not sink.status()["sink_degraded"]
        assert _wait(lambda: len({r["id"] for r in cap.records() if r.get("kind") == "line"}) == 50, 10)
    finally:
        sink.close()
        cap.close()
        broker.stop()


class _SilentBroker:
    """Speaks just enough MQTT (5 or 3.1.1) to be connected to (CONNACK, PINGRESP) and never acknowledges a
    publish."""

    def __init__(self, only_311: bool = False, acknowledge: bool = False) -> None:
        self.only_311, self.acknowledge = only_311, acknowledge
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.publishes = 0
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while self.running:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        try:
            while self.running:
                kind = self._read(conn, 1)[0] >> 4
                length, shift = 0, 0
                while True:
                    byte = self._read(conn, 1)[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = self._read(conn, length)
                if kind == 1 and body[6] == 5 and self.only_311:  # a 3.1.1 broker: unacceptable protocol version
                    conn.sendall(struct.pack("!BBBB", 0x20, 2, 0, 1))
                    return
                if kind == 1 and body[6] == 5:  # CONNECT (MQTT 5) -> CONNACK: no session, success, no properties
                    conn.sendall(struct.pack("!BBBBB", 0x20, 3, 0, 0, 0))
                elif kind == 1:  # CONNECT (3.1.1) -> CONNACK
                    conn.sendall(struct.pack("!BBBB", 0x20, 2, 0, 0))
                elif kind == 12:  # PINGREQ -> PINGRESP
                    conn.sendall(b"\xd0\x00")
                elif kind == 3:
                    self.publishes += 1
                    if self.acknowledge:  # 3.1.1 QoS 1: topic, then the packet id
                        topic_len = struct.unpack("!H", body[:2])[0]
                        conn.sendall(b"\x40\x02" + body[2 + topic_len:4 + topic_len])
                elif kind == 14:
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.running = False
        self.server.close()


def test_a_broker_that_never_acknowledges_is_left_and_reported() -> None:
    broker = _SilentBroker()
    sink = MqttSink(MqttSection(host="127.0.0.1", port=broker.port, reconnect_max_s=1, ack_timeout_s=2,
                                max_inflight=5), "test", "dev1", structlog.get_logger())
    rows = _rows(20)
    try:
        assert _wait(lambda: sink.wants() > 0, 20), "the sink never connected"
        _deliver(sink, rows, 7)
        status = sink.status()
    finally:
        sink.close()
        broker.close()
    assert sink.confirmed() == 0
    assert status["mqtt_ack_timeouts"] >= 2 and broker.connections >= 2, (status, broker.connections)
    assert status["sink_degraded"] and "no PUBACK" in status["mqtt_error"]
    assert broker.publishes >= 10  # the same records sent again after each reconnect


def test_a_broker_that_speaks_only_mqtt_311_still_gets_the_records() -> None:
    """A broker without MQTT 5 (Mosquitto 1.x) refuses the protocol version: the sink says what that costs
    and connects with 3.1.1, rather than never delivering."""
    broker = _SilentBroker(only_311=True, acknowledge=True)
    sink = MqttSink(MqttSection(host="127.0.0.1", port=broker.port, reconnect_max_s=1), "test", "dev1",
                    structlog.get_logger())
    rows = _rows(5)
    try:
        assert _wait(lambda: sink.wants() > 0, 20), "the sink never connected"
        assert _wait(lambda: (_deliver(sink, rows, 0.3), sink.confirmed())[1] == 5, 20), sink.status()
    finally:
        sink.close()
        broker.close()
    assert not sink.v5 and broker.connections >= 2
