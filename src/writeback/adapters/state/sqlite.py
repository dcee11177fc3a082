"""SQLite state store: the default for one server (`[state] path`).

One file, WAL mode; the queries, the schema and its migrations are shared with PostgreSQL
(:mod:`writeback.adapters.state.sqlbase`, :mod:`writeback.adapters.state.schema`). A delta round is one
transaction (:meth:`SqliteStore.transaction`), so a crash never leaves a half-applied round next to a newer
delta link.

sqlite3's exceptions are translated in one place, the connection (:class:`_Connection`), into the StateError
branch: locked, corrupt (file or row) and a schema from a newer writeback each say what to do. The file and its
-wal/-shm/-journal companions are private (0600, see :mod:`writeback.adapters.state.files`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from writeback.adapters.state.files import FILE_MODE, private_database, private_dir, refuse_link
from writeback.adapters.state.schema import MIGRATIONS
from writeback.adapters.state.sqlbase import REBUILD_HINT, REPLICA_TABLES, LogEntry, SqlStore
from writeback.errors import StateCorruptError, StateError, StateLockedError

SIDE_FILES = ("-wal", "-shm", "-journal")

__all__ = [
    "MIGRATIONS",
    "REBUILD_HINT",
    "REPLICA_TABLES",
    "LogEntry",
    "SqliteStore",
    "translate_sqlite_error",
]


class _Connection(sqlite3.Connection):
    """sqlite3's connection with its errors translated into the StateError branch (the adapter boundary)."""

    state_path = "?"
    busy_timeout = 30.0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: sqlite3.Error) -> StateError:
        return translate_sqlite_error(exc, self.state_path, self.busy_timeout)


def translate_sqlite_error(exc: sqlite3.Error, path: str, busy_timeout: float) -> StateError:
    """The StateError an administrator can act on for one sqlite3 exception."""
    text = str(exc)
    # SQLITE_BUSY / SQLITE_LOCKED: https://www.sqlite.org/rescode.html#busy
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return StateLockedError(
            f"state store {path}: {text} (another process kept it locked for more than {busy_timeout:g} s). "
            "Find the other writeback process ('writeback run', 'apply') or tool holding it, wait for it "
            "to finish, and try again"
        )
    # SQLITE_CORRUPT / SQLITE_NOTADB: https://www.sqlite.org/rescode.html#corrupt
    if isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
        return StateCorruptError(
            f"state store {path} is damaged ({text}). If only the cloud replica is affected, {REBUILD_HINT}; "
            "otherwise restore it from a backup, or move the file aside: writeback starts a new one and "
            "adopts the AD groups it manages by their anchors (the old provisioning log stays in the old file)"
        )
    return StateError(f"state store {path}: {type(exc).__name__}: {text}")


class SqliteStore(SqlStore):
    """The default state store (ports.ReplicaStore plus the provisioning log) in one SQLite file."""

    dialect = "sqlite"
    # Unix seconds from SQLite's clock (julianday of the Unix epoch is 2440587.5).
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = self.where = str(path)
        try:
            if self.path != ":memory:":
                self._make_private()
            db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout, factory=_Connection)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                f"cannot open state store {self.path}: {exc}; check state.path and its folder's permissions"
            ) from exc
        assert isinstance(db, _Connection)
        db.state_path, db.busy_timeout = self.path, busy_timeout
        self.db = db
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.migrate()
        except StateError:
            self.db.close()
            raise

    def begin_write(self) -> None:
        # IMMEDIATE: take the write lock now, not at the first write (no deadlock between two writers).
        self.db.execute("BEGIN IMMEDIATE")

    def _make_private(self) -> None:
        """The database file 0600 before SQLite opens it, its folder 0700 when writeback creates it.

        SQLite creates the -wal, -shm and -journal files with the permissions of the database file
        (os_unix.c, findCreateFileMode), so a private database keeps them private; any left from an older,
        laxer version are tightened too.

        Every file is changed by its path (chmod), never opened: this runs in a process whose other stores may
        hold SQLite locks on these very files, and closing any descriptor of a file drops them all
        (https://www.sqlite.org/howtocorrupt.html section 2.2; see files.private_database)."""
        private_dir(Path(self.path).parent)
        private_database(self.path)
        for suffix in SIDE_FILES:
            side = Path(self.path + suffix)
            refuse_link(side)
            with contextlib.suppress(FileNotFoundError):  # none yet, or removed meanwhile by its last user
                os.chmod(side, FILE_MODE)
