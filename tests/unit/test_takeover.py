"""Taking over, never duplicating: Connect-written groups, SOA-converted groups, AD-synced nested groups, the
release on rollback and the loop guard — the pure desired state and the plan it leads to."""

import dataclasses

from tests.unit.builders import BASE, DOC, OU, desire, settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.config import MappingSettings, parse_settings
from writeback.core.desired import DesiredState
from writeback.core.mapping import MSDS_ANCHOR
from writeback.core.model import (
    CloudGroup,
    CloudUser,
    DirectoryAccount,
    DirectoryGroup,
    MemberRef,
)
from writeback.core.planning import ChangeKind, Plan, Policy, compute_plan

UNIVERSAL_SECURITY = -2147483640
GLOBAL_SECURITY = -2147483646
DOMAIN_LOCAL_SECURITY = -2147483644
LEGACY_OU = "OU=Legacy,DC=corp,DC=test"
SID = "S-1-5-21-1-2-3-1105"


def gid(n: int) -> str:
    return f"{n:08d}-0000-0000-0000-{n:012d}"


def soa(n: int, name: str, sid: str = SID, *, managed: bool | None = True, members=()) -> CloudGroup:
    """A group synced from AD whose source of authority moved to the cloud (isCloudManaged true/null)."""
    return CloudGroup(
        gid(n),
        display_name=name,
        on_premises_security_identifier=sid,
        is_cloud_managed=managed,
        members=frozenset(members),
    )


def original(
    dn: str, sid: str = SID, *, group_type: int = GLOBAL_SECURITY, anchor: str | None = None, members=()
) -> DirectoryGroup:
    attrs: dict[str, str | None] = {MSDS_ANCHOR: anchor, "displayName": None, "description": None}
    return DirectoryGroup(
        dn, "guid-orig", anchor, "FinanceLegacy", group_type, attrs, frozenset(members), object_sid=sid
    )


def account(g: DirectoryGroup) -> DirectoryAccount:
    return DirectoryAccount(g.dn, g.object_guid, g.object_sid, "group", g.group_type)


def plan_of(state: DesiredState) -> Plan:
    return compute_plan(state, Policy(delete_out_of_scope=True, delete_soft_deleted=True))


def member_users() -> tuple[dict[str, CloudUser], list[DirectoryAccount], list[MemberRef]]:
    u = {"u1": CloudUser("u1", on_premises_sync_enabled=True, on_premises_security_identifier="S-1-5-21-9-1")}
    return u, [DirectoryAccount("CN=user1,OU=Staff", "guid-u1", "S-1-5-21-9-1")], [MemberRef("user", "u1")]


# SOA-converted groups ------------------------------------------------------------------------------------
def test_soa_group_is_written_into_its_original_keeping_dn_name_and_global_scope():
    users, accounts, refs = member_users()
    g = soa(1, "Finance (cloud name)", members=refs)
    orig = original(f"CN=Finance,{LEGACY_OU}")
    state = desire([g], users=users, accounts=accounts, by_sid=[account(orig)], originals=[orig])
    d = state.groups[g.id]
    assert d.error is None
    assert d.dn == orig.dn and d.sam_account_name == "FinanceLegacy" and d.group_type == GLOBAL_SECURITY
    assert d.members == frozenset({"CN=user1,OU=Staff"})
    plan = plan_of(state)
    kinds = sorted(c.kind for c in plan.changes)
    assert ChangeKind.CREATE not in kinds and ChangeKind.MOVE not in kinds
    (update,) = [c for c in plan.changes if c.kind is ChangeKind.UPDATE]
    assert update.dn == orig.dn and update.attributes[MSDS_ANCHOR] == f"Group_{g.id}"
    assert "groupType" not in update.attributes and "sAMAccountName" not in update.attributes
    (add,) = [c for c in plan.changes if c.kind is ChangeKind.ADD_MEMBERS]
    assert add.members == ("CN=user1,OU=Staff",)


