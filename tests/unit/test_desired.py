"""The pure desired-state function: which nested groups may be referenced, occupied DNs, caps, names."""

from dataclasses import replace

from tests.unit.builders import OU, desire, settings
from writeback.config import MemberSettings
from writeback.core.desired import DirectoryFacts, desired_state, dynamic_intents, left_alone
from writeback.core.mapping import MSDS_ANCHOR
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, DirectoryGroup, MemberRef
from writeback.core.planning import ChangeKind, Policy, compute_plan

UNIVERSAL_SECURITY = -2147483640


def gid(n: int) -> str:
    return f"{n:08d}-0000-0000-0000-{n:012d}"


def cloud(n: int, name: str, members=()) -> CloudGroup:
    return CloudGroup(gid(n), display_name=name, members=frozenset(members))


def dn_of(n: int, name: str) -> str:
    return f"CN={name}_{gid(n)[-12:]},{OU}"


def managed(n: int, name: str, dn: str | None = None, members=()) -> DirectoryGroup:
    return DirectoryGroup(
        dn or dn_of(n, name),
        f"guid-{n}",
        f"Group_{gid(n)}",
        f"sam{n}",
        UNIVERSAL_SECURITY,
        {"displayName": name},
        frozenset(members),
    )


def users(n: int) -> tuple[dict[str, CloudUser], list[DirectoryAccount], list[MemberRef]]:
    u = {
        f"u{i}": CloudUser(
            f"u{i}", on_premises_sync_enabled=True, on_premises_security_identifier=f"S-1-5-21-9-{i}"
        )
        for i in range(n)
    }
    a = [DirectoryAccount(f"CN=user{i},OU=Staff", f"guid-u{i}", f"S-1-5-21-9-{i}") for i in range(n)]
    return u, a, [MemberRef("user", f"u{i}") for i in range(n)]


def test_child_whose_dn_an_unmanaged_object_holds_is_not_nested_and_the_parent_is_still_written():
    child = cloud(1, "Child")
    parent = cloud(2, "Parent", [MemberRef("group", child.id)])
    state = desire([child, parent], existing=[dn_of(1, "Child")])  # someone else's object holds the DN
    assert state.groups[child.id].error and "not managed by writeback" in state.groups[child.id].error
    p = state.groups[parent.id]
    assert p.error is None and p.members == frozenset()
    (skip,) = p.skipped
    assert skip.member_id == child.id and skip.reason.startswith("nested group is not written: ")
    assert "not managed by writeback" in skip.reason and skip.name == "Child"


def test_child_over_the_member_cap_is_not_nested_and_the_parent_keeps_its_other_members():
    u, accounts, refs = users(3)
    child = cloud(1, "Big", refs)
    parent = cloud(2, "Parent", [MemberRef("group", child.id), refs[0]])
    cfg = settings(members=MemberSettings(max_members=2))
    state = desire([child, parent], users=u, accounts=accounts, config=cfg)
    assert "max_members" in (state.groups[child.id].error or "")
    p = state.groups[parent.id]
    assert p.error is None and p.members == {"CN=user0,OU=Staff"}
    assert [s.member_id for s in p.skipped] == [child.id]


def test_child_at_its_own_managed_dn_is_referenced():
    child = cloud(1, "Child")
    parent = cloud(2, "Parent", [MemberRef("group", child.id)])
    state = desire([child, parent], managed=[managed(1, "Child")], existing=[dn_of(1, "Child")])
    assert state.groups[parent.id].members == {dn_of(1, "Child")}


def test_child_renamed_in_the_cloud_is_referenced_at_its_new_dn():
    child = cloud(1, "New")
    parent = cloud(2, "Parent", [MemberRef("group", child.id)])
    state = desire([child, parent], managed=[managed(1, "Old")])
    assert state.groups[parent.id].members == {dn_of(1, "New")}


def test_incremental_plan_references_an_unplanned_child_where_ad_holds_it_and_skips_one_not_written():
    written, unwritten = cloud(1, "Written"), cloud(3, "NotYet")
    parent = cloud(2, "Parent", [MemberRef("group", written.id), MemberRef("group", unwritten.id)])
    moved = f"CN=Written,OU=ByHand,{OU}"
    state = desire([written, unwritten, parent], managed=[managed(1, "Written", dn=moved)], only=[parent.id])
    p = state.groups[parent.id]
    assert p.members == {moved}
    assert [(s.member_id, s.reason) for s in p.skipped] == [
        (unwritten.id, "nested group is not written to AD yet")
    ]
    assert set(state.groups) == {parent.id}


