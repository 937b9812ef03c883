"""The house plan holds: imports run one way only, the topology is written once, one manifest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgecount import stages
from edgecount.runtime import bus
from edgecount.stages.base import Service

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "services" / "edgecount"

# Lower layers never import higher ones. edgecount_core imports nothing of edgecount at all.
# The supervisor and the assets stand side by side: neither imports the other, nor anything above.
LAYERS = {"runtime": 1, "supervisor": 2, "assets": 2, "detection": 3, "stages": 4, "tools": 5, "cli": 6}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] == "edgecount_core":
        return 0
    if parts[0] != "edgecount":
        return None
    if len(parts) == 1 or parts[1] == "__version__":
        return 0  # the package itself holds only its version
    return LAYERS.get(parts[1], 7)  # __main__, the entry point, may use everything


def _room(module: str) -> str:
    return module.split(".")[1] if module.startswith("edgecount.") else ""


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert not node.level, f"{path}: relative import; the package uses absolute imports only"
            base = node.module
            out.append((node.lineno, base))
            if base in ("edgecount",):  # from edgecount import stages
                out += [(node.lineno, f"edgecount.{a.name}") for a in node.names]
    return out


def _modules() -> list[tuple[Path, str]]:
    found = []
    for root, name in ((ROOT / "libs" / "edgecount_core", "edgecount_core"), (PKG, "edgecount")):
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root).with_suffix("")
            found.append((f, ".".join([name, *rel.parts]).removesuffix(".__init__")))
    return found


def test_no_import_runs_the_wrong_way() -> None:
    wrong = []
    for path, module in _modules():
        mine = _layer(module)
        assert mine is not None
        for line, imported in _imports(path, module):
            theirs = _layer(imported)
            sideways = theirs == mine and _room(imported) != _room(module) and mine == LAYERS["supervisor"]
            if theirs is not None and (theirs > mine or sideways):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({module}, layer {mine}) imports {imported} "
                             f"(layer {theirs})")
    order = "core < runtime < supervisor, assets < detection < stages < tools < cli"
    assert not wrong, f"imports against the layer order {order}:\n" + "\n".join(wrong)


def test_the_layer_check_catches_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from edgecount.tools.preview import draw\n")
    [(_, imported)] = _imports(bad, "edgecount.stages.bad")
    assert _layer(imported) == 5 > _layer("edgecount.stages.bad") == 4


def test_every_stage_in_the_table_is_a_service_of_that_name() -> None:
    for s in stages.STAGES:
        cls = s.load()
        assert issubclass(cls, Service) and cls.name == s.name
        for link in s.links:
            assert link.upstream in stages.NAMES, f"{s.name} listens to unknown {link.upstream}"
            up = stages.stage(link.upstream)
            for t in link.topics:
                assert t in up.publishes or t in stages.CONTROL_TOPICS, \
                    f"{s.name} subscribes to {t!r}, which {up.name} does not publish"


def test_the_stage_modules_are_the_five_processes() -> None:
    files = {f.stem for f in (PKG / "stages").glob("*.py")} - {"__init__", "__main__", "base"}
    assert set(stages.NAMES) <= files
    assert stages.NAMES == ("capture", "inference", "counter", "privacy", "uplink")


def test_readme_what_runs_table_is_the_topology() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert stages.markdown_table() in readme.split("## What runs", 1)[1], (
        "README's 'What runs' table differs from edgecount.stages.STAGES; replace it with the output of "
        "`python -c 'from edgecount import stages; print(stages.markdown_table())'`")


def test_replay_service_inputs_come_from_the_table() -> None:
    assert stages.replayable() == ("inference", "counter", "privacy", "uplink")
    assert stages.stage("privacy").data_inputs() == (
        ("counter", (bus.CROSSING, bus.ZONE, bus.WATERMARK, bus.TAIL)),)
    assert stages.publishers_of(bus.TAIL) == ("counter", "privacy")


@pytest.mark.parametrize(("realtime", "policy", "expected"), [
    (True, "counts", {"capture": 0, "privacy": 1}),
    (False, "counts", {"capture": 2, "privacy": 1}),
    (True, "snapshots", {"capture": 0, "privacy": 3}),
])
def test_mode_dependent_links(realtime: bool, policy: str, expected: dict[str, int]) -> None:
    from edgecount_core.config import parse_config

    cfg = parse_config({"capture": {"realtime": realtime}, "privacy": {"policy": policy}})
    for name, n in expected.items():
        assert len(stages.stage(name).subscriptions(cfg)) == n


def test_one_manifest_file() -> None:
    manifests = [p for p in ROOT.rglob("manifest.toml") if ".venv" not in p.parts and "build" not in p.parts
                 and ".cache" not in p.parts]
    assert manifests == [ROOT / "models" / "manifest.toml"]
    assert not manifests[0].is_symlink()
    from edgecount.assets.obtain import manifest_path

    assert manifest_path() == manifests[0]


def test_the_topology_declares_who_follows_whom_and_what_a_changed_line_restarts() -> None:
    """Issue 28: the durable-log links and which stages re-read the lines lived outside STAGES; `lines set`
    restarted only counter and privacy, so a new line had no Home Assistant entity until the uplink
    restarted by chance."""
    from edgecount.stages import STAGES, reloaded_by

    follows = {s.name: s.follows for s in STAGES if s.follows}
    assert follows == {"privacy": "counter", "uplink": "privacy"}
    for name, upstream in follows.items():  # a log is followed where its records are published
        assert any(ln.upstream == upstream for ln in next(s for s in STAGES if s.name == name).links)
    assert reloaded_by("lines") == ("counter", "privacy", "uplink")
    assert reloaded_by("zones") == ("counter", "privacy", "uplink")


def test_the_runtime_directorys_names_are_spelled_in_one_place() -> None:
    """Issue 28: socket and file names of the runtime directory were spelled in 8 modules."""
    import re

    from ..helpers import ROOT

    spelled = re.compile(r"""["'][^"'\n]*(\.sock|\.sync\.sock|\.epoch|ring@)["']""")
    owners = []
    for path in sorted((ROOT / "services" / "edgecount").rglob("*.py")):
        if path.name == "paths.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if spelled.search(line) and not line.lstrip().startswith("#"):
                owners.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert owners == [], "use edgecount.runtime.paths.RuntimePaths:\n" + "\n".join(owners)


def test_the_fork_servers_imports_are_derived_from_the_stages_and_cover_what_they_load() -> None:
    """Issue 28: the fork server's preload list was a hand-kept copy of the stage modules. Now it is
    derived from STAGES, and each stage declares the slow libraries it loads at import: one it forgot
    would be imported again in every forked stage, its pages private instead of shared."""
    import json
    import subprocess
    import sys

    from edgecount.stages import STAGES, preload_modules

    from ..helpers import ROOT

    preload = preload_modules()
    assert preload[-len(STAGES):] == tuple(s.module for s in STAGES)  # the stages last, each once
    assert len(set(preload)) == len(preload)
    heavy = ["numpy", "cv2", "sqlite3", "paho.mqtt.client", "ai_edge_litert.interpreter", "PIL", "zmq"]
    for s in STAGES:
        probe = (f"import sys, json; import {s.module}; "
                 f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
        loaded = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                                           check=True).stdout)
        undeclared = set(loaded) - set(s.heavy_imports) - {"zmq"}  # zmq: the runtime's own, imported anyway
        assert not undeclared, f"stage {s.name} loads {sorted(undeclared)} at import: add them to heavy_imports"
        assert set(s.heavy_imports) <= set(preload)


def test_tests_mirror_the_source_rooms() -> None:
    """Issue 28: the lanes show in the tree. Every test module sits in the folder of the room it tests."""
    tests = ROOT / "tests"
    rooms = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    allowed = {"core", "system"} | (rooms & set(LAYERS))
    folders = {p.parent.relative_to(tests).parts[0] for p in tests.rglob("test_*.py")}
    assert not list(tests.glob("test_*.py")), "a test module at tests/ itself: put it in its room's folder"
    assert folders == allowed, f"not rooms: {folders - allowed}; rooms without tests: {allowed - folders}"


def test_no_class_over_200_lines_in_the_stages_the_supervisor_or_the_assets() -> None:
    """Issue 28: the state machines were four fat classes; each now delegates to small typed parts."""
    fat = []
    for room in ("stages", "supervisor", "assets"):
        for path in sorted((PKG / room).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and (node.end_lineno or 0) - node.lineno + 1 > 200:
                    fat.append(f"{path.relative_to(ROOT)}: {node.name} ({(node.end_lineno or 0) - node.lineno + 1})")
    assert fat == [], "split these: " + ", ".join(fat)
