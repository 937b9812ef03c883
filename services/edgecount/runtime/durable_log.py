"""Loss-free delivery between two services over PUB/SUB, after the ZeroMQ guide's Clone pattern.

The publisher writes every message to its durable log (``Store``) with a
gap-free sequence number *before* publishing it, and serves the log on a
ROUTER socket, ``<runtime>/<service>.sync.sock``. The subscriber applies
messages strictly in sequence and persists the last applied number with the
effects. On start-up, on a gap, or when the publisher's periodic
:class:`LogTail` says it is behind, it asks for everything from its next
number and applies the answer. Duplicates (a resent message that also came
live) are recognised by their number and ignored. The subscriber acknowledges
what it has made durable, and only then may the publisher trim its log.

A publisher whose log starts again from 1 (its file was damaged and set
aside, or deleted by hand) says so by a last number below what the
subscriber applied; the subscriber then follows the new log from its start
instead of taking its entries for duplicates of the old one's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeGuard

import msgpack
import zmq

from edgecount.runtime.paths import RuntimePaths
from edgecount.runtime.store import Store
from edgecount_core.messages import Message, MessageError, decode


def _seq(v: object) -> TypeGuard[int]:
    """A log sequence number as the wire carries it: a non-negative int64."""
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def sync_endpoint(runtime_dir: Path, service: str) -> str:
    return f"ipc://{RuntimePaths(runtime_dir).sync(service)}"


class SyncServer:
    """Answers fetch requests from the publisher's log and trims it on acknowledgement."""

    def __init__(self, ctx: zmq.Context[Any], runtime_dir: Path, service: str, store: Store, log: Any) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        path = RuntimePaths(runtime_dir).sync(service)
        path.unlink(missing_ok=True)
        self.sock.bind(sync_endpoint(runtime_dir, service))
        path.chmod(0o600)
        self.store = store
        self.log = log
        self.acked = 0

    def handle(self) -> None:
        while True:
            try:
                parts = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                self.log.error("sync.bad_request", reason=f"expected 2 frames, got {len(parts)}")
                continue  # without a routing id of its own there is no one to answer
            ident, raw = parts
            reply = self._answer(raw)
            self.sock.send_multipart([ident, msgpack.packb(reply, use_bin_type=True)])

    def _answer(self, raw: bytes) -> dict[str, Any]:
        """The reply to one request; a malformed one gets ``{"error": ...}``, never an exception."""
        try:
            req = msgpack.unpackb(raw, raw=False)
        except Exception:
            return self._refuse("not a msgpack request")
        if not isinstance(req, dict):
            return self._refuse("a request is a map")
        op = req.get("op")
        if op == "fetch":
            start, limit = req.get("from"), req.get("max", 500)
            if not _seq(start) or not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 5000:
                return self._refuse("fetch needs from (a sequence number) and max (1..5000)")
            rows = self.store.read_from(max(1, start), limit)
            return {"entries": [[t, p] for _, t, p in rows], "last": self.store.last_seq,
                    "first": self.store.first_seq()}
        if op == "ack":
            upto = req.get("upto")
            if not _seq(upto) or upto > self.store.last_seq:
                # An acknowledgement of entries that do not exist yet would trim what nobody has received.
                return self._refuse(f"ack upto must be a sequence number up to {self.store.last_seq}")
            if upto > self.acked:
                with self.store.transaction():
                    self.store.trim(upto)
                self.acked = upto
            return {"acked": self.acked}
        return self._refuse(f"unknown op {op!r}")

    def _refuse(self, why: str) -> dict[str, Any]:
        self.log.error("sync.bad_request", reason=why)
        return {"error": why}

    def close(self) -> None:
        self.sock.close()


class Follower:
    """Applies an upstream log in order, exactly once, recovering what it missed."""

    def __init__(self, ctx: zmq.Context[Any], runtime_dir: Path, upstream: str, applied: int,
                 apply: Callable[[Message], None], seq_of: Callable[[Message], int], log: Any) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(sync_endpoint(runtime_dir, upstream))
        self.upstream = upstream
        self.applied = applied
        self.apply = apply
        self.seq_of = seq_of
        self.log = log
        self.upstream_last = 0
        self.requested_at = 0.0
        self.gaps = 0
        self.duplicates = 0
        self.recovered = 0
        self.lost = 0
        self.resets = 0
        self._acked = 0
        self.request()

    def _upstream_restarted(self, last: int) -> bool:
        """The upstream's log ends below what we applied: it started again from 1. Follow it from there."""
        if last >= self.applied:
            return False
        self.resets += 1
        self.log.error("sync.upstream_restarted", upstream=self.upstream, applied=self.applied, upstream_last=last,
                       action="following the new log from its start (its entries are new, not duplicates)")
        self.applied = 0
        self._acked = 0
        self.upstream_last = last
        self.requested_at = 0.0
        self.request()
        return True

    def request(self) -> None:
        now = time.monotonic()
        if now - self.requested_at < 0.5:
            return  # one outstanding request at a time (a lost reply is simply asked again)
        self.requested_at = now
        self.sock.send(msgpack.packb({"op": "fetch", "from": self.applied + 1, "max": 500}))

    def ack(self) -> None:
        if self.applied > self._acked:
            self.sock.send(msgpack.packb({"op": "ack", "upto": self.applied}))
            self._acked = self.applied

    def on_message(self, msg: Message, recovered: bool = False) -> None:
        seq = self.seq_of(msg)
        if seq <= self.applied:
            self.duplicates += 1
            return
        if seq != self.applied + 1:
            self.gaps += 1
            self.request()
            return
        self.apply(msg)
        self.applied = seq
        if recovered:
            self.recovered += 1

    def on_tail(self, last_seq: int) -> None:
        if self._upstream_restarted(last_seq):
            return
        self.upstream_last = max(self.upstream_last, last_seq)
        if last_seq > self.applied:
            self.request()

    def caught_up(self, upto: int) -> bool:
        return self.applied >= upto

    def handle(self) -> None:
        while True:
            try:
                raw = self.sock.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = msgpack.unpackb(raw, raw=False)
                if "acked" in reply:
                    continue
                if "error" in reply:
                    self.log.error("sync.refused", upstream=self.upstream, reason=str(reply["error"])[:200])
                    continue
                entries = reply["entries"]
                first = int(reply.get("first", 1))
            except Exception:
                self.log.error("sync.bad_reply", upstream=self.upstream)
                continue
            self.requested_at = 0.0
            if self._upstream_restarted(int(reply.get("last", 0))):
                continue
            self.upstream_last = max(self.upstream_last, int(reply.get("last", 0)))
            if first > self.applied + 1:
                # The upstream no longer holds entries we never applied (our state was lost, or a recording
                # replayed into us starts mid-stream): go on from its first. With entries in the reply too, waiting
                # for the missing ones would ask the same question for ever.
                self.lost += first - self.applied - 1
                self.log.error("sync.entries_lost", upstream=self.upstream, missing=first - self.applied - 1)
                self.applied = first - 1
            for _topic, payload in entries:
                try:
                    msg = decode(payload)
                except MessageError as exc:
                    self.log.error("sync.bad_entry", upstream=self.upstream, reason=str(exc))
                    continue
                self.on_message(msg, recovered=True)
            if entries and self.applied < self.upstream_last:
                self.request()

    def close(self) -> None:
        self.sock.close()
