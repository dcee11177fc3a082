"""Sign-in for the console: tokens from a file, stored hashed; two roles; sessions and CSRF.

The tokens file (``console.tokens_file``) has one line per token: ``NAME ROLE sha256:HEX`` where HEX is the
SHA-256 of the token and ROLE is ``viewer`` or ``operator``; ``#`` starts a comment. A plain hash is enough
here (no salt, no slow KDF) because the tokens are 32 random bytes made by :func:`new_token`, not passwords a
person chose: nothing short of the token itself finds its hash. Comparison is constant-time.

A browser signs in once with its token and gets a session cookie (``HttpOnly``, ``SameSite=Strict``,
``Secure`` over HTTPS) naming a random session id held in memory; every form carries the session's CSRF token.
Scripts send ``Authorization: Bearer TOKEN`` instead; they need no CSRF token (a browser never adds that header
by itself to a cross-site request).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from writeback.errors import ConfigError

ROLES = ("viewer", "operator")
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    csrf: str = ""  # the session's CSRF token; empty for bearer-token requests

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def token_line(name: str, role: str, token: str) -> str:
    """The tokens-file line for ``token`` (the token itself is not in it)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    return f"{name} {role} {hash_token(token)}\n"


def load_tokens(path: str) -> dict[str, Principal]:
    """hash -> principal. Refuses a file others may write (anyone could add an operator token)."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the console tokens file: {exc.strerror}", file=path, key="console.tokens_file"
        ) from exc
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"the tokens file may be written by others (mode {stat.S_IMODE(st.st_mode):o}); run chmod 600 {path}",
            file=path,
            key="console.tokens_file",
        )
    out: dict[str, Principal] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ROLES or not parts[2].startswith("sha256:"):
            raise ConfigError(
                f"line {n}: expected 'NAME ROLE sha256:HEX' with ROLE viewer or operator",
                file=path,
                key="console.tokens_file",
            )
        out[parts[2].lower()] = Principal(parts[0], parts[1])
    return out


class Authenticator:
    """Checks tokens against the file (re-read when it changes) and keeps the browser sessions."""

    def __init__(self, tokens_file: str | None) -> None:
        self.tokens_file = tokens_file
        self._tokens: dict[str, Principal] = {}
        self._mtime: float | None = None
        self._sessions: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def _current(self) -> dict[str, Principal]:
        if not self.tokens_file:
            return {}
        mtime = os.stat(self.tokens_file).st_mtime
        if mtime != self._mtime:
            self._tokens, self._mtime = load_tokens(self.tokens_file), mtime
        return self._tokens

    def check_token(self, token: str) -> Principal | None:
        digest = hash_token(token)
        with self._lock:
            tokens = self._current()
        for known, principal in tokens.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    def start_session(self, principal: Principal) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now}
            self._sessions[sid] = (
                Principal(principal.name, principal.role, secrets.token_urlsafe(24)),
                now + SESSION_SECONDS,
            )
        return sid

    def session(self, sid: str) -> Principal | None:
        with self._lock:
            found = self._sessions.get(sid)
        if found is None or found[1] <= time.time():
            return None
        return found[0]

    def end_session(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)
