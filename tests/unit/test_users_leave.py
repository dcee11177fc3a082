"""[users] provision = "cloud_members": leaving every in-scope group and hard deletes are decided by every pass
(quick reconcile, incremental cycle, provision on demand of a group), from the whole replica's memberships, never
from the planned groups alone. Pure core first, then through the engine and the one pass with the fakes."""

from __future__ import annotations

from typing import Any

from tests.unit import builders
from tests.unit.builders import settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_users_cloud_members import (
    GROUP_ID,
    JULIA,
    JULIA_DN,
    USERS_OU,
    cloud_user,
    members_on,
)
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Allowances, Engine
from writeback.app.leaving import PENDING_KEY, pending
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.core.desired import (
    DirectoryFacts,
    Intents,
    leaving_users,
    with_replica_memberships,
)
from writeback.core.dn import normalize_dn
from writeback.core.model import TARGET_USER, CloudGroup, CloudUser, DirectoryGroup, DirectoryUser, MemberRef
from writeback.core.planning import ChangeKind, Plan

OTHER_ID = "00000000-0000-0000-0000-000000000002"
BOB = "44444444-0000-0000-0000-000000000004"
BOB_DN = f"CN=Bob_000000000004,{USERS_OU}"
UAC_ENABLED, UAC_DISABLED = str(0x200), str(0x202)


# -- the pure core ---------------------------------------------------------------------------------------------
def _account(uid: str, dn: str, *, created: bool = True) -> DirectoryUser:
    anchor = f"User_{uid}"
    attrs: dict[str, Any] = {"msDS-ExternalDirectoryObjectId": anchor}
    if created:
        attrs["adminDescription"] = anchor
    return DirectoryUser(dn, "guid-" + uid[-4:], None, anchor, attrs)


def _group(key: str, *members: str) -> DirectoryGroup:
    return DirectoryGroup(
        f"CN=G{key[-1]},OU=Writeback,DC=corp,DC=test",
        "g" + key[-4:],
        f"Group_{key}",
        None,
        0x80000002,
        {},
        frozenset(members),
    )


def _partial(**kw: Any) -> Intents:
    return Intents({}, **{"reconciled": frozenset({GROUP_ID}), "users_enabled": True, **kw})


def test_leaving_users_are_the_created_accounts_a_reconciled_ad_group_holds_and_no_planned_group_wants():
    facts = DirectoryFacts(
        (),
        managed=(_group(GROUP_ID, JULIA_DN.upper(), BOB_DN), _group(OTHER_ID, "CN=x," + USERS_OU)),
        managed_users=(_account(JULIA, JULIA_DN), _account(BOB, BOB_DN, created=False)),
    )
    # Julia's account is a member value of the reconciled group (DNs compared as AD does); Bob's account was not
    # created by writeback (an SOA original): never said to leave by a partial plan.
    assert leaving_users(_partial(), facts) == {JULIA}
    assert leaving_users(Intents({}, users_enabled=True), facts) == frozenset()  # a full plan sees everything
    assert leaving_users(_partial(reconciled=frozenset({OTHER_ID})), facts) == frozenset()
    # A user an earlier leave of which was held is asked about again though no group holds her account any more.
    alone = DirectoryFacts((), managed=(), managed_users=(_account(JULIA, JULIA_DN),))
    assert leaving_users(_partial(), alone) == frozenset()
    assert leaving_users(_partial(), alone, pending={JULIA}) == {JULIA}


def test_with_replica_memberships_decides_from_every_group_not_the_planned_ones():
    users = members_on().users
    julia = cloud_user()
    intents = _partial(in_scope=frozenset({GROUP_ID, OTHER_ID}))
    # Still held by an in-scope group this plan does not reconcile: not left.
    kept = with_replica_memberships(intents, users, {JULIA}, {JULIA: julia}, {JULIA: {OTHER_ID}})
    assert kept.users_left == frozenset()
    # Held only by a group out of scope: left.
    out = with_replica_memberships(intents, users, {JULIA}, {JULIA: julia}, {JULIA: {"out-of-scope"}})
    assert out.users_left == {JULIA} and out.cloud_users[JULIA] == julia
    # Held by an in-scope group but written by no rule any more (a guest with guests = false): left too.
    guest = cloud_user(attrs={"userType": "Guest"})
    assert with_replica_memberships(intents, users, {JULIA}, {JULIA: guest}, {JULIA: {OTHER_ID}}).users_left
    # Not in the replica (hard-deleted): left, and no cloud user for her, so a delete is planned.
    gone = with_replica_memberships(intents, users, {JULIA}, {}, {})
    assert gone.users_left == {JULIA} and JULIA not in gone.cloud_users