def test_soa_original_once_stamped_is_still_kept_where_it_is():
    g = soa(1, "Finance")
    orig = original(f"CN=Finance,{LEGACY_OU}", anchor=f"Group_{g.id}")
    state = desire([g], managed=[orig], by_sid=[account(orig)], originals=[orig])
    assert state.groups[g.id].dn == orig.dn
    plan = plan_of(state)
    assert [c.kind for c in plan.changes] == [ChangeKind.UPDATE]  # displayName only: no move, no create
    assert set(plan.changes[0].attributes) == {"displayName"}


def test_soa_original_renamed_and_universal_when_the_config_asks():
    g = soa(1, "Finance")
    orig = original(f"CN=Finance,{LEGACY_OU}")
    config = settings(mapping=MappingSettings(keep_adopted_names=False))
    state = desire([g], by_sid=[account(orig)], originals=[orig], config=config)
    d = state.groups[g.id]
    assert d.dn == f"CN=Finance_{g.id[-12:]},{OU}" and d.group_type == UNIVERSAL_SECURITY
    kinds = {c.kind for c in plan_of(state).changes}
    assert ChangeKind.MOVE in kinds and ChangeKind.CREATE not in kinds


def test_missing_original_is_reported_and_nothing_created():
    g = soa(1, "Finance")
    state = desire([g])
    err = state.groups[g.id].error
    assert err and "no longer exists" in err and "Recycle Bin" in err and SID in err
    plan = plan_of(state)
    assert plan.changes == ()
    assert any(r.cloud_id == g.id and "Recycle Bin" in (r.error or "") for r in plan.reports)


def test_missing_original_is_created_when_the_config_allows_it():
    g = soa(1, "Finance")
    state = desire([g], config=settings(mapping=MappingSettings(create_missing_originals=True)))
    assert state.groups[g.id].error is None
    assert [c.kind for c in plan_of(state).changes] == [ChangeKind.CREATE]


def test_original_in_another_domain_is_reported_not_written():
    g = soa(1, "Finance")
    elsewhere = DirectoryAccount("CN=Finance,DC=emea,DC=corp,DC=test", "x", SID, "group", GLOBAL_SECURITY)
    state = desire([g], by_sid=[elsewhere])
    assert "outside target.base_dn" in (state.groups[g.id].error or "")


def test_original_owned_by_another_cloud_group_is_not_taken():
    g = soa(1, "Finance")
    orig = original(f"CN=Finance,{LEGACY_OU}", anchor=f"Group_{gid(9)}")
    state = desire([g], managed=[orig], by_sid=[account(orig)], originals=[orig])
    assert "another writeback anchor" in (state.groups[g.id].error or "")
    assert not [c for c in plan_of(state).changes if c.cloud_id == g.id]


def test_group_from_ad_without_a_known_sync_behavior_is_not_written():
    g = soa(1, "Finance", managed=None)
    state = desire([g])
    assert g.id not in state.groups and "isCloudManaged" in state.out_of_scope[g.id]


def test_rollback_releases_the_original_removing_only_the_anchor():
    g = soa(1, "Finance", managed=False)
    orig = original(f"CN=Finance,{LEGACY_OU}", anchor=f"Group_{g.id}", members=["CN=user1,OU=Staff"])
    state = desire([g], managed=[orig])
    assert g.id not in state.groups and state.released == (orig,) and orig not in state.actual
    plan = plan_of(state)  # deletes of out-of-scope groups are allowed here, and still none happens
    assert [(c.kind, c.dn, dict(c.attributes)) for c in plan.changes] == [
        (ChangeKind.UPDATE, orig.dn, {MSDS_ANCHOR: None})
    ]
    assert any(r.cloud_id == g.id and "released" in (r.note or "") for r in plan.reports)


def test_released_group_without_the_stamp_gets_no_change():
    g = dataclasses.replace(soa(1, "Finance", managed=False), on_premises_sync_enabled=True)
    orig = original(f"CN=Finance,{LEGACY_OU}", anchor=f"Group_{g.id}")
    orig = dataclasses.replace(orig, attributes={"adminDescription": f"Group_{g.id}"})
    plan = plan_of(desire([g], managed=[orig]))
    assert plan.changes == ()


