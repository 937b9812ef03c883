"""Every process imports only what it uses (issue 14): no OpenCV, SciPy, TFLite or evaluation code where
it is not needed. Checked in a fresh interpreter per module, so nothing imported by the tests leaks in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("cv2", "scipy", "ai_edge_litert", "tflite_runtime", "trackeval")

# module -> the heavy packages it may load at import
ALLOWED = {
    "edgecount.supervisor.watchdog": set(),
    "edgecount.stages.uplink": set(),
    "edgecount.stages.privacy": set(),  # face models and OpenCV load only under the snapshots policy
    "edgecount.stages.counter": set(),
    "edgecount.cli": set(),  # the CLI (and `edgecount run`, the supervisor) loads nothing heavy up front
    "edgecount.stages.capture": {"cv2"},
    "edgecount.stages.inference": {"cv2"},  # the TFLite runtime loads when the model does, in setup()
}


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_import_discipline(module: str) -> None:
    code = (f"import sys, json, {module}; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout))
    assert loaded <= ALLOWED[module], f"{module} imports {sorted(loaded - ALLOWED[module])}"


def test_the_supervisor_loads_no_numpy() -> None:
    """The watchdog forks the stages' fork server before it starts a thread, so the server shares its memory.
    NumPy would start OpenBLAS's threads at import, and a threaded watchdog must start a fresh interpreter as
    its server instead (runtime.forkserver): it names and reclaims frame rings and reads heartbeats, none of
    which needs NumPy."""
    code = ("import sys, edgecount.cli.appliance, edgecount.supervisor.watchdog, edgecount.runtime.settings; "
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
