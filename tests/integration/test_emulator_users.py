"""Users as issue 24 needs them from Graph: beta onPremisesSyncBehavior (User SOA), userType and accountEnabled,
soft- and hard-deleted users in deletedItems, and their ``@removed`` in ``/users/delta``.

Sources: https://learn.microsoft.com/graph/api/resources/onpremisessyncbehavior?view=graph-rest-beta (users,
groups and orgContacts; beta only), the get and update pages of that resource (permission
User-OnPremisesSyncBehavior.ReadWrite.All, PATCH answers 204), entra-docs how-to-user-source-of-authority-configure
("Status of attributes after you convert SOA"), https://learn.microsoft.com/graph/api/resources/user (userType,
accountEnabled "Returned only on $select"), https://learn.microsoft.com/graph/api/directory-deleteditems-list and
https://learn.microsoft.com/graph/api/user-delta (``@removed`` reasons ``changed`` and ``deleted``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator

SID = "S-1-5-21-1-2-3-4101"
SYNCED = "c1a5e0b2-0000-4000-8000-000000000101"  # a user synced from AD
GUEST = "c1a5e0b2-0000-4000-8000-000000000102"
MISSING = "5f0c7e7a-0000-4000-8000-00000000dead"
NEW_USER = {
    "accountEnabled": True,
    "displayName": "Cloud Only",
    "mailNickname": "cloudonly",
    "userPrincipalName": "cloud.only@corp.example.test",
    "passwordProfile": {"password": "Very-Secret-Passw0rd"},
}


def _tenant(roles: list[str] | None = None) -> dict[str, Any]:
    tenant = small_tenant(users=4, groups=1)
    tenant["users"] += [
        {
            "id": SYNCED,
            "displayName": "Nora Kok",
            "userPrincipalName": "nora.kok@corp.example.test",
            "accountEnabled": True,
            "userType": "Member",
            "onPremisesSyncEnabled": True,
            "onPremisesSecurityIdentifier": SID,
            "onPremisesSamAccountName": "nora.kok",
            "onPremisesImmutableId": "nofCJe0gZk6D8J4gRgrt+A==",
        },
        {
            "id": GUEST,
            "displayName": "Pat Partner (Fabrikam)",
            "userPrincipalName": "pat_fabrikam.test#EXT#@corp.example.test",
            "mail": "pat@fabrikam.test",
            "accountEnabled": True,
            "userType": "Guest",
        },
    ]
    tenant["groups"][0]["members"] += [SYNCED, GUEST]
    if roles is not None:
        tenant["apps"][0]["roles"] = roles
    return tenant


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(_tenant(), tmp_path) as handle:
        yield handle


def behavior(
    emu: EmulatorHandle, user: str = SYNCED, method: str = "GET", json: Any = None, version: str = "beta"
) -> Any:
    return emu.graph(method, f"/{version}/users/{user}/onPremisesSyncBehavior", json=json)


def _select(emu: EmulatorHandle, user: str, names: str, version: str = "v1.0") -> dict[str, Any]:
    response = emu.graph("GET", f"/{version}/users/{user}", params={"$select": names})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# --- onPremisesSyncBehavior of users (beta) -------------------------------------------------------------


def test_a_synced_user_is_converted_to_cloud_source_of_authority_and_rolled_back(emu: EmulatorHandle) -> None:
    before = behavior(emu)
    assert before.status_code == 200
    assert before.json()["isCloudManaged"] is False and before.json()["id"] == SYNCED
    assert before.json()["@odata.context"].endswith(
        f"/beta/$metadata#users('{SYNCED}')/onPremisesSyncBehavior/$entity"
    )
    # Still mastered on-premises: Graph refuses cloud writes and deletes.
    assert _error(emu.graph("PATCH", f"users/{SYNCED}", json={"jobTitle": "x"})) == (
        400,
        "Request_BadRequest",
    )
    assert _error(emu.graph("DELETE", f"users/{SYNCED}")) == (400, "Request_BadRequest")

    assert behavior(emu, method="PATCH", json={"isCloudManaged": True}).status_code == 204
    assert behavior(emu).json()["isCloudManaged"] is True
    # "Status of attributes after you convert SOA": isCloudManaged true, onPremisesSyncEnabled null; the user
    # keeps its on-premises identifiers (the SID is what ties it to its original AD account).
    converted = _select(
        emu, SYNCED, "onPremisesSyncEnabled,onPremisesSecurityIdentifier,onPremisesSamAccountName"
    )
    assert converted["onPremisesSyncEnabled"] is None
    assert (
        converted["onPremisesSecurityIdentifier"] == SID
        and converted["onPremisesSamAccountName"] == "nora.kok"
    )
    assert "onPremisesSyncBehavior" not in emu.graph("GET", f"/beta/users/{SYNCED}").json()  # a relationship
    assert (
        emu.graph("PATCH", f"users/{SYNCED}", json={"jobTitle": "Treasurer"}).status_code == 204
    )  # cloud's now

    assert behavior(emu, method="PATCH", json={"isCloudManaged": False}).status_code == 204
    assert behavior(emu).json()["isCloudManaged"] is False
    assert (
        _select(emu, SYNCED, "onPremisesSyncEnabled")["onPremisesSyncEnabled"] is None
    )  # until a sync client


def test_the_behaviour_is_read_per_user_as_the_group_one_is(emu: EmulatorHandle) -> None:
    """The Graph adapter reads groups' isCloudManaged with one GET of /beta/groups/{id}/onPremisesSyncBehavior;
    users' is read the same way, by id or userPrincipalName, and with the $select of Microsoft's how-to."""
    emu.graph("PATCH", f"/beta/users/{SYNCED}/onPremisesSyncBehavior", json={"isCloudManaged": True})
    by_upn = behavior(emu, "nora.kok@corp.example.test")
    assert by_upn.status_code == 200 and by_upn.json()["isCloudManaged"] is True
    selected = emu.graph(
        "GET", f"/beta/users/{SYNCED}/onPremisesSyncBehavior", params={"$select": "isCloudManaged"}
    ).json()
    assert {k: v for k, v in selected.items() if not k.startswith("@")} == {"isCloudManaged": True}
    both = emu.graph(
        "GET", f"/beta/users/{SYNCED}/onPremisesSyncBehavior", params={"$select": "id,isCloudManaged"}
    )
    assert both.json()["id"] == SYNCED
    # A cloud-only user never converted, and a guest: false (the state of a cloud-native object).
    assert behavior(emu, "u01").json()["isCloudManaged"] is False
    assert behavior(emu, GUEST).json()["isCloudManaged"] is False


def test_v1_and_malformed_requests_are_refused_as_graph_does(emu: EmulatorHandle) -> None:
    # v1.0 has no onPremisesSyncBehavior segment.
    for method, body in (("GET", None), ("PATCH", {"isCloudManaged": True})):
        refused = behavior(emu, method=method, json=body, version="v1.0")
        assert _error(refused) == (400, "Request_BadRequest")
        assert "onPremisesSyncBehavior" in refused.json()["error"]["message"]
    assert behavior(emu).json()["isCloudManaged"] is False  # the refused v1.0 PATCH changed nothing
    assert behavior(emu, method="PATCH", json={"isCloudManaged": "true"}).status_code == 400
    assert behavior(emu, method="PATCH", json={}).status_code == 400
    assert behavior(emu, method="PATCH", json={"isCloudManaged": True, "other": 1}).status_code == 400
    assert behavior(emu, method="PATCH", json={"isCloudManaged": True, "id": SYNCED}).status_code == 400
    assert _select(emu, SYNCED, "onPremisesSyncEnabled")["onPremisesSyncEnabled"] is True  # none applied
    # The update page's own example carries the type annotation: accepted.
    typed = {"@odata.type": "#microsoft.graph.onPremisesSyncBehavior", "isCloudManaged": True}
    assert behavior(emu, method="PATCH", json=typed).status_code == 204
    wrong_type = {"@odata.type": "#microsoft.graph.user", "isCloudManaged": True}
    assert behavior(emu, method="PATCH", json=wrong_type).status_code == 400
    assert _error(behavior(emu, MISSING)) == (404, "Request_ResourceNotFound")
    assert _error(behavior(emu, "not-a-guid")) == (400, "Request_BadRequest")
    unknown = emu.graph("GET", f"/beta/users/{SYNCED}/onPremisesSyncBehavior", params={"$select": "nope"})
    assert unknown.status_code == 400
    expand = emu.graph("GET", f"/beta/users/{SYNCED}/onPremisesSyncBehavior", params={"$expand": "x"})
    assert _error(expand) == (400, "Request_UnsupportedQuery")
    # Not a property of the user: $select of it is Graph's unknown-property 400.
    assert (
        emu.graph("GET", f"/beta/users/{SYNCED}", params={"$select": "onPremisesSyncBehavior"}).status_code
        == 400
    )
    # A soft-deleted user has no live behaviour to read.
    emu.graph("DELETE", "users/u01")
    assert _error(behavior(emu, "u01")) == (404, "Request_ResourceNotFound")


def test_each_resource_needs_its_own_permission(tmp_path: Path) -> None:
    groups_only = ["User.ReadWrite.All", "Group.ReadWrite.All", "Group-OnPremisesSyncBehavior.ReadWrite.All"]
    with run_emulator(_tenant(groups_only), tmp_path / "groups") as emu:
        denied = behavior(emu)
        assert _error(denied) == (403, "Authorization_RequestDenied")
        assert _error(behavior(emu, method="PATCH", json={"isCloudManaged": True})) == (
            403,
            "Authorization_RequestDenied",
        )
        assert emu.graph("GET", "/beta/groups/g0/onPremisesSyncBehavior").status_code == 200
    users_only = ["User.ReadWrite.All", "Group.ReadWrite.All", "User-OnPremisesSyncBehavior.ReadWrite.All"]
    with run_emulator(_tenant(users_only), tmp_path / "users") as emu:
        assert behavior(emu).status_code == 200
        assert _error(emu.graph("GET", "/beta/groups/g0/onPremisesSyncBehavior")) == (
            403,
            "Authorization_RequestDenied",
        )


def test_the_conversion_is_a_user_change_in_delta_and_the_behaviour_alone_is_not(emu: EmulatorHandle) -> None:
    first = emu.graph("GET", "users/delta", params={"$select": "displayName,onPremisesSyncEnabled"}).json()
    while "@odata.nextLink" in first:
        first = emu.graph("GET", first["@odata.nextLink"]).json()
    behavior(emu, method="PATCH", json={"isCloudManaged": True})
    second = emu.graph("GET", first["@odata.deltaLink"]).json()
    assert [(u["id"], u.get("onPremisesSyncEnabled", "absent")) for u in second["value"]] == [(SYNCED, None)]
    behavior(emu, method="PATCH", json={"isCloudManaged": False})  # a rollback changes no user property
    assert emu.graph("GET", second["@odata.deltaLink"]).json()["value"] == []


# --- userType and accountEnabled ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1.0", "beta"])
def test_user_type_and_account_enabled_are_returned_only_on_select(emu: EmulatorHandle, version: str) -> None:
    default = emu.graph("GET", f"/{version}/users/{GUEST}").json()
    assert "userType" not in default and "accountEnabled" not in default
    assert "onPremisesSecurityIdentifier" not in emu.graph("GET", f"/{version}/users/{SYNCED}").json()
    assert default["userPrincipalName"] == "pat_fabrikam.test#EXT#@corp.example.test"
    guest = _select(emu, GUEST, "userType,accountEnabled", version)
    assert (guest["userType"], guest["accountEnabled"]) == ("Guest", True)


def test_user_type_filters_and_a_new_user_is_a_member(emu: EmulatorHandle) -> None:
    guests = emu.graph("GET", "users", params={"$filter": "userType eq 'Guest'", "$select": "id"}).json()
    assert [u["id"] for u in guests["value"]] == [GUEST]
    created = emu.graph("POST", "users", json=NEW_USER)
    assert created.status_code == 201
    assert _select(emu, created.json()["id"], "userType")["userType"] == "Member"
    assert (
        emu.graph(
            "POST", "users", json={**NEW_USER, "userType": "Admin", "userPrincipalName": "a@x.test"}
        ).status_code
        == 400
    )
    assert (
        emu.graph(
            "POST", "users", json={**NEW_USER, "accountEnabled": "yes", "userPrincipalName": "b@x.test"}
        ).status_code
        == 400
    )
    assert emu.graph("PATCH", "users/u01", json={"accountEnabled": "false"}).status_code == 400
    assert emu.graph("PATCH", "users/u01", json={"userType": "guest user"}).status_code == 400
    assert emu.graph("PATCH", "users/u01", json={"accountEnabled": False}).status_code == 204
    assert _select(emu, "u01", "accountEnabled")["accountEnabled"] is False


# --- deleted users ---------------------------------------------------------------------------------------


def _walk(emu: EmulatorHandle, url: str, **params: str) -> tuple[list[dict[str, Any]], str]:
    entries: list[dict[str, Any]] = []
    body = emu.graph("GET", url, params=params or None).json()
    while True:
        entries += body["value"]
        if "@odata.deltaLink" in body:
            return entries, body["@odata.deltaLink"]
        body = emu.graph("GET", body["@odata.nextLink"]).json()


def test_soft_and_hard_deleted_users_in_deleted_items_and_user_delta(emu: EmulatorHandle) -> None:
    _entries, link = _walk(emu, "users/delta", **{"$select": "displayName,userType,accountEnabled"})
    assert emu.graph("DELETE", f"users/{GUEST}").status_code == 204
    assert emu.graph("GET", f"users/{GUEST}").status_code == 404

    listed = emu.graph(
        "GET",
        "directory/deletedItems/microsoft.graph.user",
        params={"$select": "id,userType,deletedDateTime"},
    ).json()
    assert listed["value"] == [
        {
            "@odata.type": "#microsoft.graph.user",
            "id": GUEST,
            "userType": "Guest",
            "deletedDateTime": listed["value"][0]["deletedDateTime"],
        }
    ]
    assert listed["value"][0]["deletedDateTime"]
    assert emu.graph("GET", "directory/deletedItems/microsoft.graph.group").json()["value"] == []
    count = emu.graph(
        "GET", "directory/deletedItems/microsoft.graph.user/$count", headers={"ConsistencyLevel": "eventual"}
    )
    assert (count.status_code, count.text) == (200, "1")
    got = emu.graph("GET", f"directory/deletedItems/{GUEST}").json()
    assert got["@odata.type"] == "#microsoft.graph.user" and got["displayName"] == "Pat Partner (Fabrikam)"
    # Soft-deleted: in delta as removed for now ("changed": restorable), hidden from the group's members.
    entries, link = _walk(emu, link)
    assert entries == [{"id": GUEST, "@removed": {"reason": "changed"}}]
    assert GUEST not in {m["id"] for m in emu.graph("GET", "groups/g0/members").json()["value"]}

    restored = emu.graph("POST", f"directory/deletedItems/{GUEST}/restore")
    assert restored.status_code == 200 and restored.json()["@odata.type"] == "#microsoft.graph.user"
    assert emu.graph("GET", "directory/deletedItems/microsoft.graph.user").json()["value"] == []
    assert GUEST in {m["id"] for m in emu.graph("GET", "groups/g0/members").json()["value"]}
    entries, link = _walk(emu, link)
    assert [(e["id"], e.get("userType"), e.get("accountEnabled")) for e in entries] == [
        (GUEST, "Guest", True)
    ]

    # Hard delete: from deleted items only ("Permanently delete an item": DELETE /directory/deletedItems/{id}).
    assert emu.graph("DELETE", f"directory/deletedItems/{GUEST}").status_code == 404  # live: not in the bin
    emu.graph("DELETE", f"users/{GUEST}")
    assert emu.graph("DELETE", f"directory/deletedItems/{GUEST}").status_code == 204
    assert emu.graph("GET", f"directory/deletedItems/{GUEST}").status_code == 404
    assert emu.graph("POST", f"directory/deletedItems/{GUEST}/restore").status_code == 404
    entries, _link = _walk(emu, link)
    assert entries == [{"id": GUEST, "@removed": {"reason": "deleted"}}]


def test_a_converted_user_may_be_deleted_in_the_cloud_and_keeps_its_sid_in_the_bin(
    emu: EmulatorHandle,
) -> None:
    behavior(emu, method="PATCH", json={"isCloudManaged": True})
    assert emu.graph("DELETE", f"users/{SYNCED}").status_code == 204
    binned = emu.graph(
        "GET",
        "directory/deletedItems/microsoft.graph.user",
        params={"$select": "id,onPremisesSecurityIdentifier,onPremisesSyncEnabled"},
    ).json()["value"]
    assert [(u["id"], u["onPremisesSecurityIdentifier"], u["onPremisesSyncEnabled"]) for u in binned] == [
        (SYNCED, SID, None)
    ]
    emu.graph("POST", f"directory/deletedItems/{SYNCED}/restore")
    assert behavior(emu).json()["isCloudManaged"] is True  # restored with its source of authority
