"""Each camera's open buckets between runs: where privacy.db keeps them, and how older saves are read.

The privacy filter commits a camera's open buckets with every change (``aggregator.msgpack`` for ``main``,
``aggregator.msgpack@CAMERA`` for the others, as plain msgpack). Taking them over at start has four cases
that are not the filter's business: the same bucket length (continue), another length (emit the saved
buckets as they were, closed), a camera no longer configured (emit its buckets under it), and a state an
older build pickled (read once, with no class allowed but the aggregator's). A state that cannot be read
is dropped with an error logged: never a service that cannot start.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Collection
from typing import Any

import msgpack

from edgecount.runtime.store import Store
from edgecount_core.camera_names import camera_of, scoped
from edgecount_core.messages import DEFAULT_CAMERA, CountRecord
from edgecount_core.privacy import BucketAggregator

AGG_KEY = "aggregator.msgpack"
LEGACY_AGG_KEY = "aggregator"  # pickled by builds up to 0.1.0


def agg_key(camera: str) -> str:
    """Where a camera's open buckets are saved (``main``: where single-camera builds saved them)."""
    return scoped(AGG_KEY, camera)


class SavedBuckets:
    """The saved open buckets of every camera in ``store``; ``make(camera, bucket_s)`` builds an aggregator
    for a configured camera, ``source(camera)`` names the device part of a camera's record ids."""

    def __init__(self, store: Store, log: Any, make: Callable[[str, float], BucketAggregator],
                 source: Callable[[str], str]) -> None:
        self.store = store
        self.log = log
        self.make = make
        self.source = source
        self._retired: list[str] = []  # saved states of cameras no longer configured, deleted at the next commit

    def restore(self, agg: BucketAggregator) -> list[CountRecord]:
        """Take over the open buckets the last run saved for ``agg``'s camera. Lines or zones may have changed
        since (the open counts are kept, the new names used). Buckets saved with another length are
        returned, closed, to emit."""
        camera = agg.camera
        raw = self.store.get(agg_key(camera))
        legacy = self.store.get(LEGACY_AGG_KEY) if camera == DEFAULT_CAMERA else None
        try:
            if raw is not None:
                state = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            elif legacy is not None:
                state = legacy_state(legacy)
            else:
                return []
            saved_s = float(state["bucket_s"])
            if saved_s == agg.bucket_s:
                agg.restore(state)
                return []
            old = self.make(camera, saved_s)
            old.restore(state)
            self.log.warning("privacy.bucket_length_changed", camera=camera, was_s=saved_s, now_s=agg.bucket_s)
            return old.flush()
        except Exception as exc:  # any damage to the saved state: start clean rather than never start
            self.log.error("privacy.state_discarded", camera=camera, reason=f"{type(exc).__name__}: {exc}"[:300],
                           hint="the open (not yet emitted) buckets of the last run are lost")
            return []

    def orphans(self, cameras: Collection[str]) -> list[CountRecord]:
        """Open buckets saved for a camera not in ``cameras`` (a file moved to ``[[cameras]]`` leaves
        ``main``'s; a camera renamed or removed leaves its own): emitted as they were, under the camera they
        were counted for, instead of dropped. Their saved state goes at the next commit (:meth:`retire`)."""
        out: list[CountRecord] = []
        for key in self.store.keys(AGG_KEY):
            camera = camera_of(key)
            if camera in cameras:
                continue
            try:
                state = msgpack.unpackb(self.store.get(key) or b"", raw=False, strict_map_key=False)
                old = BucketAggregator(self.source(camera), (), bucket_s=float(state["bucket_s"]), camera=camera)
                old.restore(state)
                records = old.flush()
            except Exception as exc:  # damaged: as in restore, never a failed start
                self.log.error("privacy.state_discarded", camera=camera, reason=f"{type(exc).__name__}: {exc}"[:300])
                records = []
            self.log.warning("privacy.camera_gone", camera=camera, open_buckets_sent=len(records))
            out += records
            self._retired.append(key)
        return out

    def save(self, agg: BucketAggregator) -> None:
        """Inside the caller's transaction, with the records the change produced."""
        self.store.put(agg_key(agg.camera), msgpack.packb(agg.to_state(), use_bin_type=True))

    def retire(self) -> None:
        """Inside the caller's transaction: forget the states :meth:`orphans` emitted."""
        for key in self._retired:
            self.store.delete(key)
        self._retired = []


class _AggregatorUnpickler(pickle.Unpickler):
    """Reads the state of older builds once, allowing no class but the aggregator's own two."""

    ALLOWED = frozenset({("edgecount_core.privacy", "BucketAggregator"), ("edgecount_core.privacy", "_Bucket")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in saved privacy state")
        return super().find_class(module, name)


def legacy_state(raw: bytes) -> dict[str, Any]:
    """An older build's pickled aggregator as today's plain state."""
    agg = _AggregatorUnpickler(io.BytesIO(raw)).load()
    if not isinstance(agg, BucketAggregator):
        raise ValueError("saved privacy state is not an aggregator")
    fresh = BucketAggregator(agg.device, (), bucket_s=agg.bucket_s, grace_s=agg.grace_s)
    for name, value in vars(fresh).items():  # what later builds added: as a fresh aggregator has it
        vars(agg).setdefault(name, value)
    return agg.to_state()
