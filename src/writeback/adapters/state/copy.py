"""`writeback state migrate`: copy a whole state from one store into another, empty one (SQLite to PostgreSQL)."""

from __future__ import annotations

from writeback.adapters.state.sqlbase import ALL_TABLES, SqlStore
from writeback.errors import StateError


def copy_state(source: SqlStore, target: SqlStore) -> dict[str, int]:
    """Copy every table of ``source`` into ``target`` in one transaction; returns the rows copied per table.

    ``target`` must hold no state yet (a migration into a used database would mix two deployments' replicas
    and logs). Rows keep their ids, so the provisioning log reads the same afterwards."""
    if not target.is_empty():
        raise StateError(
            f"the state database {target.where} already holds a writeback state; `state migrate` copies into an "
            "empty database only. Create a new database (CREATE DATABASE ... OWNER writeback) or point --to "
            "at another one"
        )
    counts: dict[str, int] = {}
    with target.batch():
        for table in ALL_TABLES:
            columns, rows = source.read_table(table)
            target.write_rows(table, columns, rows)
            counts[table] = len(rows)
        target.after_copy()
    return counts
