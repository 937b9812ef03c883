"""Sinks other than the broker: the HTTPS webhook's retry and secret handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from edgecount.stages.uplink_sinks import OutRow, SinkError, WebhookSink, read_secret
from edgecount_core.config import ConfigError, WebhookSection, parse_config

from .helpers import WebhookReceiver


def test_webhook_confirms_only_after_2xx_and_retries(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    hook = WebhookReceiver()
    try:
        cfg = WebhookSection(url=hook.url, token_file=str(token))
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
