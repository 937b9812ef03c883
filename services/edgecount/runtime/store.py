"""One SQLite file per stateful service: its state (key/value) and its durable log.

WAL journal. ``synchronous`` is chosen per service (README, "Fsync policy"):
``NORMAL`` survives a killed process (the kernel still has the pages) and is
cheap enough to commit the counter's state on every frame; ``FULL`` also
survives a power cut and is used where the rate is low (privacy records, the
uplink outbox).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar

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
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        # After a checkpoint the WAL shrinks back to this (it otherwise keeps its largest size for ever).
        self.db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        self.db.executescript(_SCHEMA)
        self.last_seq = int(self.get_int("log.last_seq"))

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
