"""The one exception tree of writeback.

Every error the engine raises on purpose derives from :class:`WritebackError`; adapters translate their
library's exceptions (httpx, msal, python-ldap, sqlite3, psycopg) at one boundary with ``raise ... from exc``.
Messages say what failed, on which object, and what the operator can do. They never contain secrets.

::

    WritebackError
    ├── ConfigError             invalid or missing configuration (file, key, reason)
    ├── SourceError             Microsoft Graph (the cloud side)
    │   ├── AuthenticationError     token could not be obtained (bad secret, certificate, tenant)
    │   ├── ThrottledError          429/503 retries exhausted
    │   └── SyncStateError          delta token expired or resync required (410 / syncStateNotFound)
    ├── DirectoryError          Active Directory (LDAP)
    │   ├── DirectoryUnavailable    server down, TLS or network failure (transient)
    │   ├── DirectoryAuthError      bind refused
    │   └── DirectoryWriteError     a write was refused (carries the LDAP result)
    ├── PlanError               a plan cannot be built or applied
    │   ├── StalePlanError          a saved plan no longer matches the current state
    │   └── PausedError             an operator paused writing to AD (writeback resume)
    ├── StateError              the state store (SQLite file or PostgreSQL database)
    │   ├── StateLockedError        another writer holds the state (names its process)
    │   ├── StateUnavailableError   the PostgreSQL database cannot be reached (transient)
    │   ├── LeaseLostError          this instance lost the leader lease: no more writes to AD
    │   ├── StateCorruptError       a row or the file is damaged (rebuild the replica or restore)
    │   └── StateSchemaError        the file was written by a newer writeback
    ├── RuleError               a dynamic membership rule does not parse or cannot be evaluated
    └── SandboxError            the local sandbox (Samba DC + emulator) failed
"""

from __future__ import annotations


class WritebackError(Exception):
    """Base of every error writeback raises on purpose."""


class ConfigError(WritebackError):
    """Configuration is invalid. ``where`` is 'file: key' when known."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(WritebackError):
    """The cloud source (Microsoft Graph) failed."""


class AuthenticationError(SourceError):
    """No access token could be obtained."""


class ThrottledError(SourceError):
    """Graph kept throttling (429) or was unavailable (503) after all retries."""


class SyncStateError(SourceError):
    """A delta token is no longer valid: a full resync is required."""


class DirectoryError(WritebackError):
    """Active Directory failed."""


class DirectoryUnavailable(DirectoryError):
    """The directory cannot be reached (network, TLS, server down). Usually transient."""


class DirectoryAuthError(DirectoryError):
    """The directory refused the bind credentials."""


class DirectoryWriteError(DirectoryError):
    """The directory refused a write."""

    def __init__(
        self, message: str, *, dn: str | None = None, result: str | None = None, permanent: bool = False
    ) -> None:
        self.dn = dn
        self.result = result
        # Refused for the value itself (syntax, constraint, naming): the same write is refused again until what
        # writeback writes changes, so it is not retried on a timer (issue 23).
        self.permanent = permanent
        super().__init__(message)


class PlanError(WritebackError):
    """A plan cannot be built or applied."""


class StalePlanError(PlanError):
    """A saved plan was computed against a state that has changed since."""


class PausedError(PlanError):
    """An operator paused writeback (:mod:`writeback.app.pause`): it keeps reading, and writes nothing to AD
    until resumed."""


class StateError(WritebackError):
    """The local state store failed."""


class StateLockedError(StateError):
    """Another process holds the state: the writer lock, or SQLite's own lock beyond the busy timeout.

    ``pid`` is the holding process when known."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        self.pid = pid
        super().__init__(message)


class StateUnavailableError(StateError):
    """The state database (PostgreSQL) cannot be reached now; writeback retries by itself."""


class LeaseLostError(StateError):
    """This instance no longer holds the leader lease (another took over, or the database is unreachable):
    it must not write to AD until it holds the lease again."""


class StateCorruptError(StateError):
    """The state file or one of its rows cannot be read."""


class StateSchemaError(StateError):
    """The state file has a schema version newer than this writeback knows."""


class RuleError(WritebackError):
    """A dynamic membership rule is invalid. ``position`` is the 0-based offset in the rule when known."""

    def __init__(self, message: str, *, position: int | None = None, rule: str | None = None) -> None:
        self.position = position
        self.rule = rule
        super().__init__(message)


class SandboxError(WritebackError):
    """The sandbox (local Samba DC and Graph emulator) could not be started or used."""
