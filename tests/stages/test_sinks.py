"""Sinks other than the broker: the HTTPS webhook's retry and secret handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from edgecount.stages.uplink_sinks import MqttSink, OutRow, SinkError, WebhookSink, check_secrets, read_secret
from edgecount_core.config import ConfigError, WebhookSection, parse_config

from ..helpers import WebhookReceiver, make_tls_files


def test_webhook_confirms_only_after_2xx_and_retries(tmp_path: Path, tls: tuple[Path, Path, Path]) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    ca, crt, key = tls
    hook = WebhookReceiver(tls=(crt, key))
    try:
        cfg = WebhookSection(url=hook.url, ca_file=str(ca), token_file=str(token))
        sink = WebhookSink(cfg, structlog.get_logger())
        rows = [OutRow(i, {"id": f"r{i}", "in": i, "out": 0}) for i in (1, 2, 3)]
        hook.fail_next = 1
        sink.offer(rows)
        assert sink.confirmed() == 0 and sink.wants() == 0  # backing off after the 503
        sink.retry_at = 0
        sink.offer(rows)
        assert sink.confirmed() == 3
        assert [r["id"] for r in hook.received] == ["r1", "r2", "r3"]
        assert hook.auth[-1] == "Bearer s3cret"
    finally:
        hook.close()


def test_secrets_must_be_private_and_are_never_in_errors(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("hunter2")
    f.chmod(0o644)
    with pytest.raises(SinkError) as exc:
        read_secret(str(f), "uplink.mqtt.password_file")
    assert "chmod 600" in str(exc.value) and "hunter2" not in str(exc.value)
    f.chmod(0o600)
    assert read_secret(str(f), "x") == "hunter2"
    with pytest.raises(SinkError, match="does not exist"):
        read_secret(str(tmp_path / "missing"), "x")


def test_sink_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"webhook\.url"):
        parse_config({"uplink": {"sinks": ["webhook"]}})
    with pytest.raises(ConfigError, match="8883"):
        parse_config({"uplink": {"sinks": ["mqtt"], "mqtt": {"tls": True}}})


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _token(tmp_path: Path, text: str = "s3cret\n") -> Path:
    token = tmp_path / "token"
    token.write_text(text)
    token.chmod(0o600)
    return token


@pytest.mark.parametrize("mode", ["redirect", "garbage", "long_header", "hang"])
def test_webhook_failure_modes_are_retryable_and_keep_the_token_home(
        mode: str, tmp_path: Path, tls: tuple[Path, Path, Path]) -> None:
    ca, crt, key = tls
    hook, elsewhere = WebhookReceiver(tls=(crt, key)), WebhookReceiver()
    hook.mode, hook.redirect_to = mode, elsewhere.url
    try:
        cfg = WebhookSection(url=hook.url, ca_file=str(ca), token_file=str(_token(tmp_path)), timeout_s=0.5)
        sink = WebhookSink(cfg, structlog.get_logger())
        rows = [OutRow(1, {"id": "r1", "in": 1, "out": 0})]
        sink.offer(rows)  # must not raise, whatever the server does
        assert sink.confirmed() == 0, "a failed delivery was counted as delivered"
        assert sink.wants() == 0 and sink.last_error  # backing off, with the reason
        assert elsewhere.requests == [], "the request (and its token) followed the redirect"
        assert hook.auth == ["Bearer s3cret"]
        if mode == "redirect":
            assert elsewhere.url in sink.last_error
        hook.mode = "ok"
        hook.release.set()
        sink.retry_at = 0
        sink.offer(rows)
        assert sink.confirmed() == 1 and [r["id"] for r in hook.received] == ["r1"]
    finally:
        hook.close()
        elsewhere.close()


def test_webhook_token_needs_https_and_one_clean_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="https"):
        parse_config({"uplink": {"sinks": ["webhook"], "webhook": {"url": "http://example.invalid/x",
                                                                   "token_file": "/t"}}})
    cfg = WebhookSection.model_construct(url="http://127.0.0.1:9/x", token_file=str(_token(tmp_path)), ca_file="",
                                         timeout_s=1.0)
    with pytest.raises(SinkError, match="https"):
        WebhookSink(cfg, structlog.get_logger())
    bad = WebhookSection(url="https://127.0.0.1:9/x", token_file=str(_token(tmp_path, "abc\ndef\n")))
    with pytest.raises(SinkError, match="line break") as exc:
        WebhookSink(bad, structlog.get_logger())
    assert "abc" not in str(exc.value)


def test_secret_paths_that_are_directories_or_unreadable_are_clear_errors(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(SinkError, match="not a regular file"):
        read_secret(str(d), "uplink.mqtt.password_file")
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    cfg = parse_config({"uplink": {"sinks": ["mqtt"], "mqtt": {"tls": True, "port": 8883, "key_file": str(key),
                                                               "cert_file": str(key)}}})
    assert any("key_file" in p and "chmod 600" in p for p in check_secrets(cfg))
    with pytest.raises(SinkError, match="chmod 600"):
        MqttSink(cfg.uplink.mqtt, "s", "d", structlog.get_logger())
