"""Configuration: errors name the key and the fix; the shipped files are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecount.cli import main
from edgecount.runtime.settings import load_config, to_toml
from edgecount_core.config import ConfigError, LineSection, parse_config, parse_line_arg

ROOT = Path(__file__).resolve().parents[2]


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
        ({"inference": {"threads": 0}}, "inference.threads", "must be 1..64 or 'auto'"),
        ({"inference": {"threads": "many"}}, "inference.threads", "auto"),
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
    assert main(["config", "check", str(bad)]) == 2
    assert main(["config", "check", str(broken), "--json"]) == 2
    assert "not valid TOML" in capsys.readouterr().out
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 2
    assert main(["no-such-command"]) == 2


@pytest.mark.parametrize(("content", "words"), [
    (b"# T\xfcr\n", "not UTF-8"),
    (b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),
    (b"[inference\n", "not valid TOML"),
    (b"[device]\nsite = \"a\0b\"\n", "not valid TOML"),
])
def test_an_unreadable_configuration_is_one_line_and_exit_2(tmp_path: Path, content: bytes, words: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "site.toml"
    f.write_bytes(content)
    assert main(["run", "--config", str(f)]) == 2  # systemd does not retry status 2 (RestartPreventExitStatus)
    text = capsys.readouterr().err
    assert words in text and str(f) in text and "Traceback" not in text


def test_a_directory_as_configuration_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_a_windows_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "bom.toml"
    f.write_bytes("\ufeff[device]\nsite = \"shop\"\n".encode())
    assert load_config(f).device.site == "shop"


@pytest.mark.parametrize(("data", "key", "words"), [
    ({"device": {"site": "a/b"}}, "device.site", "topic level"),
    ({"device": {"id": "dev#1"}}, "device.id", "wildcards"),
    ({"device": {"id": "dev\x01"}}, "device.id", "control"),
    ({"uplink": {"mqtt": {"topic_prefix": "pre+fix"}}}, "uplink.mqtt.topic_prefix", "wildcards"),
    ({"watchdog": {"heartbeat_s": 20, "hang_timeout_s": 15}}, "watchdog", "below hang_timeout_s"),
    ({"watchdog": {"backoff_initial_s": 60, "backoff_max_s": 30}}, "watchdog", "backoff_max_s"),
    ({"capture": {"reconnect_initial_s": 60, "reconnect_max_s": 30}}, "capture", "reconnect_max_s"),
    ({"capture": {"max_width": 8000, "max_height": 8000, "ring_slots": 8}}, "capture", "shared memory"),
    ({"tracker": {"low_score": 0.7, "high_score": 0.5}}, "tracker", "low_score <= high_score"),
    ({"uplink": {"sinks": ["jsonl", "jsonl"]}}, "uplink", "more than once"),
    ({"uplink": {"sinks": ["webhook"], "webhook": {"url": "http://h/x", "token_file": "/t"}}}, "uplink.webhook",
     "https"),
    ({"uplink": {"sinks": ["webhook"], "webhook": {"url": "https://h/x", "timeout_s": 10}}}, "<top>",
     "hang_timeout_s"),
    ({"runtime": {"dir": "/tmp/" + "d" * 90}}, "<top>", "unix socket limit"),
    # issue 32, item 4: each of these passed `config check` and crash-looped the uplink
    ({"uplink": {"sinks": ["webhook"], "webhook": {"url": "https://"}}}, "uplink", "no host name"),
    ({"uplink": {"sinks": ["webhook"], "webhook": {"url": "https://h:99999/x"}}}, "uplink", "out of range"),
    ({"uplink": {"sinks": ["webhook"], "webhook": {"url": "https://h:abc/x"}}}, "uplink", "Port could not"),
    ({"uplink": {"sinks": ["webhook"], "webhook": {"url": "https://[::1/x"}}}, "uplink", "IPv6"),
    ({"uplink": {"mqtt": {"keepalive_s": float("inf")}}}, "uplink.mqtt.keepalive_s", "65535"),
    ({"uplink": {"mqtt": {"keepalive_s": 70000}}}, "uplink.mqtt.keepalive_s", "65535"),
    ({"uplink": {"mqtt": {"reconnect_max_s": float("inf")}}}, "uplink.mqtt.reconnect_max_s", "3600"),
])
def test_what_would_fail_at_run_time_is_refused_by_config_check(data: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, source="site.toml")
    assert f"site.toml: {key}" in str(exc.value) and words in str(exc.value)


def test_lines_set_keeps_comments_layout_and_odd_values(tmp_path: Path) -> None:
    from edgecount.tools.config_edit import set_line

    f = tmp_path / "site.toml"
    original = '''# Shop entrance, installed 2026-11-02 by J.
[device]
site = "shop"   # as the operator's dashboard names it
id = "door-1"

[uplink.mqtt]
client_id = """counter
two lines"""

# The doorway itself.
[[lines]]
name = "door"
a = [0.1, 0.5]
b = [0.9, 0.5]
'''
    f.write_text(original)
    set_line(f, parse_line_arg("door:0.2,0.6,0.8,0.6"))
    set_line(f, parse_line_arg("stairs:0.5,0.1,0.5,0.9"))
    text = f.read_text()
    for kept in ("# Shop entrance, installed 2026-11-02 by J.", "# as the operator's dashboard names it",
                 "# The doorway itself."):
        assert kept in text
    cfg = load_config(f)
    assert cfg.uplink.mqtt.client_id == "counter\ntwo lines"
    assert [(ln.name, ln.a, ln.b) for ln in cfg.lines] == [("door", (0.2, 0.6), (0.8, 0.6)),
                                                           ("stairs", (0.5, 0.1), (0.5, 0.9))]
    before = f.read_text()
    with pytest.raises(ConfigError):
        set_line(f, LineSection.model_construct(name="bad", a=(0.1, 0.1), b=(0.1, 0.1)))
    assert f.read_text() == before  # nothing invalid is ever written


def test_auto_threads_leave_one_core_for_the_rest_of_the_pipeline() -> None:
    inf = parse_config({"inference": {"threads": "auto"}}).inference
    assert [inf.thread_count(n) for n in (1, 2, 4, 8, 64)] == [1, 1, 3, 4, 4]
    assert parse_config({"inference": {"threads": 3}}).inference.thread_count(2) == 3  # explicit wins


def test_a_missing_certificate_is_refused_by_config_check_and_run(tmp_path: Path,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """Before: `config check` passed a TLS ca_file that does not exist, and the uplink failed at every start."""
    from edgecount.cli import main

    f = tmp_path / "c.toml"
    f.write_text(f'[runtime]\nstate_dir = "{tmp_path}/state"\n[uplink]\nsinks = ["mqtt"]\n'
                 f'[uplink.mqtt]\ntls = true\nport = 8883\nca_file = "{tmp_path}/missing-ca.pem"\n')
    assert main(["config", "check", str(f)]) == 2
    assert "uplink.mqtt.ca_file" in capfd.readouterr().err
    assert main(["run", "--config", str(f)]) == 2
    assert "missing-ca.pem does not exist" in capfd.readouterr().err


def test_lines_set_keeps_a_symlink_its_owner_and_a_concurrent_edit(tmp_path: Path) -> None:
    """Issue 32, LOW: `lines set` replaced a symlinked configuration with a file, gave the file to whoever ran
    it, and overwrote an edit saved while it worked."""
    import os

    from edgecount.tools.config_edit import set_line, write_validated
    from edgecount_core.config import LineSection

    real = tmp_path / "etc" / "edgecount.toml"
    real.parent.mkdir()
    real.write_text('[[lines]]\nname = "door"\na = [0.5, 0.1]\nb = [0.5, 0.9]\n')
    link = tmp_path / "site.toml"
    link.symlink_to(real)
    if os.geteuid() == 0:
        os.chown(real, 65534, 65534)
    set_line(link, LineSection(name="gate", a=(0.2, 0.1), b=(0.2, 0.9)))
    assert link.is_symlink() and "gate" in real.read_text()
    if os.geteuid() == 0:
        assert (real.stat().st_uid, real.stat().st_gid) == (65534, 65534)
    before = real.read_text()
    with pytest.raises(ConfigError, match="changed by someone else"):
        write_validated(real, before + '\n[[lines]]\nname = "x"\na = [0.1, 0.1]\nb = [0.1, 0.9]\n',
                        original=before.replace("gate", "gate2"))
    assert real.read_text() == before


def test_the_domain_defaults_and_the_configuration_defaults_agree() -> None:
    """Issue 28: tracker and linker defaults were written twice (the domain types and the config sections)
    with nothing checking the copies; the counter is now built from the section by field name."""
    import attrs

    from edgecount_core.camera import DEFAULT_BAND
    from edgecount_core.config import LINK_FIELDS, CountingSection, TrackerSection
    from edgecount_core.linking import LinkConfig
    from edgecount_core.tracker import TrackerConfig

    tracker_fields = {f.name for f in attrs.fields(TrackerConfig)}
    for name, field in TrackerSection.model_fields.items():
        assert name in tracker_fields, f"tracker.{name} sets no tracker field"
        assert field.default == getattr(TrackerConfig(), name), f"tracker.{name}: two defaults"
    for key, name in LINK_FIELDS.items():
        assert CountingSection.model_fields[key].default == getattr(LinkConfig(), name), f"counting.{key}"
    assert CountingSection.model_fields["band"].default == DEFAULT_BAND
    counter = parse_config({"tracker": {"max_lost_s": 2.5, "colour_weight": 0}}).camera_counter()
    assert counter.tracker.cfg.max_lost_s == 2.5 and counter.tracker.cfg.colour_weight == 0


def _unit_keys() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for raw in (ROOT / "yocto/systemd/edgecount.service").read_text().splitlines():
        key, eq, value = raw.partition("=")
        if eq and not raw.startswith("#"):
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_an_accelerator_model_may_be_absent_with_the_accelerator(tmp_path: Path) -> None:
    """The Edge TPU's own file missing is not a mistake: the CPU model runs, flagged degraded (the fallback test)."""
    from edgecount.assets.obtain import AssetStore
    from edgecount.detection.model_files import model_problems

    cfg = parse_config({"inference": {"device": "usb", "model": "/nowhere/m_edgetpu.tflite",
                                      "fallback_model": "ssd_mobilenet_v1_coco_quant",
                                      "tpu_fallback_model": "/nowhere/other_edgetpu.tflite"}})
    assert model_problems(cfg, AssetStore.for_config(cfg)) == []


