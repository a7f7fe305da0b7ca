"""Passwords and key files, and how a command line turns its options into one `Secret`.

The secret's bytes never appear in `repr`, `str`, logs or exceptions. Derived keys are cached on
the `Secret` object, per (KDF parameter set, salt), so decoding many faces of one image runs the
memory-hard KDF once.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import secrets
import stat
import string
import sys
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from g2face.payload.errors import SecretError, SecretExposureWarning, WeakPasswordWarning

KEY_FILE_BYTES = 32
PASSWORD_ENV = "G2FACE_PASSWORD"
_CACHE_SIZE = 64
# Below these, a password is reported as weak (not refused: the choice is the user's).
MIN_PASSWORD_LENGTH = 8
MIN_DISTINCT_CHARACTERS = 5
MIN_PASSWORD_BITS = 40


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
        """Write 32 random bytes to a new file readable by its owner only (never overwrites).

        The key is written to a temporary file, fsync'd, then hard-linked to `path`, which fails if
        `path` exists: a full disk or a crash never leaves a short key file under the real name."""
        path = Path(path)
        key = secrets.token_bytes(KEY_FILE_BYTES)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
            _fsync_folder(path.parent)
        except FileExistsError:
            raise SecretError(f"{path} exists; refusing to overwrite a key") from None
        except OSError as e:
            raise SecretError(f"cannot write key file {path}: {e.strerror or e}") from None
        finally:
            tmp.unlink(missing_ok=True)
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
    A weak password (`password_weakness`) is accepted with a `WeakPasswordWarning`.
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
        return _warn_if_weak(Secret.from_password(password), password)
    if password_file:
        text = _read_password_file(Path(password_file))
        return _warn_if_weak(Secret.from_password(text), text)
    if env.get(PASSWORD_ENV):
        return _warn_if_weak(Secret.from_password(env[PASSWORD_ENV]), env[PASSWORD_ENV])
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
    return _warn_if_weak(Secret.from_password(first), first)


def _fsync_folder(folder: Path) -> None:
    """Make a new directory entry durable (not supported everywhere, e.g. on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def password_weakness(password: str) -> str | None:
    """Why `password` is easy to guess offline, or None. A rough estimate: length, distinct
    characters, and length × log2(size of the character classes used) in bits."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"only {len(password)} character{'s' if len(password) != 1 else ''}"
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        return f"only {len(set(password))} different characters"
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    alphabet = sum(len(c) for c in classes if any(ch in c for ch in password))
    if any(not any(ch in c for c in classes) for ch in password):
        alphabet += 33  # punctuation, space, anything else
    if len(password) * math.log2(alphabet) < MIN_PASSWORD_BITS:
        return "too few kinds of characters for its length"
    return None


def _warn_if_weak(secret: Secret, password: str) -> Secret:
    weakness = password_weakness(password)
    if weakness:
        warnings.warn(
            f"weak password ({weakness}): whoever has an anonymized image can try passwords "
            f"offline; prefer 12+ varied characters, or a key file from `g2face keygen`",
            WeakPasswordWarning,
            stacklevel=3,
        )
    return secret


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
