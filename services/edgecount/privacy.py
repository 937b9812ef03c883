"""Privacy filter service: the only producer for the uplink.

It listens to the counter's crossings and zone changes (which carry track
ids) and publishes only aggregated :class:`CountRecord` rows per line/zone and
time bucket. Frames, boxes, track ids and per-person timestamps stop here.
"""

from __future__ import annotations

from pathlib import Path

from edgecount import bus
from edgecount.service import Service, main_for
from edgecount_core.config import Config
from edgecount_core.messages import (
    Crossing,
    EndOfStream,
    Message,
    StatValue,
    Watermark,
    ZoneEvent,
)
from edgecount_core.privacy import BucketAggregator


class Privacy(Service):
    name = "privacy"
    sources = (("counter", (bus.CROSSING, bus.ZONE, bus.WATERMARK, bus.MARKER, bus.EOS)),)

    def __init__(self, config: Config, runtime_dir: Path) -> None:
        super().__init__(config, runtime_dir)
        self.agg = BucketAggregator(
            device=f"{config.device.site}/{config.device.id}",
            lines=[ln.name for ln in config.lines], zones=[z.name for z in config.zones],
            bucket_s=config.privacy.bucket_s)
        self.records = 0
        self.late = 0

    def _publish(self, records: list) -> None:  # type: ignore[type-arg]
        for r in records:
            self.pub.send(bus.RECORD, r)
            self.records += 1

    def handle(self, topic: bytes, msg: Message) -> None:
        if isinstance(msg, Crossing):
            if not self.agg.add("line", msg.line, msg.direction, msg.ts):
                self.late += 1
        elif isinstance(msg, ZoneEvent):
            if not self.agg.add("zone", msg.zone, msg.kind, msg.ts):
                self.late += 1
        elif isinstance(msg, Watermark):
            self._publish(self.agg.advance(msg.ts))

    def on_eos(self, msg: EndOfStream) -> EndOfStream:
        self._publish(self.agg.flush())
        return msg

    def stats(self) -> dict[str, StatValue]:
        return {"records": self.records, "late_events": self.late}


def main() -> int:
    return main_for(Privacy)
