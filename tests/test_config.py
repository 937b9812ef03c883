"""Configuration: errors name the key and the fix; the shipped files are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecount.cli import main
from edgecount.runtime.settings import load_config, to_toml
from edgecount_core.config import ConfigError, parse_config, parse_line_arg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["edgecount.toml", "demo.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "config" / name)
    assert cfg.lines
    # Writing it back and reading it again gives the same configuration.
    again = parse_config(__import__("tomllib").loads(to_toml(cfg.model_dump(mode="json"))))
    assert again == cfg


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"inference": {"threads": 0}}, "inference.threads", "greater than or equal to 1"),
        ({"inference": {"device": "tpu"}}, "inference.device", "'usb'"),
        ({"capture": {"ring_slot": 4}}, "capture.ring_slot", "unknown key"),
        ({"lines": [{"name": "x", "a": [0.1, 0.1], "b": [1.5, 0.2]}]}, "lines[0]", "outside 0..1"),
        ({"lines": [{"name": "x", "a": [0.1, 0.1], "b": [0.1, 0.1]}]}, "lines[0]", "same point"),
        ({"privacy": {"policy": "everything"}}, "privacy.policy", "counts"),
        ({"lines": [{"name": "d", "a": [0, 0], "b": [1, 1]}, {"name": "d", "a": [0, 1], "b": [1, 0]}]},
         "<top>", "unique"),
    ],
)
def test_errors_name_the_key(data: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, source="site.toml")
    text = str(exc.value)
    assert f"site.toml: {key}" in text and words in text


def test_line_argument_parsing() -> None:
    ln = parse_line_arg("door:0.5,0,0.5,1")
    assert ln.name == "door" and ln.a == (0.5, 0.0) and ln.b == (0.5, 1.0)
    for bad in ("door", "door:1,2,3", "door:a,b,c,d", "door:0,0,2,2"):
        with pytest.raises(ConfigError):
            parse_line_arg(bad)


def test_config_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[lines]]\nname = "a"\na = [0, 0.5]\nb = [1, 0.5]\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("[inference]\nthreads = -1\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("[inference\n")
    assert main(["config", "check", str(good)]) == 0
    assert main(["config", "check", str(bad)]) == 1
    assert main(["config", "check", str(broken), "--json"]) == 1
    assert "not valid TOML" in capsys.readouterr().out
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 1
    assert main(["no-such-command"]) == 2