@pytest.mark.parametrize("mistake,needle", [
    ('[inference]\nmodel = "yolox_nano2"\n', "did you mean 'yolox_nano'"),
    ('[inference]\nmodel = "face_detection_short_range"\n', "detects faces, not people"),
    ('[inference]\nfallback_model = "/nowhere/m.tflite"\n', "no such file"),
    ('[inference]\nmodel = "/nowhere/m.tflite"\n', "no such file"),
    ('[inference]\ndevice = "usb"\nmodel = "ssd_mobilenet_edgtpu"\n', "no model of that name"),
    ('[capture]\nsource = "/nowhere/door.mp4"\n', "no such file"),
    ('[inference]\nmodle = "yolox_nano"\n', "unknown key"),
    ('[counting]\nband = -1\n', "counting.band"),
    ('[uplink]\nsinks = ["mqtt"]\n[uplink.mqtt]\nusername = "u"\npassword_file = "PW"\n', "chmod 600"),
])
def test_a_typo_in_the_configuration_never_restarts_or_reboots_the_device(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], mistake: str, needle: str) -> None:
    """Issue 31: `run` exited 1 on an unknown model, which the shipped unit restarts until its start limit
    reboots the device; `config check` passed the same file."""
    unit = _unit_keys()
    assert unit["Restart"] == ["on-failure"] and unit["StartLimitAction"] == ["reboot"]
    spared = {int(v) for value in unit["RestartPreventExitStatus"] for v in value.split()}
    (pw := tmp_path / "pw").write_text("secret\n")
    pw.chmod(0o644)  # readable by every user of the device
    f = tmp_path / "site.toml"
    f.write_text(f'[runtime]\ndir = "{tmp_path}/rt"\nstate_dir = "{tmp_path}/st"\n' + mistake.replace("PW", str(pw)))
    assert main(["config", "check", str(f)]) == 2
    assert needle in capfd.readouterr().err
    code = main(["run", "--config", str(f)])
    assert code in spared, f"run exits {code} on this mistake: systemd restarts it, then reboots the device"
    assert needle in capfd.readouterr().err
