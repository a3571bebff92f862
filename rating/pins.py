"""PINs: generated with ``secrets``, stored only as a keyed hash, never logged.

The hash is HMAC-SHA256 under a server secret, over project id and PIN: a stolen
database alone does not give the PINs (8 digits are only 10^8 guesses for a plain
hash), and the same PIN in two projects hashes differently.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SecretUnsafe", "generate_pin", "is_pin_shaped", "load_or_create_secret", "pin_hash", "pin_sequence"]


def generate_pin(length: int = 8) -> str:
    if not 4 <= length <= 16:
        raise ValueError("PIN length must be between 4 and 16 digits")
    return "".join(secrets.choice("0123456789") for _ in range(length))


def pin_sequence(length: int) -> Iterator[str]:
    """Every PIN of ``length`` digits once each, in a uniformly random order: a lazy
    Fisher–Yates shuffle drawn with ``secrets`` (memory grows only with what is drawn).

    A batch takes the next PIN not taken in the project, so it never draws one twice and
    needs at most as many draws as cards bought plus cards already there: a 4-digit
    project can be filled to its last free PIN, where drawing at random would give up."""
    if not 4 <= length <= 16:
        raise ValueError("PIN length must be between 4 and 16 digits")
    size = 10 ** length
    moved: dict[int, int] = {}  # position -> the value swapped into it (absent: its own)
    for i in range(size):
        j = i + secrets.randbelow(size - i)
        here = moved.pop(i, i)          # position i is never read again
        if j != i:
            here, moved[j] = moved.get(j, j), here
        yield f"{here:0{length}d}"


def pin_hash(secret: bytes, project_id: int, pin: str) -> str:
    return hmac.new(secret, f"{project_id}:{pin}".encode(), hashlib.sha256).hexdigest()


def is_pin_shaped(text: str, length: int) -> bool:
    return len(text) == length and text.isascii() and text.isdigit()


class SecretUnsafe(ValueError):
    """The secret file can be read by others (group or world): refuse it, as ssh does."""


def load_or_create_secret(path: Path) -> bytes:
    """The server secret: read it, or create 32 random bytes (mode 0600, in a 0700
    directory) on first use.

    Raises:
        SecretUnsafe: the file is group- or world-readable (or writable).
        ValueError: the file is too short.
    """
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise SecretUnsafe(f"secret file {path} is accessible by others (mode {mode & 0o777:o});"
                               f" run: chmod 600 {path}")
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
        raise ValueError(f"secret file {path} is too short (need at least 32 bytes)")
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data + b"\n")
    finally:
        os.close(fd)
    return data
