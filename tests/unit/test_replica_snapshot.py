"""Full and partial snapshots of the replica, the same on every store (memory, SQLite and PostgreSQL).

A partial snapshot (``member_groups``) is what an incremental cycle of ``writeback run`` plans from: every
group's properties, members of the named groups only, and only the users among those members.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.testbed.stores import BACKENDS, open_store
from tests.unit.fakes import MemoryReplica
from writeback.adapters.state.replica import MemberRefs
from writeback.adapters.state.sqlite import SqliteStore
from writeback.core.model import CloudGroup, CloudUser, FrozenAttributes, MemberRef
from writeback.core.ports import ReplicaStore
from writeback.errors import StateError

U1, U2, U3 = (MemberRef("user", f"u{n}") for n in (1, 2, 3))
CHILD = MemberRef("group", "g2")


@pytest.fixture(params=["memory", *BACKENDS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ReplicaStore:
    replica: ReplicaStore = (
        MemoryReplica() if request.param == "memory" else open_store(request, tmp_path, request.param)
    )
    with replica.transaction() as tx:
        for ref in (U1, U2, U3):
            tx.upsert_user(CloudUser(ref.id, display_name=ref.id.upper()))
        tx.remove_user("u3", hard=False)
        tx.upsert_group(CloudGroup("g1", display_name="Sales"))
        tx.add_members("g1", [U1, CHILD, U3])
        tx.upsert_group(CloudGroup("g2", display_name="Sales EU"))
        tx.add_members("g2", [U2])
        tx.upsert_group(CloudGroup("g3", display_name="Empty"))
    return replica


def test_full_snapshot_has_every_user_and_member(store: ReplicaStore) -> None:
    snap = store.snapshot()
    assert set(snap.users) == {"u1", "u2", "u3"} and snap.users["u3"].deleted
    assert snap.groups["g1"].members == frozenset({U1, CHILD, U3})
    assert snap.groups["g2"].members == frozenset({U2})
    assert snap.groups["g3"].members == frozenset()


def test_partial_snapshot_reads_members_and_users_of_the_named_groups_only(store: ReplicaStore) -> None:
    snap = store.snapshot(["g1"])
    assert set(snap.groups) == {"g1", "g2", "g3"}  # properties of every group (scope, nested DNs)
    assert snap.groups["g2"].display_name == "Sales EU"
    assert snap.groups["g1"].members == frozenset({U1, CHILD, U3})
    assert snap.groups["g2"].members == frozenset()  # not asked for
    assert set(snap.users) == {"u1", "u3"}  # members of g1, soft-deleted included; not u2
    assert snap.users["u3"].deleted and snap.users["u1"].display_name == "U1"


def test_partial_snapshot_of_unknown_or_no_groups(store: ReplicaStore) -> None:
    assert store.snapshot([]).users == {}
    snap = store.snapshot(["missing", "g2"])
    assert set(snap.users) == {"u2"} and "missing" not in snap.groups


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_snapshot_over_many_groups_spans_parameter_chunks(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    with store.transaction() as tx:
        for n in range(1200):
            tx.upsert_user(CloudUser(f"u{n}"))
            tx.upsert_group(CloudGroup(f"g{n}", display_name=f"G{n}"))
            tx.add_members(f"g{n}", [MemberRef("user", f"u{n}")])
    wanted = [f"g{n}" for n in range(0, 1200, 2)] + [f"g{n}" for n in range(1, 1100, 2)]
    snap = store.snapshot(wanted)
    assert len(snap.users) == len(wanted) == 1150
    assert snap.groups["g1199"].members == frozenset()
    assert snap.groups["g1098"].members == frozenset({MemberRef("user", "u1098")})


def test_sql_snapshot_keeps_one_value_per_member_and_one_copy_of_each_id(tmp_path: Path) -> None:
    """Issue 17 (memory): a user in several groups is one MemberRef in all of them, and the user's id in the
    users map is that same string, not one new copy per membership row."""
    store = SqliteStore(tmp_path / "state.sqlite")
    with store.transaction() as tx:
        tx.upsert_user(CloudUser("u1", attributes={"department": "Sales", "userType": "Member"}))
        tx.upsert_user(CloudUser("u2", attributes={"department": "IT", "userType": "Member"}))
        for gid in ("g1", "g2"):
            tx.upsert_group(CloudGroup(gid))
            tx.add_members(gid, [MemberRef("user", "u1"), MemberRef("user", "u2")])
    snap = store.snapshot()
    (a1,) = (m for m in snap.groups["g1"].members if m.id == "u1")
    (b1,) = (m for m in snap.groups["g2"].members if m.id == "u1")
    assert a1 is b1
    assert snap.users["u1"].id is a1.id
    assert next(k for k in snap.users if k == "u1") is a1.id
    key1 = next(iter(snap.users["u1"].attributes))
    key2 = next(iter(snap.users["u2"].attributes))
    assert key1 == key2 == "department" and key1 is key2
    assert snap.users["u1"].attributes == {"department": "Sales", "userType": "Member"}
    assert snap.users["u1"].attributes["userType"] is snap.users["u2"].attributes["userType"]


def test_member_refs_share_values_and_keep_a_kind_change() -> None:
    refs = MemberRefs()
    first = refs.get("user", "x1")
    again = refs.get("user", "".join(["x", "1"]))
    assert again is first
    assert refs.id("".join(["x", "1"])) is first.id
    assert refs.id("unknown") == "unknown"
    changed = refs.get("group", "x1")  # the same id seen with another kind is its own value, never mixed up
    assert changed == MemberRef("group", "x1") and changed is not first


def test_a_snapshots_user_attributes_read_as_the_dict_written_with_one_index_per_set_of_names(
    tmp_path: Path,
) -> None:
    """The SQL snapshot holds each user's other properties as a FrozenAttributes (issue 27, memory): equal to the
    dict written, read-only, its names' positions shared by every user with the same properties, and a UPN
    that is also the mail one string."""
    store = SqliteStore(tmp_path / "state.sqlite")
    written = {
        "a": {"mail": "a@corp.test", "department": "Sales", "userType": "Member", "businessPhones": ["1"]},
        "b": {"mail": "b@corp.test", "department": "Sales", "userType": "Guest", "businessPhones": []},
        "c": {"department": "IT"},
    }
    with store.transaction() as tx:
        for uid, attributes in written.items():
            tx.upsert_user(CloudUser(uid, user_principal_name=f"{uid}@corp.test", attributes=attributes))
    users = store.snapshot().users
    for uid, attributes in written.items():
        got = users[uid].attributes
        assert isinstance(got, FrozenAttributes)
        assert got == attributes and attributes == got and dict(got) == attributes
        assert list(got) == list(attributes) and len(got) == len(attributes)
        assert users[uid] == CloudUser(uid, user_principal_name=f"{uid}@corp.test", attributes=attributes)
    a, b, c = (users[k].attributes for k in "abc")
    assert a._index is b._index and c._index is not a._index
    assert a["department"] is b["department"], "repeated values: one string"
    assert users["a"].user_principal_name is a["mail"], "a UPN that is the mail: one string"
    assert users["b"].is_guest and not users["a"].is_guest
    assert users["a"].graph_properties()["businessPhones"] == ["1"]
    with pytest.raises(KeyError):
        a["absent"]
    with pytest.raises(TypeError):
        a["mail"] = "x"  # type: ignore[index]
    with pytest.raises(ValueError, match="as many values as names"):
        FrozenAttributes({"x": 0}, ())
    store.close()


def _indexes(store: SqliteStore) -> set[str]:
    rows = store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    return {r[0] for r in rows}


def test_a_full_round_builds_the_sqlite_indexes_again_and_a_failed_one_keeps_them(tmp_path: Path) -> None:
    """SQLite drops the members' and the users' secondary indexes while a full round fills the emptied tables
    (built once after, not row by row) and builds them again in the same transaction: before a lookup by member
    (mark_changed), at the commit; a round that fails rolls the drop back with the rest."""
    store = SqliteStore(tmp_path / "state.sqlite")
    wanted = {"members_by_member", "users_by_account_sid", "users_by_account_guid"}
    assert wanted <= _indexes(store)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.reset("users")
        tx.reset("groups")
        assert not wanted & _indexes(store)
        raise RuntimeError("the round failed")
    assert wanted <= _indexes(store)
    with store.transaction() as tx:
        for resource in ("users", "groups", "groups"):  # twice: one drop, one build
            tx.reset(resource)
        tx.upsert_user(CloudUser("u1", on_premises_security_identifier="S-1-5-21-1-2-3-1001"))
        tx.upsert_group(CloudGroup("g1", display_name="Sales"))
        tx.add_members("g1", [U1])
        tx.mark_changed("users", ["u1"])  # the groups holding u1, by members_by_member
        assert "members_by_member" in _indexes(store)
    assert wanted <= _indexes(store)
    plan = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT group_id FROM members WHERE member_id = 'u1'"
    ).fetchall()
    assert "members_by_member" in str(plan)
    assert store.cloud_users_with_keys({"S-1-5-21-1-2-3-1001"}, ()) == {"u1"}
    assert store.pending_groups().groups == {"g1"}
    store.close()


def test_a_round_whose_indexes_cannot_be_built_again_is_rolled_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite")
    with store.transaction() as tx:
        tx.upsert_group(CloudGroup("g1", display_name="Sales"))
        tx.add_members("g1", [U1])
    with pytest.raises(StateError), store.transaction() as tx:
        tx.reset("groups")
        tx.upsert_group(CloudGroup("g2", display_name="New"))
        tx._dropped.append("CREATE INDEX members_by_member ON no_such_table (x)")  # fails at the commit
    assert set(store.snapshot().groups) == {"g1"} and "members_by_member" in _indexes(store)
    with store.transaction() as tx:  # the connection is usable again: no transaction was left open
        tx.upsert_group(CloudGroup("g3", display_name="Later"))
    assert set(store.snapshot().groups) == {"g1", "g3"}
    store.close()
