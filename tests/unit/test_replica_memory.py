"""MemoryReplica: the reference semantics of the cloud replica."""

from __future__ import annotations

import pytest

from tests.unit.fakes import MemoryReplica
from writeback.core.model import CloudGroup, CloudUser, MemberRef
from writeback.core.ports import ReplicaStore
from writeback.errors import StateError

U1, U2 = MemberRef("user", "u1"), MemberRef("user", "u2")


def seeded() -> MemoryReplica:
    replica = MemoryReplica()
    with replica.transaction() as tx:
        tx.upsert_user(CloudUser("u1", display_name="Ada"))
        tx.upsert_user(CloudUser("u2", display_name="Bob"))
        tx.upsert_group(CloudGroup("g1", display_name="Sales", members=frozenset({U2})))
        tx.add_members("g1", [U1])
        tx.set_delta_link("groups", "link-1")
    return replica


def test_is_a_replica_store() -> None:
    store: ReplicaStore = MemoryReplica()
    assert store.get_delta_link("users") is None


def test_upsert_ignores_members_and_keeps_existing_ones() -> None:
    replica = seeded()
    assert replica.snapshot().groups["g1"].members == frozenset({U1})
    with replica.transaction() as tx:
        tx.upsert_group(CloudGroup("g1", display_name="Sales EU"))
        tx.add_members("g1", [U2])
    snap = replica.snapshot()
    assert snap.groups["g1"].display_name == "Sales EU"
    assert snap.groups["g1"].members == frozenset({U1, U2})
    assert isinstance(snap.groups["g1"].members, frozenset)


def test_soft_and_hard_removal() -> None:
    replica = seeded()
    with replica.transaction() as tx:
        tx.remove_group("g1", hard=False)
        tx.remove_user("u1", hard=False)
        tx.remove_user("u2", hard=True)
        tx.remove_user("unknown", hard=False)
        tx.remove_group("unknown", hard=False)
    snap = replica.snapshot()
    assert snap.groups["g1"].deleted and snap.groups["g1"].members == frozenset({U1})
    assert snap.users["u1"].deleted and "u2" not in snap.users and "unknown" not in snap.users
    assert "unknown" not in snap.groups
    with replica.transaction() as tx:
        tx.upsert_group(CloudGroup("g1", display_name="Sales"))  # restored: comes back as new
    assert not replica.snapshot().groups["g1"].deleted
    assert replica.snapshot().groups["g1"].members == frozenset({U1})
    with replica.transaction() as tx:
        tx.remove_group("g1", hard=True)
        tx.upsert_group(CloudGroup("g1", display_name="again"))
    assert replica.snapshot().groups["g1"].members == frozenset()


def test_member_removal_and_clear() -> None:
    replica = seeded()
    with replica.transaction() as tx:
        tx.add_members("g1", [U2, MemberRef("group", "g2")])
        tx.remove_members("g1", ["u1", "not-a-member"])
    assert replica.snapshot().groups["g1"].members == frozenset({U2, MemberRef("group", "g2")})
    with replica.transaction() as tx:
        tx.clear_members("g1")
    assert replica.snapshot().groups["g1"].members == frozenset()


def test_exception_rolls_back_everything_including_reset_and_link() -> None:
    replica = seeded()
    before = replica.snapshot()
    with pytest.raises(RuntimeError), replica.transaction() as tx:
        tx.reset("groups")
        tx.reset("users")
        tx.upsert_group(CloudGroup("g3", display_name="new"))
        tx.add_members("g3", [U1])
        tx.remove_members("g1", ["u1"])
        tx.set_delta_link("groups", "link-2")
        tx.set_delta_link("users", "link-u")
        raise RuntimeError("crash mid-round")
    assert replica.snapshot() == before
    assert replica.get_delta_link("groups") == "link-1"
    assert replica.get_delta_link("users") is None


def test_reset_forgets_only_that_resource() -> None:
    replica = seeded()
    with replica.transaction() as tx:
        tx.reset("groups")
    snap = replica.snapshot()
    assert snap.groups == {} and set(snap.users) == {"u1", "u2"}
    assert replica.get_delta_link("groups") == "link-1"


def test_writes_outside_a_transaction_and_nesting_are_refused() -> None:
    replica = MemoryReplica()
    tx = replica.transaction()
    with pytest.raises(StateError):
        tx.upsert_user(CloudUser("u1"))
    with replica.transaction(), pytest.raises(StateError, match="already open"), replica.transaction():
        pass
    with pytest.raises(StateError, match="unknown replica resource"):
        replica.get_delta_link("devices")
