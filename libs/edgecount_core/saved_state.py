"""Versioned plain-data state for the counting chain (tracker, linker, engine).

The counter commits these after every frame. Each object writes its own map
with its own version, so a release that changes one of them discards only
that part's memory, and a release that changes none keeps every open track.
The maps hold only numbers, strings and lists: no class is named, so a saved
state can never run code when it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["StateMismatch", "opened"]


class StateMismatch(ValueError):
    """A saved part was written by a build with another format for it."""


def opened(state: Any, kind: str, version: int) -> Mapping[str, Any]:
    """``state`` as a map, if it is a ``kind`` state of ``version``; else :class:`StateMismatch`."""
    if not isinstance(state, Mapping):
        raise StateMismatch(f"{kind} state is a {type(state).__name__}, not a map")
    if state.get("v") != version:
        raise StateMismatch(f"{kind} state format {state.get('v')!r}, this build reads {version}")
    return state
