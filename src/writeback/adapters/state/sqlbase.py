"""The SQL state store both backends share, composed of one part per port (:mod:`writeback.core.ports`):

- :mod:`~writeback.adapters.state.replica`: the cloud replica and the AD-user cache (ports.Replica);
- :mod:`~writeback.adapters.state.journal`: the provisioning log (ports.Journal);
- :mod:`~writeback.adapters.state.applied`: the last-applied state, stamps and pending marks (ports.AppliedState);
- :mod:`~writeback.adapters.state.allowances`: the operators' allowances and the key-value table
  (ports.AllowanceStore);
- :mod:`~writeback.adapters.state.leases`: the leader lease (ports.LeaseStore);

each on :mod:`~writeback.adapters.state.sqlcore` (the connection, transactions and the upsert). This module
adds the schema's migrations and copying a whole state (`writeback state migrate`). A backend (SQLite,
PostgreSQL) subclasses :class:`SqlStore` with its connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from writeback.adapters.state.allowances import AllowancesSql
from writeback.adapters.state.applied import AppliedSql
from writeback.adapters.state.journal import INTERRUPTED_MESSAGE, JournalSql
from writeback.adapters.state.leases import LeaseSql
from writeback.adapters.state.replica import (
    DELTA_QUERY_KEY,
    REBUILD_HINT,
    REPLICA_TABLES,
    UNIFIED_DEFAULT_KEY,
    MemberRefs,
    ReplicaSql,
    _account_columns,
    _user_from_json,
)
from writeback.adapters.state.schema import ACCOUNT_KEYS_VERSION, MIGRATIONS, migrations_table, statements
from writeback.adapters.state.sqlcore import Connection, Cursor, SqlCore, upsert
from writeback.core.ports import (
    INTERRUPTED,
    PENDING,
    LeaseGrant,
    LeaseHolder,
    LeaseStore,
    LogEntry,
    LogQuery,
    Store,
)
from writeback.errors import StateError, StateSchemaError

# Every public name that was defined here before the store was split per port stays importable from here.
__all__ = [
    "ALL_TABLES",
    "DELTA_QUERY_KEY",
    "INTERRUPTED",
    "INTERRUPTED_MESSAGE",
    "PENDING",
    "REBUILD_HINT",
    "REPLICA_TABLES",
    "UNIFIED_DEFAULT_KEY",
    "Connection",
    "Cursor",
    "LeaseGrant",
    "LeaseHolder",
    "LogEntry",
    "LogQuery",
    "MemberRefs",
    "SqlCore",
    "SqlStore",
    "upsert",
]

# Every table a state holds, in an order that `writeback state migrate` can copy them in.
ALL_TABLES = (
    "users",
    "groups",
    "members",
    "delta_links",
    "log",
    "log_member",
    "applied",
    "meta",
    "ad_users",
    "fingerprints",
    "pending",
    "stamps",
    "leases",
)


class SqlStore(ReplicaSql, JournalSql, AppliedSql, AllowancesSql, LeaseSql):
    """ports.Store (the replica, the journal, the applied state and the allowances) and ports.LeaseStore over
    one SQL connection, with the schema's migrations (see module doc)."""

    # -- schema ---------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Apply the migrations this state lacks, all in one transaction; refuse a schema from a newer writeback.

        A current schema is seen without a write transaction, so opening a state to read it never waits for a
        writer."""
        try:
            known = {r[0] for r in self.db.execute("SELECT version FROM schema_migrations").fetchall()}
        except StateError:
            known = set()  # a new state: no migrations table yet
        if known == set(range(1, len(MIGRATIONS) + 1)):
            return
        self.begin_write()
        try:
            self.lock_schema()
            self.db.execute(migrations_table(self.dialect))
            done = {r[0] for r in self.db.execute("SELECT version FROM schema_migrations")}
            newest = max(done, default=0)
            if newest > len(MIGRATIONS):
                raise StateSchemaError(
                    f"state store {self.where} has schema version {newest}, written by a newer writeback; this "
                    f"version knows versions up to {len(MIGRATIONS)}. Run the newer writeback again, or point "
                    "the [state] settings at a new, empty state (a full reconcile adopts the AD groups by "
                    "their anchors)"
                )
            for version, script in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                for statement in statements(script, self.dialect):
                    self.db.execute(statement)
                if version == ACCOUNT_KEYS_VERSION:
                    self._fill_account_keys()
                self.db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
        except BaseException:
            self.rollback()
            raise
        self.db.execute("COMMIT")

    def _fill_account_keys(self, page: int = 1000) -> None:
        """Migration 7, inside its transaction: fill the new account key columns of the users already in the
        replica, computed from their JSON by the same rule as every later write (see schema.ACCOUNT_KEYS_VERSION
        for why not in SQL). A state upgrades in place: nothing is fetched again from Graph.

        Read a page of rows at a time, in id order (bounded memory at any replica size). A row whose JSON is
        damaged keeps NULL keys rather than stopping the upgrade: the snapshot reports that row with the
        rebuild command, and `writeback state rebuild-replica`, which needs the upgraded state, rewrites it."""
        after = ""
        while True:
            rows = self.db.execute(
                "SELECT id, data, deleted FROM users WHERE id > ? ORDER BY id LIMIT ?", (after, page)
            ).fetchall()
            if not rows:
                return
            keys: list[tuple[str | None, str | None, str]] = []
            for user_id, data, deleted in rows:
                try:
                    keys.append((*_account_columns(_user_from_json(data, deleted)), user_id))
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue
            if keys:
                self.db.executemany("UPDATE users SET account_sid = ?, account_guid = ? WHERE id = ?", keys)
            after = rows[-1][0]

    def schema_version(self) -> int:
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self.db.close()

    # Copying a whole state (`writeback state migrate`) ----------------------------------------------------
    def read_table(self, table: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """(column names, rows) of one of :data:`ALL_TABLES`."""
        if table not in ALL_TABLES:
            raise StateError(f"unknown state table {table!r}")
        cursor = self.db.execute(f"SELECT * FROM {table}")  # noqa: S608 - a checked, constant name
        columns = tuple(d[0] for d in cursor.description)
        return columns, [tuple(r) for r in cursor.fetchall()]

    def write_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` into one of :data:`ALL_TABLES` (inside the caller's transaction)."""
        if table not in ALL_TABLES or not all(c.isidentifier() for c in columns):
            raise StateError(f"unknown state table {table!r} or columns {columns!r}")
        if rows:
            marks = ", ".join("?" * len(columns))
            self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)  # noqa: S608 - checked names

    def after_copy(self) -> None:
        """After rows were copied in with their own ids: let the database number new rows after them."""

    def is_empty(self) -> bool:
        """No row in any table (a fresh state, safe to copy another one into)."""
        return all(
            self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] == 0  # noqa: S608 - constant names
            for t in ALL_TABLES
        )


if TYPE_CHECKING:

    def _implements_the_ports(store: SqlStore) -> tuple[Store, LeaseStore]:
        """Never called: mypy checks here that the composed store implements every port (they are Protocols,
        matched by shape, so a method renamed in one part would otherwise surface only at a call site)."""
        return store, store