def test_nesting_cycle_is_reported_not_followed_forever():
    a = cloud(1, "A", [MemberRef("group", gid(2))])
    b = cloud(2, "B", [MemberRef("group", gid(1))])
    state = desire([a, b])
    reasons = {s.reason for g in state.groups.values() for s in g.skipped}
    assert "nested group is part of a nesting cycle" in reasons


def test_occupied_dn_refuses_the_create():
    g = cloud(1, "Sales")
    state = desire([g], existing=[dn_of(1, "Sales").upper()])
    assert "already exists and is not managed" in (state.groups[g.id].error or "")


def test_sam_account_name_taken_by_a_foreign_object_picks_the_next_candidate_and_managed_keep_theirs():
    new, kept = cloud(1, "Sales"), cloud(2, "Kept")
    first = f"Sales_{gid(1).replace('-', '')[-12:]}"
    state = desire([new, kept], managed=[managed(2, "Kept")], taken={first: "CN=someone else,OU=Other"})
    assert state.groups[new.id].sam_account_name != first
    assert state.groups[kept.id].sam_account_name == "sam2"


def test_a_plan_compares_only_the_groups_its_sources_own():
    """A plan without the on-prem source never sees a dynamic group as undesired (it would delete it)."""
    dynamic = DirectoryGroup(
        f"CN=HR,{OU}", "guid-hr", "WritebackDynamic_hr", "HR", UNIVERSAL_SECURITY, {}, frozenset()
    )
    state = desire([cloud(1, "Sales")], managed=[managed(1, "Sales"), dynamic])
    assert [g.cloud_id for g in state.actual] == [gid(1)]
    retry = desire([cloud(1, "Sales")], managed=[dynamic], only=["dynamic:hr"])  # a dynamic group's retry
    assert state.groups and retry.actual == ()


# Groups left alone: found once, here (issue 22) ---------------------------------------------------------
SALES_RULE = 'user.department -eq "Sales"'


def dynamic_settings(*ids: str):
    return settings(
        scope={"mode": "none"},
        dynamic_groups=[{"id": i, "name": i.title(), "rule": SALES_RULE} for i in ids],
    )


def dynamic_ad_group(dn: str, gid_: str = "sales") -> DirectoryGroup:
    return DirectoryGroup(
        dn, f"guid-{dn}", f"WritebackDynamic_{gid_}", None, UNIVERSAL_SECURITY, {}, frozenset()
    )


def desire_dynamic(config, managed):
    facts = DirectoryFacts(anchor_attributes=(MSDS_ANCHOR,), managed=tuple(managed))
    return desired_state(dynamic_intents(config, []), facts, config)


def test_two_ad_groups_anchored_for_one_dynamic_group_are_named_by_the_anchor_they_carry():
    twins = [dynamic_ad_group(f"CN=Sales,{OU}"), dynamic_ad_group(f"CN=Sales2,{OU}")]
    state = desire_dynamic(dynamic_settings("sales"), twins)
    error = state.groups["dynamic:sales"].error or ""
    assert error.startswith("several AD groups carry anchor WritebackDynamic_sales: ")
    assert f"CN=Sales,{OU}" in error and f"CN=Sales2,{OU}" in error
    assert "Group_" not in error.replace("WritebackDynamic_", "")  # never Group_dynamic:sales
    assert state.actual == () and state.errors == ()  # left out of the comparison, reported once
    plan = compute_plan(state, Policy(delete_out_of_scope=True))
    assert plan.changes == ()
    assert [(r.cloud_id, r.error) for r in plan.reports] == [("dynamic:sales", error)]


def test_two_ad_groups_of_a_dynamic_group_no_longer_configured_are_reported_not_deleted():
    twins = [dynamic_ad_group(f"CN=Sales,{OU}"), dynamic_ad_group(f"CN=Sales2,{OU}")]
    state = desire_dynamic(dynamic_settings("other"), twins)  # the source is present, "sales" is gone
    (left,) = state.errors
    assert (left.key, left.dn) == ("dynamic:sales", None)
    assert left.message.startswith("several AD groups carry anchor WritebackDynamic_sales: ")
    plan = compute_plan(state, Policy(delete_out_of_scope=True))
    assert [c.kind for c in plan.changes] == [ChangeKind.CREATE]  # "other"; neither Sales group deleted
    assert [(r.cloud_id, r.error) for r in plan.reports] == [("dynamic:sales", left.message)]


