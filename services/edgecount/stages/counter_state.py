"""One camera's counting state and how the counter commits it.

The saved form is a msgpack map: the stream position, and the tracker's,
linker's and engine's own plain-data state, each versioned by its owner
(:mod:`edgecount_core.saved_state`). A release that changes none of them keeps
every open track across the upgrade; one that changes a part starts that
camera afresh and says which part. Builds up to state format 5 pickled the
object graph; such a state is read once, by an unpickler that admits only
the counting classes and numpy arrays, and is written back in the new form on
the next frame.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any

import attrs
import msgpack

from edgecount_core.camera import CameraCounter
from edgecount_core.camera_names import scoped
from edgecount_core.foot_heat import FootHeat
from edgecount_core.frames import FramePosition
from edgecount_core.line_activity import LineActivity

__all__ = ["STATE_VERSION", "CameraState", "encode_state", "restore", "state_key"]

STATE_VERSION = 6  # 6: msgpack, each part versioned by its owner (5 and older: a pickle of the objects)
LEGACY_PICKLE_VERSION = 5
_NUMPY_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric"}


def state_key(camera: str) -> str:
    """Where a camera's state is committed (``state`` for ``main``: what single-camera builds wrote)."""
    return scoped("state", camera)


@attrs.define
class CameraState:
    """One camera's counting: tracker + linker + counters, and how far into its stream they are."""

    name: str
    counter: CameraCounter
    position: FramePosition
    last_ts: float = 0.0
    processed: int = 0
    next_watermark: float = 0.0
    activity: LineActivity = attrs.field(factory=lambda: LineActivity(()))
    """Not saved: after a restart a silent line is noticed again from then on."""
    feet: FootHeat = attrs.field(factory=FootHeat)
    """Where feet were seen lately, for ``preview`` (written to a file, not saved with the state)."""

    def __attrs_post_init__(self) -> None:
        self.activity = LineActivity(tuple(ln.name for ln in self.counter.engine.lines))


def encode_state(cs: CameraState) -> bytes:
    """What is committed with every frame."""
    packed: bytes = msgpack.packb({"v": STATE_VERSION, "ring": cs.position.ring, "seq": cs.position.seq,
                                   "last_ts": cs.last_ts, "processed": cs.processed,
                                   "counter": cs.counter.to_state()}, use_bin_type=True)
    return packed


def restore(cs: CameraState, raw: bytes) -> str:
    """Take ``raw`` up into ``cs``; returns why it was set aside ("" when restored). Raises if unreadable."""
    # 0x80 opens a pickle (an older build's state); our msgpack map, never empty, opens with 0x86.
    legacy = raw[:1] == b"\x80"
    state = _from_legacy_pickle(raw, cs) if legacy else msgpack.unpackb(raw, raw=False, strict_map_key=True)
    if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION:
        version = state.get("v") if isinstance(state, Mapping) else "?"
        return f"state format {version}, this build uses {STATE_VERSION}"
    if state["counter"] is None:
        return "the counting lines changed"
    cs.counter.restore(state["counter"])  # raises StateMismatch naming the part, before changing anything
    cs.last_ts, cs.processed = float(state["last_ts"]), int(state["processed"])
    cs.position.ring, cs.position.seq = int(state["ring"]), int(state["seq"])
    return ""


class _CountingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("edgecount_core.") or module in _NUMPY_MODULES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in saved counter state")


def _from_legacy_pickle(raw: bytes, cs: CameraState) -> dict[str, Any]:
    """A format-5 pickle as today's map (older pickles: their version, so they are set aside)."""
    loaded = _CountingUnpickler(io.BytesIO(raw)).load()
    if loaded[0] != LEGACY_PICKLE_VERSION:
        return {"v": loaded[0]}
    _, counter, lines, ring, seq, last_ts, processed = loaded
    # Format 5 kept no geometry per line: a state saved for other lines is set aside whole, as it was then.
    same_lines = lines == [(ln.name, ln.a, ln.b) for ln in cs.counter.engine.lines]
    return {"v": STATE_VERSION, "ring": ring, "seq": seq, "last_ts": last_ts, "processed": processed,
            "counter": counter.to_state() if same_lines else None}
