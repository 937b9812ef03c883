"""Every name in the private runtime directory, in one place.

The runtime directory (``runtime.dir``, 0700) holds the appliance's unix sockets and a few small files.
Writers, readers, the supervisor's clean-up and the tools that look for a running appliance all need the
same names; spelled in each of them, one rename would leave a tool looking for a socket nobody binds.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RuntimePaths"]


class RuntimePaths:
    def __init__(self, runtime_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(runtime_dir)

    def bus(self, process: str) -> Path:
        """Where ``process`` publishes (a PUB socket): it exists while the process runs."""
        return self.dir / f"{process}.sock"

    def sync(self, service: str) -> Path:
        """Where ``service`` serves its durable log (a ROUTER socket)."""
        return self.dir / f"{service}.sync.sock"

    @property
    def control(self) -> Path:
        """The supervisor's control socket: it exists while the appliance runs."""
        return self.dir / "control.sock"

    def epoch(self, process: str) -> Path:
        """A replaying capture's time origin, kept across its restarts within one run."""
        return self.dir / f"{process}.epoch"

    def ring_pointer(self, camera: str) -> Path:
        """Which shared-memory segment holds ``camera``'s frames (written by its capture)."""
        return self.dir / f"ring@{camera}"

    def leftovers(self, process: str) -> list[Path]:
        """What a killed ``process`` leaves behind that a new run must not find."""
        return [self.bus(process), self.sync(process), self.epoch(process)]

    def sockets(self) -> list[Path]:
        return sorted(self.dir.glob("*.sock"))
