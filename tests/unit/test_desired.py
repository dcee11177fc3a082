"""The pure desired-state function: which nested groups may be referenced, occupied DNs, caps, names."""

from tests.unit.builders import OU, desire, settings
from writeback.config import MemberSettings
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, DirectoryGroup, MemberRef

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
