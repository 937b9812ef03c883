"""``edgecount validate``: a clip's ground truth as a tally, tally files against the device, the live keypad."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from datetime import datetime
from pathlib import Path

import pytest
import zmq

from edgecount.runtime import bus
from edgecount.runtime.settings import load_config
from edgecount.runtime.store import Store
from edgecount.stages.crossing_journal import KEEP_S, CrossingJournal, read_crossings
from edgecount.tools.validate import last_result, summary

from ..helpers import ROOT, edgecount

LINES = ("door:0.666,0,0.666,1", "side:0.4,0,0.4,1")


def _config(tmp: Path) -> Path:
    rd = Path(f"/tmp/ec-val-{os.getpid()}-{tmp.name[-12:]}")
    (path := tmp / "cfg.toml").write_text(f"""
[runtime]
dir = "{rd}"
state_dir = "{tmp / 'state'}"

[[lines]]
name = "door"
a = [0.5, 0.0]
b = [0.5, 1.0]

[[lines]]
name = "side"
a = [0.2, 0.0]
b = [0.2, 1.0]
""")
    return path


def _journal(tmp: Path, rows: list[tuple[float, str, str]]) -> None:
    store = Store(tmp / "state" / "counter.db")
    journal = CrossingJournal(store.db)
    with store.transaction():
        for ts, line, direction in rows:
            journal.add(ts, "main", line, direction)
    store.close()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat()


@pytest.mark.slow
def test_a_tally_from_ground_truth_gives_the_same_per_line_errors_as_eval(tmp_path: Path) -> None:
    from edgecount.tools.scenes import BUILTIN_SCENES
    from edgecount_core.config import parse_line_arg
    from edgecount_core.geometry import Line
    from edgecount_core.groundtruth import parse_mot, true_line_events

    mirror = Path(os.environ["EDGECOUNT_ASSET_MIRROR"]) / "tud-stadtmitte"
    assert BUILTIN_SCENES["tud"].video == "asset:tud_stadtmitte"
    gt = parse_mot((mirror / "gt.txt").read_text())
    fps = 25.0  # the clip's rate (its README); a wrong one would shift every tallied time and fail below
    lines = [parse_line_arg(s) for s in LINES]
    _, events = true_line_events(gt, [Line(ln.name, ln.a, ln.b) for ln in lines], 640, 480, fps=fps)
    tally = tmp_path / "tally.csv"
    tally.write_text("time,line,direction\n" + "".join(f"{(e.seq - 1) / fps:.3f},{e.line},{e.direction}\n"
                                                         for e in events))
    args = [a for s in LINES for a in ("--line", s)] + ["--config", str(ROOT / "config/demo.toml"), "--json"]
    got = edgecount("validate", "asset:tud_stadtmitte", "--tally", str(tally), *args)
    assert got.returncode in (0, 1), got.stderr
    report = json.loads(got.stdout)
    ev = edgecount("eval", "asset:tud_stadtmitte", "asset:tud_stadtmitte_gt", *args)
    assert ev.returncode == 0, ev.stderr
    counts = json.loads(ev.stdout)["counts"]["lines"]
    for name, c in counts.items():
        mine = report["lines"][name]
        assert (mine["in"]["tally"], mine["out"]["tally"]) == (c["true_in"], c["true_out"])
        assert (mine["in"]["device"], mine["out"]["device"]) == (c["in"], c["out"])
        assert abs(mine["in"]["device"] - mine["in"]["tally"]) + abs(mine["out"]["device"] - mine["out"]["tally"]) \
            == c["abs_error"]
    assert report["tally"] == len(events) > 0
    # Every device crossing that matches pairs within the tolerance with the annotated one.
    assert report["matched"] + report["missed"] == report["tally"]


def test_a_tally_file_against_the_device_names_every_miss_and_extra(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    now = time.time()
    t0 = now - 3600
    truth = [(t0 + 10.0 * k, "door" if k % 3 else "side", "in" if k % 2 else "out") for k in range(60)]
    missed = {5, 17, 40}
    device = [(t + 0.8, ln, d) for k, (t, ln, d) in enumerate(truth) if k not in missed]
    device += [(t0 + 10.0 * k + 5.0, "door", "in") for k in (3, 30)]  # nobody there: extras
    device += [(t0 - 500, "door", "in"), (now - 60, "door", "out")]  # before and after the tally: not compared
    _journal(tmp_path, device)
    tally = tmp_path / "tally.csv"
    tally.write_text("time,line,direction\n" + "".join(f"{_iso(t)},{ln},{d}\n" for t, ln, d in truth))
    got = edgecount("validate", "--tally", str(tally), "--config", str(cfg), "--json")
    assert got.returncode == 0, got.stderr
    r = json.loads(got.stdout)
    assert (r["tally"], r["matched"], r["missed"], r["extra"]) == (60, 57, 3, 2)
    missed_at = sorted(t for ln in r["lines"].values() for d in ln.values() for t in d["missed_at"])
    assert missed_at == pytest.approx(sorted(truth[k][0] for k in missed), abs=1e-3)
    # Two misses of door-in are made up for by its two extras in the count, not in the events.
    assert r["count_accuracy"] == pytest.approx(1 - 1 / 60) and r["verdict"] == "PASS"
    assert r["event_accuracy"] == pytest.approx(57 / 62)
    assert 0 < r["ci95"][0] < r["event_accuracy"] < r["ci95"][1] <= 1
    kept = last_result(load_config(cfg))
    assert kept is not None and kept["verdict"] == "PASS" and kept["tally"] == 60
    assert "PASS, count accuracy 98.3% over 60" in summary(kept, now)


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("time,line,direction\n2026-12-04T10:00:00,window,in\n", "row 2: unknown line 'window'"),
    ("time,line,direction\nlunchtime,door,in\n", "row 2: time 'lunchtime'"),
    ("time,line,direction\n2026-12-04T10:00:00,door,across\n", "row 2: direction 'across'"),
])
def test_a_bad_tally_file_is_refused_naming_the_row_and_nothing_is_kept(tmp_path: Path, text: str,
                                                                         needle: str) -> None:
    cfg = _config(tmp_path)
    (tally := tmp_path / "tally.csv").write_text(text)
    got = edgecount("validate", "--tally", str(tally), "--config", str(cfg))
    assert got.returncode == 2 and needle in " ".join(got.stderr.split()), got.stderr
    assert not (tmp_path / "state" / "validation.json").exists()


def test_options_that_cannot_work_are_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    got = edgecount("validate", "clip.avi", "--config", str(cfg))
    assert got.returncode == 2 and "--tally FILE" in got.stderr
    (tally := tmp_path / "t.csv").write_text("time,line,direction\n12.5,door,in\n")
    got = edgecount("validate", "--tally", str(tally), "--config", str(cfg))
    assert got.returncode == 1 and "clip it was counted on" in got.stderr
    got = edgecount("validate", "--config", str(cfg), "--camera", "back")
    assert got.returncode == 2 and "--camera main" in got.stderr


def test_the_journal_keeps_a_week_and_reads_one_camera(tmp_path: Path) -> None:
    store = Store(tmp_path / "counter.db")
    journal = CrossingJournal(store.db)
    with store.transaction():
        journal.add(1000.0, "main", "door", "in")
        journal.add(1000.5, "front", "door", "out")
        journal.add(1000.0 + KEEP_S + 1, "main", "door", "out")  # prunes the first: older than a week by then
    assert [c.t for c in read_crossings(tmp_path / "counter.db", 0, 1e12, "main")] == [1000.0 + KEEP_S + 1]
    assert read_crossings(tmp_path / "counter.db", 0, 1e12, "front") == []
    store.close()


def _read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    got = b""
    end = time.monotonic() + timeout
    while needle not in got:
        left = end - time.monotonic()
        assert left > 0, f"{needle!r} never came; the screen showed:\n{got[-2000:].decode(errors='replace')}"
        if select.select([fd], [], [], min(left, 0.5))[0]:
            try:
                got += os.read(fd, 65536)
            except OSError:
                break
    return got


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_live_keys_in_table_out_with_a_resize_and_q(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    conf = load_config(cfg)
    ctx: zmq.Context[object] = zmq.Context()
    bus.ensure_runtime_dir(conf.runtime.dir)
    counter = bus.Publisher(ctx, conf.runtime.dir, "counter")  # the appliance's counter is up
    _journal(tmp_path, [])
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on a terminal of its own
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "edgecount", "validate", "--config", str(cfg),
                                  "--tolerance", "1"])
    try:
        _winsize(fd, 30, 110)
        screen = _read_until(fd, b"press the key")
        assert b"door" in screen and b"side" in screen
        for key in (b"i", b"i", b"x", b"o", b"1"):
            os.write(fd, key)
            time.sleep(0.15)
        os.write(fd, b"u")  # the side line's press was a mistake
        now = time.time()
        _journal(tmp_path, [(now - 0.3, "door", "in"), (now - 0.2, "door", "out"), (now, "side", "out")])
        _read_until(fd, b"+1")  # the device's side out beside the technician's none
        _winsize(fd, 30, 60)
        os.kill(pid, signal.SIGWINCH)
        time.sleep(1.2)  # more than two redraws
        screens = _read_until(fd, b"q finishes").split(b"\x1b[2J")
        last = re.sub(r"\x1b\[[0-9;]*m", "", screens[-1].decode(errors="replace"))
        assert "side" in last and max(len(line) for line in last.splitlines()) <= 60, last
        os.write(fd, b"q")
        final = _read_until(fd, b"busier time").decode(errors="replace")
        _, status = os.waitpid(pid, 0)
    finally:
        counter.sock.close()
        ctx.term()
    assert os.waitstatus_to_exitcode(status) == 1  # three crossings cannot pass
    assert "only 3 crossings tallied" in " ".join(final.split())
    kept = json.loads((tmp_path / "state" / "validation.json").read_text())
    door = kept["lines"]["door"]
    assert (door["in"]["tally"], door["in"]["device"], door["in"]["matched"]) == (2, 1, 1)
    assert (door["out"]["tally"], door["out"]["matched"]) == (1, 1)
    assert (kept["lines"]["side"]["out"]["extra"], kept["source"]) == (1, "live tally")
