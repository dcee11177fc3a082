"""[users] provision = "soa" (issue 24): cloud-managed users written into their original AD account, through the
one pipeline (intents, questions, gathering, desired state, plan, holds, apply, log) with the in-memory fakes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tests.unit.builders import BASE, DOC, settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.wiring import graph_settings
from writeback.cli.report import render_plan
from writeback.config import DEFAULT_USER_ATTRIBUTES, Settings, parse_settings
from writeback.core.mapping import MSDS_ANCHOR
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, MemberRef
from writeback.core.planning import ChangeKind, Plan
from writeback.errors import ConfigError

USER_SID = "S-1-5-21-1-2-3-4001"
USER_DN = f"CN=Jane Doe,OU=Staff,{BASE}"
GROUP_ID = "00000000-0000-0000-0000-000000000001"


def soa_user(uid: str = "u1", sid: str = USER_SID, *, managed: bool | None = True, **attrs: Any) -> CloudUser:
    """A user synced from AD whose source of authority moved to the cloud (isCloudManaged true)."""
    values = {"givenName": "Jane", "surname": "Doe", "department": "Finance", "city": "", **attrs}
    return CloudUser(
        uid,
        display_name="Jane Doe",
        user_principal_name="jane@corp.test",
        on_premises_security_identifier=sid,
        is_cloud_managed=managed,
        attributes=values,
    )


def account_entry(dn: str = USER_DN, sid: str = USER_SID, **attrs: Any) -> dict[str, Any]:
    return {
        "dn": dn,
        "guid": "guid-jane",
        "objectSid": sid,
        "sAMAccountName": "jdoe",
        "displayName": "J. Doe (old)",
        "l": "Paris",
        **attrs,
    }


def users_on(**users: Any) -> Settings:
    return settings(users={"provision": "soa", **users})


def engine_with(
    cloud_users: list[CloudUser],
    entries: list[dict[str, Any]],
    *,
    config: Settings | None = None,
    groups: list[CloudGroup] | None = None,
) -> tuple[Engine, FakeDirectory, FakeCloud]:
    """An engine over one in-scope cloud group holding ``cloud_users``, whose AD accounts are ``entries``."""
    directory = FakeDirectory(
        accounts=[DirectoryAccount(e["dn"], e["guid"], e["objectSid"]) for e in entries],
        users={e["dn"].lower(): e for e in entries},
    )
    group = CloudGroup(
        GROUP_ID, display_name="Finance", members=frozenset(MemberRef("user", u.id) for u in cloud_users)
    )
    cloud = FakeCloud(users={u.id: u for u in cloud_users}, groups={g.id: g for g in groups or [group]})
    engine = Engine(config or users_on(), cloud, directory, SqliteStore(":memory:"))
    engine.sync()
    return engine, directory, cloud


def user_writes(directory: FakeDirectory) -> list[tuple[str, str]]:
    """The writes made to user accounts (the group's own create is not one)."""
    accounts = {key for key in directory.users}
    return [op for op in directory.ops if op[0] != "search" and op[1].lower() in accounts]


def user_changes(plan: Plan) -> list[tuple[ChangeKind, str, dict[str, Any]]]:
    return [(c.kind, c.dn, dict(c.attributes)) for c in plan.changes if c.target == "user"]


# The SOA user's original account -------------------------------------------------------------------------
def test_soa_user_gets_mapped_attributes_and_anchor_in_its_original_account_and_nothing_else():
    engine, directory, _ = engine_with([soa_user()], [account_entry()])
    plan = engine.plan()
    ((kind, dn, attrs),) = user_changes(plan)
    assert kind is ChangeKind.UPDATE and dn == USER_DN
    assert attrs == {
        MSDS_ANCHOR: "User_u1",
        "displayName": "Jane Doe",
        "givenName": "Jane",
        "sn": "Doe",
        "department": "Finance",
    }  # city is empty in the cloud: IgnoreFlowIfNullOrEmpty leaves l as AD holds it
    assert not {"cn", "name", "sAMAccountName", "userPrincipalName", "unicodePwd", "adminDescription"} & set(
        attrs
    )
    assert engine.apply(plan).ok
    entry = directory.users[USER_DN.lower()]
    assert entry["dn"] == USER_DN and entry["guid"] == "guid-jane" and entry["objectSid"] == USER_SID
    assert entry[MSDS_ANCHOR] == "User_u1" and entry["department"] == "Finance" and entry["l"] == "Paris"
    assert entry["sAMAccountName"] == "jdoe" and "adminDescription" not in entry
    # written with one modify of the account, no add, move or delete of any user
    assert [op for op in directory.ops if op[1] == USER_DN] == [("modify", USER_DN)]
    assert user_changes(engine.plan()) == [] and engine.plan().changes == ()


def test_second_plan_after_apply_is_empty_and_a_hand_edit_is_drift():
    engine, directory, _ = engine_with([soa_user()], [account_entry()])
    assert engine.apply(engine.plan()).ok
    assert engine.plan().changes == ()
    directory.users[USER_DN.lower()]["department"] = "edited by hand"
    (change,) = engine.plan().changes
    assert change.target == "user" and change.reason.startswith("drift")
    assert dict(change.attributes) == {"department": "Finance"}


def test_rollback_releases_the_account_removing_only_the_anchor():
    engine, directory, cloud = engine_with([soa_user()], [account_entry()])
    assert engine.apply(engine.plan()).ok
    cloud.users = {"u1": dataclasses.replace(soa_user(), is_cloud_managed=False)}
    engine.sync()
    for plan in (engine.plan(only={GROUP_ID}), engine.plan()):  # incremental, then full
        assert user_changes(plan) == [(ChangeKind.UPDATE, USER_DN, {MSDS_ANCHOR: None})]
        assert any(r.target == "user" and "released" in (r.note or "") for r in plan.reports)
    assert engine.apply(engine.plan()).ok
    entry = directory.users[USER_DN.lower()]
    assert MSDS_ANCHOR not in entry and entry["department"] == "Finance" and entry["dn"] == USER_DN
    assert engine.plan().changes == ()


def test_account_anchored_for_another_cloud_user_is_reported_and_untouched():
    engine, directory, _ = engine_with([soa_user()], [account_entry(**{MSDS_ANCHOR: "User_someone-else"})])
    plan = engine.plan()
    assert user_changes(plan) == []
    (report,) = [r for r in plan.reports if r.target == "user"]
    assert "another cloud user (User_someone-else)" in (report.error or "")
    assert engine.apply(plan).ok and user_writes(directory) == []


def test_protected_account_is_never_touched():
    engine, directory, _ = engine_with([soa_user()], [account_entry(protected=True)])
    plan = engine.plan()
    assert user_changes(plan) == []
    assert any(r.target == "user" and "protected" in (r.error or "") for r in plan.reports)
    assert engine.apply(plan).ok and user_writes(directory) == []


def test_object_of_the_sid_that_is_not_a_user_is_reported_not_written():
    engine, directory, _ = engine_with([soa_user()], [account_entry(objectClass="computer")])
    plan = engine.plan()
    assert user_changes(plan) == []
    assert any("computer object, not a user account" in (r.error or "") for r in plan.reports)
    assert user_writes(directory) == []


def test_missing_original_is_reported_and_nothing_created():
    other = account_entry(dn=f"CN=Other,OU=Staff,{BASE}", sid="S-1-5-21-1-2-3-9999")
    engine, directory, _ = engine_with([soa_user()], [other])
    plan = engine.plan()
    assert any("no AD account in target.base_dn has its SID" in (r.error or "") for r in plan.reports)
    assert user_changes(plan) == [] and user_writes(directory) == []


@pytest.mark.parametrize("managed", [False, None])
def test_user_not_cloud_managed_is_untouched(managed):
    user = dataclasses.replace(soa_user(managed=managed), on_premises_sync_enabled=managed is False or None)
    engine, directory, _ = engine_with([user], [account_entry()])
    plan = engine.plan()
    assert user_changes(plan) == [] and [r for r in plan.reports if r.target == "user"] == []
    assert engine.apply(plan).ok and user_writes(directory) == []


def test_soa_user_outside_every_in_scope_group_is_not_written():
    engine, directory, _ = engine_with(
        [soa_user()], [account_entry()], groups=[CloudGroup(GROUP_ID, display_name="Empty")]
    )
    assert user_changes(engine.plan()) == [] and ("search", "users by sid") not in directory.ops


def test_provision_off_reads_and_writes_no_user():
    engine, directory, _ = engine_with([soa_user()], [account_entry()], config=settings())
    plan = engine.plan()
    assert engine.apply(plan).ok
    user_ops = [op for op in directory.ops if "user" in op[1] or op[1] == USER_DN]
    assert user_ops == []  # no read by SID, no read of managed users, no write
    assert plan.user_changes == () and "target" not in json.dumps(plan.to_dict())


def test_group_plan_json_and_digest_unchanged_by_users_when_no_user_is_involved():
    def group_plan(config: Settings) -> Plan:
        user = dataclasses.replace(soa_user(), is_cloud_managed=False, on_premises_sync_enabled=True)
        engine, _, _ = engine_with([user], [account_entry()], config=config)
        return engine.plan()

    off, on = group_plan(settings()), group_plan(users_on())
    assert off.changes and off.digest() == on.digest() and off.to_dict() == on.to_dict()


def test_user_updates_are_held_over_the_update_threshold_like_groups():
    people = [soa_user(f"u{i}", f"S-1-5-21-1-2-3-{5000 + i}") for i in range(12)]
    entries = [
        account_entry(dn=f"CN=P{i},OU=Staff,{BASE}", sid=f"S-1-5-21-1-2-3-{5000 + i}", guid=f"g{i}")
        for i in range(12)
    ]
    engine, directory, _ = engine_with(people, entries)
    plan = engine.plan()
    held_users = [c for c in plan.held if c.target == "user"]
    assert len(held_users) == 12 and {h.kind for h in plan.holds} == {"updates"}
    assert "user accounts" in plan.holds[0].message
    assert engine.apply(plan).ok and not any(op == "modify" for op, _ in directory.ops)


def test_plan_shows_users_in_their_own_section_text_and_json():
    engine, _, _ = engine_with([soa_user()], [account_entry()])
    plan = engine.plan()
    text = render_plan(plan)
    groups_at, users_at = text.index("Finance  ["), text.index("Users (1 account")
    assert groups_at < users_at and text.index("Jane Doe  [u1]") > users_at
    data = plan.to_dict()
    (user,) = [c for c in data["changes"] if c.get("target") == "user"]
    assert user["cloud_id"] == "u1" and user["dn"] == USER_DN
    assert all("target" not in c for c in data["changes"] if c["cloud_id"] == GROUP_ID)
    assert Plan.from_dict(data).digest() == plan.digest()


def test_log_row_names_the_target_type():
    engine, _, _ = engine_with([soa_user()], [account_entry()])
    run = engine.apply(engine.plan())
    rows = engine.store.read_log(run_id=run.run_id)
    (row,) = [r for r in rows if r.cloud_id == "u1"]
    assert row.action == "update" and row.result == "success" and row.dn == USER_DN
    assert row.detail and row.detail["target"] == "user"
    assert all((r.detail or {}).get("target") is None for r in rows if r.cloud_id == GROUP_ID)


# Configuration and wiring --------------------------------------------------------------------------------
def test_users_table_defaults_are_off_with_cloud_syncs_mappings():
    users = parse_settings(DOC, "t.toml").users
    assert users.provision == "off" and not users.enabled and users.guests is False
    assert users.on_leave == "disable" and users.target_ou is None
    assert dict(users.attributes) == dict(DEFAULT_USER_ATTRIBUTES)
    assert all(v.startswith("IgnoreFlowIfNullOrEmpty(") for v in users.attributes.values())


def test_users_attributes_override_and_drop_defaults():
    doc = {**DOC, "users": {"provision": "soa", "attributes": {"title": "[jobTitle]", "mobile": ""}}}
    users = parse_settings(doc, "t.toml").users
    assert users.attributes["title"] == "[jobTitle]" and "mobile" not in users.attributes


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ({"provision": "cloud_members"}, "users.target_ou", "is required"),
        (
            {"provision": "cloud_members", "target_ou": f"OU=Users,OU=Writeback,{BASE}"},
            "users.target_ou",
            "must not contain or lie inside the groups' target.target_ou",
        ),
        (
            {"provision": "cloud_members", "target_ou": BASE},
            "users.target_ou",
            "must not contain or lie inside the groups' target.target_ou",
        ),
        ({"provision": "all"}, "users.provision", "must be one of off, soa, cloud_members"),
        ({"provison": "soa"}, "users.provison", "did you mean `provision`?"),
        ({"on_leave": "archive"}, "users.on_leave", "must be one of disable, delete, keep"),
        ({"target_ou": "OU=X,DC=elsewhere"}, "users.target_ou", "not inside target.base_dn"),
        (
            {"attributes": {"sAMAccountName": "[mail]"}},
            "users.attributes.sAMAccountName",
            "names the account",
        ),
        ({"attributes": {"unicodePwd": "[x]"}}, "users.attributes.unicodePwd", "password"),
        ({"attributes": {"title": "Left([jobTitle]"}}, "users.attributes.title", ""),
    ],
)
def test_users_table_errors_name_file_key_and_reason(table, key, reason):
    with pytest.raises(ConfigError) as caught:
        parse_settings({**DOC, "users": table}, "t.toml")
    assert caught.value.key == key and caught.value.file == "t.toml" and reason in str(caught.value)


