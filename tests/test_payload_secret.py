"""Secrets: key files, password sources, no leaks; the keygen command."""

from __future__ import annotations

import errno
import os
import pickle
import stat
import warnings

import pytest
from click.testing import CliRunner

from conftest import fill
from g2face.cli.keygen import keygen
from g2face.payload import (
    PASSWORD_ENV,
    Secret,
    SecretError,
    SecretExposureWarning,
    WeakPasswordWarning,
    resolve_secret,
)
from g2face.payload.secret import password_weakness


def material(secret: Secret) -> bytes:
    return secret._material


def test_repr_and_pickle_do_not_leak():
    secret = Secret.from_password("hunter2-secret")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret!r} {secret}"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_password_is_nfc_normalised_and_nonempty():
    assert material(Secret.from_password("e\u0301")) == material(Secret.from_password("\u00e9"))
    with pytest.raises(SecretError):
        Secret.from_password("")


def test_key_file_round_trip_and_permissions(tmp_path):
    path = tmp_path / "g2face.key"
    written = Secret.generate_key_file(path)
    assert path.stat().st_size == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert material(Secret.from_key_file(path)) == material(written)
    with pytest.raises(SecretError, match="refusing to overwrite"):
        Secret.generate_key_file(path)
    (tmp_path / "short").write_bytes(b"x" * 31)
    with pytest.raises(SecretError, match="not a g2face key file"):
        Secret.from_key_file(tmp_path / "short")
    os.chmod(path, 0o644)
    with pytest.warns(SecretExposureWarning, match="chmod 600"):
        Secret.from_key_file(path)


def test_resolve_sources_in_order(tmp_path):
    key = tmp_path / "k"
    Secret.generate_key_file(key)
    assert resolve_secret(key_file=key, env={}).kind == "key"
    with pytest.warns(SecretExposureWarning, match="shell history"), pytest.warns(WeakPasswordWarning):
        assert material(resolve_secret(password="pw", env={})) == b"pw"
    (tmp_path / "pw.txt").write_text(" spaced pw \r\n", encoding="utf-8")
    assert material(resolve_secret(password_file=tmp_path / "pw.txt", env={})) == b" spaced pw "
    assert material(resolve_secret(env={PASSWORD_ENV: "from-env"}, interactive=False)) == b"from-env"
    with pytest.raises(SecretError, match="only one of"):
        resolve_secret(key_file=key, password_file=tmp_path / "pw.txt", env={})


def test_prompt_and_its_failures():
    answers = iter(["typed a while", "typed a while"])
    secret = resolve_secret(env={}, prompt=lambda _: next(answers), confirm=True, interactive=True)
    assert material(secret) == b"typed a while"
    mismatched = iter(["one", "two"])
    with pytest.raises(SecretError, match="do not match"):
        resolve_secret(env={}, prompt=lambda _: next(mismatched), confirm=True, interactive=True)
    with pytest.raises(SecretError, match="no password given"):
        resolve_secret(env={}, interactive=False)


def test_keygen_command(tmp_path):
    path = tmp_path / "new.key"
    result = CliRunner().invoke(keygen, [str(path)])
    assert result.exit_code == 0, result.output
    assert path.stat().st_size == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    again = CliRunner().invoke(keygen, [str(path)])
    assert again.exit_code != 0 and "refusing to overwrite" in again.output


@pytest.mark.parametrize(
    ("password", "weak"),
    [
        ("a", True),
        ("12345678", True),
        ("password", True),
        ("aaaaaaaaaaaaaaaa", True),
        ("correct horse battery staple", False),
        ("Tr0ub4dor&3", False),
    ],
)
def test_weak_passwords_warn_but_work(tmp_path, password, weak):
    assert (password_weakness(password) is not None) == weak
    (tmp_path / "pw.txt").write_text(password, encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for secret in (
            resolve_secret(password_file=tmp_path / "pw.txt", env={}),
            resolve_secret(env={PASSWORD_ENV: password}, interactive=False),
            resolve_secret(env={}, prompt=lambda _: password, interactive=True),
        ):
            assert material(secret) == password.encode()
    weak_warnings = [w for w in caught if issubclass(w.category, WeakPasswordWarning)]
    assert len(weak_warnings) == (3 if weak else 0)
    assert all("\n" not in str(w.message) for w in weak_warnings)


def _no_key_left(folder, name: str) -> None:
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]


def test_keygen_on_a_full_disk_leaves_no_key_and_can_be_retried(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", no_space)
        with pytest.raises(SecretError, match="cannot write key file .*No space left"):
            Secret.generate_key_file(tmp_path / "k")
    _no_key_left(tmp_path, "k")
    Secret.generate_key_file(tmp_path / "k")  # the retry is not blocked by a 0-byte key
    assert (tmp_path / "k").stat().st_size == 32


def test_keygen_on_a_really_full_file_system(small_filesystem):
    folder = small_filesystem(64)
    fill(folder)
    result = CliRunner().invoke(keygen, [str(folder / "k")])
    assert result.exit_code == 1 and "No space left" in result.output
    assert len(result.output.strip().splitlines()) == 1
    _no_key_left(folder, "k")
