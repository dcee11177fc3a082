"""The planner: pure, so every product rule about changes is tested here without a directory."""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from writeback.core.desired import DesiredState
from writeback.core.model import CloudGroup, DesiredGroup, DirectoryGroup, GroupError, SkippedMember
from writeback.core.planning import ChangeKind, Plan, Policy, compute_plan, desired_fingerprint

OU = "OU=Writeback,DC=corp,DC=test"
UNIVERSAL = -2147483640


def desired(cid, cn, members=(), parent=OU, **attrs):
    a = {"msDS-ExternalDirectoryObjectId": f"Group_{cid}", "displayName": cn, "description": None}
    a.update(attrs)
    return DesiredGroup(cid, f"Group_{cid}", cn, parent, f"sam_{cid[:4]}", UNIVERSAL, a, frozenset(members))


def actual(cid, cn, members=(), parent=OU, anchor=True, protected=False, **attrs):
    a = {
        "msDS-ExternalDirectoryObjectId": f"Group_{cid}" if anchor else None,
        "displayName": cn,
        "description": None,
    }
    a.update(attrs)
    return DirectoryGroup(
        f"CN={cn},{parent}",
        "guid-" + cid,
        f"Group_{cid}" if anchor else None,
        f"sam_{cid[:4]}",
        UNIVERSAL,
        a,
        frozenset(members),
        protected,
    )


def cloud(*ids, deleted=()):
    return {i: CloudGroup(i, display_name=i, deleted=i in deleted) for i in ids}


U = [f"CN=u{i},OU=Staff,DC=corp,DC=test" for i in range(10)]


def plan_of(
    desired: Mapping[str, DesiredGroup],
    actual: Iterable[DirectoryGroup],
    cloud: Mapping[str, CloudGroup],
    policy: Policy,
    *,
    applied: Mapping[str, str] | None = None,
    **state: Any,
) -> Plan:
    """The plan of a desired state given as its parts (``state``: the other DesiredState fields)."""
    return compute_plan(DesiredState(desired, tuple(actual), cloud, **state), policy, applied)


def kinds(plan):
    return [(c.kind, c.cloud_id) for c in plan.changes]


def test_create_with_members_in_one_change():
    plan = plan_of({"g1": desired("g1", "Fin", U[:3])}, [], cloud("g1"), Policy())
    assert kinds(plan) == [(ChangeKind.CREATE, "g1")]
    create = plan.changes[0]
    assert create.dn == f"CN=Fin,{OU}"
    assert set(create.members) == set(U[:3])
    assert create.attributes["groupType"] == UNIVERSAL
    assert create.attributes["msDS-ExternalDirectoryObjectId"] == "Group_g1"
    assert "description" not in create.attributes  # null attributes are not written


def test_no_changes_when_in_sync():
    plan = plan_of({"g1": desired("g1", "Fin", U[:3])}, [actual("g1", "Fin", U[:3])], cloud("g1"), Policy())
    assert plan.changes == ()
    assert not plan.has_changes


def test_member_diff_is_one_add_and_one_remove_change():
    plan = plan_of({"g1": desired("g1", "Fin", U[:5])}, [actual("g1", "Fin", U[3:8])], cloud("g1"), Policy())
    assert kinds(plan) == [(ChangeKind.ADD_MEMBERS, "g1"), (ChangeKind.REMOVE_MEMBERS, "g1")]
    assert set(plan.changes[0].members) == set(U[:3])
    assert set(plan.changes[1].members) == set(U[5:8])


def test_member_compare_ignores_dn_case():
    plan = plan_of(
        {"g1": desired("g1", "Fin", [U[0]])}, [actual("g1", "Fin", [U[0].upper()])], cloud("g1"), Policy()
    )
    assert plan.changes == ()


def test_rename_is_a_move_before_member_changes():
    plan = plan_of(
        {"g1": desired("g1", "Finance", U[:2])}, [actual("g1", "Fin", U[:1])], cloud("g1"), Policy()
    )
    assert [c.kind for c in plan.changes] == [ChangeKind.UPDATE, ChangeKind.MOVE, ChangeKind.ADD_MEMBERS]
    assert plan.changes[0].dn == f"CN=Fin,{OU}"  # the update runs at the current DN
    move = plan.changes[1]
    assert move.dn == f"CN=Fin,{OU}" and move.new_dn == f"CN=Finance,{OU}"
    assert move.reason == "renamed in the cloud"
    assert plan.changes[2].dn == f"CN=Finance,{OU}"  # later changes use the new DN


