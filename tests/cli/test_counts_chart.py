"""`edgecount counts --chart`: in/out per line over time from the device's own history (issue 18, part 3)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from edgecount.cli import main
from edgecount.stages.outbox import FIRST_SCHEMA


def _history(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    con = sqlite3.connect(state / "uplink.db")
    con.executescript(FIRST_SCHEMA)
    now = time.time()
    rows = []
    for k in range(12):  # one record per 10 minutes over the last two hours, growing
        start = (now - 7200 + k * 600) // 60 * 60
        rows.append((f"d/line/door/{int(start)}", "line", "door", start, 60.0, k, 1))
        rows.append((f"d/event/door/{int(start)}", "event", "door", start, 10.0, 100, 100))  # not counted twice
    con.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[runtime]\nstate_dir = "{state}"\n[[lines]]\nname = "door"\na = [0.5, 0.1]\nb = [0.5, 0.9]\n'
                   '[[lines]]\nname = "quiet"\na = [0.2, 0.1]\nb = [0.2, 0.9]\n')
    return cfg


def test_chart_series_as_json_add_up_to_the_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _history(tmp_path)
    assert main(["counts", "--chart", "--since", "3h", "--by", "30m", "--json", "--config", str(cfg)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["by_s"] == 1800 and len(data["bins"]) in (6, 7)
    door = data["series"]["line:door"]
    assert sum(door["in"]) == sum(range(12)) and sum(door["out"]) == 12
    assert data["series"]["line:quiet"] == {"in": [0] * len(data["bins"]), "out": [0] * len(data["bins"])}


def test_chart_is_drawn_in_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _history(tmp_path)
    assert main(["counts", "--chart", "--since", "3h", "--by", "30m", "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "people per 30 min" in text and "line:door in" in text and "line:door out" in text
    assert "\x1b[" not in text  # no colour codes when not on a terminal
    assert main(["counts", "--chart", "--since", "30d", "--by", "1m", "--config", str(cfg)]) == 2


@pytest.mark.parametrize("bad", ["nan", "inf", "-2h", "nanm", "infd"])
def test_a_duration_that_is_not_one_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str], bad: str) -> None:
    """Issue 32, LOW: `--since nan` and `--by inf` were taken as durations."""
    cfg = _history(tmp_path)
    assert main(["counts", "--config", str(cfg), "--chart", f"--since={bad}"]) == 2
    assert main(["counts", "--config", str(cfg), "--chart", f"--by={bad}"]) == 2
    assert "use a duration" in capfd.readouterr().err
