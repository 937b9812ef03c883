"""Where records leave the device: a local JSON-lines file, an MQTT broker, an HTTPS webhook.

Every sink takes outbox rows in order and reports, in order, which ones are
delivered: the JSON-lines sink once the line is fsynced, MQTT once the broker
returned PUBACK for it (QoS 1), the webhook once the server answered 2xx. A
sink never holds more than its in-flight window; anything not confirmed is
sent again later (consumers de-duplicate by the record's ``id``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import ssl
import stat
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import attrs

from edgecount.runtime.backoff import Backoff
from edgecount.runtime.settings import state_dir
from edgecount.stages.ha_discovery import Announcer, announcer
from edgecount_core.config import Config
from edgecount_core.inflight import InFlight


@attrs.frozen
class OutRow:
    row_id: int
    record: dict[str, Any]
    blob: bytes | None = None  # a redacted JPEG (policy "snapshots")

    def as_json(self) -> dict[str, Any]:
        if self.blob is None:
            return self.record
        import base64

        return {**self.record, "jpeg_base64": base64.b64encode(self.blob).decode()}


class SinkError(RuntimeError):
    pass


def check_private(path: str, what: str) -> Path:
    """``path`` is a regular file only its owner can read (and we can); ``SinkError`` says the fix otherwise."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SinkError(f"{what}: secret file {p} does not exist") from None
    except OSError as exc:
        raise SinkError(f"{what}: cannot reach {p}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SinkError(f"{what}: {p} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SinkError(f"{what}: {p} is readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                        f"fix: chmod 600 {p}")
    if not os.access(p, os.R_OK):
        raise SinkError(f"{what}: {p} is not readable by this user (uid {os.getuid()}); fix: chown it to the "
                        "service user")
    return p


def read_secret(path: str, what: str) -> str:
    """A secret from a file that only its owner may read; its content is never logged."""
    p = check_private(path, what)
    try:
        return p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SinkError(f"{what}: cannot read {p}: {type(exc).__name__}") from None


def check_secrets(cfg: Config) -> list[str]:
    """Every problem with the configured sinks' files, before anything starts: secrets must be private,
    certificates readable (a missing one would otherwise fail the uplink at every start)."""
    up = cfg.uplink
    files, certs = [], []
    if "mqtt" in up.sinks:
        files += [(up.mqtt.password_file, "uplink.mqtt.password_file"), (up.mqtt.key_file, "uplink.mqtt.key_file")]
        if up.mqtt.tls:
            certs += [(up.mqtt.ca_file, "uplink.mqtt.ca_file"), (up.mqtt.cert_file, "uplink.mqtt.cert_file")]
    if "webhook" in up.sinks:
        files += [(up.webhook.token_file, "uplink.webhook.token_file")]
        certs += [(up.webhook.ca_file, "uplink.webhook.ca_file")]
    problems = []
    for path, what in files:
        if path:
            try:
                check_private(path, what)
            except SinkError as exc:
                problems.append(str(exc))
    for path, what in certs:
        if path and not os.access(path, os.R_OK):
            why = "does not exist" if not os.path.exists(path) else "is not readable by this user"
            problems.append(f"{what} {path} {why}; fix: copy the certificate there or correct the path")
    return problems


def mqtt_client(cfg: Any, client_id: str, v5: bool = True) -> Any:
    """A paho client for ``[uplink.mqtt]``: its protocol, login and TLS, as the sink and ``doctor`` both use."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if v5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=True)
    if cfg.username:
        password = read_secret(cfg.password_file, "uplink.mqtt.password_file") if cfg.password_file else None
        client.username_pw_set(cfg.username, password)
    if cfg.tls:
        if cfg.key_file:
            check_private(cfg.key_file, "uplink.mqtt.key_file")  # a private key is a secret like the password
        client.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                       keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
    return client


def probe_broker(cfg: Any, client_id: str, timeout_s: float = 5.0) -> str:
    """Log in to the broker as the uplink would (login, TLS, MQTT 5) and leave; "" when it accepted us, else
    the reason in its words. ``client_id`` must not be the device's own: the broker would close the device's
    session to let this one in."""
    import queue as _queue

    answers: _queue.Queue[Any] = _queue.Queue()
    try:
        client = mqtt_client(cfg, client_id)
        client.on_connect = lambda c, u, f, rc, p: answers.put(rc)
        client.connect(cfg.host, cfg.port, keepalive=10)
    except SinkError as exc:
        return str(exc)
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc}"
    except OSError as exc:
        return f"cannot connect to {cfg.host}:{cfg.port}: {exc.strerror or exc}"
    client.loop_start()
    try:
        rc = answers.get(timeout=timeout_s)
    except _queue.Empty:
        return f"{cfg.host}:{cfg.port} accepted the connection but never answered the MQTT login in {timeout_s:g} s"
    finally:
        client.disconnect()
        client.loop_stop()
    return "" if not rc.is_failure else f"the broker refused the login: {rc}"


class Sink(Protocol):
    name: str

    def wants(self) -> int:
        """How many more rows it takes now (0 while disconnected or backing off)."""
        ...

    def offer(self, rows: list[OutRow]) -> None:
        """Send these rows (ids ascending, after :meth:`offered_upto`)."""
        ...

    def offered_upto(self, confirmed: int) -> int:
        """The last row id already handed over and still awaiting confirmation, else ``confirmed``."""
        ...

    def confirmed(self) -> int:
        """The row id up to which everything is delivered, in order."""
        ...

    def publish_health(self, health: dict[str, Any]) -> None:
        """Send the device's periodic health where the sink has a place for it."""
        ...

    def status(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class JsonlSink:
    """Appends records to a file, fsynced before they count as delivered; bounded by rotation.

    A write that fails (a full disk) is cut back to where it started, so the file never holds half a line,
    and nothing is confirmed: the rows come again. A full file is renamed to ``.1`` (older ones shift up to
    ``keep``) before the next write, never in the middle of a batch.
    """

    name = "jsonl"

    def __init__(self, path: Path, max_bytes: int = 32 << 20, keep: int = 2) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.fd = self._open()
        self._confirmed = 0
        self.rotations = 0

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def wants(self) -> int:
        return 1000

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        for n in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if n == self.keep:
                older.unlink(missing_ok=True)
            newer = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
            if newer.exists():
                newer.rename(older)
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        self.fd = self._open()
        self.rotations += 1

    def offer(self, rows: list[OutRow]) -> None:
        if not rows:
            return
        if os.fstat(self.fd).st_size >= self.max_bytes:
            self._rotate()
        data = b"".join((json.dumps(r.as_json(), sort_keys=True) + "\n").encode() for r in rows)
        start = os.fstat(self.fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, start)  # no half line for a reader; the rows are offered again
            raise
        self._confirmed = rows[-1].row_id

    def offered_upto(self, confirmed: int) -> int:
        return confirmed

    def confirmed(self) -> int:
        return self._confirmed

    def publish_health(self, health: dict[str, Any]) -> None:
        pass  # the local file holds records only

    def status(self) -> dict[str, Any]:
        return {"jsonl_path": str(self.path), "jsonl_rotations": self.rotations}

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class MqttSink:
    """QoS 1 publisher (MQTT 5) with a retained ``status`` topic and an ``offline`` last will.

    MQTT 5, because a 3.1.1 broker cannot say "refused": Mosquitto acknowledges a publish its ACL denies,
    and the record would count as delivered and be gone. Under MQTT 5 the PUBACK carries a reason code; a
    refused record stays in the outbox, the sink reports degraded with the broker's reason and the topic,
    and tries again after a back-off (the operator fixes the ACL; nothing is lost). A broker that never
    acknowledges (``ack_timeout_s``) gets the same: reconnect, send again, degraded.
    """

    name = "mqtt"

    def __init__(self, cfg: Any, site: str, device: str, log: Any, announcer: Announcer | None = None,
                 per_camera: bool = False) -> None:
        self.cfg = cfg
        self.announcer = announcer  # Home Assistant discovery
        self.log = log
        self.base = f"{cfg.topic_prefix}/{site}/{device}"
        self.per_camera = per_camera  # topic layout 'camera': counts under <base>/<camera>/...
        self.status_topic = f"{self.base}/status"
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client_id = cfg.client_id or f"edgecount-{site}-{device}"
        self.v5 = True
        self.client = self._make_client()
        self.connected = False
        self.window = InFlight()
        self.last_error = ""
        self.published = 0
        self.refused = 0
        self.ack_timeouts = 0
        self.trouble = ""  # why the sink is degraded though connected (refused, unacknowledged); "" when fine
        self.retry_at = 0.0
        self.backoff = Backoff(1.0, float(cfg.reconnect_max_s))
        self._connect()

    def _make_client(self) -> Any:
        cfg = self.cfg
        client = mqtt_client(cfg, self.client_id, self.v5)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.max_inflight_messages_set(max(1, cfg.max_inflight))
        client.reconnect_delay_set(min_delay=1, max_delay=int(cfg.reconnect_max_s))
        client.on_connect = lambda c, u, f, rc, p: self.events.put(("connect", rc))
        client.on_disconnect = lambda c, u, f, rc, p: self.events.put(("disconnect", rc))
        client.on_publish = lambda c, u, mid, rc, p: self.events.put(("puback", (mid, rc)))
        client.on_connect_fail = lambda c, u: self.events.put(("connect_fail", None))
        client.on_message = lambda c, u, msg: self.events.put(("retained", (msg.topic, len(msg.payload))))
        return client

    def _fall_back_to_311(self) -> None:
        """A broker that speaks only MQTT 3.1.1 (Mosquitto 1.x): connect with that, and say what is lost."""
        self.v5 = False
        self.log.warning("mqtt.v5_unsupported", broker=f"{self.cfg.host}:{self.cfg.port}",
                         consequence="MQTT 3.1.1 cannot say a publish was refused: a record the broker's ACL "
                                     "denies counts as delivered", fix="use a broker with MQTT 5 (Mosquitto 2)")
        self.client.loop_stop()
        self.client = self._make_client()
        self._connect()

    def _connect(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive_s),
                                  **({"clean_start": True} if self.v5 else {}))
        self.client.loop_start()

    def _refused(self, topic: str, reason: Any) -> None:
        self.refused += 1
        self.trouble = f"broker refused {topic}: {reason}"
        delay = self.backoff.next()
        self.retry_at = time.monotonic() + delay
        self.log.error("mqtt.publish_refused", broker=f"{self.cfg.host}:{self.cfg.port}", topic=topic,
                       reason=str(reason), retry_in_s=round(delay, 1),
                       hint="the record stays in the outbox; check the broker's ACL for this client and topic")
        self.window.forget()  # sent again from the outbox after the back-off (consumers de-duplicate by id)

    def _check_ack_age(self) -> None:
        age = self.window.oldest_age(time.monotonic())
        if not self.connected or age < self.cfg.ack_timeout_s:
            return
        self.ack_timeouts += 1
        self.trouble = f"no PUBACK for {age:.0f} s from {self.cfg.host}:{self.cfg.port}"
        self.log.warning("mqtt.ack_timeout", broker=f"{self.cfg.host}:{self.cfg.port}", waited_s=round(age),
                         in_flight=len(self.window), action="reconnecting; the outbox sends again")
        self.window.forget()
        self.connected = False
        self.client.disconnect()
        self.client.loop_stop()
        self._connect()

    def _drain_events(self) -> None:
        while True:
            try:
                kind, value = self.events.get_nowait()
            except queue.Empty:
                break
            if kind == "connect":
                if self.v5 and getattr(value, "is_failure", False) and "protocol version" in str(value).lower():
                    self._fall_back_to_311()
                    continue
                if getattr(value, "is_failure", False):
                    self.last_error = f"broker refused the connection: {value}"
                    self.log.error("mqtt.refused", broker=f"{self.cfg.host}:{self.cfg.port}", reason=str(value))
                    continue
                self.connected = True
                self.last_error = ""
                self.client.publish(self.status_topic, "online", qos=1, retain=True)
                if self.announcer is not None:
                    self.announcer.connected(self.client)
                self.log.info("mqtt.connected", broker=f"{self.cfg.host}:{self.cfg.port}")
            elif kind in ("disconnect", "connect_fail"):
                if self.connected or kind == "connect_fail":
                    self.log.warning("mqtt.disconnected", broker=f"{self.cfg.host}:{self.cfg.port}",
                                     reason=str(value) if value is not None else "connection failed")
                self.last_error = f"not connected to {self.cfg.host}:{self.cfg.port}"
                self.connected = False
                self.window.forget()  # sent again from the outbox after reconnecting
            elif kind == "retained" and self.announcer is not None:
                self.announcer.retained(self.client, *value)
            elif kind == "puback":
                mid, reason = value
                if getattr(reason, "is_failure", False):
                    refused = self.window.refused(int(mid))
                    if refused is not None:
                        self._refused(refused[1], reason)
                    continue
                if self.window.acknowledged(int(mid)) is not None and self.trouble:
                    self.log.info("mqtt.acknowledging_again", broker=f"{self.cfg.host}:{self.cfg.port}")
                    self.trouble = ""
                    self.backoff.reset()

    def wants(self) -> int:
        self._drain_events()
        self._check_ack_age()
        if not self.connected or time.monotonic() < self.retry_at:
            return 0
        return max(0, int(self.cfg.max_inflight) - len(self.window))

    def offer(self, rows: list[OutRow]) -> None:
        for r in rows:
            if r.row_id <= self.window.last_sent:
                continue
            base = f"{self.base}/{r.record['camera']}" if self.per_camera else self.base
            if r.blob is not None:
                topic, payload = f"{base}/snapshot", r.blob  # the JPEG itself
            else:
                topic = f"{base}/counts/{r.record['kind']}/{r.record['name']}"
                payload = json.dumps(r.record, sort_keys=True).encode()
            # A day's running total is a state (Home Assistant reads it after a restart), a bucket is an event.
            info = self.client.publish(topic, payload, qos=1, retain=r.record["kind"] == "total")
            if info.rc != 0:
                self.connected = False
                return
            self.window.sent(info.mid, r.row_id, topic, time.monotonic())
            self.published += 1

    def offered_upto(self, confirmed: int) -> int:
        return self.window.last_sent if len(self.window) else confirmed

    def confirmed(self) -> int:
        self._drain_events()
        return self.window.confirmed

    def publish_health(self, health: dict[str, Any]) -> None:
        if self.connected:
            self.client.publish(f"{self.base}/health", json.dumps(health, sort_keys=True), qos=0)

    def status(self) -> dict[str, Any]:
        return {"broker_connected": self.connected, "broker": f"{self.cfg.host}:{self.cfg.port}",
                "mqtt_error": self.trouble or self.last_error, "mqtt_inflight": len(self.window),
                "mqtt_published": self.published, "mqtt_refused": self.refused,
                "mqtt_ack_timeouts": self.ack_timeouts, "sink_degraded": not self.connected or bool(self.trouble)}

    def close(self) -> None:
        if self.connected:
            self.client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()


class WebhookSink:
    """POSTs batches of records as a JSON array to exactly the configured URL; 2xx confirms the whole batch.

    Redirects are never followed (a 3xx is a failed delivery, logged with its location): a POST turned
    into a GET would be "delivered" without a body, and the bearer token must never travel to another
    origin. Every HTTP failure, including a malformed or endless response, is a retryable failure.
    """

    name = "webhook"

    def __init__(self, cfg: Any, log: Any) -> None:
        self.cfg = cfg
        self.log = log
        self.url = urllib.parse.urlsplit(cfg.url)
        if self.url.scheme not in ("http", "https") or not self.url.hostname:
            raise SinkError(f"uplink.webhook.url {cfg.url!r}: expected https://HOST[:PORT]/PATH")
        self.token = read_secret(cfg.token_file, "uplink.webhook.token_file") if cfg.token_file else None
        if self.token is not None:
            if self.url.scheme != "https":
                raise SinkError("uplink.webhook.token_file: a bearer token is only sent over https://; "
                                "fix: use an https:// url")
            if any(c in self.token for c in "\r\n\0") or not self.token.isprintable():
                raise SinkError(f"uplink.webhook.token_file {cfg.token_file}: the token holds a line break or "
                                "control character; fix: write the token alone on one line")
        self.ctx = ssl.create_default_context(cafile=cfg.ca_file or None) if self.url.scheme == "https" else None
        self._confirmed = 0
        self.retry_at = 0.0
        self.backoff = Backoff(1.0, 60.0)
        self.last_error = ""

    def wants(self) -> int:
        return 100 if time.monotonic() >= self.retry_at else 0

    def _post(self, body: bytes) -> str:
        """POST once; "" when the server answered 2xx, else why not."""
        u = self.url
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname or "", u.port, timeout=self.cfg.timeout_s, context=self.ctx)
        else:
            conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=self.cfg.timeout_s)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(1 << 16)  # a bounded read: an endless body ends at the timeout, not in memory
            if 200 <= resp.status < 300:
                return ""
            if 300 <= resp.status < 400:
                return f"HTTP {resp.status} redirect to {resp.getheader('Location', '?')!r} not followed"
            return f"HTTP {resp.status} {resp.reason}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        finally:
            conn.close()

    def offer(self, rows: list[OutRow]) -> None:
        if not rows:
            return
        failure = self._post(json.dumps([r.as_json() for r in rows]).encode())
        if not failure:
            self._confirmed = rows[-1].row_id
            self.backoff.reset()
            self.last_error = ""
        else:
            self.last_error = failure
            wait = self.backoff.next()
            self.log.warning("webhook.failed", url=self.cfg.url, reason=failure, retry_in_s=wait)
            self.retry_at = time.monotonic() + wait

    def offered_upto(self, confirmed: int) -> int:
        return confirmed  # a batch is confirmed or failed within offer()

    def confirmed(self) -> int:
        return self._confirmed

    def publish_health(self, health: dict[str, Any]) -> None:
        pass  # the webhook receives records only

    def status(self) -> dict[str, Any]:
        return {"webhook_error": self.last_error}

    def close(self) -> None:
        pass


#: ``uplink.sinks`` names and how each sink is built from the configuration.
SINKS: dict[str, Callable[[Config, Any], Sink]] = {
    "jsonl": lambda cfg, log: JsonlSink(Path(cfg.uplink.jsonl_path or state_dir(cfg) / "uplink.jsonl"),
                                        int(cfg.uplink.jsonl_max_mb * 2**20), cfg.uplink.jsonl_keep),
    "mqtt": lambda cfg, log: MqttSink(cfg.uplink.mqtt, cfg.device.site, cfg.device.id, log,
                                      announcer=announcer(cfg, log), per_camera=cfg.mqtt_per_camera()),
    "webhook": lambda cfg, log: WebhookSink(cfg.uplink.webhook, log),
}


def build_sinks(cfg: Config, log: Any) -> list[Sink]:
    """Every configured sink, in configuration order; ``SinkError`` if one cannot be set up."""
    unknown = [n for n in cfg.uplink.sinks if n not in SINKS]
    if unknown:
        raise SinkError(f"uplink.sinks: unknown {unknown}; choose from {sorted(SINKS)}")
    return [SINKS[name](cfg, log) for name in cfg.uplink.sinks]
