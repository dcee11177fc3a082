"""Writes like Graph: users, groups, member references, deleted items, dynamic groups, saving the tenant."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from writeback.errors import RuleError
from writeback.testbed.emulator.tenant import Tenant
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator

REF = "https://graph.microsoft.com/v1.0/directoryObjects/{}"
NEW_USER = {
    "accountEnabled": True,
    "displayName": "Cloud Only",
    "mailNickname": "cloudonly",
    "userPrincipalName": "cloud.only@corp.example.test",
    "passwordProfile": {"password": "Very-Secret-Passw0rd"},
}
MISSING = "5f0c7e7a-0000-4000-8000-00000000dead"  # a well-formed object id no object has


def _tenant() -> dict[str, Any]:
    tenant = small_tenant(users=10, groups=3)
    tenant["groups"] += [
        {
            "id": "mesg",
            "displayName": "Mail-enabled security",
            "mailEnabled": True,
            "securityEnabled": True,
            "groupTypes": [],
            "members": ["u01"],
        },
        {
            "id": "synced",
            "displayName": "From AD",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "onPremisesSyncEnabled": True,
            "members": [],
        },
    ]
    return tenant


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(_tenant(), tmp_path) as handle:
        yield handle


def _error(response: Any) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_create_user_strips_the_password_and_validates(emu: EmulatorHandle) -> None:
    created = emu.graph("POST", "users", json=NEW_USER)
    assert created.status_code == 201
    body = created.json()
    assert body["userPrincipalName"] == NEW_USER["userPrincipalName"] and body["id"]
    stored = emu.tenant.live["user"][body["id"]]
    assert "passwordProfile" not in stored and "Very-Secret" not in str(stored)
    assert _error(emu.graph("POST", "users", json=NEW_USER))[2].startswith(
        "Another object with the same value"
    )
    missing = {k: v for k, v in NEW_USER.items() if k != "mailNickname"}
    status, code, message = _error(
        emu.graph("POST", "users", json={**missing, "userPrincipalName": "x@y.test"})
    )
    assert (status, code) == (400, "Request_BadRequest") and "mailNickname" in message


def test_synced_objects_are_read_only(emu: EmulatorHandle) -> None:
    status, _, message = _error(emu.graph("PATCH", "users/u00", json={"department": "Sales"}))
    assert status == 400 and "on-premises mastered" in message
    assert (
        _error(emu.graph("POST", "groups/synced/members/$ref", json={"@odata.id": REF.format("u01")}))[0]
        == 400
    )
    assert emu.graph("PATCH", "users/u01", json={"department": "Sales"}).status_code == 204
    assert emu.tenant.live["user"]["u01"]["department"] == "Sales"


def test_create_group_rules(emu: EmulatorHandle) -> None:
    base = {"displayName": "SG", "mailNickname": "sg", "mailEnabled": False, "securityEnabled": True}
    assert emu.graph("POST", "groups", json=base).status_code == 201
    mail_enabled = emu.graph("POST", "groups", json={**base, "mailEnabled": True})
    assert _error(mail_enabled)[:2] == (400, "Request_BadRequest")
    writeback = {
        "writebackConfiguration": {"isEnabled": True, "onPremisesGroupType": "universalSecurityGroup"}
    }
    assert (
        emu.graph("POST", "groups", json={**base, **writeback}).status_code == 400
    )  # v1.0: unknown property
    beta = emu.graph("POST", "/beta/groups", json={**base, **writeback})
    assert beta.status_code == 201
    assert beta.json()["writebackConfiguration"]["isEnabled"] is True
    bad_type = {"writebackConfiguration": {"onPremisesGroupType": "universalDistributionGroup"}}
    assert (
        emu.graph("POST", "/beta/groups", json={**base, **bad_type}).status_code == 400
    )  # security: USG only
    unified = {**base, "mailEnabled": True, "groupTypes": ["Unified"], **bad_type}
    assert emu.graph("POST", "/beta/groups", json=unified).status_code == 201


def test_member_references(emu: EmulatorHandle) -> None:
    own_host_ref = f"{emu.graph_url}/v1.0/directoryObjects/u06"
    assert (
        emu.graph("POST", "groups/g2/members/$ref", json={"@odata.id": REF.format("u05")}).status_code == 204
    )
    assert emu.graph("POST", "groups/g2/members/$ref", json={"@odata.id": own_host_ref}).status_code == 204
    duplicate = emu.graph("POST", "groups/g2/members/$ref", json={"@odata.id": REF.format("u05")})
    assert _error(duplicate) == (
        400,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
    assert (
        _error(emu.graph("POST", "groups/g2/members/$ref", json={"@odata.id": REF.format(MISSING)}))[0] == 404
    )
    foreign = emu.graph(
        "POST", "groups/g2/members/$ref", json={"@odata.id": "https://evil.example/v1.0/users/u07"}
    )
    assert foreign.status_code == 400
    assert emu.tenant.visible_members("g2") == ["u00", "u05", "u06"]
    assert emu.graph("DELETE", "groups/g2/members/u05/$ref").status_code == 204
    assert emu.graph("DELETE", "groups/g2/members/u05/$ref").status_code == 404
    assert (
        emu.graph(
            "PATCH", "groups/g2", json={"members@odata.bind": [REF.format("u07"), REF.format("u08")]}
        ).status_code
        == 204
    )
    assert emu.tenant.visible_members("g2") == ["u00", "u06", "u07", "u08"]


def test_mail_enabled_security_groups_are_read_only(emu: EmulatorHandle) -> None:
    expected = "Cannot Update a mail-enabled security groups and or distribution list."
    assert (
        _error(emu.graph("POST", "groups/mesg/members/$ref", json={"@odata.id": REF.format("u02")}))[2]
        == expected
    )
    assert _error(emu.graph("DELETE", "groups/mesg/members/u01/$ref"))[2] == expected
    assert _error(emu.graph("PATCH", "groups/mesg", json={"description": "x"}))[2] == expected


def test_deleted_items_list_restore_and_purge(emu: EmulatorHandle) -> None:
    assert emu.graph("DELETE", "groups/g0").status_code == 204
    assert emu.graph("GET", "groups/g0").status_code == 404
    deleted = emu.graph("GET", "directory/deletedItems/microsoft.graph.group").json()
    assert [d["id"] for d in deleted["value"]] == ["g0"]
    assert deleted["value"][0]["@odata.type"] == "#microsoft.graph.group"
    assert deleted["value"][0]["deletedDateTime"]
    assert emu.graph("GET", "directory/deletedItems/microsoft.graph.user").json()["value"] == []
    # "List deletedItems": the OData cast is a required part of the URI; the graph. alias works too.
    uncast = emu.graph("GET", "directory/deletedItems")
    assert (uncast.status_code, uncast.json()["error"]["code"]) == (400, "Request_BadRequest")
    aliased = emu.graph("GET", "directory/deletedItems/graph.group").json()
    assert [d["id"] for d in aliased["value"]] == ["g0"]
    count = emu.graph(
        "GET", "directory/deletedItems/microsoft.graph.group/$count", headers={"ConsistencyLevel": "eventual"}
    )
    assert (count.status_code, count.text) == (200, "1")
    assert emu.graph("GET", "directory/deletedItems/g0").json()["displayName"] == "Group 0"
    assert emu.graph("POST", "directory/deletedItems/g0/restore").status_code == 200
    assert len(emu.graph("GET", "groups/g0/members").json()["value"]) == 5  # members came back
    emu.graph("DELETE", "groups/g0")
    assert emu.graph("DELETE", "directory/deletedItems/g0").status_code == 204
    assert emu.graph("GET", "directory/deletedItems/g0").status_code == 404
    assert emu.graph("POST", "directory/deletedItems/g0/restore").status_code == 404


def test_soft_deleted_users_are_hidden_from_members_until_restored(emu: EmulatorHandle) -> None:
    emu.graph("DELETE", "users/u01")
    assert "u01" not in {m["id"] for m in emu.graph("GET", "groups/g0/members").json()["value"]}
    emu.graph("POST", "directory/deletedItems/u01/restore")
    assert "u01" in {m["id"] for m in emu.graph("GET", "groups/g0/members").json()["value"]}


def test_save_writes_the_tenant_shape_with_deleted_items(emu: EmulatorHandle, tmp_path: Path) -> None:
    emu.graph("POST", "users", json=NEW_USER)
    emu.graph("DELETE", "groups/g2")
    target = emu.save(tmp_path / "saved.yaml")
    reloaded = Tenant.load(target)
    assert set(reloaded.live["user"]) == set(emu.tenant.live["user"])
    assert "g2" in reloaded.deleted and reloaded.kinds["g2"] == "group"
    assert reloaded.members["g2"] == {"u00": None}
    assert reloaded.members["g0"] == emu.tenant.members["g0"]
    assert reloaded.apps == emu.tenant.apps


def _department_rules(rule: str) -> Any:
    """A stand-in evaluator for rules like ``user.department -eq "HR"`` (the real one is writeback.core.rules)."""
    prefix = 'user.department -eq "'
    if not rule.startswith(prefix) or not rule.endswith('"'):
        raise RuleError("unsupported rule", rule=rule)
    wanted = rule[len(prefix) : -1]

    def matches(user: Mapping[str, Any]) -> bool:
        return user.get("department") == wanted

    return matches


def test_dynamic_groups_follow_their_rule(tmp_path: Path) -> None:
    tenant = _tenant()
    tenant["groups"].append(
        {
            "id": "dyn",
            "displayName": "HR dynamic",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": ["DynamicMembership"],
            "membershipRule": 'user.department -eq "HR"',
            "membershipRuleProcessingState": "On",
            "members": [],
        }
    )
    with run_emulator(tenant, tmp_path, rule_compiler=_department_rules) as emu:

        def members() -> set[str]:
            return {m["id"] for m in emu.graph("GET", "groups/dyn/members").json()["value"]}

        assert members() == {"u01", "u03", "u05", "u07", "u09"}
        link = emu.graph("GET", "groups/delta?$select=displayName,members").json()["@odata.deltaLink"]
        emu.graph("PATCH", "users/u02", json={"department": "HR"})
        emu.graph("PATCH", "users/u01", json={"department": "IT"})
        assert members() == {"u02", "u03", "u05", "u07", "u09"}
        changes = emu.graph("GET", link).json()["value"]
        refs = {(r["id"], "@removed" in r) for e in changes if e["id"] == "dyn" for r in e["members@delta"]}
        assert refs == {("u02", False), ("u01", True)}

        refused = emu.graph("POST", "groups/dyn/members/$ref", json={"@odata.id": REF.format("u04")})
        assert _error(refused) == (
            400,
            "Request_BadRequest",
            "Insufficient privileges to complete the operation.",
        )

        emu.graph("PATCH", "groups/dyn", json={"membershipRuleProcessingState": "Paused"})
        emu.graph("PATCH", "users/u04", json={"department": "HR"})
        assert "u04" not in members()  # paused: frozen
        emu.graph("PATCH", "groups/dyn", json={"membershipRuleProcessingState": "On"})
        assert "u04" in members()

        emu.graph("PATCH", "groups/dyn", json={"membershipRule": 'user.department -eq "IT"'})
        assert members() == {"u00", "u01", "u06", "u08"}  # synced and cloud-only users alike
        bad = emu.graph("PATCH", "groups/dyn", json={"membershipRule": "user.city -match 'x'"})
        assert _error(bad)[0] == 400


def test_dynamic_groups_with_the_real_rule_language(tmp_path: Path) -> None:
    pytest.importorskip("writeback.core.rules")
    tenant = _tenant()
    tenant["groups"].append(
        {
            "id": "dyn",
            "displayName": "HR or Sales",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": ["DynamicMembership"],
            "membershipRule": '(user.department -eq "HR") -or (user.department -eq "Sales")',
            "membershipRuleProcessingState": "On",
        }
    )
    with run_emulator(tenant, tmp_path) as emu:  # default evaluator: writeback.core.rules
        assert set(emu.tenant.visible_members("dyn")) == {"u01", "u03", "u05", "u07", "u09"}
        emu.graph("PATCH", "users/u02", json={"department": "Sales"})
        assert "u02" in emu.tenant.visible_members("dyn")
        bad = emu.graph("PATCH", "groups/dyn", json={"membershipRule": 'user.department -eq "HR" -and'})
        assert _error(bad)[:2] == (400, "Request_BadRequest")