def test_two_ad_groups_anchored_for_one_cloud_group_are_named_group_id():
    g = cloud(1, "Sales")
    twins = [managed(1, "Sales"), managed(1, "Sales", dn=f"CN=Copy,{OU}")]
    state = desire([g], managed=twins)
    error = state.groups[g.id].error or ""
    assert error.startswith(f"several AD groups carry anchor Group_{g.id}: ")
    assert f"CN=Copy,{OU}" in error and dn_of(1, "Sales") in error
    plan = compute_plan(state, Policy())
    assert plan.changes == () and [r.error for r in plan.reports] == [error]


def test_two_ad_groups_of_a_cloud_group_deleted_in_the_cloud_are_reported_not_deleted():
    twins = [managed(1, "Sales"), managed(1, "Sales", dn=f"CN=Copy,{OU}")]
    state = desire([cloud(2, "Other")], managed=twins)  # group 1 is unknown to the cloud: hard-deleted
    (left,) = state.errors
    assert left.key == gid(1) and left.message.startswith(f"several AD groups carry anchor Group_{gid(1)}: ")
    assert left.name == "Sales"  # the name AD holds, as the cloud no longer knows it
    plan = compute_plan(state, Policy())
    assert all(c.kind is not ChangeKind.DELETE for c in plan.changes)
    assert [r.error for r in plan.reports] == [left.message]


def test_a_protected_ad_group_is_left_alone_desired_or_not():
    wanted, gone = cloud(1, "Admins"), cloud(2, "Gone")
    protected = [replace(managed(1, "Admins"), protected=True), replace(managed(2, "Gone"), protected=True)]
    state = desire([wanted], managed=protected)
    assert "AD protected group" in (state.groups[wanted.id].error or "")
    (left,) = state.errors
    assert (left.key, left.dn) == (gone.id, dn_of(2, "Gone")) and "AD protected group" in left.message
    plan = compute_plan(state, Policy(delete_out_of_scope=True))
    assert plan.changes == ()  # neither updated nor deleted
    assert {r.cloud_id for r in plan.reports if r.error and "protected" in r.error} == {wanted.id, gone.id}


def test_a_nested_group_left_alone_is_not_referenced_and_the_parent_says_why():
    child = cloud(1, "Child")
    parent = cloud(2, "Parent", [MemberRef("group", child.id)])
    twins = [managed(1, "Child"), managed(1, "Child", dn=f"CN=Copy,{OU}")]
    for only in (None, [parent.id]):  # planned with the parent, or referenced where AD holds it
        state = desire([child, parent], managed=twins, only=only)
        p = state.groups[parent.id]
        assert p.members == frozenset()
        (skip,) = p.skipped
        assert skip.reason.startswith(
            f"nested group is not written: several AD groups carry anchor Group_{child.id}"
        )


def test_left_alone_finds_each_problem_once_and_leaves_sound_groups():
    sound = managed(3, "Fine")
    found = left_alone(
        [managed(1, "A"), managed(1, "A", dn=f"CN=B,{OU}"), replace(managed(2, "P"), protected=True), sound]
    )
    assert set(found) == {gid(1), gid(2)}
    assert found[gid(1)].dn is None and found[gid(2)].dn == dn_of(2, "P")


def test_a_protected_group_whose_source_of_authority_went_back_to_ad_is_not_released():
    """Releasing writes (it removes the anchor); writeback never modifies a protected group."""
    g = CloudGroup(gid(1), display_name="Admins", on_premises_security_identifier="S-1-5-21-9-512")
    g = replace(g, is_cloud_managed=False)  # an SOA conversion rolled back: AD masters it again
    stamped = replace(managed(1, "Admins"), attributes={MSDS_ANCHOR: f"Group_{gid(1)}"})
    assert desire([g], managed=[stamped]).released == (stamped,)
    state = desire([g], managed=[replace(stamped, protected=True)])
    assert state.released == () and state.actual == ()
    assert compute_plan(state, Policy(delete_out_of_scope=True)).changes == ()
