"""Uplink service: delivers the privacy filter's records to the configured sinks.

It subscribes to the privacy filter only, so frames, boxes and track ids can
never reach it. The ``jsonl`` sink appends one JSON object per record and
fsyncs it before the next one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from edgecount import bus
from edgecount.service import Service, main_for
from edgecount.settings import state_dir
from edgecount_core.config import Config
from edgecount_core.messages import CountRecord, Message, StatValue


def record_json(r: CountRecord) -> dict[str, object]:
    return {"id": r.record_id, "kind": r.kind, "name": r.name, "bucket_start": r.bucket_start,
            "bucket_s": r.bucket_s, "in": r.n_in, "out": r.n_out}


class Uplink(Service):
    name = "uplink"
    sources = (("privacy", (bus.RECORD, bus.MARKER, bus.EOS)),)

    def __init__(self, config: Config, runtime_dir: Path) -> None:
        super().__init__(config, runtime_dir)
        path = config.uplink.jsonl_path or str(state_dir(config) / "uplink.jsonl")
        self.jsonl_path = Path(path)
        self.jsonl: IO[str] | None = None
        self.delivered = 0

    def setup(self) -> None:
        if "jsonl" in self.cfg.uplink.sinks:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self.jsonl = self.jsonl_path.open("a", encoding="utf-8")

    def handle(self, topic: bytes, msg: Message) -> None:
        if isinstance(msg, CountRecord) and self.jsonl is not None:
            self.jsonl.write(json.dumps(record_json(msg), sort_keys=True) + "\n")
            self.jsonl.flush()
            os.fsync(self.jsonl.fileno())
            self.delivered += 1

    def stats(self) -> dict[str, StatValue]:
        return {"delivered": self.delivered}

    def teardown(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()


def main() -> int:
    return main_for(Uplink)