def test_changed_target_ou_moves():
    other = "OU=Other,DC=corp,DC=test"
    plan = plan_of({"g1": desired("g1", "Fin", parent=other)}, [actual("g1", "Fin")], cloud("g1"), Policy())
    assert plan.changes[0].kind is ChangeKind.MOVE and plan.changes[0].reason == "target OU changed"


def test_renamed_nested_child_is_not_removed_and_readded():
    child_old, child_new = f"CN=Old,{OU}", f"CN=New,{OU}"
    plan = plan_of(
        {"p": desired("p", "Parent", [child_new]), "c": desired("c", "New")},
        [actual("p", "Parent", [child_old]), actual("c", "Old")],
        cloud("p", "c"),
        Policy(),
    )
    assert kinds(plan) == [(ChangeKind.UPDATE, "c"), (ChangeKind.MOVE, "c")]


def test_nested_child_created_in_same_plan_is_added_after_creates():
    child = desired("c", "Child")
    plan = plan_of({"p": desired("p", "Parent", [child.dn, U[0]]), "c": child}, [], cloud("p", "c"), Policy())
    assert [c.kind for c in plan.changes] == [ChangeKind.CREATE, ChangeKind.CREATE, ChangeKind.ADD_MEMBERS]
    parent_create = next(c for c in plan.changes if c.kind is ChangeKind.CREATE and c.cloud_id == "p")
    assert parent_create.members == (U[0],)
    assert plan.changes[2].members == (child.dn,)


def test_drift_in_attributes_is_reverted():
    plan = plan_of(
        {"g1": desired("g1", "Fin", description="Money")},
        [actual("g1", "Fin", description="edited by hand")],
        cloud("g1"),
        Policy(),
    )
    assert kinds(plan) == [(ChangeKind.UPDATE, "g1")]
    assert plan.changes[0].attributes == {"description": "Money"}
    assert plan.changes[0].previous == {"description": "edited by hand"}  # for the log, never written
    assert plan.changes[0].to_dict()["previous"] == {"description": "edited by hand"}
    assert Plan.from_dict(plan.to_dict()).changes[0].previous == {"description": "edited by hand"}


def test_adopted_connect_group_gets_anchor_attribute_written():
    a = actual("g1", "Fin", anchor=True)
    a = DirectoryGroup(
        a.dn,
        a.object_guid,
        "Group_g1",
        a.sam_account_name,
        a.group_type,
        {"adminDescription": "Group_g1", "displayName": "Fin"},
        a.members,
    )
    plan = plan_of({"g1": desired("g1", "Fin")}, [a], cloud("g1"), Policy())
    assert kinds(plan) == [(ChangeKind.UPDATE, "g1")]
    assert plan.changes[0].attributes == {"msDS-ExternalDirectoryObjectId": "Group_g1"}


def test_hard_delete_deletes_soft_delete_keeps():
    plan = plan_of({}, [actual("hard", "H"), actual("soft", "S")], cloud("soft", deleted={"soft"}), Policy())
    assert kinds(plan) == [(ChangeKind.DELETE, "hard")]
    assert any(r.cloud_id == "soft" and "kept" in (r.note or "") for r in plan.reports)


def test_soft_delete_deletes_when_configured():
    plan = plan_of(
        {}, [actual("soft", "S")], cloud("soft", deleted={"soft"}), Policy(delete_soft_deleted=True)
    )
    assert kinds(plan) == [(ChangeKind.DELETE, "soft")]


def test_out_of_scope_is_kept_by_default_and_deleted_on_request():
    keep = plan_of({}, [actual("g", "G")], cloud("g"), Policy(), out_of_scope={"g": "not a security group"})
    assert keep.changes == () and "not a security group" in keep.reports[0].note
    delete = plan_of({}, [actual("g", "G")], cloud("g"), Policy(delete_out_of_scope=True))
    assert kinds(delete) == [(ChangeKind.DELETE, "g")]


def test_unanchored_groups_are_never_touched():
    plan = plan_of({}, [actual("x", "Manual", anchor=False)], {}, Policy())
    assert plan.changes == ()


def test_group_with_error_is_skipped_and_not_deleted():
    d = replace(desired("g1", "Fin", U), error="too many members")
    plan = plan_of({"g1": d}, [actual("g1", "Fin")], cloud("g1"), Policy())
    assert plan.changes == ()
    assert plan.reports[0].error == "too many members"


