"""`edgecount logs` (issue 31): one time-ordered stream with the watchdog's events, JSON that parses, -n in total,
quiet on a closed pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecount.tools.flight_log import Follower, merged_tail

from ..helpers import ROOT


def _line(t: int, service: str, event: str, **kw: object) -> str:
    return json.dumps({"timestamp": f"2026-12-04T10:00:{t:02d}.000000Z", "service": service, "level": "info",
                       "event": event, **kw})


def _logs(tmp: Path) -> Path:
    logs = tmp / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "counter.log").write_text("\n".join([_line(1, "counter", "counter.started"),
                                                 _line(5, "counter", "counter.state_saved")]) + "\n")
    (logs / "watchdog.log").write_text(_line(6, "watchdog", "watchdog.child_exited", child="counter", status=-9)
                                       + "\n" + _line(8, "watchdog", "watchdog.started", child="counter") + "\n")
    (logs / "inference.log").write_text(_line(2, "inference", "inference.ready") + "\n"
                                        + "XNNPACK delegate created for CPU\n" + _line(7, "inference", "x") + "\n")
    (logs / "capture.log").write_text("")
    return logs


def _config(tmp: Path) -> Path:
    (cfg := tmp / "c.toml").write_text(f'[runtime]\ndir = "{tmp}/rt"\nstate_dir = "{tmp}/state"\n')
    return cfg


def test_one_stream_in_time_order_with_the_watchdog(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    files = {n: logs / f"{n}.log" for n in ("watchdog", "capture", "inference", "counter")}
    events = [r.record["event"] for r in merged_tail(files, 20)]
    assert events == ["counter.started", "inference.ready", "output", "counter.state_saved",
                      "watchdog.child_exited", "x", "watchdog.started"]
    assert [r.record["event"] for r in merged_tail(files, 3)] == ["watchdog.child_exited", "x", "watchdog.started"]


@pytest.mark.parametrize("extra", [[], ["counter"]])
def test_json_lines_all_parse_and_n_counts_the_whole_stream(tmp_path: Path, extra: list[str]) -> None:
    _logs(tmp_path)
    got = subprocess.run([sys.executable, "-m", "edgecount", "logs", *extra, "--json", "-n", "5", "--config",
                          str(_config(tmp_path))], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert got.returncode == 0, got.stderr
    records = [json.loads(line) for line in got.stdout.splitlines()]
    assert len(records) == (5 if not extra else 2)
    if not extra:
        native = records[0]
        assert native["event"] == "output" and native["line"].startswith("XNNPACK")
        assert native["service"] == "inference"
        assert native["timestamp"].endswith(":02.000000Z")  # the time of the line before it in its file


def test_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    (logs / "counter.log").write_text("".join(_line(k % 60, "counter", f"e{k}", pad="x" * 200) + "\n"
                                              for k in range(5000)))
    cmd = f"{sys.executable} -m edgecount logs --json -n 5000 --config {_config(tmp_path)} | head -n 1"
    got = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert got.returncode == 0 and got.stderr == "" and json.loads(got.stdout)


def test_follow_merges_new_lines_and_waits_for_a_half_written_one(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    files = {n: logs / f"{n}.log" for n in ("watchdog", "counter", "privacy")}
    follow = Follower(files)
    assert follow.poll() == []
    with (logs / "counter.log").open("a") as f:
        f.write(_line(20, "counter", "late") + "\n" + _line(21, "counter", "half")[:30])
    (logs / "privacy.log").write_text(_line(19, "privacy", "privacy.started") + "\n")  # a process that began later
    assert [r.record["event"] for r in follow.poll()] == ["privacy.started", "late"]
    with (logs / "counter.log").open("a") as f:
        f.write(_line(21, "counter", "half")[30:] + "\n")
    assert [r.record["event"] for r in follow.poll()] == ["half"]
    follow.close()
