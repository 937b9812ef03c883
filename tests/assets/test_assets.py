"""Asset manager: mirror lookups, sha256 checks, nothing half-written, clear errors."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from edgecount.assets.obtain import AssetError, AssetStore, load_manifest, manifest_path


def _manifest(sha: str, mirror: list[str]) -> dict:
    return {"models": {"m": {"file": "detect.tflite", "sha256": sha, "mirror": mirror,
                              "url": "http://127.0.0.1:9/none.zip"}}}


def test_copies_and_verifies_from_a_mirror_directory_and_zip(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGECOUNT_ASSET_MIRROR", raising=False)
    payload = b"model bytes" * 100
    sha = hashlib.sha256(payload).hexdigest()
    (tmp_path / "mirror" / "dir").mkdir(parents=True)
    (tmp_path / "mirror" / "dir" / "detect.tflite").write_bytes(payload)
    store = AssetStore(tmp_path / "mirror", tmp_path / "cache", allow_download=False,
                       manifest=_manifest(sha, ["dir"]))
    assert store.fetch_model("m").model.read_bytes() == payload
    with zipfile.ZipFile(tmp_path / "mirror" / "rel.zip", "w") as z:
        z.writestr("rel/detect.tflite", payload)
    store2 = AssetStore(tmp_path / "mirror", tmp_path / "cache2", allow_download=False,
                        manifest=_manifest(sha, ["missing", "rel.zip"]))
    assert store2.fetch_model("m").model.read_bytes() == payload


def test_wrong_hash_is_an_error_and_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGECOUNT_ASSET_MIRROR", raising=False)
    (tmp_path / "mirror" / "dir").mkdir(parents=True)
    (tmp_path / "mirror" / "dir" / "detect.tflite").write_bytes(b"tampered")
    store = AssetStore(tmp_path / "mirror", tmp_path / "cache", allow_download=True,
                       manifest=_manifest("0" * 64, ["dir"]))
    with pytest.raises(AssetError) as exc:
        store.fetch_model("m")
    text = str(exc.value)
    assert "does not match" in text and "download failed" in text and "fix:" in text
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_unreadable_mirror_file_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    # As on a device where the mirror was copied by root with mode 0600: the service user cannot read it.
    # (Simulated: CI runs as root, who could read a chmod 000 file.)
    monkeypatch.delenv("EDGECOUNT_ASSET_MIRROR", raising=False)
    (tmp_path / "mirror" / "dir").mkdir(parents=True)
    blocked = tmp_path / "mirror" / "dir" / "detect.tflite"
    blocked.write_bytes(b"x")
    real_open = Path.open

    def deny(self: Path, *a, **kw):
        if self == blocked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **kw)

    monkeypatch.setattr(Path, "open", deny)
    store = AssetStore(tmp_path / "mirror", tmp_path / "cache", allow_download=False,
                       manifest=_manifest(hashlib.sha256(b"x").hexdigest(), ["dir"]))
    with pytest.raises(AssetError, match=r"not readable by user .*chmod a\+r"):
        store.fetch_model("m")
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_no_mirror_and_no_network_says_how_to_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGECOUNT_ASSET_MIRROR", raising=False)
    store = AssetStore(None, tmp_path / "cache", allow_download=False, manifest=_manifest("0" * 64, []))
    with pytest.raises(AssetError, match="no asset mirror configured"):
        store.fetch_model("m")
    with pytest.raises(AssetError, match="no model named 'x'"):
        store.fetch_model("x")


def test_shipped_manifest_is_complete() -> None:
    """The checks the loader makes (one source, pinned hashes, built models' inputs) pass on the real file,
    and what the typed entries say matches what the appliance relies on."""
    man = load_manifest()
    assert set(man.models) >= {"ssd_mobilenet_v1_coco_quant", "yolox_nano", "yolox_nano_int8"}
    for name, e in man.models.items():
        # A package registry is reached through pip (its configured index), never by a hard-coded host.
        assert "pythonhosted" not in e.url and "pypi.org" not in e.url, name
        if e.build:
            assert (manifest_path().parent / e.recipe).is_file()
    assert man.clips["pets09"].debian_package == "opencv-doc"
    assert man.models["ssd_mobilenet_v1_coco_quant"].input_range == (-1.0, 1.0)


_GOOD = {"file": "m.tflite", "sha256": "a" * 64, "url": "https://example.org/m.tflite", "mirror": ["m"]}


@pytest.mark.parametrize(("change", "message"), [
    ({"lables": "x.txt"}, "unknown key 'lables'"),
    ({"sha256": "abc"}, "sha256: 'abc' is not a sha256"),
    ({"label_offset": "1"}, "label_offset = '1' should be a whole number"),
    ({"input_range": [0, 1, 2]}, "input_range = [0, 1, 2] should be two numbers"),
    ({"mirror": "m"}, "mirror = 'm' should be a list of strings"),
    ({"pip": "x==1"}, "url and pip: give one way"),
    ({"sha256": ""}, "no sha256: only an accelerator model"),
    ({"decoder": "ssd"}, "decoder 'ssd' is not one this build has"),
    ({"url": "", "build": "quantize", "recipe": "r.json", "calibration": "images"}, "build needs source_model"),
    ({"url": "", "build": "quantize", "source_model": "nope", "recipe": "r.json", "calibration": "images"},
     "source_model = 'nope' is not a model with a pinned sha256"),
    ({"resize": "fit"}, "resize must be 'stretch' or 'letterbox'"),
])
def test_a_broken_manifest_entry_names_its_key_and_the_fix(change: dict, message: str, tmp_path: Path) -> None:
    """Issue 28: the manifest was an untyped dict read with .get(key, default) in five modules, so a
    misspelt key was silently a missing one. Every entry is now checked when the manifest is loaded."""
    entry = {k: v for k, v in {**_GOOD, **change}.items() if v != ""}
    with pytest.raises(AssetError, match=message.replace("[", r"\[").replace("(", r"\(")) as exc:
        AssetStore(None, tmp_path, allow_download=False, manifest={"models": {"m": entry}})
    assert "models.m" in str(exc.value)


def test_a_manifest_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.toml"
    bad.write_text("[models.m\nfile = 1\n")
    with pytest.raises(AssetError, match=f"model manifest {bad} is not valid TOML"):
        load_manifest(bad)


def test_unpinned_model_is_never_downloaded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGECOUNT_ASSET_MIRROR", raising=False)
    store = AssetStore(None, tmp_path / "cache", allow_download=True)
    with pytest.raises(AssetError, match="pins no sha256"):
        store.fetch_model("ssd_mobilenet_v1_coco_quant_edgetpu")


def test_a_built_model_accepts_only_the_checked_builds_the_manifest_lists() -> None:
    from edgecount.assets.manifest import ManifestEntry

    built = ManifestEntry("m", "models", "m.tflite", build="quantize", sha256="aa", sha256_builds=("bb",))
    assert built.accepted_sha256("aa") == {"aa", "bb"}
    # The alternatives are for the built file only (not its labels), and never for a downloaded file.
    assert built.accepted_sha256("cc") == {"cc"}
    assert ManifestEntry("m", "models", "m", sha256="aa", sha256_builds=("bb",)).accepted_sha256("aa") == {"aa"}
    assert ManifestEntry("m", "models", "m").accepted_sha256(None) == frozenset()


def test_the_manifest_knows_exactly_the_decoders_this_build_has() -> None:
    from edgecount.assets.manifest import KNOWN_DECODERS
    from edgecount_core.decoders import DECODERS

    assert set(DECODERS) | {"blazeface"} == KNOWN_DECODERS