# Connect-written groups ------------------------------------------------------------------------------------
def connect_group(g: CloudGroup, dn: str) -> DirectoryGroup:
    return DirectoryGroup(
        dn,
        "guid-c",
        g.anchor,
        "ConnectSam",
        UNIVERSAL_SECURITY,
        {"adminDescription": g.anchor, MSDS_ANCHOR: None, "displayName": g.display_name},
        frozenset(),
    )


def test_connect_group_is_adopted_in_place_with_its_name_and_stamped():
    g = CloudGroup(gid(2), display_name="Sales")
    ad = connect_group(g, f"CN=Group_{g.id},{LEGACY_OU}")
    state = desire([g], managed=[ad])
    d = state.groups[g.id]
    assert d.dn == ad.dn and d.sam_account_name == "ConnectSam"
    plan = plan_of(state)
    assert [(c.kind, dict(c.attributes)) for c in plan.changes] == [
        (ChangeKind.UPDATE, {MSDS_ANCHOR: g.anchor})
    ]


def test_connect_group_renamed_by_the_mapping_when_keep_adopted_names_is_false():
    g = CloudGroup(gid(2), display_name="Sales")
    ad = connect_group(g, f"CN=Group_{g.id},{LEGACY_OU}")
    state = desire([g], managed=[ad], config=settings(mapping=MappingSettings(keep_adopted_names=False)))
    assert state.groups[g.id].dn == f"CN=Sales_{g.id[-12:]},{OU}"
    assert ChangeKind.MOVE in {c.kind for c in plan_of(state).changes}


def test_group_writeback_wrote_itself_follows_cloud_renames():
    g = CloudGroup(gid(2), display_name="Sales renamed")
    ad = DirectoryGroup(
        f"CN=Sales_{g.id[-12:]},{OU}",
        "guid",
        g.anchor,
        "s",
        UNIVERSAL_SECURITY,
        {MSDS_ANCHOR: g.anchor},
        frozenset(),
    )
    assert desire([g], managed=[ad]).groups[g.id].dn == f"CN=Sales renamed_{g.id[-12:]},{OU}"


# AD-synced groups nested in cloud groups ---------------------------------------------------------------------
def synced(n: int, name: str, sid: str) -> CloudGroup:
    return CloudGroup(
        gid(n), display_name=name, on_premises_sync_enabled=True, on_premises_security_identifier=sid
    )


def test_synced_group_nested_in_a_cloud_group_is_referenced_as_its_ad_original():
    child = synced(3, "Engineers", "S-1-5-21-1-2-3-2001")
    local = synced(4, "Printers", "S-1-5-21-1-2-3-2002")
    gone = synced(5, "Gone", "S-1-5-21-1-2-3-2003")
    parent = CloudGroup(
        gid(6), display_name="All", members=frozenset(MemberRef("group", c.id) for c in (child, local, gone))
    )
    found = [
        DirectoryAccount(f"CN=Engineers,{LEGACY_OU}", "g3", "S-1-5-21-1-2-3-2001", "group", GLOBAL_SECURITY),
        DirectoryAccount(
            f"CN=Printers,{LEGACY_OU}", "g4", "S-1-5-21-1-2-3-2002", "group", DOMAIN_LOCAL_SECURITY
        ),
    ]
    state = desire([child, local, gone, parent], by_sid=found)
    p = state.groups[parent.id]
    assert p.members == frozenset({f"CN=Engineers,{LEGACY_OU}"})
    reasons = {s.member_id: s.reason for s in p.skipped}
    assert reasons[local.id].startswith("8518")
    assert "no AD group has its SID" in reasons[gone.id]
    assert child.id not in state.groups  # the synced group itself is never written


