"""What every service process shares: configuration, bus sockets, heartbeats, clean stop.

A stage subclasses :class:`Service` and implements :meth:`Service.handle`;
what it subscribes to comes from the topology table (:mod:`edgecount.stages`). The loop sends a heartbeat from the same
thread that does the work, so a service whose work hangs stops heartbeating
and the watchdog restarts it. A write that fails for want of space
(:mod:`edgecount.runtime.space`) is no crash: the stage drops what it had not
committed (:meth:`Service.after_write_failure`), reports ``degraded`` and
tries again after a pause, heartbeating all along.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import zmq

from edgecount.runtime import bus, logs
from edgecount.runtime.backoff import Backoff
from edgecount.runtime.figures import declared
from edgecount.runtime.settings import load_config
from edgecount.runtime.space import describe, is_disk_full
from edgecount.runtime.store import Store
from edgecount.stages import stage
from edgecount_core.config import Config, ConfigError
from edgecount_core.messages import EndOfStream, Health, Marker, Message, StatValue


class Service:
    name: ClassVar[str] = "service"
    """The stage's name; an instance's process name (``self.process``) adds the camera for capture."""

    def __init__(self, config: Config, runtime_dir: Path, process: str = "") -> None:
        self.process = process or self.name
        self.cfg = config
        self.runtime_dir = runtime_dir
        self.log = logs.configure(self.process)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.pub = bus.Publisher(self.ctx, runtime_dir, self.process)
        # One SUB socket per upstream: ZeroMQ applies a socket's topic filters to every publisher it
        # is connected to, so a shared socket would also receive other upstreams' markers and EOS.
        self.subs = [bus.Subscriber(self.ctx, runtime_dir, [src], self.log)
                     for src in stage(self.name).subscriptions(config)]
        self.poller = zmq.Poller()
        for sub in self.subs:
            self.poller.register(sub.sock, zmq.POLLIN)
        self._readers: dict[Any, Any] = {}
        self.state = "starting"
        self.running = True
        self.started = time.time()
        self._next_heartbeat = 0.0
        self._figures = stage(self.name).reported()
        self._known: dict[str, bool] = {}  # heartbeat key -> declared (keys repeat every beat)
        self.eos_seen: EndOfStream | None = None
        self.disk_full_since: float | None = None
        self._retry_writes_at = 0.0
        self._commits_at_failure = 0
        self._space_backoff = Backoff(DISK_FULL_RETRY_FIRST_S, DISK_FULL_RETRY_MAX_S)

    def watch(self, sock: Any, on_readable: Any) -> None:
        """Also wake the loop when ``sock`` is readable, and call ``on_readable()`` then."""
        self.poller.register(sock, zmq.POLLIN)
        self._readers[sock] = on_readable

    # -- hooks --------------------------------------------------------------------------
    def setup(self) -> None:
        """Load models, open devices; runs before the first heartbeat says ``ok``."""

    def handle(self, topic: bytes, msg: Message) -> None:
        """React to one message from upstream."""

    def tick(self) -> int:
        """Called every loop turn; returns how long (ms) the loop may wait for messages."""
        return 100

    def stats(self) -> dict[str, StatValue]:
        return {}

    def teardown(self) -> None:
        """Release resources on a clean stop."""

    def after_write_failure(self) -> None:
        """A commit failed for want of space and was rolled back: drop what memory holds beyond the last
        commit (the input that was not acknowledged comes again). The default holds nothing."""

    def on_eos(self, msg: EndOfStream) -> EndOfStream:
        """Add this stage's figures to an end-of-stream before it goes downstream."""
        return msg

    # -- loop ---------------------------------------------------------------------------
    def forward_marker(self, msg: Marker) -> None:
        self.pub.send(bus.MARKER, msg)

    def forward_eos(self, msg: EndOfStream) -> None:
        self.pub.send(bus.EOS, msg)

    def heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_heartbeat:
            stats = dict(self.stats())
            stats["cpu_s"] = round(time.process_time(), 3)
            if self.subs:
                stats["bad_messages"] = sum(sub.bad for sub in self.subs)
            state = self.state
            if self.disk_full_since is not None:
                stats["disk_full_s"] = round(now - self.disk_full_since, 1)
                state = "degraded" if state == "ok" else state
            if logs.dropped_lines():
                stats["log_lines_dropped"] = logs.dropped_lines()
            stats = self._declared_only(stats)
            self.pub.send(bus.HEALTH, Health(service=self.process, pid=os.getpid(), ts=time.time(),
                                            state=state, stats=stats))
            self._next_heartbeat = now + self.cfg.watchdog.heartbeat_s

    def _declared_only(self, stats: dict[str, StatValue]) -> dict[str, StatValue]:
        """The figures ``stages.figures`` declares for this stage: nothing reaches status or metrics unexplained."""
        for key in stats.keys() - self._known.keys():
            self._known[key] = declared(self._figures, key) is not None
            if not self._known[key]:
                self.log.warning("health.undeclared_figure", figure=key,
                                 fix="declare it in edgecount/stages/figures.py")
        return {k: v for k, v in stats.items() if self._known[k]}

    def _drain(self, sub: bus.Subscriber) -> None:
        """Handle what is queued on one upstream socket, but keep heartbeating under sustained load."""
        deadline = time.monotonic() + 0.25
        got = sub.recv(0)
        while got is not None and self.running:
            topic, msg = got
            if isinstance(msg, Marker):
                self.forward_marker(msg)
            elif isinstance(msg, EndOfStream):
                self.eos_seen = msg
                eos = self.on_eos(msg)
                stats = dict(eos.stats)
                stats[f"{self.name}_cpu_s"] = round(time.process_time(), 3)
                self.forward_eos(attrs.evolve(eos, stats=stats))
            else:
                self.handle(topic, msg)
            if time.monotonic() > deadline:
                break
            got = sub.recv(0)

    def _turn(self) -> None:
        wait = self.tick()
        ready = dict(self.poller.poll(wait)) if (self.subs or self._readers) else {}
        if not self.subs and not self._readers and wait:
            time.sleep(wait / 1000.0)
        for sock, fn in self._readers.items():
            if sock in ready:
                fn()
        for sub in self.subs:
            if sub.sock in ready:
                self._drain(sub)

    def _no_room(self, exc: Exception) -> None:
        """A write failed for want of space: back to the last commit, degraded, and a pause before retrying."""
        self.after_write_failure()
        now = time.monotonic()
        pause = self._space_backoff.next()
        if self.disk_full_since is None:
            self.disk_full_since = now
            self.log.error("service.disk_full", reason=describe(exc), retry_in_s=round(pause, 1),
                           hint="free space on the state partition (`edgecount doctor` shows it); nothing is "
                                "acknowledged until it is written, and counting resumes by itself")
        self._commits_at_failure = Store.commits
        self._retry_writes_at = now + pause

    def _stop(self, signum: int, _frame: Any) -> None:
        self.running = False

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.heartbeat(force=True)
        try:
            self.setup()
            if self.state == "starting":
                self.state = "ok"
            self.log.info("service.started", pid=os.getpid())
            while self.running:
                self.heartbeat()
                if self.disk_full_since is not None and time.monotonic() < self._retry_writes_at:
                    time.sleep(0.2)  # waiting for room: heartbeat, nothing else
                    continue
                try:
                    self._turn()
                except Exception as exc:
                    if not is_disk_full(exc):
                        raise
                    self._no_room(exc)
                    continue
                if self.disk_full_since is not None and Store.commits > self._commits_at_failure:
                    self.log.warning("service.disk_space_back",
                                     full_for_s=round(time.monotonic() - self.disk_full_since))
                    self.disk_full_since = None
                    self._space_backoff.reset()
        finally:
            self.state = "stopping"
            self.heartbeat(force=True)
            self.teardown()
            self.pub.close()
            for sub in self.subs:
                sub.close()
            self.ctx.term()
            self.log.info("service.stopped")


DISK_FULL_RETRY_FIRST_S = 1.0
DISK_FULL_RETRY_MAX_S = 30.0


def main_for(cls: type[Service], argv: Iterable[str] | None = None, process: str = "") -> int:
    """Entry point of one service process: ``python -m edgecount.stages PROCESS --config F --runtime-dir D``."""
    import argparse

    p = argparse.ArgumentParser(prog=f"edgecount {process or cls.name}")
    p.add_argument("--config", required=True)
    p.add_argument("--runtime-dir", required=True)
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{cls.name}: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        svc = cls(cfg, Path(args.runtime_dir), process)
    except KeyError as exc:  # a camera the configuration no longer has
        print(f"{process}: {exc.args[0]}", file=sys.stderr)
        return 2
    try:
        svc.serve()
    except Exception:
        svc.log.exception("service.crashed")
        return 1
    return 0
