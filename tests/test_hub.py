"""Asset hub: fetching from a wheelhouse, hash checks, cache override, converted files, CLI."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from g2face import hub
from g2face.cli import cli

PAYLOAD = b"fake model bytes " * 1000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_asset(wheelhouse: Path, payload: bytes = PAYLOAD, wheel_sha: str | None = None) -> hub.Asset:
    wheelhouse.mkdir(parents=True, exist_ok=True)
    wheel = wheelhouse / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fakepkg/models/net.onnx", payload)
    sha = _sha(wheel.read_bytes())
    return hub.Asset(
        name="fake",
        description="a fake asset for tests",
        licence="MIT",
        provider=hub.PypiWheel("fakepkg", "1.0", wheel_sha or sha),
        members=(hub.WheelMember("fakepkg/models/net.onnx", _sha(PAYLOAD), len(PAYLOAD)),),
    )


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(hub.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.setenv(hub.ENV_WHEELHOUSE, str(tmp_path / "wheels"))
    return tmp_path / "home"


def test_cache_dir_follows_env(home):
    assert hub.cache_dir() == home


def test_fetch_extracts_and_verifies(home, tmp_path):
    asset = _make_asset(tmp_path / "wheels")
    path = hub.asset_path(asset, progress=False)
    assert path == home / "assets" / "fake" / "net.onnx"
    assert path.read_bytes() == PAYLOAD
    assert hub.is_cached(asset)


def test_wheel_hash_mismatch_is_refused(home, tmp_path):
    asset = _make_asset(tmp_path / "wheels", wheel_sha="0" * 64)
    with pytest.raises(hub.HubError, match="refusing"):
        hub.fetch(asset, progress=False)
    assert not (home / "assets" / "fake" / "net.onnx").exists()


def test_member_hash_mismatch_is_refused(home, tmp_path):
    asset = _make_asset(tmp_path / "wheels", payload=b"tampered " * 1000)
    with pytest.raises(hub.HubError, match="sha256"):
        hub.fetch(asset, progress=False)
    assert not list((home / "assets" / "fake").glob("net.onnx*"))


def test_corrupted_cache_is_reported_removed_and_refetched(home, tmp_path, monkeypatch):
    asset = _make_asset(tmp_path / "wheels")
    monkeypatch.setitem(hub.ASSETS, "fake", asset)
    path = hub.asset_path("fake", progress=False)
    path.write_bytes(PAYLOAD[:-10])  # truncated
    problems = hub.verify(["fake"])
    assert [(p.asset, p.filename) for p in problems] == [("fake", "net.onnx")]
    assert not path.exists()
    assert hub.asset_path("fake", progress=False).read_bytes() == PAYLOAD


def test_same_size_corruption_detected_after_stamp_invalidated(home, tmp_path, monkeypatch):
    asset = _make_asset(tmp_path / "wheels")
    monkeypatch.setitem(hub.ASSETS, "fake", asset)
    path = hub.asset_path("fake", progress=False)
    path.write_bytes(b"X" + PAYLOAD[1:])  # same size, new mtime: stamp no longer matches
    assert hub.asset_path("fake", progress=False).read_bytes() == PAYLOAD


def test_unfetchable_asset_names_the_command(home, monkeypatch, tmp_path):
    asset = _make_asset(tmp_path / "elsewhere")  # not in the wheelhouse
    monkeypatch.setattr(hub.store, "_download_wheel", _raise_download)
    with pytest.raises(hub.HubError, match="g2face weights fetch fake"):
        hub.fetch(asset, progress=False)


def _raise_download(*args, **kwargs):
    raise hub.HubError("no network")


def test_converted_file_is_cached_and_rebuilt_when_corrupted(home, tmp_path):
    asset = _make_asset(tmp_path / "wheels")
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        out.write_bytes(b"converted")

    p1 = hub.converted_path(asset, "w.safetensors", build, tag="v1")
    p2 = hub.converted_path(asset, "w.safetensors", build, tag="v1")
    assert p1 == p2 and p1.read_bytes() == b"converted" and len(calls) == 1
    p1.write_bytes(b"corrupted")
    hub.converted_path(asset, "w.safetensors", build, tag="v1")
    assert len(calls) == 2 and p1.read_bytes() == b"converted"


def test_registry_entries_are_complete():
    assert {"yunet", "sface", "face-landmarker", "mobilestylegan", "hed-vgg16", "facenet-casia"} <= set(
        hub.ASSETS
    )
    for a in hub.ASSETS.values():
        assert len(a.provider.sha256) == 64 and a.licence and a.description
        for m in a.members:
            assert len(m.sha256) == 64 and m.size > 0


def test_cli_weights_list_and_path(home, tmp_path, monkeypatch):
    asset = _make_asset(tmp_path / "wheels")
    monkeypatch.setitem(hub.ASSETS, "fake", asset)
    runner = CliRunner()
    result = runner.invoke(cli, ["weights", "list"])
    assert result.exit_code == 0 and "fake" in result.output and "MIT" in result.output
    result = runner.invoke(cli, ["weights", "path", "fake"])
    assert result.exit_code == 0 and result.output.strip().endswith("net.onnx")
    result = runner.invoke(cli, ["weights", "fetch", "nosuch"])
    assert result.exit_code != 0 and "unknown asset" in result.output


def test_a_cached_converted_prior_needs_no_source_asset(home, monkeypatch):
    """A cache holding only converted files (e.g. carried to an offline machine) is enough."""
    from g2face.priors import lpips_hed, mediapipe_geometry, mobilestylegan, sface

    def no_source(*args, **kwargs):
        raise AssertionError("the source asset was asked for")

    monkeypatch.setattr(hub, "fetch", no_source)
    monkeypatch.setattr(hub, "asset_path", no_source)
    cases = [
        ("sface", "sface_fp32.safetensors", sface.sface_weights_path),
        ("hed-vgg16", "lpips_hed.safetensors", lpips_hed.lpips_hed_weights_path),
        ("face-landmarker", "face_landmarker.safetensors", mediapipe_geometry.converted_weights_path),
        ("mobilestylegan", "mobilestylegan.safetensors", mobilestylegan.weights_path),
    ]
    for asset, filename, locate in cases:
        target = hub.cache_dir() / "converted" / asset / "v1" / filename
        target.parent.mkdir(parents=True)
        target.write_bytes(b"converted weights")
        target.with_name(filename + ".sha256").write_text(hashlib.sha256(b"converted weights").hexdigest())
        assert locate() == target


def _tamper_keeping_size_and_mtime(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    import os

    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_tampered_files_with_the_same_size_and_mtime_are_refused_before_use(home, tmp_path, monkeypatch):
    asset = _make_asset(tmp_path / "wheels")
    monkeypatch.setitem(hub.ASSETS, "fake", asset)
    converted = hub.converted_path(asset, "w.safetensors", lambda out: out.write_bytes(PAYLOAD), tag="v1")
    fetched = hub.asset_path("fake", progress=False)
    for path in (converted, fetched):
        _tamper_keeping_size_and_mtime(path)
    monkeypatch.setattr(hub.store, "_HASHED", {})  # a new process: nothing hashed yet
    assert hub.is_cached("fake")  # a listing trusts the stamp...
    rebuilt = []
    path = hub.converted_path(
        asset, "w.safetensors", lambda out: rebuilt.append(out.write_bytes(PAYLOAD)), tag="v1"
    )
    assert rebuilt and path.read_bytes() == PAYLOAD  # ...a use does not: rebuilt
    assert hub.asset_path("fake", progress=False).read_bytes() == PAYLOAD  # re-extracted


def test_cache_problems_are_one_line_hub_errors(home, tmp_path, monkeypatch):
    asset = _make_asset(tmp_path / "wheels")
    monkeypatch.setitem(hub.ASSETS, "fake", asset)
    path = hub.asset_path("fake", progress=False)
    monkeypatch.setattr(hub.store, "_HASHED", {})

    def foreign(*args, **kwargs):  # a 0600 file of another user, as root cannot be denied
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(hub.store, "sha256_file", foreign)
    with pytest.raises(hub.HubError, match=f"cannot use the g2face cache \\({path}: Permission denied\\)"):
        hub.asset_path("fake", progress=False)
    home.rename(tmp_path / "moved")
    home.write_text("not a folder")
    with pytest.raises(hub.HubError, match="which is a file; point it at a folder"):
        hub.asset_path("fake", progress=False)
    result = CliRunner().invoke(cli, ["weights", "list"])
    assert result.exit_code == 1 and "which is a file" in result.output
    assert "Traceback" not in result.output


def test_a_read_only_shared_cache_is_still_used(home, tmp_path, monkeypatch):
    asset = _make_asset(tmp_path / "wheels")
    monkeypatch.setitem(hub.ASSETS, "fake", asset)
    path = hub.asset_path("fake", progress=False)
    path.with_name(path.name + ".stamp.json").unlink()
    monkeypatch.setattr(hub.store, "_HASHED", {})

    def read_only(target, data):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(hub.store, "atomic_write_bytes", read_only)
    assert hub.asset_path("fake", progress=False) == path  # verified by its hash; no stamp written
