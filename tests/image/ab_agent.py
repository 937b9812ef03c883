#!/usr/bin/python3
"""Runs at every boot of the A/B test image (Debian's Python, no edgecount imports).

It drives an update the way a technician would and reports each finding as an
``EDGECOUNT-ABTEST {json}`` line on the serial console. Its phase lives on the
data partition, so it survives the reboot into the other slot:

0. factory slot A: wait until the appliance counts while the count receiver
   refuses (records pile up in the outbox), try a tampered bundle (refused),
   install the next version, reboot;
1. slot B: wait until the trial marks B good, let the receiver accept, check
   that the records from before the update arrive; start installing a broken
   version (it cannot boot) into A and, once RAUC is copying it, freeze RAUC
   and ask the host to cut the power (it kills QEMU);
1b. after the power cut: B must run and count, A must be marked bad, and
   ``status`` must call the update interrupted; let records pile up again,
   install the broken version into A, whole this time, reboot;
2. back on B after GRUB gave A its three tries: report what status says of
   the failed update, let the receiver accept and check that the records
   from before the failed update arrive, power off.

The count receiver is a webhook served here. It accepts only once a phase
says so (1 after the trial, 2 after the fallback) and keeps each phase's
deliveries in a file of their own.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

TAG = "EDGECOUNT-ABTEST"
WORK = Path("/data/abtest")
PHASE = WORK / "phase"
PORT = 8099


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def report(step: str, **fields: Any) -> None:
    with open("/dev/console", "w") as con:
        con.write(f"{TAG} {json.dumps({'step': step, 'uptime_s': round(uptime(), 1), **fields})}\n")


def sh(*cmd: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command; one that runs out of time (emulated, a CLI start can take a minute) is a failed run."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(cmd), 124, "", f"timed out after {timeout:.0f} s")


def as_json(res: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(res.stdout)
    except ValueError:
        return None


def rauc_status() -> Any:
    return as_json(sh("rauc", "status", "--detailed", "--output-format=json"))


def status() -> dict[str, Any]:
    got = as_json(sh("edgecount", "status", "--json", timeout=300))
    return got if isinstance(got, dict) else {}


def wait(cond: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(3)
    report("timeout", what=what, status=status(), rauc=rauc_status(),
           journal=sh("journalctl", "-b", "--no-pager", "-n", "60").stdout.splitlines())
    sh("systemctl", "poweroff")
    raise SystemExit(1)


class Receiver(http.server.BaseHTTPRequestHandler):
    accepting = False
    received = WORK / "received.jsonl"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not Receiver.accepting:
            self.send_response(503)
            self.end_headers()
            return
        with Receiver.received.open("a") as f:
            f.write(body.decode() + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def figure(st: dict[str, Any], service: str, key: str) -> int:
    """One service's figure from ``status --json`` (0 while the service has not reported it)."""
    for s in st.get("services", []):
        if s.get("service") == service:
            return int((s.get("stats") or {}).get(key, 0))
    return 0


def backlog(st: dict[str, Any]) -> int:
    return figure(st, "uplink", "backlog")


def frames(st: dict[str, Any]) -> int:
    return figure(st, "counter", "processed")


def counting(st: dict[str, Any]) -> bool:
    return st.get("device", {}).get("ready") is True and backlog(st) >= 2


def deliver() -> dict[str, Any]:
    """Let the receiver accept, wait until the outbox is empty, and say what arrived."""
    Receiver.accepting = True
    wait(lambda: backlog(status()) == 0 and Receiver.received.exists(), 600, "the backlog delivered")
    rows = [json.loads(line) for line in Receiver.received.read_text().splitlines() if line.strip()]
    return {"rows": len(rows),
            "records": [r for batch in rows for r in (batch if isinstance(batch, list) else [batch])][:400]}


def phase0() -> None:
    st = wait(lambda: (lambda s: s if counting(s) else None)(status()), 1500, "counting on slot A with a backlog")
    report("counting_a", backlog=backlog(st), update=st.get("update"), rauc=rauc_status(),
           release=Path("/etc/edgecount-release").read_text().strip())
    bad = sh("edgecount", "update", str(WORK / "tampered.raucb"), "--json")
    report("tampered", rc=bad.returncode, out=as_json(bad), rauc=rauc_status())
    t = time.monotonic()
    good = sh("edgecount", "update", str(WORK / "next.raucb"), "--json", timeout=1800)
    report("installed", rc=good.returncode, out=as_json(good), err=good.stderr[-1500:], seconds=time.monotonic() - t,
           rauc=rauc_status(), backlog=backlog(status()), before=time.time())
    if good.returncode != 0:
        sh("systemctl", "poweroff")
        return
    PHASE.write_text("1")
    sh("sync")
    sh("systemctl", "reboot")


