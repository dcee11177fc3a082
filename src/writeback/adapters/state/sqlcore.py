"""What every part of the SQL state store stands on: the connection it runs on, the upsert both databases
understand, transactions, and the two tables several ports share (the key-value ``meta`` table and the
``pending`` marks, written by a replica round and by a reconcile alike).

Both backends run the same SQL, written with ``?`` placeholders and the upsert both understand (``INSERT ...
ON CONFLICT (key) DO UPDATE SET col = excluded.col``, SQLite >= 3.24); the PostgreSQL connection rewrites the
placeholders to psycopg's ``%s``. A subclass supplies the connection (its errors already translated into the
StateError branch), its :mod:`~writeback.adapters.state.schema` dialect, how a write transaction begins, and
the database's clock as an SQL expression (the lease's times are the database's, never a server's).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from writeback.adapters.state.schema import Dialect


class Cursor(Protocol):
    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The little of a DB-API connection the stores use; errors come out as StateError."""

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def close(self) -> None: ...


def upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every other column: the upsert both databases run."""
    rest = [c for c in columns if c not in key]
    action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) if rest else "DO NOTHING"
    # Called with this module's constant names only.
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
    return f"{insert} ON CONFLICT ({', '.join(key)}) {action}"


_UPSERT_META = upsert("meta", ("key", "value"), ("key",))
_UPSERT_PENDING = upsert("pending", ("group_id", "seq"), ("group_id",))
# The pending marks' counter: the row lock this UPDATE takes orders concurrent rounds (PostgreSQL), so a mark
# made while a reconcile runs always gets a number above the one that reconcile read.
_NEXT_PENDING_SEQ = "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'pending_seq' RETURNING value"


class SqlCore:
    """One SQL connection and the primitives every port's part of the store uses (see module doc)."""

    db: Connection
    dialect: Dialect
    # What messages call the store: a file path, or a PostgreSQL URL without its password.
    where: str
    # The database's clock, Unix seconds, as an SQL expression.
    now_sql: str
    # Case-insensitive LIKE (SQLite's LIKE already is for ASCII; PostgreSQL's is not).
    like: str = "LIKE"

    # -- what a backend provides ----------------------------------------------------------------------------
    def begin_write(self) -> None:
        """Start a transaction that writes (SQLite takes its write lock at once)."""
        self.db.execute("BEGIN")

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")

    def lock_schema(self) -> None:
        """Inside the migration transaction: keep other processes from migrating at the same time."""

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one transaction (fast, and all or nothing), committed at the end."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.db.execute("COMMIT")

    def _select_in(self, query: str, values: Iterable[str], chunk: int = 500) -> Iterator[Any]:
        """Rows of ``<query> IN (...)`` over ``values``, in chunks (SQLite caps the number of parameters).

        ``query`` is always a constant of this module; the values are bound, never interpolated.
        """
        ids = list(values)
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            yield from self.db.execute(f"{query} IN ({','.join('?' * len(part))})", part).fetchall()

    # Meta -----------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        self.db.execute(_UPSERT_META, (key, value))

    # Pending marks: made by a replica round (ports.ReplicaTransaction.mark_changed) and by a reconcile -----
    def _mark(self, groups: Collection[str]) -> None:
        if groups:
            row = self.db.execute(_NEXT_PENDING_SEQ).fetchone()
            seq = int(row[0]) if row else 1
            if row is None:  # the first mark of this state
                self.set_meta("pending_seq", str(seq))
            self.db.executemany(_UPSERT_PENDING, [(g, seq) for g in sorted(groups)])
