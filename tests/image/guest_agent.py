#!/usr/bin/python3
"""Runs inside the booted test image (Debian's Python, no edgecount imports).

It watches the installed appliance the way a technician would, through
``systemctl`` and ``edgecount status/counts --json``, freezes processes with
SIGSTOP, and prints one ``EDGECOUNT-IMAGETEST {json}`` line per finding on the
serial console, which the host test parses. Last, it makes the unit fail to start
until systemd's start limit reboots the guest (QEMU runs with -no-reboot, so it exits).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

UNIT = "edgecount.service"
TAG = "EDGECOUNT-IMAGETEST"


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def report(step: str, **fields: Any) -> None:
    line = f"{TAG} {json.dumps({'step': step, 'uptime_s': round(uptime(), 1), **fields})}"
    # The console is the serial port the host reads.
    with open("/dev/console", "w") as con:
        con.write(line + "\n")


def unit_props() -> dict[str, str]:
    props = ("ActiveState,SubState,MainPID,NRestarts,Result,StatusText,ExecMainStatus,"
             "ActiveEnterTimestampMonotonic")
    out = subprocess.run(["systemctl", "show", UNIT, "-p", props], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def edgecount_json(*args: str) -> dict[str, Any] | None:
    res = subprocess.run(["edgecount", *args, "--json"], capture_output=True, text=True, timeout=120)
    try:
        data = json.loads(res.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def wait(cond: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(every)
    report("timeout", what=what, unit=unit_props(), status=edgecount_json("status"))
    finish(ok=False)
    return None


def service(status: dict[str, Any] | None, name: str) -> dict[str, Any]:
    for s in (status or {}).get("services", []):
        if s["service"] == name:
            return dict(s)
    return {}


def counted(status: dict[str, Any] | None) -> int:
    return int(service(status, "counter").get("stats", {}).get("events", 0))


def ready() -> dict[str, Any] | None:
    p = unit_props()
    if p.get("ActiveState") != "active":
        return None
    st = edgecount_json("status")
    return st if st and st.get("running") and st["device"].get("ready") else None


def report_journal() -> None:
    journal = subprocess.run(["journalctl", "-b", "-u", UNIT, "-o", "short-monotonic", "--no-pager"],
                             capture_output=True, text=True).stdout.splitlines()
    keep = [ln for ln in journal if any(k in ln for k in (
        "atchdog", "Scheduled restart", "Started edgecount", "Failed with result", "Main process exited",
        "watchdog.hung", "watchdog.restart", "Consumed", "invalid configuration", "unknown key", "cannot start"))]
    report("journal", lines=keep[-80:])


def finish(ok: bool) -> None:
    report_journal()
    report("done", ok=ok)
    subprocess.run(["systemctl", "poweroff", "--no-block"])
    time.sleep(600)


CONFIG = "/etc/edgecount/edgecount.toml"


def camera_works_in_the_sandbox(good_config: str) -> None:
    """A real V4L2 device (the kernel's vivid test camera) through DevicePolicy=closed + DeviceAllow."""
    subprocess.run(["modprobe", "vivid"], check=True)
    wait(lambda: os.path.exists("/dev/video0"), 60, "/dev/video0 from the vivid module")
    camera = "\n".join('source = "/dev/video0"' if ln.startswith("source = ") else ln
                       for ln in good_config.splitlines())
    with open(CONFIG, "w") as f:
        f.write(camera + "\n")
    subprocess.run(["systemctl", "restart", UNIT], capture_output=True)

    def frames_flow() -> dict[str, Any] | None:
        st = edgecount_json("status")
        cap, inf = service(st, "capture"), service(st, "inference")
        return st if (cap.get("state") == "ok" and int(cap.get("stats", {}).get("frames_read", 0)) > 20
                      and int(inf.get("stats", {}).get("processed", 0)) > 3) else None

    st = wait(frames_flow, 600, "frames from /dev/video0 through capture and inference")
    report("camera", capture=service(st, "capture")["stats"], inference=service(st, "inference")["stats"])
    with open(CONFIG, "w") as f:
        f.write(good_config)


AGENT_DIR = "/usr/local/lib/edgecount-imagetest"
CAMERA_URL = "http://127.0.0.1:8091/cam"
WATCHDOG_SEC = 30


def camera_outage_is_degraded_not_a_reboot(good_config: str) -> None:
    """A network camera that goes away for longer than WatchdogSec: the unit stays up (no watchdog
    restart, no restart budget spent), the device says degraded, and counting resumes by itself."""
    def serve() -> subprocess.Popen[bytes]:
        return subprocess.Popen(["python3", f"{AGENT_DIR}/mjpeg_camera.py", "8091", f"{AGENT_DIR}/frames"])

    camera = serve()
    net = "\n".join(f'source = "{CAMERA_URL}"' if ln.startswith("source = ") else ln
                     for ln in good_config.splitlines())
    with open(CONFIG, "w") as f:
        f.write(net + "\n")
    # Restarts made by this test are not failures: keep them out of the start-rate window that reboots.
    subprocess.run(["systemctl", "reset-failed", UNIT], capture_output=True)
    subprocess.run(["systemctl", "restart", UNIT], capture_output=True)

    def flowing(frames: int = 0, processed: int = 0) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            st = edgecount_json("status")
            cap, inf = service(st, "capture"), service(st, "inference")
            return st if (cap.get("state") == "ok" and int(cap.get("stats", {}).get("frames_read", 0)) > frames + 20
                          and int(inf.get("stats", {}).get("processed", 0)) > processed + 2) else None
        return check

    st = wait(flowing(), 600, "frames from the network camera")
    before = unit_props()
    frames_before = int(service(st, "capture")["stats"]["frames_read"])
    processed_before = int(service(st, "inference")["stats"]["processed"])
    journal_from = time.strftime("%Y-%m-%d %H:%M:%S")
    camera.kill()
    camera.wait()
    gone_at = time.monotonic()
    down: dict[str, Any] = {}
    while time.monotonic() - gone_at < WATCHDOG_SEC + 15:
        st = edgecount_json("status")
        cap = service(st, "capture")
        if cap.get("state") == "degraded" and float(cap.get("stats", {}).get("source_down_s", 0)) > 0:
            down = {"capture": cap, "device": (st or {}).get("device", {}), "unit": unit_props()}
        time.sleep(3)
    camera = serve()
    st = wait(flowing(frames_before, processed_before), 600, "counting to resume after the camera came back")
    after = unit_props()
    journal = subprocess.run(["journalctl", "-u", UNIT, "--since", journal_from, "--no-pager", "-o", "cat"],
                             capture_output=True, text=True).stdout
    report("camera_outage", outage_s=round(time.monotonic() - gone_at, 1), down=down, before=before, after=after,
           restarts={s["service"]: s["restarts"] for s in (st or {}).get("services", [])},
           watchdog_fired="Watchdog timeout" in journal or "result 'watchdog'" in journal)
    camera.kill()
    with open(CONFIG, "w") as f:
        f.write(good_config)
    subprocess.run(["systemctl", "reset-failed", UNIT], capture_output=True)
    subprocess.run(["systemctl", "restart", UNIT], capture_output=True)
    wait(ready, 600, "the appliance back on its own configuration", every=0.5)
    subprocess.run(["systemctl", "reset-failed", UNIT], capture_output=True)


def config_error_is_not_retried(good_config: str) -> None:
    """Exit status 2 (invalid configuration): the unit stays failed, no restart, no reboot."""
    before = unit_props()
    with open(CONFIG, "w") as f:
        f.write(good_config + "\nbogus_key = 1\n")
    subprocess.run(["systemctl", "restart", UNIT], capture_output=True)
    time.sleep(15)  # three times RestartSec: a restart would have happened by now
    report("config_error", unit=unit_props(), restarts_before=int(before["NRestarts"]))
    with open(CONFIG, "w") as f:
        f.write(good_config)


def failing_starts_escalate_to_reboot(good_config: str) -> None:
    """A unit that fails to start again and again: the start limit reboots the device. The model file is there
    but unusable (a damaged copy no manifest entry matches): not a mistake in the configuration, which would
    exit 2 and never be retried (config_error_is_not_retried), but a start that fails with 1."""
    with open("/var/lib/edgecount/damaged.tflite", "wb") as f:
        f.write(b"\0" * 4096)
    broken = "\n".join('model = "/var/lib/edgecount/damaged.tflite"' if ln.startswith("model = ") else ln
                       for ln in good_config.splitlines())
    with open(CONFIG, "w") as f:
        f.write(broken + "\n")
    subprocess.run(["systemctl", "reset-failed", UNIT])  # a fresh start-rate window
    report("escalation_started")
    subprocess.run(["systemctl", "start", "--no-block", UNIT])
    time.sleep(900)  # the guest reboots (and QEMU, started with -no-reboot, exits) long before
    report("timeout", what="the start limit to reboot the guest", unit=unit_props())


def main() -> None:
    budget = float(os.environ.get("IMAGETEST_BUDGET_S", "900"))
    report("agent_started", kernel=os.uname().release)

    st = wait(ready, budget, "the appliance to report ready", every=0.5)
    props = unit_props()
    report("ready", unit=props, services={s["service"]: s["state"] for s in st["services"]},
           inference=service(st, "inference").get("stats", {}))

    st = wait(lambda: (s := edgecount_json("status")) and counted(s) > 0 and s, budget, "a first count")
    report("counting", events=counted(st), counter=service(st, "counter").get("stats", {}))

    # 1. A frozen service: the supervisor sees its heartbeats stop and restarts it.
    victim = service(st, "inference")
    pid = int(victim["pid"])
    os.kill(pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    report("froze_service", service="inference", pid=pid)

    def child_replaced() -> dict[str, Any] | None:
        s = edgecount_json("status")
        inf = service(s, "inference")
        return s if inf.get("pid") not in (None, pid) and inf.get("state") in ("ok", "degraded") else None

    st = wait(child_replaced, budget, "the supervisor to restart the frozen inference service")
    report("service_recovered", service="inference", seconds=round(time.monotonic() - frozen_at, 1),
           new_pid=service(st, "inference")["pid"], restarts=service(st, "inference")["restarts"])

    # 2. A frozen supervisor: WATCHDOG=1 stops, systemd's watchdog kills and restarts the unit.
    before = unit_props()
    main_pid = int(before["MainPID"])
    events_before = counted(st)
    os.kill(main_pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    report("froze_supervisor", pid=main_pid, restarts=int(before["NRestarts"]))

    def unit_restarted() -> dict[str, str] | None:
        p = unit_props()
        return p if (int(p.get("NRestarts", "0")) > int(before["NRestarts"]) and p.get("ActiveState") == "active"
                     and p.get("MainPID") not in ("0", str(main_pid))) else None

    after = wait(unit_restarted, budget, "systemd's watchdog to restart the unit", every=0.5)
    report("unit_recovered", seconds=round(time.monotonic() - frozen_at, 1), unit=after)

    st = wait(lambda: (s := edgecount_json("status")) and counted(s) > events_before and s, budget,
              "counting to go on after the restart")
    report("counting_again", events=counted(st))
    counts = edgecount_json("counts", "--since", "1h")
    report("counts", counts=counts)

    with open(CONFIG) as f:
        good_config = f.read()
    camera_works_in_the_sandbox(good_config)
    camera_outage_is_degraded_not_a_reboot(good_config)
    config_error_is_not_retried(good_config)
    report_journal()
    report("done", ok=True)
    failing_starts_escalate_to_reboot(good_config)


if __name__ == "__main__":
    main()
