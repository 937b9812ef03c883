"""The watchdog supervising real service processes: crash, hang, budget, stop, power cut."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecount.runtime.ring import segment_path

from ..helpers import ROOT, HealthWatcher, start_appliance, stop_appliance, stop_group, write_run_config

pytestmark = pytest.mark.slow


def _start(cfg: Path) -> subprocess.Popen[str]:
    return start_appliance(cfg, stderr=subprocess.PIPE)


def _all_ok(h: dict) -> bool:
    return all(s in h and h[s].state in ("ok", "degraded") for s in
               ("capture", "inference", "counter", "privacy", "uplink"))


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); its state in /proc says it is dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_restarts_crashed_and_hung_services_and_stops_cleanly(runtime_dir: Path, pets09_clip: Path,
                                                               ssd_model) -> None:
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    proc = _start(cfg)
    watcher = HealthWatcher(runtime_dir)
    try:
        watcher.wait_for(_all_ok, 60, "every service up")
        watcher.wait_for(lambda h: int(h["counter"].stats.get("processed", 0)) > 5, 30, "frames counted")

        # kill -9: the watchdog notices the exit and starts a new process.
        old = watcher.latest["inference"].pid
        os.kill(old, signal.SIGKILL)
        watcher.wait_for(lambda h: h["inference"].pid != old and h["inference"].state == "ok", 30,
                         "inference restarted after SIGKILL")

        # SIGSTOP: the process is alive but silent; after hang_timeout it is killed and replaced.
        frozen = watcher.latest["counter"].pid
        os.kill(frozen, signal.SIGSTOP)
        t0 = time.monotonic()
        watcher.wait_for(lambda h: h["counter"].pid != frozen, 30, "hung counter replaced")
        assert time.monotonic() - t0 >= 2.0  # not before the hang timeout (3 s)
        assert _pid_gone(frozen)
        watcher.wait_for(lambda h: int(h["counter"].stats.get("processed", 0)) > 5, 30,
                         "frames counted again after the restart")
        pids = [h.pid for h in watcher.latest.values()]
    finally:
        watcher.close()
        stderr = stop_appliance(proc)
    assert proc.returncode == 0, stderr[-2000:]
    assert all(_pid_gone(p) for p in pids)
    assert not segment_path(runtime_dir).exists()
    assert not list(runtime_dir.glob("*.sock"))
    log = stderr
    assert "watchdog.hung" in log and "watchdog.restart_scheduled" in log


def test_counting_goes_on_after_capture_or_the_whole_appliance_restarts(runtime_dir: Path, pets09_clip: Path,
                                                                         ssd_model) -> None:
    """A new capture numbers its frames from 1 again: they are new frames, not ones counted before."""
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    proc = _start(cfg)
    watcher = HealthWatcher(runtime_dir)

    def processed(h: dict) -> int:
        return int(h["counter"].stats.get("processed", 0)) if "counter" in h else 0

    def counting_resumes(old_capture: int, processed_before: int, last_seq_before: int, what: str) -> None:
        watcher.wait_for(lambda h: "capture" in h and h["capture"].pid != old_capture
                         and processed(h) > processed_before + 3, 60, what)
        # Counted again long before the new capture's numbering caught up with the old one.
        assert int(watcher.latest["capture"].stats["frames_read"]) < last_seq_before

    try:
        watcher.wait_for(_all_ok, 60, "every service up")
        watcher.wait_for(lambda h: int(h["counter"].stats.get("last_seq", 0)) >= 80, 60, "80 frames counted")
        cap_pid = watcher.latest["capture"].pid
        before = (processed(watcher.latest), int(watcher.latest["counter"].stats["last_seq"]))
        os.kill(cap_pid, signal.SIGKILL)
        counting_resumes(cap_pid, *before, "counting after capture was killed")

        watcher.wait_for(lambda h: int(h["counter"].stats.get("last_seq", 0)) >= 80, 60, "80 more frames")
        cap_pid = watcher.latest["capture"].pid
        before = (processed(watcher.latest), int(watcher.latest["counter"].stats["last_seq"]))
        stop_appliance(proc)
        watcher.latest.clear()
        proc = _start(cfg)  # as after a reboot: the counter restores its state, capture starts over
        counting_resumes(cap_pid, *before, "counting after the appliance restarted")
    finally:
        watcher.close()
        stop_appliance(proc)


def test_power_cut_leaves_no_stale_shared_memory(runtime_dir: Path, pets09_clip: Path, ssd_model) -> None:
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    seg = segment_path(runtime_dir)
    proc = _start(cfg)
    watcher = HealthWatcher(runtime_dir)
    try:
        watcher.wait_for(_all_ok, 60, "every service up")
        first_inode = seg.stat().st_ino
        pids = [h.pid for h in watcher.latest.values()]
        # Power cut: every process of the appliance dies at once by SIGKILL.
        for p in pids:
            os.kill(p, signal.SIGKILL)
        stop_group(proc, signal.SIGKILL)
        assert seg.exists()  # nobody could clean up
        watcher.latest.clear()
        proc = _start(cfg)
        watcher.wait_for(_all_ok, 60, "every service up after the power cut")
        assert seg.stat().st_ino != first_inode  # the stale segment was replaced, not reused
        ours = [p for p in seg.parent.iterdir() if p.name == seg.name]
        assert len(ours) == 1
    finally:
        watcher.close()
        stop_appliance(proc)
    assert not seg.exists()


def test_restart_budget_exhaustion_stops_everything_with_failure(runtime_dir: Path, tmp_path: Path,
                                                                 pets09_clip: Path) -> None:
    bad = tmp_path / "detect.tflite"
    bad.write_bytes(b"this is not a model")
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip, budget="2")
    text = cfg.read_text().replace('model = "ssd_mobilenet_v1_coco_quant"', f'model = "{bad}"')
    cfg.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "edgecount", "run", "--config", str(cfg)], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            stop_group(proc)
    # The inference service crashes on every start; after the budget the watchdog gives up.
    log = stderr.decode()
    assert proc.returncode == 1, log[-2000:]
    assert "watchdog.budget_exhausted" in log and "watchdog.giving_up" in log
    assert log.count("watchdog.restart_scheduled") == 2
    assert not segment_path(runtime_dir).exists()


def test_prometheus_metrics_through_a_real_node_exporter(runtime_dir: Path, pets09_clip: Path, ssd_model) -> None:
    """The watchdog's textfile, scraped by Debian's node_exporter: names, units and labels by convention."""
    import re
    import shutil
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from ..helpers import free_port

    exe = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
    if not Path(exe).exists():
        pytest.fail("prometheus-node-exporter is not installed (`just test-deps` installs it)")
    textfiles = runtime_dir / "textfile"
    textfiles.mkdir()
    cfg = write_run_config(runtime_dir / "c.toml", runtime_dir, pets09_clip)
    cfg.write_text(cfg.read_text() + f'metrics_dir = "{textfiles}"\nmetrics_interval_s = 1\n')
    port = free_port()
    exporter = subprocess.Popen([exe, "--collector.disable-defaults", "--collector.textfile",
                                 f"--collector.textfile.directory={textfiles}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = start_appliance(cfg)
    try:
        def scrape() -> dict[str, object]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return {f.name: f for f in text_string_to_metric_families(r.read().decode())}

        deadline = time.monotonic() + 120
        families: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                families = scrape()
            except OSError:
                families = {}
            frames = families.get("edgecount_frames_processed")
            if frames is not None and frames.samples and frames.samples[0].value > 10:  # type: ignore[attr-defined]
                break
            time.sleep(1)
        else:
            pytest.fail(f"node_exporter never showed processed frames: {sorted(families)}")
        assert families["node_textfile_scrape_error"].samples[0].value == 0  # type: ignore[attr-defined]
        ours = {n: f for n, f in families.items() if n.startswith("edgecount_")}
        expected = {"edgecount_service_up", "edgecount_service_degraded", "edgecount_service_restarts",
                    "edgecount_bus_bad_messages", "edgecount_frames_read", "edgecount_frames_processed",
                    "edgecount_frames_skipped", "edgecount_frames_dropped", "edgecount_inference_latency_seconds",
                    "edgecount_outbox_backlog_records", "edgecount_outbox_oldest_undelivered_age_seconds",
                    "edgecount_records_delivered", "edgecount_events", "edgecount_line_crossings"}
        assert expected <= set(ours), sorted(expected - set(ours))
        for name, fam in ours.items():
            assert re.fullmatch(r"edgecount_[a-z0-9_]+", name)
            for sample in fam.samples:  # type: ignore[attr-defined]
                # Per line and direction only the counts themselves (issue 31); nothing per person anywhere.
                allowed = {"camera", "line", "direction"} if name == "edgecount_line_crossings" else {
                    "service", "sink", "quantile"}
                assert set(sample.labels) <= allowed, (name, sample.labels)
                if fam.type == "counter":  # type: ignore[attr-defined]
                    assert sample.name.endswith("_total") and sample.value >= 0, sample
        crossings = {(s.labels["line"], s.labels["direction"])
                     for s in ours["edgecount_line_crossings"].samples}  # type: ignore[attr-defined]
        assert crossings == {("v", "in"), ("v", "out")}, crossings
        up = {s.labels["service"]: s.value for s in ours["edgecount_service_up"].samples}  # type: ignore[attr-defined]
        assert up == dict.fromkeys(("capture", "inference", "counter", "privacy", "uplink"), 1.0)
        latency = {s.labels["quantile"]: s.value
                   for s in ours["edgecount_inference_latency_seconds"].samples}  # type: ignore[attr-defined]
        assert 0 < latency["0.5"] <= latency["0.95"] < 5, latency  # seconds, not milliseconds
    finally:
        stop_appliance(proc)
        exporter.terminate()
        exporter.wait(timeout=10)


class _Unkillable:
    """A stage stuck in the kernel (D state) or a fork server slow to report: SIGKILL sent, death unconfirmed."""

    pid = 424242

    def __init__(self) -> None:
        self.dead = False
        self.kills = 0

    def poll(self) -> int | None:
        return -9 if self.dead else None

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def kill(self) -> None:
        self.kills += 1

    def wait(self, timeout: float | None = None) -> int:
        if not self.dead:
            raise subprocess.TimeoutExpired("stage", timeout or 0)
        return -9


def test_a_hung_stage_that_does_not_die_at_once_does_not_kill_the_watchdog(runtime_dir: Path, tmp_path: Path) -> None:
    """Before: ``TimeoutExpired`` from the 5 s wait escaped, the watchdog died and took every stage with it.
    Now it logs, and starts the replacement only once the old one is gone (never two at once)."""
    from edgecount.runtime.settings import load_config
    from edgecount.supervisor.watchdog import Supervised, Watchdog

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f'[runtime]\ndir = "{runtime_dir}"\nstate_dir = "{runtime_dir}/state"\n[watchdog]\n'
                        'heartbeat_s = 0.3\nhang_timeout_s = 1\nbackoff_initial_s = 0.1\nbackoff_max_s = 0.1\n')
    wd = Watchdog(load_config(cfg_file), cfg_file, runtime_dir, services=())
    stuck = _Unkillable()
    spawned: list[str] = []
    wd._spawn = lambda child: spawned.append(child.name)  # type: ignore[method-assign]
    child = Supervised("counter", proc=stuck, started_at=time.monotonic() - 100,  # type: ignore[arg-type]
                       last_heartbeat=time.monotonic() - 50, state="ok")
    wd.children["counter"] = child
    try:
        wd.check()  # hung: killed, death not confirmed within 5 s
        assert child.state == "backoff" and stuck.kills == 1
        child.next_start = 0.0
        wd.check()  # its time to restart has come, but the old one is still there
        assert spawned == [] and stuck.kills == 2
        stuck.dead = True
        child.next_start = 0.0
        wd.check()
        assert spawned == ["counter"]
    finally:
        del wd.children["counter"]
        wd.stop_all()


def test_a_stage_gets_its_restart_budget_and_no_more_within_the_window() -> None:
    from edgecount.runtime.backoff import Backoff
    from edgecount.supervisor.watchdog import Supervised

    child = Supervised("counter", backoff=Backoff(0.5, 2.0))
    waits = [child.restart_wait(float(t), window_s=60.0, budget=3) for t in (0, 10, 20, 30)]
    assert waits == [0.5, 1.0, 2.0, None]  # backing off, then used up: something is persistently wrong
    assert child.restart_wait(65.0, window_s=60.0, budget=3) == 2.0  # the first restart left the window
    assert child.total_restarts == 4
