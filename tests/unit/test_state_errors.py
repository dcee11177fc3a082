"""The state store's failures become writeback's StateError branch, each saying what to do (the SQLite file's
own failures, and those both backends share, run against SQLite and PostgreSQL alike)."""

from __future__ import annotations

import sqlite3
import stat
import time
from pathlib import Path

import pytest

from tests.testbed.stores import BACKENDS, open_store, raw_execute
from writeback.adapters.state.sqlbase import SqlStore
from writeback.adapters.state.sqlite import MIGRATIONS, SqliteStore
from writeback.core.model import CloudGroup, CloudUser, MemberRef
from writeback.errors import StateCorruptError, StateError, StateLockedError, StateSchemaError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def filled(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    fill(store)
    return store


def fill(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.upsert_user(CloudUser("u1", display_name="U1"))
        tx.upsert_group(CloudGroup("g1", display_name="G1"))
        tx.add_members("g1", [MemberRef("user", "u1")])
        tx.set_delta_link("users", "https://graph/users?token=1")
        tx.set_delta_link("groups", "https://graph/groups?token=1")
    store.log("run1", "create", "success", cloud_id="g1", group_name="G1")
    store.record_applied("g1", "CN=G1,OU=W,DC=corp,DC=test")


def test_a_newer_schema_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    filled(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO schema_migrations VALUES (?, 0)", (len(MIGRATIONS) + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(StateSchemaError) as info:
        SqliteStore(path)
    message = str(info.value)
    assert f"has schema version {len(MIGRATIONS) + 1}, written by a newer writeback" in message
    assert f"knows versions up to {len(MIGRATIONS)}" in message
    assert "Run the newer writeback again" in message
    # Refused before any migration ran: the file is unchanged.
    raw = sqlite3.connect(path)
    assert max(r[0] for r in raw.execute("SELECT version FROM schema_migrations")) == len(MIGRATIONS) + 1
    raw.close()


@pytest.mark.parametrize(
    ("table", "row_id", "data"),
    [("groups", "g1", "{not json"), ("users", "u1", '{"id": "u1", "no_such_field": 1}')],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_corrupt_replica_row_names_the_row_and_the_rebuild_command(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, table: str, row_id: str, data: str
) -> None:
    store = open_store(request, tmp_path, backend)
    fill(store)
    raw_execute(store, f"UPDATE {table} SET data = ? WHERE id = ?", (data, row_id))
    with pytest.raises(StateCorruptError) as info:
        store.snapshot()
    message = str(info.value)
    assert f"the {table} row {row_id!r} of the cloud replica is damaged" in message
    assert "run 'writeback state rebuild-replica'" in message and "the provisioning log is kept" in message


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_replica_forgets_the_cloud_copy_and_keeps_the_log(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    fill(store)
    raw_execute(store, "UPDATE groups SET data = '{broken' WHERE id = 'g1'")
    store.reset_replica()
    snap = store.snapshot()
    assert snap.groups == {} and snap.users == {}
    assert not store.has_synced() and store.get_delta_link("groups") is None
    assert [(e.action, e.cloud_id) for e in store.read_log()] == [("create", "g1")]
    assert store.applied_dns() == {"g1": "CN=G1,OU=W,DC=corp,DC=test"}


def test_a_locked_database_becomes_state_locked_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = SqliteStore(path, busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process writing, past the busy timeout
    try:
        started = time.monotonic()
        with pytest.raises(StateLockedError) as info:
            store.set_meta("k", "v")
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert str(path) in message and "database is locked" in message
        assert "more than 0.2 s" in message and "wait for it to finish" in message
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.set_meta("k", "v")  # usable again once the other writer is done
    assert store.get_meta("k") == "v"


def test_a_file_that_is_not_a_database_is_state_corrupt_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not SQLite at all, but long enough to have a header" * 20)
    with pytest.raises(StateCorruptError, match=r"state store .* is damaged \(file is not a database\)"):
        SqliteStore(path)


def test_other_sqlite_errors_stay_in_the_state_error_branch(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite")
    with pytest.raises(StateError, match=r"state store .*: OperationalError: no such table: nope"):
        store.db.execute("SELECT * FROM nope")


def test_unopenable_path_says_which_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot open state store .*check state.path"):
        SqliteStore(blocker / "sub" / "state.sqlite")


def test_state_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "state.sqlite"
    store = filled(path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    sides = [p for p in path.parent.iterdir() if p.name != path.name]
    assert {p.name for p in sides} >= {"state.sqlite-wal", "state.sqlite-shm"}
    assert all(mode(p) == 0o600 for p in sides), {p.name: oct(mode(p)) for p in sides}
    store.close()


def test_an_existing_lax_state_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    tmp_path.chmod(0o755)
    SqliteStore(path).close()
    path.chmod(0o644)
    journal = tmp_path / "state.sqlite-journal"
    journal.write_bytes(b"")
    journal.chmod(0o644)
    SqliteStore(path).close()
    assert mode(path) == 0o600 and mode(journal) == 0o600
    assert mode(tmp_path) == 0o755  # an existing folder is the administrator's: left as it was
