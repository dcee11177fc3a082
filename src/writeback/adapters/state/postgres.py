"""PostgreSQL state store (`[state] url = "postgresql://..."`): the state of two or more writeback servers.

The same queries and schema as SQLite (:mod:`writeback.adapters.state.sqlbase`), through psycopg 3. The
connection runs in autocommit mode and transactions are the store's own ``BEGIN``/``COMMIT``, exactly as with
SQLite, so the engine cannot tell the two apart.

The connection is the adapter boundary: psycopg's exceptions become the StateError branch there, each saying
what failed and what to check, with the URL shown without its password. A connection the server dropped
(restart, failover, network) is opened again at the next statement outside a transaction, so a service
resumes by itself when the database is back.

TLS is verified by default: a URL without ``sslmode`` gets ``sslmode=verify-full`` (libpq's own default,
``prefer``, accepts any certificate, or none). A weaker ``sslmode`` is accepted only for a server on
loopback or a Unix socket (checked in :mod:`writeback.config`).
https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import conninfo, errors

from writeback.adapters.state.sqlbase import SqlStore
from writeback.errors import StateError, StateLockedError, StateUnavailableError

_PLACEHOLDER = re.compile(r"\?")
# One number for pg_advisory_xact_lock: migrations by two servers starting at once run one after the other.
_MIGRATION_LOCK = 0x77726974656261  # "writeba"


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def connection_params(
    url: str, password: str | None, connect_timeout: float, application_name: str = "writeback"
) -> dict[str, Any]:
    """libpq's connection parameters for ``url``: TLS verified unless the URL says otherwise; the session named
    ``application_name`` (over any name the URL gives: the lease finds a paused instance's sessions by it,
    :meth:`~writeback.adapters.state.leases.LeaseSql.end_sessions`)."""
    try:
        params: dict[str, Any] = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StateError(f"state.url {redact(url)} is not a valid PostgreSQL URL: {exc}") from exc
    params.setdefault("sslmode", "verify-full")
    params.setdefault("connect_timeout", max(1, round(connect_timeout)))
    params["application_name"] = application_name
    # A writeback paused or cut off inside a transaction must not keep its row locks: the server ends such a
    # session after 30 s, and a statement waits at most 10 s for a lock (the cycle then fails and is retried).
    # One paused in the middle of a statement is not idle to the server: the instance that takes the lease over
    # ends its sessions (LeaseSql.end_sessions).
    # https://www.postgresql.org/docs/current/runtime-config-client.html
    guard_rails = "-c idle_in_transaction_session_timeout=30000 -c lock_timeout=10000"
    params["options"] = f"{params['options']} {guard_rails}" if params.get("options") else guard_rails
    if password is not None:
        params["password"] = password
    return params


class _Cursor:
    """The rows of one statement, fetched at once (the connection is shared by the next statement)."""

    def __init__(self, rows: list[Any], description: Any) -> None:
        self.rows, self.description = rows, description

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Any:
        return iter(self.rows)


class _Connection:
    """psycopg's connection behind the interface of sqlite3's: ``?`` placeholders, errors as StateError."""

    def __init__(self, url: str, params: dict[str, Any]) -> None:
        self.where = redact(url)
        self.params = params
        self.conn: psycopg.Connection[Any] | None = None
        self.in_transaction = False
        self._open()

    def _open(self) -> None:
        try:
            self.conn = psycopg.connect(**self.params, autocommit=True)
        except psycopg.Error as exc:
            raise self.translate(exc, "cannot connect") from exc

    def _ready(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.in_transaction:
                raise StateUnavailableError(
                    f"state database {self.where}: the connection was lost in the middle of a transaction "
                    "(it was rolled back by the server); the next cycle starts again"
                )
            self._open()
        assert self.conn is not None
        return self.conn

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        word = sql.lstrip()[:8].upper()
        ends = word.startswith(("COMMIT", "ROLLBACK"))
        if word.startswith("ROLLBACK") and (self.conn is None or self.conn.broken or self.conn.closed):
            self.in_transaction = (
                False  # nothing to roll back: the server ended the transaction with the link
            )
            return _Cursor([], None)
        conn = self._ready()
        try:
            cur = conn.execute(_PLACEHOLDER.sub("%s", sql), tuple(parameters) or None)
            rows = cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            if ends:
                self.in_transaction = False
            raise self.translate(exc) from exc
        if word.startswith("BEGIN"):
            self.in_transaction = True
        elif ends:
            self.in_transaction = False
        return _Cursor(rows, cur.description)

    def executemany(self, sql: str, parameters: Any, /) -> None:
        conn = self._ready()
        try:
            with conn.cursor() as cur:
                cur.executemany(_PLACEHOLDER.sub("%s", sql), [tuple(p) for p in parameters])
        except psycopg.Error as exc:
            raise self.translate(exc) from exc

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def translate(self, exc: psycopg.Error, doing: str = "") -> StateError:
        """The StateError an administrator can act on for one psycopg exception (never showing the password)."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        prefix = f"state database {self.where}: {doing + ': ' if doing else ''}{text}"
        if isinstance(exc, errors.InsufficientPrivilege):
            return StateError(
                f"{prefix}. Grant the writeback role the privileges docs/ha.md lists (it must own the "
                "writeback database's tables, or be able to create them)"
            )
        # A refused login comes as a plain OperationalError from connect (libpq gives no SQLSTATE then).
        if (
            isinstance(exc, errors.InvalidPassword | errors.InvalidAuthorizationSpecification)
            or "authentication failed" in text
        ):
            return StateError(
                f"{prefix}. Check the user in state.url and the password in state.password_env / "
                "state.password_file (or ~/.pgpass), and the server's pg_hba.conf"
            )
        if isinstance(exc, errors.LockNotAvailable | errors.DeadlockDetected | errors.SerializationFailure):
            return StateLockedError(f"{prefix}; another writeback held the same rows; the next cycle retries")
        if isinstance(exc, psycopg.OperationalError):
            return StateUnavailableError(
                f"{prefix}. Check that PostgreSQL runs and is reachable from this server (host, port, "
                "firewall, TLS: sslmode and sslrootcert in state.url); writeback retries by itself"
            )
        return StateError(f"{prefix} ({type(exc).__name__})")


class PostgresStore(SqlStore):
    """The state in a PostgreSQL database, shared by every writeback server of one deployment."""

    dialect = "postgresql"
    like = "ILIKE"
    # Unix seconds by the database server's clock, which every writeback server shares.
    now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        connect_timeout: float = 5.0,
        application_name: str = "writeback",
    ) -> None:
        self.url = url
        self.where = redact(url)
        params = connection_params(url, password, connect_timeout, application_name)
        self.db = self.conn = _Connection(url, params)
        try:
            self.migrate()
        except StateError:
            self.conn.close()
            raise

    def lock_schema(self) -> None:
        self.db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def after_copy(self) -> None:
        self.db.execute(
            "SELECT setval(pg_get_serial_sequence('log', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM log), false)"
        )
