"""The state stores under test: the same tests run against SQLite (a file) and PostgreSQL (a real server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from writeback.adapters.state.postgres import PostgresStore
from writeback.adapters.state.sqlbase import SqlStore
from writeback.adapters.state.sqlite import SqliteStore

BACKENDS = ("sqlite", "postgresql")


def open_store(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> SqlStore:
    """A new, empty store of ``backend``; the PostgreSQL one is a fresh database on the test bed's server
    (the ``postgres_url`` fixture, started when first needed). Opening the same ``tmp_path`` / test twice
    gives the same state."""
    if backend == "sqlite":
        return SqliteStore(tmp_path / "state.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return PostgresStore(url)


def another_connection(store: SqlStore, tmp_path: Path) -> SqlStore:
    """A second connection to the state ``store`` is on (another server, or the next start of writeback)."""
    if isinstance(store, PostgresStore):
        return PostgresStore(store.url)
    return SqliteStore(tmp_path / "state.sqlite")


def raw_execute(store: SqlStore, statement: str, args: tuple[object, ...] = ()) -> None:
    """Run one statement behind the store's back (to damage or age a state on purpose)."""
    store.db.execute(statement, args)
