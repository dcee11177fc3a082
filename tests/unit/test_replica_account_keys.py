"""Replica users found by their AD account keys (the quick reconcile's changed AD users), on SQLite and
PostgreSQL: by the indexed account_sid / account_guid columns, kept in step by every write of a user and filled
by the schema migration that added them for a state written before it."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from tests.testbed.stores import BACKENDS, another_connection, open_store, raw_execute
from writeback.adapters.state import sqlbase
from writeback.adapters.state.postgres import PostgresStore
from writeback.adapters.state.replica import _user_to_json
from writeback.adapters.state.schema import ACCOUNT_KEYS_VERSION, MIGRATIONS
from writeback.adapters.state.sqlbase import SqlStore
from writeback.core.model import CloudUser
from writeback.errors import StateCorruptError


def _guid(n: int) -> str:
    return str(uuid.UUID(int=0x1234_5678_9ABC_4DEF_8000_0000_0000_0000 + n))


def _immutable(guid: str) -> str:
    """onPremisesImmutableId as Entra Connect / Cloud Sync set it: base64 of the objectGUID's bytes."""
    return base64.b64encode(uuid.UUID(guid).bytes_le).decode()


def _sid(n: int) -> str:
    return f"S-1-5-21-1004336348-1177238915-682003330-{1000 + n}"


def _user(n: int, *, sid: str | None = None, guid: str | None = None, deleted: bool = False) -> CloudUser:
    return CloudUser(
        f"u{n}",
        display_name=f"User {n}",
        on_premises_security_identifier=sid,
        on_premises_immutable_id=_immutable(guid) if guid else None,
        deleted=deleted,
    )


