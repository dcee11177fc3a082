"""The provisioning log's member index (schema migration 9, ``log_member``): every member value of a change is
indexed with its log row, so one member's history (the console's user page, ``/api/log?member=``) finds a create,
add or remove that named them past the first values the row's detail keeps (engine.LOGGED_MEMBER_VALUES). The
index rows go with their log rows (a dropped pending row, log retention), and a state from before the index
upgrades in place. Both state backends (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.testbed.stores import BACKENDS, another_connection, open_store
from tests.unit.builders import settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_engine import accounts, gid, group, users
from writeback.adapters.state import sqlbase
from writeback.adapters.state.copy import copy_state
from writeback.adapters.state.postgres import PostgresStore
from writeback.adapters.state.schema import LOG_MEMBER_VERSION, MIGRATIONS
from writeback.adapters.state.sqlbase import SqlStore
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import LOGGED_MEMBER_VALUES, Engine
from writeback.core.ports import LogQuery, LogRecord

OU = "OU=People,DC=corp,DC=example,DC=com"
MEMBERS = tuple(f"CN=User {i:02d},{OU}" for i in range(1, 31))  # the 25th is MEMBERS[24]


def _create(run: str, cloud_id: str, members: tuple[str, ...], when: float | None = None) -> LogRecord:
    """A group's create row as the engine writes it: the detail shows the first values, all are indexed."""
    detail = {"members": len(members), "member_values": list(members[:LOGGED_MEMBER_VALUES])}
    return LogRecord(run, "create", "success", cloud_id=cloud_id, detail=detail, member_values=members)


