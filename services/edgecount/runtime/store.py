"""One SQLite file per stateful service: its state (key/value) and its durable log.

WAL journal. ``synchronous`` is chosen per service (README, "Fsync policy"):
``NORMAL`` survives a killed process (the kernel still has the pages) and is
cheap enough to commit the counter's state on every frame; ``FULL`` also
survives a power cut and is used where the rate is low (privacy records, the
uplink outbox).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar

import structlog

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL);
"""


WAL_LIMIT_BYTES = 1 << 20


class Store:
    commits: ClassVar[int] = 0
    """Transactions committed by any store of this process (a stage knows the disk has room again)."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.set_aside: Path | None = None
        """Where a damaged file of this store was moved before a fresh one was started (``None``: it was fine)."""
        self.db = self._open_checked(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        # After a checkpoint the WAL shrinks back to this (it otherwise keeps its largest size for ever).
        self.db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        self.db.executescript(_SCHEMA)
        self.last_seq = int(self.get_int("log.last_seq"))

    def _open_checked(self, path: Path) -> sqlite3.Connection:
        """The file, or a fresh one if it is damaged: a file SQLite cannot read would keep the service from
        ever starting. The damaged file is kept beside it (``<name>.damaged-<UTC time>``) for a post-mortem;
        what it held is lost, and downstream services see the log start again (``durable_log``)."""
        db = sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict == "ok":
                return db
            reason = str(verdict)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            reason = str(exc)
        db.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.set_aside = path.with_name(f"{path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                part.rename(path.with_name(self.set_aside.name + suffix))
        structlog.get_logger().error("store.damaged_file_set_aside", file=str(path), reason=reason[:200],
                                     kept_as=str(self.set_aside), action="starting with an empty store")
        return sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            # A COMMIT that failed (a full disk) may have rolled back already: nothing left to roll back then.
            with suppress(sqlite3.OperationalError):
                self.db.execute("ROLLBACK")
            self.last_seq = int(self.get_int("log.last_seq"))
            raise
        Store.commits += 1

    def get(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def get_int(self, key: str, default: int = 0) -> int:
        raw = self.get(key)
        return int(raw.decode()) if raw is not None else default

    def keys(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``, sorted."""
        rows = self.db.execute("SELECT key FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
                               (len(prefix), prefix)).fetchall()
        return [str(r[0]) for r in rows]

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def put(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value))

    def put_int(self, key: str, value: int) -> None:
        self.put(key, str(int(value)).encode())

    # -- the log -----------------------------------------------------------------------
    def next_seq(self) -> int:
        return self.last_seq + 1

    def append(self, seq: int, topic: bytes, payload: bytes) -> None:
        """Append entry ``seq`` (must be :meth:`next_seq`); call inside a transaction."""
        if seq != self.last_seq + 1:
            raise ValueError(f"log sequence gap: appending {seq} after {self.last_seq}")
        self.db.execute("INSERT INTO log(seq, topic, payload) VALUES(?, ?, ?)", (seq, topic.decode(), payload))
        self.last_seq = seq
        self.put_int("log.last_seq", seq)

    def read_from(self, seq: int, limit: int = 500) -> list[tuple[int, bytes, bytes]]:
        rows = self.db.execute("SELECT seq, topic, payload FROM log WHERE seq >= ? ORDER BY seq LIMIT ?",
                               (seq, limit)).fetchall()
        return [(int(s), t.encode(), bytes(p)) for s, t, p in rows]

    def first_seq(self) -> int:
        row = self.db.execute("SELECT MIN(seq) FROM log").fetchone()
        return int(row[0]) if row and row[0] is not None else self.last_seq + 1

    def trim(self, upto: int) -> None:
        """Forget log entries the subscriber has made durable on its side."""
        self.db.execute("DELETE FROM log WHERE seq <= ?", (upto,))

    def pending(self) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM log").fetchone()
        return int(row[0])

    def close(self) -> None:
        self.db.close()