def test_the_planner_refuses_two_ad_groups_of_one_key_rather_than_pick_one():
    """desired_state finds them and leaves them out (tests/unit/test_desired.py); the planner never decides."""
    a1, a2 = actual("g1", "Fin"), actual("g1", "Fin2")
    with pytest.raises(ValueError, match="several AD groups of one key"):
        plan_of({"g1": desired("g1", "Fin", U[:1])}, [a1, a2], cloud("g1"), Policy())


def test_a_group_left_alone_is_reported_as_desired_state_says_and_never_deleted():
    error = GroupError("g1", None, "several AD groups carry anchor Group_g1: ...", name="Fin")
    plan = plan_of({}, [], {}, Policy(delete_out_of_scope=True), errors=(error,))
    assert plan.changes == ()
    assert [(r.cloud_id, r.display_name, r.dn, r.error) for r in plan.reports] == [
        ("g1", "Fin", None, error.message)
    ]


def test_skipped_members_are_reported():
    skipped = (SkippedMember("c1", "user", "cloud-only user (not synced from AD)"),)
    d = replace(desired("g1", "SAP", U[:4]), skipped=skipped)
    plan = plan_of({"g1": d}, [], cloud("g1"), Policy())
    assert plan.reports[0].skipped[0].member_id == "c1"


def test_order_and_json_roundtrip():
    plan = plan_of(
        {"a": desired("a", "A", U[:1]), "b": desired("b", "B2", U[:2])},
        [actual("b", "B", U[2:3]), actual("z", "Z")],
        cloud("a", "b"),
        Policy(),
    )
    order = [c.kind for c in plan.changes]
    assert order == sorted(order, key=list(ChangeKind).index)
    again = Plan.from_dict(plan.to_dict())
    assert again.digest() == plan.digest()
    assert again.changes == plan.changes


def test_drift_is_labelled_when_desired_state_is_unchanged_since_last_apply():
    d = desired("g1", "Fin", U[:2], description="Money")
    a = actual("g1", "Fin", U[1:3], description="edited")
    fresh = plan_of({"g1": d}, [a], cloud("g1"), Policy())
    assert not fresh.drift  # never applied: a cloud change, not drift
    assert fresh.fingerprints == {"g1": desired_fingerprint(d)}
    again = plan_of({"g1": d}, [a], cloud("g1"), Policy(), applied=fresh.fingerprints)
    assert {c.kind for c in again.drift} == {
        ChangeKind.UPDATE,
        ChangeKind.ADD_MEMBERS,
        ChangeKind.REMOVE_MEMBERS,
    }
    assert all(c.reason.startswith("drift:") for c in again.changes)
    changed = desired("g1", "Fin", U[:3], description="Money")
    cloud_change = plan_of({"g1": changed}, [a], cloud("g1"), Policy(), applied=fresh.fingerprints)
    assert not cloud_change.drift


def test_fingerprints_stay_those_earlier_versions_stored() -> None:
    """The applied fingerprints are kept in the state store: the digest must not change with a new version, or
    every group's AD drift would read as a cloud change once. Pinned against the bytes as first hashed."""
    for d in (desired("g1", "Fin", U[:3], description="Money"), desired("g2", "Empty", [])):
        h = hashlib.sha256()
        h.update(d.dn.lower().encode())
        h.update(str(d.group_type).encode())
        h.update(json.dumps(sorted((k, v) for k, v in d.attributes.items() if v not in (None, ""))).encode())
        for m in sorted(m.lower() for m in d.members):
            h.update(b"\0" + m.encode())
        assert desired_fingerprint(d) == h.hexdigest()


def test_a_rename_in_ad_is_drift_a_rename_in_the_cloud_is_not():
    d = desired("g1", "Fin")
    renamed_in_ad = actual("g1", "Fin (old)", displayName="Fin")  # only the CN was changed by hand
    applied = {"g1": desired_fingerprint(d)}
    (move,) = plan_of({"g1": d}, [renamed_in_ad], cloud("g1"), Policy(), applied=applied).changes
    assert (move.kind, move.reason) == (ChangeKind.MOVE, "drift: renamed or moved in AD, restored")
    (move,) = plan_of({"g1": d}, [renamed_in_ad], cloud("g1"), Policy()).changes
    assert move.reason == "renamed in the cloud"