def _index_rows(store: SqlStore) -> int:
    return int(store.db.execute("SELECT COUNT(*) FROM log_member").fetchone()[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_25th_member_of_a_create_finds_the_row_in_any_case(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    try:
        ids = store.log_rows(
            [
                _create("r1", "g-big", MEMBERS),
                _create("r1", "g-small", MEMBERS[:3]),
                LogRecord("r1", "remove_members", "success", cloud_id="g-big", member_values=(MEMBERS[24],)),
            ]
        )
        twenty_fifth = MEMBERS[24]
        entry = store.log_entry(ids[0])
        assert entry is not None and twenty_fifth not in (entry.detail or {})["member_values"]
        for spelling in (twenty_fifth, twenty_fifth.upper(), twenty_fifth.replace(",", ", ")):
            found = store.query_log(LogQuery(member=(spelling,)))
            assert [e.id for e in found] == [ids[2], ids[0]], spelling
        # Still the detail's own values and the row's cloud id, and only the member's rows.
        assert [e.id for e in store.query_log(LogQuery(member=(MEMBERS[1],)))] == [ids[1], ids[0]]
        assert [e.id for e in store.query_log(LogQuery(member=("g-small",)))] == [ids[1]]
        assert store.query_log(LogQuery(member=(f"CN=User 99,{OU}",))) == []
        assert store.query_log(LogQuery(member=(twenty_fifth,), action="create"))[0].id == ids[0]
        # A change naming one DN twice in two spellings: one index row, no conflict.
        store.log_rows([_create("r2", "g-dup", (MEMBERS[0], MEMBERS[0].lower()))])
        assert _index_rows(store) == 30 + 3 + 1 + 1
    finally:
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_big_changes_are_indexed_whole_across_insert_statements(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    try:
        big = tuple(f"CN=Member {i:05d},{OU}" for i in range(1203))  # more than 2 statements of 500 rows
        ids = store.log_rows(
            [_create("r", "g1", big[:701]), LogRecord("r", "update", cloud_id="g2"), _create("r", "g3", big)]
        )
        assert _index_rows(store) == 701 + 1203
        for value, rows in ((big[0], [ids[2], ids[0]]), (big[700], [ids[2], ids[0]]), (big[701], [ids[2]])):
            assert [e.id for e in store.query_log(LogQuery(member=(value,)))] == rows, value
        assert [e.id for e in store.query_log(LogQuery(member=(big[-1].lower(),)))] == [ids[2]]
    finally:
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_rows_go_with_dropped_and_pruned_log_rows(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    try:
        old, dropped, kept = store.log_rows(
            [_create("r1", "g1", MEMBERS), _create("r1", "g2", MEMBERS), _create("r1", "g3", MEMBERS[:5])]
        )
        assert _index_rows(store) == 65
        # A pending row of a change never attempted is deleted with its index rows.
        store.finish_log(
            [(old, "success", None, 1000.0), (kept, "success", None, time.time())], dropped=[dropped]
        )
        assert _index_rows(store) == 35
        # Retention deletes the old row and its index rows only.
        assert store.prune_log(time.time() - 3600) == 1
        assert [e.id for e in store.read_log()] == [kept]
        rows = store.db.execute("SELECT DISTINCT log_id FROM log_member").fetchall()
        assert [r[0] for r in rows] == [kept] and _index_rows(store) == 5
        assert store.query_log(LogQuery(member=(MEMBERS[24],))) == []
        assert [e.id for e in store.query_log(LogQuery(member=(MEMBERS[4],)))] == [kept]
        assert store.prune_log(time.time() - 3600) == 0
    finally:
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_from_before_the_index_upgrades_and_keeps_finding_its_old_rows(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlbase, "MIGRATIONS", MIGRATIONS[: LOG_MEMBER_VERSION - 1])
    old = open_store(request, tmp_path, backend)  # a state as the writeback before the index made it
    monkeypatch.undo()
    assert old.schema_version() == LOG_MEMBER_VERSION - 1
    (old_id,) = old.log_rows(
        [
            LogRecord(
                "old", "create", "success", cloud_id="g-old", detail={"member_values": list(MEMBERS[:20])}
            )
        ]
    )
    old.close()

    store = another_connection(old, tmp_path)  # the next start of writeback migrates it
    try:
        assert store.schema_version() == len(MIGRATIONS) >= LOG_MEMBER_VERSION
        assert _index_rows(store) == 0
        (new_id,) = store.log_rows([_create("new", "g-new", MEMBERS)])
        # An old row is still found by the values its detail holds; a new one by every value.
        assert [e.id for e in store.query_log(LogQuery(member=(MEMBERS[3],)))] == [new_id, old_id]
        assert [e.id for e in store.query_log(LogQuery(member=(MEMBERS[24],)))] == [new_id]
        columns, rows = store.read_table("log_member")  # `writeback state migrate` copies the index too
        assert columns == ("log_id", "value") and len(rows) == 30
    finally:
        store.close()


def test_an_apply_indexes_every_member_of_a_create_and_the_user_page_terms_find_it() -> None:
    n = 26
    cloud = FakeCloud(users=users(n), groups={gid(1): group(1, [f"u{i}" for i in range(n)])})
    store = SqliteStore(":memory:")
    engine = Engine(settings(), cloud, FakeDirectory(accounts=accounts(n)), store)
    engine.sync()
    result = engine.apply(engine.plan())
    assert not result.failed
    (create,) = [e for e in store.read_log() if e.action == "create"]
    detail = create.detail or {}
    assert detail["members"] == n and len(detail["member_values"]) == LOGGED_MEMBER_VALUES
    unshown = [a.dn for a in accounts(n) if a.dn not in detail["member_values"]]
    assert len(unshown) == n - LOGGED_MEMBER_VALUES
    for dn in unshown:
        assert [e.id for e in store.query_log(LogQuery(member=(dn,)))] == [create.id], dn


@pytest.mark.postgres
def test_state_migrate_copies_the_index_into_postgresql(tmp_path: Path, postgres_url: str) -> None:
    src = SqliteStore(tmp_path / "state.sqlite")
    (row,) = src.log_rows([_create("r1", "g1", MEMBERS)])
    dst = PostgresStore(postgres_url)
    try:
        counts = copy_state(src, dst)
        assert counts["log"] == 1 and counts["log_member"] == len(MEMBERS)
        assert [e.id for e in dst.query_log(LogQuery(member=(MEMBERS[24].upper(),)))] == [row]
    finally:
        src.close()
        dst.close()