def test_graph_reads_sync_behavior_and_mapped_properties_only_with_users_on(monkeypatch):
    monkeypatch.setenv("X", "secret")
    off, on = graph_settings(settings()), graph_settings(users_on())
    assert off.read_user_sync_behavior is False and on.read_user_sync_behavior is True
    assert "surname" not in off.user_select and {"surname", "mobilePhone", "givenName"} <= set(on.user_select)
    assert len(set(on.user_select)) == len(on.user_select)


def test_provision_on_demand_of_one_user_writes_only_its_account() -> None:
    from writeback.app.provision import provision_group
    from writeback.app.reconcile_pass import ReconcilePass

    engine, directory, _cloud = engine_with([soa_user()], [account_entry()])
    steps: list[dict[str, Any]] = []
    outcome = provision_group(ReconcilePass(engine), "JANE@corp.test", steps.append, run_id="r1")
    assert outcome.result == "success", (outcome, steps)
    assert [s["type"] for s in steps] == ["import", "import", "scoping", "matching", "processing", "export"]
    assert "found user Jane Doe (u1), held by 1 in-scope group" in steps[1]["description"]
    assert steps[3]["description"] == "its original AD account found by SID"
    assert directory.users[USER_DN.lower()][MSDS_ANCHOR] == "User_u1"
    assert not [e for e in directory.groups.values() if e.get(MSDS_ANCHOR) == f"Group_{GROUP_ID}"], (
        "the group that puts the user in scope is not written by the user's provisioning"
    )
    rows = engine.store.read_log(run_id="r1")
    assert [r.action for r in rows] == ["update"] and rows[0].detail and rows[0].detail["target"] == "user"


def test_provision_on_demand_of_a_user_not_cloud_managed_is_skipped_with_the_reason() -> None:
    from writeback.app.provision import provision_group
    from writeback.app.reconcile_pass import ReconcilePass

    engine, directory, _ = engine_with([soa_user(managed=False)], [account_entry()])
    steps: list[dict[str, Any]] = []
    outcome = provision_group(ReconcilePass(engine), "u1", steps.append, run_id="r2")
    assert outcome.result == "skipped" and "synced from AD and not cloud-managed" in outcome.summary
    assert MSDS_ANCHOR not in directory.users[USER_DN.lower()]
    off, _, _ = engine_with([soa_user()], [account_entry()], config=settings())
    missing = provision_group(ReconcilePass(off), "u1", steps.append, run_id="r3")
    assert missing.result == "failure" and "no single cloud group has" in missing.summary
