"""Secrets of the sandbox: generated at random, stored in files only the owner can read, never printed."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def new_password() -> str:
    """A random password that satisfies AD's default complexity rule (three of: upper, lower, digit, symbol)."""
    return f"Wb-{secrets.token_urlsafe(24)}-9z"


def new_client_secret() -> str:
    """A random client secret shaped like Entra's (40 characters, with a '~')."""
    return f"wb8Q~{secrets.token_urlsafe(27)}"[:40]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically, so no reader ever sees a partial or public file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by umask only on creation; be explicit
    os.replace(tmp, path)


def ensure_secret(path: Path, generate: Callable[[], str]) -> str:
    """Return the secret stored in ``path``, generating and storing one first when there is none."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = generate()
    write_private(path, value)
    return value
