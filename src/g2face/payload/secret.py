"""Passwords and key files, and how a command line turns its options into one `Secret`.

The secret's bytes never appear in `repr`, `str`, logs or exceptions. Derived keys are cached on
the `Secret` object, per (KDF parameter set, salt), so decoding many faces of one image runs the
memory-hard KDF once.
"""

from __future__ import annotations

import getpass
import os
import secrets
import stat
import sys
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from g2face.payload.errors import SecretError, SecretExposureWarning

KEY_FILE_BYTES = 32
PASSWORD_ENV = "G2FACE_PASSWORD"
_CACHE_SIZE = 64


class Secret:
    """A password (stretched by a memory-hard KDF) or a 32-byte random key (HKDF only)."""

    __slots__ = ("_material", "kind", "_derived")

    def __init__(self, material: bytes, kind: Literal["password", "key"]):
        if not material:
            raise SecretError("empty password")
        if kind == "key" and len(material) != KEY_FILE_BYTES:
            raise SecretError(f"a key must be {KEY_FILE_BYTES} bytes, got {len(material)}")
        self._material = bytes(material)
        self.kind = kind
        self._derived: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()

    @classmethod
    def from_password(cls, password: str) -> Secret:
        # NFC so the same password typed on systems that compose accents differently matches.
        return cls(unicodedata.normalize("NFC", password).encode("utf-8"), "password")

    @classmethod
    def from_key_file(cls, path: str | os.PathLike) -> Secret:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SecretError(f"cannot read key file {path}: {e.strerror}") from None
        if len(data) != KEY_FILE_BYTES:
            raise SecretError(
                f"{path} is not a g2face key file ({len(data)} bytes, expected {KEY_FILE_BYTES})"
            )
        if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(
                f"key file {path} is readable by other users; run `chmod 600 {path}`",
                SecretExposureWarning,
                stacklevel=2,
            )
        return cls(data, "key")

    @classmethod
    def generate_key_file(cls, path: str | os.PathLike) -> Secret:
        """Write 32 random bytes to a new file readable by its owner only (never overwrites)."""
        key = secrets.token_bytes(KEY_FILE_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SecretError(f"{path} exists; refusing to overwrite a key") from None
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return cls(key, "key")

    def derive(self, kdf_id: int, salt: bytes, kdf: Callable[[bytes, bytes], bytes]) -> bytes:
        """`kdf(material, salt)`, cached per (kdf_id, salt)."""
        cache_key = (kdf_id, bytes(salt))
        if cache_key in self._derived:
            self._derived.move_to_end(cache_key)
        else:
            self._derived[cache_key] = kdf(self._material, bytes(salt))
            if len(self._derived) > _CACHE_SIZE:
                self._derived.popitem(last=False)
        return self._derived[cache_key]

    def __repr__(self) -> str:
        return f"Secret(kind={self.kind!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a Secret is not picklable; pass the password or key file instead")


def resolve_secret(
    *,
    password: str | None = None,
    password_file: str | os.PathLike | None = None,
    key_file: str | os.PathLike | None = None,
    env: Mapping[str, str] = os.environ,
    prompt: Callable[[str], str] | None = getpass.getpass,
    confirm: bool = False,
    interactive: bool | None = None,
) -> Secret:
    """The one secret a command line asked for, in this order: `key_file`, `password`,
    `password_file`, the `G2FACE_PASSWORD` environment variable, an interactive prompt.

    Giving more than one explicit source is an error. A password on the command line works but
    warns (`SecretExposureWarning`): it ends up in shell history and process listings. `confirm`
    asks twice (for anonymizing, where a typo would lock the faces away for good). `interactive`
    defaults to whether stdin is a terminal; without one and without any source, it fails clearly.
    """
    given = [
        n for n, v in (("key file", key_file), ("password", password), ("password file", password_file)) if v
    ]
    if len(given) > 1:
        raise SecretError(f"give only one of: {', '.join(given)}")
    if key_file:
        return Secret.from_key_file(key_file)
    if password:
        warnings.warn(
            "a password given on the command line is visible in shell history and process "
            f"listings; prefer --password-file, {PASSWORD_ENV} or the interactive prompt",
            SecretExposureWarning,
            stacklevel=2,
        )
        return Secret.from_password(password)
    if password_file:
        return Secret.from_password(_read_password_file(Path(password_file)))
    if env.get(PASSWORD_ENV):
        return Secret.from_password(env[PASSWORD_ENV])
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive or prompt is None:
        raise SecretError(
            f"no password given: use --password-file, --key-file or {PASSWORD_ENV}, or run in a terminal"
        )
    first = prompt("Password: ")
    if not first:
        raise SecretError("empty password")
    if confirm and prompt("Repeat password: ") != first:
        raise SecretError("the passwords do not match")
    return Secret.from_password(first)


def _read_password_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SecretError(f"cannot read password file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SecretError(f"password file {path} is not UTF-8 text") from None
    # Only the line ending an editor adds is dropped; other whitespace may be part of the password.
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise SecretError(f"password file {path} is empty")
    return password