# -- through the engine ----------------------------------------------------------------------------------------
def _build(
    groups: dict[str, list[CloudUser]], users: list[CloudUser], config: Any = None
) -> tuple[Engine, FakeDirectory, FakeCloud, SqliteStore]:
    directory = FakeDirectory()
    cloud = FakeCloud(users={u.id: u for u in users}, incremental=True)
    _set(cloud, groups)
    store = SqliteStore(":memory:")
    engine = Engine(config or members_on(), cloud, directory, store)
    return engine, directory, cloud, store


def _set(cloud: FakeCloud, groups: dict[str, list[CloudUser]], **props: Any) -> None:
    for gid, members in groups.items():
        old = cloud.groups.get(gid)
        cloud.groups[gid] = CloudGroup(
            gid,
            display_name=old.display_name if old else f"SG-{gid[-1]}",
            members=frozenset(MemberRef("user", u.id) for u in members),
            **props,
        )


def _incremental(p: ReconcilePass, **kw: Any) -> Plan:
    result = p.run(PassOptions(kind="incremental", **kw))
    if result.applied is not None:
        assert result.applied.ok, [r.error for r in result.applied.failed]
    return result.plan


def _user_changes(plan: Plan) -> list[tuple[ChangeKind, dict[str, Any]]]:
    return [(c.kind, dict(c.attributes)) for c in plan.changes if c.target == TARGET_USER]


def _account_of(directory: FakeDirectory, dn: str) -> dict[str, Any]:
    return directory.users[normalize_dn(dn)]


def _members(directory: FakeDirectory, name: str) -> set[str]:
    (entry,) = [e for e in directory.groups.values() if e["displayName"] == name]
    return {normalize_dn(m) for m in entry["member"]}


def test_an_incremental_cycle_disables_the_account_of_a_user_who_left_her_only_group_and_reenables_it():
    julia = cloud_user()
    engine, directory, cloud, _ = _build({GROUP_ID: [julia]}, [julia])
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))
    account = _account_of(directory, JULIA_DN)
    guid = account["guid"]
    assert account["userAccountControl"] == UAC_ENABLED

    _set(cloud, {GROUP_ID: []})  # removed from her only group
    plan = _incremental(p)
    assert plan.scope == "incremental" and not plan.deep
    assert _user_changes(plan) == [(ChangeKind.UPDATE, {"userAccountControl": UAC_DISABLED})]
    assert account["userAccountControl"] == UAC_DISABLED and not _members(directory, "SG-1")

    _set(cloud, {GROUP_ID: [julia]})  # added back
    plan = _incremental(p)
    assert _user_changes(plan) == [(ChangeKind.UPDATE, {"userAccountControl": UAC_ENABLED})]
    account = _account_of(directory, JULIA_DN)
    assert account["guid"] == guid and account["userAccountControl"] == UAC_ENABLED
    assert _members(directory, "SG-1") == {normalize_dn(JULIA_DN)}


def test_a_user_still_in_another_in_scope_group_not_planned_keeps_her_account():
    julia = cloud_user()
    engine, directory, cloud, _ = _build({GROUP_ID: [julia], OTHER_ID: [julia]}, [julia])
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))
    _set(cloud, {GROUP_ID: []})  # leaves SG-1 only: SG-2 (not planned in this cycle) still holds her
    plan = _incremental(p)
    assert plan.changes and not _user_changes(plan)  # the member value goes, the account stays as it is
    assert _account_of(directory, JULIA_DN)["userAccountControl"] == UAC_ENABLED
    assert not _members(directory, "SG-1") and _members(directory, "SG-2") == {normalize_dn(JULIA_DN)}

    # SG-2 leaves scope (soft-deleted in the cloud): the quick reconcile that plans it finds her in no
    # in-scope group, though SG-2's AD group is kept with its members.
    _set(cloud, {OTHER_ID: [julia]}, deleted=True)
    plan = _incremental(p)
    assert _user_changes(plan) == [(ChangeKind.UPDATE, {"userAccountControl": UAC_DISABLED})]


def test_provision_on_demand_of_the_group_applies_on_leave_delete():
    julia, bob = cloud_user(), cloud_user(BOB, "bob@contoso.example", display_name="Bob")
    engine, directory, cloud, _ = _build(
        {GROUP_ID: [julia, bob]}, [julia, bob], members_on(on_leave="delete")
    )
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))
    _set(cloud, {GROUP_ID: [bob]})
    result = p.run(PassOptions(kind="group", group=GROUP_ID))
    assert [(c.kind, c.cloud_id) for c in result.plan.changes if c.target == TARGET_USER] == [
        (ChangeKind.DELETE, JULIA)
    ]
    assert normalize_dn(JULIA_DN) not in directory.users and len(directory.users) == 1


