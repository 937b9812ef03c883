"""`doctor` reports what happened, not only what is (issue 31): restarts and their causes, lines that never count."""

from __future__ import annotations

import signal

from edgecount.supervisor.watchdog import exit_cause
from edgecount.tools.doctor import quiet_lines_check, restarts_check
from edgecount_core.config import parse_config
from edgecount_core.line_activity import LineActivity


def test_people_in_view_add_up_per_line_until_it_counts() -> None:
    act = LineActivity(("door", "aisle"))
    for k in range(11):  # 10 s with one person in view, at 10 fps
        act.update(100.0 + k, 1, [])
    assert act.people_s == {"door": 10.0, "aisle": 10.0}
    act.update(111.0, 2, ["door"])
    assert act.people_s["door"] == 0.0 and act.people_s["aisle"] == 11.0
    act.update(112.0, 0, [])  # nobody in view: no time added
    act.update(200.0, 1, [])  # the camera was down for 88 s: not time anyone was seen
    assert act.people_s["aisle"] == 11.0


def test_a_sigkill_is_told_apart_from_a_crash_and_an_out_of_memory_kill() -> None:
    assert exit_cause(1, 0, 0) == "exited with status 1"
    kill = -signal.SIGKILL
    assert "killed by the kernel: out of memory" in exit_cause(kill, 3, 4)
    assert "someone's kill -9" in exit_cause(kill, 3, 3)
    assert "someone's kill -9" in exit_cause(kill, None, None)  # the kernel does not say


def _appliance(restarts: dict[str, list[str]], counter_stats: dict[str, float] | None = None) -> dict:
    return {"services": [{"service": svc, "stats": counter_stats or {} if svc == "counter" else {},
                          "restarts_last_hour": [{"at": 1_796_000_000.0 + k, "reason": r} for k, r in enumerate(rs)]}
                         for svc, rs in restarts.items()]}


def test_restarts_of_the_last_hour_with_their_causes() -> None:
    calm = restarts_check(_appliance({"counter": ["restarted on request (edgecount restart, lines set)"]}))
    assert calm.status == "pass" and "1 on request" in calm.detail
    hung = restarts_check(_appliance({"inference": ["no heartbeat for 31s"], "counter": []}))
    assert hung.status == "warn" and "inference no heartbeat for 31s" in hung.detail
    oom = restarts_check(_appliance({"inference": ["exited with status -9 (killed by the kernel: out of memory)"]}))
    assert oom.status == "fail" and "RAM" in oom.fix
    many = restarts_check(_appliance({"capture": ["no heartbeat for 5s"] * 4}))
    assert many.status == "fail" and many.detail.startswith("4 in the last hour")


def test_a_line_that_counts_nothing_while_people_pass_is_flagged() -> None:
    cfg = parse_config({"lines": [{"name": "door", "a": [0.1, 0.5], "b": [0.9, 0.5]},
                                  {"name": "aisle", "a": [0.5, 0.1], "b": [0.5, 0.9]}]})
    stats = {"line.door.people_s_since_count": 12.0, "line.aisle.people_s_since_count": 2400.0}
    [check] = quiet_lines_check(cfg, _appliance({"counter": []}, stats), 1800.0)
    assert check.status == "warn" and "aisle (40 min)" in check.detail and "door" not in check.detail
    [check] = quiet_lines_check(cfg, _appliance({"counter": []}, stats), 3600.0)
    assert check.status == "pass"