# Loop guard ------------------------------------------------------------------------------------------------
def test_synced_copy_of_a_group_writeback_writes_is_reported_as_a_loop_and_never_written():
    g = CloudGroup(gid(7), display_name="Ops")
    written = DirectoryGroup(
        f"CN=Ops_{g.id[-12:]},{OU}",
        "guid-7",
        g.anchor,
        "ops",
        UNIVERSAL_SECURITY,
        {MSDS_ANCHOR: g.anchor},
        frozenset(),
        object_sid="S-1-5-21-1-2-3-3001",
    )
    copy = synced(8, "Ops", "S-1-5-21-1-2-3-3001")
    state = desire([g, copy], managed=[written])
    assert copy.id not in state.groups and set(state.loops) == {copy.id}
    plan = plan_of(state)
    assert not [c for c in plan.changes if c.cloud_id == copy.id]
    assert any(r.cloud_id == copy.id and (r.error or "").startswith("loop:") for r in plan.reports)
    assert any(w.startswith("loop:") and written.dn in w for w in plan.warnings)


def test_takeover_settings_parse_with_safe_defaults():
    default = parse_settings(DOC, "t.toml").mapping
    assert default.keep_adopted_names is True and default.create_missing_originals is False
    doc = {**DOC, "mapping": {"keep_adopted_names": False, "create_missing_originals": True}}
    parsed = parse_settings(doc, "t.toml").mapping
    assert parsed.keep_adopted_names is False and parsed.create_missing_originals is True


# Through the engine (gathering, planning, apply) with the in-memory fakes ----------------------------------
def test_engine_takes_over_the_original_then_releases_it_on_rollback():
    dn = f"CN=Finance,OU=Legacy,{BASE}"
    user = CloudUser("u1", on_premises_sync_enabled=True, on_premises_security_identifier="S-1-5-21-9-1")
    account = DirectoryAccount(f"CN=user1,OU=Staff,{BASE}", "guid-u1", "S-1-5-21-9-1")
    directory = FakeDirectory(accounts=[account])
    directory.groups[dn.lower()] = {
        "dn": dn,
        "guid": "guid-orig",
        "objectSid": SID,
        "sAMAccountName": "FinanceLegacy",
        "groupType": str(GLOBAL_SECURITY),
        "member": set(),
    }
    g = soa(1, "Finance", members=[MemberRef("user", "u1")])
    cloud = FakeCloud(users={"u1": user}, groups={g.id: g})
    engine = Engine(settings(), cloud, directory, SqliteStore(":memory:"))

    engine.sync()
    plan = engine.plan()
    assert plan.counts()["create"] == 0 and engine.apply(plan).ok
    entry = directory.groups[dn.lower()]
    assert entry[MSDS_ANCHOR] == g.anchor and entry["member"] == {account.dn}
    assert entry["groupType"] == str(GLOBAL_SECURITY) and entry["sAMAccountName"] == "FinanceLegacy"
    assert [op for op, _ in directory.ops].count("add") == 0
    # A full pass that applies records where it found the adopted original (a plan alone records nothing).
    assert ReconcilePass(engine).run(PassOptions("full", deep=True)).plan.changes == ()

    cloud.groups = {g.id: dataclasses.replace(g, is_cloud_managed=False)}
    engine.sync()
    plan = engine.plan(only={g.id})  # an incremental cycle, as the service runs it after the rollback
    assert [(c.kind, dict(c.attributes)) for c in plan.changes] == [(ChangeKind.UPDATE, {MSDS_ANCHOR: None})]
    assert engine.apply(plan).ok
    assert MSDS_ANCHOR not in directory.groups[dn.lower()] and directory.groups[dn.lower()]["member"] == {
        account.dn
    }
    engine.sync()
    assert engine.plan().changes == ()


def test_unknown_sync_behavior_leaves_a_taken_over_group_alone_even_when_deletes_are_allowed():
    g = soa(1, "Finance", managed=None)  # e.g. the permission was revoked: Graph no longer says
    orig = original(f"CN=Finance,{LEGACY_OU}", anchor=f"Group_{g.id}", members=["CN=user1,OU=Staff"])
    state = desire([g], managed=[orig])
    assert state.released == () and state.untouched == (orig,) and orig not in state.actual
    plan = compute_plan(state, Policy(delete_out_of_scope=True))
    assert plan.changes == ()
    assert any(r.cloud_id == g.id and "kept unchanged" in (r.note or "") for r in plan.reports)