def test_a_hard_delete_in_an_incremental_cycle_is_held_then_deleted_once_allowed():
    julia = cloud_user()
    config = members_on(safety={"delete_threshold": 0})
    engine, directory, cloud, store = _build({GROUP_ID: [julia]}, [julia], config)
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))

    del cloud.users[JULIA]  # hard-deleted: gone from the replica and from her group
    _set(cloud, {GROUP_ID: []})
    plan = _incremental(p)
    assert [(c.kind, c.cloud_id) for c in plan.held if c.target == TARGET_USER] == [
        (ChangeKind.DELETE, JULIA)
    ]
    assert normalize_dn(JULIA_DN) in directory.users and not _members(directory, "SG-1")
    assert pending(store) == {JULIA}  # asked about again, though no AD group holds her account any more

    plan = _incremental(p)  # nothing changed in the cloud: still held, still pending
    assert [c.kind for c in plan.held if c.target == TARGET_USER] == [ChangeKind.DELETE]
    plan = _incremental(p, allow=Allowances(deletes=1))
    assert _user_changes(plan) == [(ChangeKind.DELETE, {})]
    assert normalize_dn(JULIA_DN) not in directory.users
    assert store.get_meta(PENDING_KEY) is None
    assert _incremental(p).changes == ()  # and nothing more is planned


def test_a_soft_deleted_user_leaves_in_an_incremental_cycle_and_is_never_deleted():
    julia = cloud_user()
    engine, directory, cloud, _ = _build(
        {GROUP_ID: [julia]}, [julia], members_on(safety={"delete_threshold": 0})
    )
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))
    cloud.users[JULIA] = cloud_user(deleted=True)
    _set(cloud, {GROUP_ID: []})
    plan = _incremental(p)
    assert _user_changes(plan) == [(ChangeKind.UPDATE, {"userAccountControl": UAC_DISABLED})]
    assert not plan.held and normalize_dn(JULIA_DN) in directory.users


def test_soa_only_never_asks_the_replica_or_reads_every_account():
    julia = cloud_user()
    engine, directory, cloud, _ = _build({GROUP_ID: [julia]}, [julia], settings(users={"provision": "soa"}))
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))
    _set(cloud, {GROUP_ID: []})
    directory.ops.clear()
    _incremental(p)
    assert ("search", "managed users") not in directory.ops


def test_a_partial_plan_reads_every_account_only_when_a_planned_group_may_hold_one_writeback_created():
    synced, accounts = builders.synced_people(2)
    julia = cloud_user()
    directory = FakeDirectory(accounts=accounts)
    cloud = FakeCloud(users={**synced, JULIA: julia}, incremental=True)
    staff = CloudGroup(OTHER_ID, display_name="SG-Staff", members=frozenset({MemberRef("user", "u0")}))
    cloud.groups = {OTHER_ID: staff}
    _set(cloud, {GROUP_ID: [julia, synced["u1"]]})
    engine = Engine(members_on(), cloud, directory, SqliteStore(":memory:"))
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))

    # A group of synced members only: no account of the OU writeback creates in is read, so none is read.
    cloud.groups[OTHER_ID] = CloudGroup(
        OTHER_ID,
        display_name="SG-Staff",
        members=frozenset({MemberRef("user", "u0"), MemberRef("user", "u1")}),
    )
    directory.ops.clear()
    assert [c.kind for c in _incremental(p).changes] == [ChangeKind.ADD_MEMBERS]
    assert ("search", "managed users") not in directory.ops
    # The group holding Julia's account: every managed account is read, and she is found leaving.
    _set(cloud, {GROUP_ID: [synced["u1"]]})
    directory.ops.clear()
    assert _user_changes(_incremental(p)) == [(ChangeKind.UPDATE, {"userAccountControl": UAC_DISABLED})]
    assert ("search", "managed users") in directory.ops


def test_the_record_of_unsettled_account_changes():
    from writeback.app.leaving import record_unsettled
    from writeback.core.planning import Change

    store = SqliteStore(":memory:")
    disable = Change(ChangeKind.UPDATE, JULIA, JULIA_DN, target=TARGET_USER)
    delete = Change(ChangeKind.DELETE, BOB, BOB_DN, target=TARGET_USER)
    group = Change(ChangeKind.REMOVE_MEMBERS, GROUP_ID, "CN=G,OU=Writeback,DC=corp,DC=test")
    plan = Plan(changes=(disable, group), held=(delete,))
    record_unsettled(store, plan, [disable, group], aborted=False)
    assert pending(store) == {BOB}  # held; Julia's change was applied, the group's is no user's
    record_unsettled(store, Plan(changes=(disable,)), [], aborted=False)
    assert pending(store) == {JULIA}  # not written this time; Bob's was decided (no change planned for him)
    record_unsettled(store, Plan(changes=(group,)), [], aborted=True)
    assert pending(store) == {JULIA}  # an aborted apply forgets nobody
    record_unsettled(store, Plan(), [], aborted=False)
    assert store.get_meta(PENDING_KEY) is None