def phase1() -> None:
    def kept() -> Any:
        rs = rauc_status()
        if not rs or rs.get("booted") != "B":
            return None
        slot = next((body for entry in rs.get("slots", []) for name, body in entry.items()
                     if body.get("bootname") == "B"), {})
        return rs if slot.get("boot_status") == "good" else None

    report("booted_b", rauc=rauc_status(), release=Path("/etc/edgecount-release").read_text().strip())
    rs = wait(kept, 1500, "the trial marking slot B good")
    trial = sh("journalctl", "-b", "-u", "edgecount-update-trial", "--no-pager", "-o", "cat").stdout
    report("kept_b", rauc=rs, trial=trial.splitlines()[-5:], update=status().get("update"))
    report("delivered", **deliver())
    PHASE.write_text("1b")
    sh("sync")
    # The emulated copy of a small slot image takes about a second: RAUC gets a twentieth of a CPU for this
    # install, so the copy lasts long enough to be caught in the middle.
    sh("systemctl", "set-property", "--runtime", "rauc.service", "CPUQuota=5%")
    install = subprocess.Popen(["edgecount", "update", str(WORK / "broken.raucb"), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end, progress, seen = time.monotonic() + 1800, None, []
    while progress is None and install.poll() is None and time.monotonic() < end:
        said = busctl("Progress")
        if said and (not seen or seen[-1] != said):
            seen.append(said)
        progress = copying(said)
        time.sleep(0.3)
    if progress is None:
        report("power_cut_missed", rc=install.poll(), rauc=rauc_status(), progress_seen=seen)
        sh("systemctl", "poweroff")
        return
    # Freeze RAUC half-way through the slot, flush what it wrote so far, then the host pulls the plug.
    sh("systemctl", "kill", "--signal=SIGSTOP", "rauc.service")
    sh("sync")
    report("power_cut_now", progress=progress, rauc_operation=busctl("Operation"), progress_seen=seen)
    time.sleep(3600)


def copying(said: str) -> list[Any] | None:
    """Percent and message when RAUC's D-Bus ``Progress``, as busctl printed it, says it writes the slot."""
    parts = said.split(" ", 2)  # (isi) 40 "Copying image to rootfs.0" 2
    if len(parts) == 3 and "copying" in parts[2].lower():
        return [int(parts[1]), parts[2]]
    return None


def busctl(prop: str) -> str:
    res = sh("busctl", "get-property", "de.pengutronix.rauc", "/", "de.pengutronix.rauc.Installer", prop,
             timeout=30)
    return res.stdout.strip()


def phase1b() -> None:
    def counting_on_b() -> Any:
        st = status()
        return st if st.get("device", {}).get("ready") is True and frames(st) > 0 else None

    st = wait(counting_on_b, 1500, "slot B counting after the power cut")
    first = frames(st)
    st = wait(lambda: (lambda s: s if frames(s) > first and backlog(s) >= 2 else None)(status()), 600,
              "frames and a backlog after the power cut")
    report("after_power_cut", rauc=rauc_status(), update=st.get("update"), frames=[first, frames(st)],
           release=Path("/etc/edgecount-release").read_text().strip())
    broken = sh("edgecount", "update", str(WORK / "broken.raucb"), "--json", timeout=1800)
    report("installed_broken", rc=broken.returncode, out=as_json(broken), rauc=rauc_status(),
           backlog=backlog(status()), before=time.time())
    PHASE.write_text("2")
    sh("sync")
    sh("systemctl", "reboot")


def phase2() -> None:
    def counting_again() -> Any:
        st = status()
        return st if st.get("device", {}).get("ready") is True else None

    st = wait(counting_again, 1500, "slot B counting again after the fallback")
    report("fell_back", rauc=rauc_status(), update=st.get("update"),
           release=Path("/etc/edgecount-release").read_text().strip(),
           doctor=as_json(sh("edgecount", "doctor", "--json", timeout=300)))
    report("delivered_after_rollback", **deliver())
    report("done")
    sh("systemctl", "poweroff")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    phase = PHASE.read_text().strip() if PHASE.exists() else "0"
    Receiver.received = WORK / f"received-{phase}.jsonl"
    report("boot", phase=phase, cmdline=Path("/proc/cmdline").read_text().strip())
    {"0": phase0, "1": phase1, "1b": phase1b}.get(phase, phase2)()


if __name__ == "__main__":
    main()