def _reopen(store: SqlStore, tmp_path: Path) -> SqlStore:
    """The same state opened again, as the next start of writeback would."""
    store.close()
    return another_connection(store, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_users_are_found_by_sid_or_guid_in_any_case(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    with store.transaction() as tx:
        tx.upsert_user(_user(1, sid=_sid(1), guid=_guid(1)))
        tx.upsert_user(_user(2, sid=_sid(2).lower()))  # a SID stored in lower case still matches
        tx.upsert_user(_user(3, guid=_guid(3)))
        tx.upsert_user(_user(4))  # cloud-only: no keys
    assert store.cloud_users_with_keys({_sid(1)}, set()) == {"u1"}
    assert store.cloud_users_with_keys({_sid(2).lower()}, set()) == {"u2"}
    assert store.cloud_users_with_keys(set(), {_guid(3).upper()}) == {"u3"}
    assert store.cloud_users_with_keys(set(), {_guid(1)}) == {"u1"}
    assert store.cloud_users_with_keys({_sid(2)}, {_guid(3), _guid(1)}) == {"u1", "u2", "u3"}
    assert store.cloud_users_with_keys({_sid(3), _sid(9)}, {_guid(2), _guid(9)}) == set()
    assert store.cloud_users_with_keys(set(), set()) == set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_user_whose_keys_changed_is_found_by_the_new_keys_only(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    with store.transaction() as tx:
        tx.upsert_user(_user(1, sid=_sid(1), guid=_guid(1)))
    with store.transaction() as tx:  # a later delta round: the account was moved to another AD account
        tx.upsert_user(_user(1, sid=_sid(7), guid=_guid(7)))
    assert store.cloud_users_with_keys({_sid(1)}, {_guid(1)}) == set()
    assert store.cloud_users_with_keys({_sid(7)}, set()) == {"u1"}
    assert store.cloud_users_with_keys(set(), {_guid(7)}) == {"u1"}
    with store.transaction() as tx:  # no longer synced from AD
        tx.upsert_user(_user(1))
    assert store.cloud_users_with_keys({_sid(7)}, {_guid(7)}) == set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_deleted_users_are_found_and_hard_deleted_or_reset_ones_are_not(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    with store.transaction() as tx:
        for n in (1, 2, 3):
            tx.upsert_user(_user(n, sid=_sid(n), guid=_guid(n)))
        tx.upsert_user(_user(4, sid=_sid(4), guid=_guid(4), deleted=True))  # read from deletedItems
    with store.transaction() as tx:
        tx.remove_user("u2", hard=False)  # @removed "changed": soft-deleted, restorable
        tx.remove_user("u3", hard=True)  # @removed "deleted": gone for good
    sids, guids = {_sid(n) for n in (1, 2, 3, 4)}, {_guid(n) for n in (1, 2, 3, 4)}
    assert store.cloud_users_with_keys(sids, set()) == {"u1", "u2", "u4"}
    assert store.cloud_users_with_keys(set(), guids) == {"u1", "u2", "u4"}
    assert store.snapshot().users["u2"].deleted
    with store.transaction() as tx:  # a full resync starts the users over
        tx.reset("users")
        tx.upsert_user(_user(5, sid=_sid(5), guid=_guid(5)))
    assert store.cloud_users_with_keys(sids | {_sid(5)}, guids) == {"u5"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_lookup_reads_by_index_and_decodes_no_other_user(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    with store.transaction() as tx:
        for n in range(1, 4):
            tx.upsert_user(_user(n, sid=_sid(n), guid=_guid(n)))
    # Another user's row is damaged: the old lookup decoded every row and failed on it; this one never reads it.
    raw_execute(store, "UPDATE users SET data = '{broken' WHERE id = 'u3'")
    assert store.cloud_users_with_keys({_sid(1)}, {_guid(2)}) == {"u1", "u2"}
    # Each key is looked up through its index, not by a scan of every user.
    for column, index in (("account_sid", "users_by_account_sid"), ("account_guid", "users_by_account_guid")):
        query = f"SELECT id FROM users WHERE {column} IN (?, ?)"
        if isinstance(store, PostgresStore):
            raw_execute(store, "SET enable_seqscan = off")  # three rows: the planner would scan them anyway
            plan = store.db.execute(f"EXPLAIN {query}", ("a", "b")).fetchall()
        else:
            plan = store.db.execute(f"EXPLAIN QUERY PLAN {query}", ("a", "b")).fetchall()
        assert index in " ".join(str(r[-1]) for r in plan)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_keys_are_looked_up_in_bounded_chunks(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    with store.transaction() as tx:
        for n in range(1500):
            tx.upsert_user(_user(n, sid=_sid(n) if n % 2 else None, guid=None if n % 2 else _guid(n)))
    found = store.cloud_users_with_keys({_sid(n) for n in range(1500)}, {_guid(n) for n in range(1500)})
    assert found == {f"u{n}" for n in range(1500)}


def _state_before_account_keys(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> SqlStore:
    """A state as the writeback before migration 7 made it (schema 6), with users written as it wrote them."""
    monkeypatch.setattr(sqlbase, "MIGRATIONS", MIGRATIONS[: ACCOUNT_KEYS_VERSION - 1])
    store = open_store(request, tmp_path, backend)
    monkeypatch.undo()
    assert store.schema_version() == ACCOUNT_KEYS_VERSION - 1
    columns = [d[0] for d in store.db.execute("SELECT * FROM users").description]
    assert columns == ["id", "data", "deleted"]
    return store


def _write_as_before(store: SqlStore, users: list[CloudUser]) -> None:
    with store.batch():
        store.db.executemany(
            "INSERT INTO users (id, data, deleted) VALUES (?, ?, ?)",
            [(u.id, _user_to_json(u), int(u.deleted)) for u in users],
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_from_before_the_key_columns_upgrades_in_place_and_finds_its_users(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _state_before_account_keys(request, tmp_path, backend, monkeypatch)
    # More users than one page of the migration's fill (1000), some soft-deleted, some cloud-only.
    users = [
        _user(n, sid=_sid(n) if n % 3 else None, guid=_guid(n) if n % 2 else None, deleted=n % 7 == 0)
        for n in range(2500)
    ]
    _write_as_before(old, users)
    before = old.snapshot().users
    store = _reopen(old, tmp_path)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.snapshot().users == before  # nothing lost
    expected = {u.id for u in users if u.on_premises_security_identifier or u.on_premises_immutable_id}
    all_sids, all_guids = {_sid(n) for n in range(2500)}, {_guid(n).upper() for n in range(2500)}
    assert store.cloud_users_with_keys(all_sids, all_guids) == expected
    assert store.cloud_users_with_keys({_sid(2)}, set()) == {"u2"}
    assert store.cloud_users_with_keys(set(), {_guid(7)}) == {"u7"}  # soft-deleted, found as before
    assert store.cloud_users_with_keys({_sid(3)}, {_guid(2)}) == set()  # u3 has no SID, u2 no GUID
    with store.transaction() as tx:  # and the upgraded rows are kept in step by later writes
        tx.upsert_user(_user(1, sid=_sid(9001)))
    assert store.cloud_users_with_keys({_sid(1)}, {_guid(1)}) == set()
    assert store.cloud_users_with_keys({_sid(9001)}, set()) == {"u1"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_damaged_user_row_does_not_stop_the_upgrade(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _state_before_account_keys(request, tmp_path, backend, monkeypatch)
    _write_as_before(old, [_user(1, sid=_sid(1)), _user(2, sid=_sid(2))])
    raw_execute(old, "UPDATE users SET data = '{broken' WHERE id = 'u1'")
    store = _reopen(old, tmp_path)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.cloud_users_with_keys({_sid(1), _sid(2)}, set()) == {"u2"}
    # The damaged row is still reported where it always was, with the command that rewrites it.
    with pytest.raises(StateCorruptError, match="the users row 'u1' of the cloud replica is damaged"):
        store.snapshot()
