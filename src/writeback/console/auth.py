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
    try:
        return _read_tokens(path)[1]
    except _Unusable as exc:
        raise ConfigError(exc.reason, file=path, key="console.tokens_file") from exc


class _Unusable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_tokens(path: str) -> tuple[os.stat_result, dict[str, Principal]]:
    """The file's status (of the very file read) and its tokens; :class:`_Unusable` says why they cannot be used."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            text = f.read().decode("utf-8")
    except FileNotFoundError as exc:
        raise _Unusable(
            "the console tokens file is missing: create it with lines 'NAME ROLE sha256:HEX' "
            "(see docs/service.md), then run chmod 600 on it"
        ) from exc
    except OSError as exc:
        raise _Unusable(
            f"cannot read the console tokens file: {exc.strerror}; let the service's user read it "
            "(its owner, mode 600)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise _Unusable(
            f"the console tokens file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _Unusable(
            f"the tokens file may be written by others (mode {stat.S_IMODE(st.st_mode):o}); run chmod 600 {path}"
        )
    out: dict[str, Principal] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ROLES or not parts[2].startswith("sha256:"):
            raise _Unusable(f"line {n}: expected 'NAME ROLE sha256:HEX' with ROLE viewer or operator")
        out[parts[2].lower()] = Principal(parts[0], parts[1])
    return st, out


class ConsoleLocked(ConfigError):
    """The tokens file cannot be used (missing, unreadable, writable by others, malformed): nobody is signed in
    until it is fixed, and the console answers 503 with this message (what is wrong, how to fix it)."""

    def __init__(self, reason: str, *, file: str | None) -> None:
        super().__init__(f"console locked: {reason}")
        self.file, self.key = file, "console.tokens_file"


# What identifies one version of the tokens file: a rewrite in place changes the size or mtime, a replacement
# (editors, `mv`, Kubernetes' secret volumes) the inode, a chmod the mode and ctime.
_Version = tuple[int, int, int, int, int, int]


def _version(st: os.stat_result) -> _Version:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


@dataclass(frozen=True)
class _Session:
    token_hash: str  # the token it was made with: looked up again at every request
    csrf: str
    expires: float


class Authenticator:
    """Checks tokens against the file and keeps the browser sessions.

    The file is looked at (one ``stat``) on every request and read again when it changed, so removing a token
    or lowering its role takes effect at the next request, for bearer requests and browser sessions alike: a
    session holds the hash of the token it was made with, never a role of its own. While the file is missing,
    unreadable, writable by others or malformed, every check raises :class:`ConsoleLocked`: nobody is signed
    in until it is fixed (the console answers 503 saying what to fix)."""

    def __init__(self, tokens_file: str | None) -> None:
        self.tokens_file = tokens_file
        self._tokens: dict[str, Principal] = {}
        self._version: _Version | None = None
        self._error: ConsoleLocked | None = None
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def _current(self) -> dict[str, Principal]:
        """The tokens as the file holds them now (read again only when it changed). Call with the lock held."""
        path = self.tokens_file
        if not path:
            return {}
        try:
            version: _Version | None = _version(os.stat(path))
        except OSError:
            version = None  # missing or unreachable: _read_tokens says which
        if version is not None and version == self._version:
            if self._error is not None:
                raise self._error
            return self._tokens
        try:
            st, tokens = _read_tokens(path)
        except _Unusable as exc:
            self._tokens, self._error = (
                {},
                ConsoleLocked(f"{path} (console.tokens_file): {exc.reason}", file=path),
            )
            self._version = version  # an unchanged bad file is not read again at every request
            raise self._error from exc
        self._version, self._tokens, self._error = _version(st), tokens, None
        return tokens

    def check_token(self, token: str) -> Principal | None:
        """The principal ``token`` signs in as, or None. Raises :class:`ConsoleLocked`."""
        digest = hash_token(token)
        with self._lock:
            tokens = self._current()
        return _lookup(tokens, digest)

    def start_session(self, principal: Principal, token: str) -> str:
        """A new session for ``token`` (which signed in as ``principal``): its id, for the cookie."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
            self._sessions[sid] = _Session(
                hash_token(token), secrets.token_urlsafe(24), now + SESSION_SECONDS
            )
        return sid

    def session(self, sid: str) -> Principal | None:
        """The principal of session ``sid`` with the name and role its token has in the file *now*; None when
        the session ended or ran out, or its token is no longer in the file. Raises :class:`ConsoleLocked`."""
        with self._lock:
            tokens = self._current()
            found = self._sessions.get(sid)
        if found is None or found.expires <= time.time():
            return None
        principal = _lookup(tokens, found.token_hash)
        if principal is None:  # the token was removed: so is every session made with it
            self.end_session(sid)
            return None
        return Principal(principal.name, principal.role, found.csrf)

    def end_session(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)


def _lookup(tokens: dict[str, Principal], digest: str) -> Principal | None:
    found = None
    for known, principal in tokens.items():  # every entry, compared in constant time
        if hmac.compare_digest(known, digest):
            found = principal
    return found
