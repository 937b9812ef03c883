"""The camera-naming rule (issue 28: it was written in 11 conditionals with 7 naming schemes)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from edgecount_core.camera_names import camera_of, prefixed, scoped
from edgecount_core.messages import DEFAULT_CAMERA
from edgecount_core.privacy import source_id

from ..helpers import ROOT

cameras = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
bases = st.from_regex(r"[a-z.]{1,20}", fullmatch=True)


@given(bases, cameras)
def test_a_scoped_name_says_its_camera_and_the_default_camera_keeps_the_old_name(base: str, camera: str) -> None:
    name = scoped(base, camera)
    assert camera_of(name) == camera
    assert (name == base) == (camera == DEFAULT_CAMERA)
    assert prefixed(base, camera).endswith(base) and (prefixed(base, camera) == base) == (camera == DEFAULT_CAMERA)


def test_what_single_camera_builds_wrote_is_found_under_the_same_names() -> None:
    from edgecount.stages.counter_state import state_key
    from edgecount.stages.saved_buckets import AGG_KEY, agg_key
    from edgecount.tools.history import series_name

    assert state_key(DEFAULT_CAMERA) == "state" and state_key("front") == "state@front"
    assert agg_key(DEFAULT_CAMERA) == AGG_KEY and agg_key("front") == f"{AGG_KEY}@front"
    assert source_id("s", "d", DEFAULT_CAMERA) == "s/d" and source_id("s", "d", "front") == "s/d/front"
    assert series_name(DEFAULT_CAMERA, "line:door") == "line:door"
    assert series_name("front", "line:door") == "front/line:door"


def test_the_rule_is_written_once() -> None:
    naming = re.compile(r"if \w+(\.\w+)? == DEFAULT_CAMERA else f[\"']")
    found = [f"{p.relative_to(ROOT)}:{n}" for base in ("services", "libs") for p in sorted((ROOT / base).rglob("*.py"))
             if p.name != "camera_names.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if naming.search(line)]
    assert found == [], "use edgecount_core.camera_names.scoped / prefixed:\n" + "\n".join(found)
