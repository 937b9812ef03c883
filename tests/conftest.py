"""Shared fixtures: assets from the mirror (or the network), and short runtime dirs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from edgecount.assets.obtain import AssetError, AssetStore

from .helpers import Broker

# Shared CI machines are slow and noisy: judge properties, not speed.
settings.register_profile("edgecount", deadline=None)
settings.load_profile("edgecount")

ROOT = Path(__file__).resolve().parents[1]


def _mirror() -> str | None:
    env = os.environ.get("EDGECOUNT_ASSET_MIRROR")
    if env:
        return env
    cand = ROOT.parent / "shared" / "assets"
    return str(cand) if cand.is_dir() else None


def pytest_configure(config: pytest.Config) -> None:
    # Subprocesses (the CLI, the services) find the same mirror and cache as the tests.
    m = _mirror()
    if m:
        os.environ.setdefault("EDGECOUNT_ASSET_MIRROR", str(Path(m).resolve()))
    os.environ.setdefault("XDG_CACHE_HOME", str(ROOT / ".cache"))
    # Services started without a configured state_dir must never touch the user's real state.
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="ec-state-")


# Fixtures that start real processes (a broker, a package build): any test using one is slow.
SLOW_FIXTURES = frozenset({"broker", "baseline", "built_deb", "yolox_int8_model"})
# What only the slow lane may start: the whole pipeline, a broker, an image build.
_SLOW_COMMANDS = ("run", "replay", "eval")
_SLOW_PROGRAMS = ("mosquitto", "qemu-system", "debootstrap", "build-deb.sh", "stress-ng")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # A fixture named as a parameter (taken with request.getfixturevalue) counts as used: on a cold cache
        # the int8 model's quantizer ran in the fast lane that way (issue 28).
        named = {v for v in getattr(getattr(item, "callspec", None), "params", {}).values() if isinstance(v, str)}
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())) or SLOW_FIXTURES & named:
            item.add_marker(pytest.mark.slow)


def _starts_slow_work(argv: object) -> str | None:
    args = [str(a) for a in argv] if isinstance(argv, list | tuple) else [str(argv)]
    if any(Path(a).name.startswith(_SLOW_PROGRAMS) for a in args):
        return " ".join(args[:3])
    if "-m" in args:
        i = args.index("-m")
        module, rest = args[i + 1:i + 2], args[i + 2:i + 3]
        if module == ["edgecount"] and rest and rest[0] in _SLOW_COMMANDS:
            return f"edgecount {rest[0]}"
    return None


@pytest.fixture(autouse=True)
def _fast_lane_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked slow that starts the pipeline, a broker or an image build fails at once,
    so `just test-fast` stays fast and no slow test is forgotten in it."""
    if request.node.get_closest_marker("slow"):
        return
    real_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
        what = _starts_slow_work(args)
        if what:
            pytest.fail(f"{request.node.nodeid} starts `{what}` but is not marked slow "
                        "(pytest.mark.slow, or use a fixture in SLOW_FIXTURES)")
        real_init(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


@pytest.fixture(scope="session")
def store() -> AssetStore:
    return AssetStore(mirror=_mirror(), cache=Path(os.environ["XDG_CACHE_HOME"]) / "edgecount")


def _fetch(store: AssetStore, kind: str, name: str) -> Path:
    try:
        if kind == "models":
            return store.fetch_model(name).model
        return store.fetch_clip(name)
    except AssetError as exc:
        pytest.fail(f"test asset {name!r} unavailable (no mirror and no network?):\n{exc}")


@pytest.fixture(scope="session")
def pets09_clip(store: AssetStore) -> Path:
    return _fetch(store, "clips", "pets09")


@pytest.fixture(scope="session")
def pets09_gt(store: AssetStore) -> Path:
    return _fetch(store, "clips", "pets09_gt")


@pytest.fixture(scope="session")
def tud_clip(store: AssetStore) -> Path:
    """TUD-Stadtmitte: street level, pairs and groups hiding each other (the second scene)."""
    return _fetch(store, "clips", "tud_stadtmitte")


@pytest.fixture(scope="session")
def ssd_model(store: AssetStore):
    _fetch(store, "models", "ssd_mobilenet_v1_coco_quant")
    return store.fetch_model("ssd_mobilenet_v1_coco_quant")


@pytest.fixture(scope="session")
def yolox_model(store: AssetStore):
    _fetch(store, "models", "yolox_nano")
    return store.fetch_model("yolox_nano")


@pytest.fixture(scope="session")
def yolox_int8_model(store: AssetStore):
    """The int8 YOLOX: taken from the cache, else built here by the quantizer (about 20 s) and sha256-checked."""
    _fetch(store, "models", "yolox_nano_int8")
    return store.fetch_model("yolox_nano_int8")


@pytest.fixture(scope="session")
def images_dir() -> Path:
    m = _mirror()
    if not m or not (Path(m) / "images").is_dir():
        pytest.fail("test photos not found: set EDGECOUNT_ASSET_MIRROR to the asset mirror (with images/)")
    return Path(m) / "images"


@pytest.fixture(scope="session")
def built_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Debian package, built once by `yocto/debian/build-deb.sh` for every test that needs it."""
    out = tmp_path_factory.mktemp("deb")
    res = subprocess.run(["bash", str(ROOT / "yocto/debian/build-deb.sh"), str(out)], capture_output=True,
                         text=True, timeout=1800)
    if res.returncode != 0:
        pytest.fail(f"build-deb.sh failed:\n{res.stderr[-3000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # ipc socket paths are limited to ~100 characters: keep it short, not under tmp_path.
    d = Path(tempfile.mkdtemp(prefix="ect-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    d = Path(tempfile.mkdtemp(prefix="ecmq-"))
    b = Broker(d)
    b.start()
    yield b
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module", params=["quiet", "loaded"])
def machine_load(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test twice: on a quiet machine, and with every core and the disk kept busy by stress-ng,
    as on an edge box doing CPU inference (issue 17). Started and stopped here, never left running."""
    if request.param == "quiet":
        yield "quiet"
        return
    exe = shutil.which("stress-ng")
    if exe is None:
        pytest.fail("stress-ng is not installed (`just test-deps` installs it)")
    proc = subprocess.Popen([exe, "--cpu", "0", "--cpu-load", "100", "--hdd", "1", "--hdd-bytes", "64M",
                             "--vm", "1", "--vm-bytes", "256M", "--temp-path", tempfile.gettempdir(), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield "loaded"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
