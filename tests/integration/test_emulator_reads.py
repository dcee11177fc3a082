"""Collection and object reads: paging, $select, $filter, members with @odata.type, errors in Graph's shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator


def _tenant() -> dict[str, Any]:
    tenant = small_tenant(users=25, groups=3)
    tenant["groups"] += [
        {
            "id": f"s{i:03d}",
            "displayName": f"Sales {i:03d}" if i % 2 else f"Ops {i:03d}",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "members": [],
        }
        for i in range(150)
    ]
    tenant["groups"].append(
        {
            "id": "m365",
            "displayName": "Team Site",
            "mailEnabled": True,
            "securityEnabled": False,
            "groupTypes": ["Unified"],
            "writebackConfiguration": {
                "isEnabled": True,
                "onPremisesGroupType": "universalDistributionGroup",
            },
            "members": ["u01", "d1", "sp1", "c1"],
        }
    )
    tenant["devices"] = [{"id": "d1", "displayName": "laptop-1", "operatingSystem": "Windows"}]
    tenant["servicePrincipals"] = [{"id": "sp1", "displayName": "Some app"}]
    tenant["orgContacts"] = [{"id": "c1", "displayName": "External person"}]
    return tenant


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    # Read-only tests share one emulator.
    with run_emulator(_tenant(), tmp_path_factory.mktemp("emu")) as handle:
        yield handle


def _walk(emu: EmulatorHandle, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    pages = []
    response = emu.graph("GET", path, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        if "@odata.nextLink" not in body:
            return pages
        response = emu.graph("GET", body["@odata.nextLink"])


def test_users_page_with_top_and_next_links(emu: EmulatorHandle) -> None:
    pages = _walk(emu, "users", {"$top": "7", "$select": "id,displayName"})
    ids = [u["id"] for page in pages for u in page["value"]]
    assert len(pages) == 4
    assert [len(p["value"]) for p in pages] == [7, 7, 7, 4]
    assert sorted(ids) == [f"u{i:02d}" for i in range(25)]
    assert "$skiptoken=" in pages[0]["@odata.nextLink"]
    assert pages[0]["@odata.context"].endswith("/v1.0/$metadata#users(id,displayName)")


def test_groups_default_page_size_is_100(emu: EmulatorHandle) -> None:
    pages = _walk(emu, "groups")
    assert [len(p["value"]) for p in pages] == [100, 54]


@pytest.mark.parametrize("top", ["1000", "0", "abc"])
def test_top_out_of_range_is_400(emu: EmulatorHandle, top: str) -> None:
    response = emu.graph("GET", "users", params={"$top": top})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_BadRequest"


def test_top_999_is_accepted(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "groups", params={"$top": "999"})
    assert response.status_code == 200
    assert len(response.json()["value"]) == 154


def test_tampered_skiptoken_is_refused(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "users", params={"$top": "2", "$skiptoken": "AAAA" + "x" * 20})
    assert response.status_code == 400


def test_default_user_properties_and_select(emu: EmulatorHandle) -> None:
    default = emu.graph("GET", "users/u03").json()
    assert default["userPrincipalName"] == "user03@corp.example.test"
    assert "department" not in default and "onPremisesSecurityIdentifier" not in default
    assert default["businessPhones"] == []
    selected = emu.graph(
        "GET", "users/u03", params={"$select": "department,onPremisesSecurityIdentifier,employeeId"}
    ).json()
    assert "id" not in selected  # $select returns exactly what was selected; Graph adds no id
    assert selected["department"] == "HR"
    assert selected["onPremisesSecurityIdentifier"] == "S-1-5-21-1-2-3-1103"
    assert selected["employeeId"] is None  # selected but unset: null, like Graph
    assert "displayName" not in selected
    assert selected["@odata.context"].endswith(
        "#users(department,onPremisesSecurityIdentifier,employeeId)/$entity"
    )


def test_user_by_principal_name(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "users/user05@corp.example.test")
    assert response.status_code == 200 and response.json()["id"] == "u05"


MISSING = "5f0c7e7a-0000-4000-8000-00000000dead"


def test_missing_object_is_graph_404(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", f"groups/{MISSING}", headers={"client-request-id": "my-correlation"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "Request_ResourceNotFound"
    assert f"'{MISSING}'" in error["message"]
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
    # Graph's headers on an error too, and the innerError names the same request.
    assert response.headers["request-id"] == error["innerError"]["request-id"]
    assert response.headers["client-request-id"] == "my-correlation"
    assert error["innerError"]["client-request-id"] == "my-correlation"


@pytest.mark.parametrize(
    "path",
    [
        "groups/nope",
        "users/nope",  # not a UPN either
        "groups/nope/members",
        "directoryObjects/nope",
        "directory/deletedItems/nope",
    ],
)
def test_malformed_object_id_is_400_invalid_object_identifier(emu: EmulatorHandle, path: str) -> None:
    response = emu.graph("GET", path)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "Request_BadRequest"
    assert error["message"] == "Invalid object identifier 'nope'."


def test_request_ids_on_success_and_token_responses(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "groups", params={"$top": "1"}, headers={"client-request-id": "abc"})
    assert response.headers["client-request-id"] == "abc"
    assert len(response.headers["request-id"]) == 36


def test_unknown_segment_is_400(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "groups/g0/owners")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_BadRequest"


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("id eq 'u04'", {"u04"}),
        ("id in ('u04','u05','nobody')", {"u04", "u05"}),
        ("startsWith(displayName,'user 1')", {f"u{i}" for i in range(10, 20)}),
        ("department eq 'HR' and startswith(userPrincipalName,'user0')", {"u01", "u03", "u05", "u07", "u09"}),
        ("onPremisesSyncEnabled eq true and id in ('u00','u01','u03')", {"u00", "u03"}),
    ],
)
def test_user_filters(emu: EmulatorHandle, flt: str, expected: set[str]) -> None:
    response = emu.graph("GET", "users", params={"$filter": flt, "$select": "id"})
    assert response.status_code == 200, response.text
    assert {u["id"] for u in response.json()["value"]} == expected


def test_group_filters(emu: EmulatorHandle) -> None:
    unified = emu.graph("GET", "groups", params={"$filter": "groupTypes/any(c:c eq 'Unified')"}).json()
    assert [g["id"] for g in unified["value"]] == ["m365"]
    security = emu.graph(
        "GET",
        "groups",
        params={"$filter": "securityEnabled eq true and startsWith(displayName,'Sales')", "$top": "999"},
    ).json()
    assert len(security["value"]) == 75
    assert all(g["displayName"].startswith("Sales") for g in security["value"])


@pytest.mark.parametrize(
    "flt",
    [
        "contains(displayName,'x')",
        "displayName ne 'x'",
        "not (id eq 'u01')",
        "id eq",
        "endsWith(mail,'.test')",
    ],
)
def test_unsupported_filters_are_400(emu: EmulatorHandle, flt: str) -> None:
    response = emu.graph("GET", "users", params={"$filter": flt})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_advanced_query_with_consistency_level(emu: EmulatorHandle) -> None:
    response = emu.graph(
        "GET",
        "users",
        params={"$filter": "endsWith(userPrincipalName,'7@corp.example.test')", "$count": "true"},
        headers={"ConsistencyLevel": "eventual"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {u["id"] for u in body["value"]} == {"u07", "u17"}
    assert body["@odata.count"] == 2


def test_writeback_configuration_only_in_beta(emu: EmulatorHandle) -> None:
    beta = emu.graph("GET", "/beta/groups/m365").json()
    assert beta["writebackConfiguration"] == {
        "isEnabled": True,
        "onPremisesGroupType": "universalDistributionGroup",
    }
    beta_plain = emu.graph("GET", "/beta/groups/g0").json()
    assert beta_plain["writebackConfiguration"] == {"isEnabled": None, "onPremisesGroupType": None}
    v1 = emu.graph("GET", "groups/m365").json()
    assert "writebackConfiguration" not in v1
    v1_listed = emu.graph("GET", "groups", params={"$filter": "id eq 'm365'"}).json()["value"][0]
    assert "writebackConfiguration" not in v1_listed
    refused = emu.graph("GET", "groups", params={"$select": "id,writebackConfiguration"})
    assert refused.status_code == 400


def test_members_carry_odata_type(emu: EmulatorHandle) -> None:
    members = emu.graph("GET", "groups/m365/members").json()["value"]
    types = {m["id"]: m["@odata.type"] for m in members}
    assert types == {
        "u01": "#microsoft.graph.user",
        "d1": "#microsoft.graph.device",
        "sp1": "#microsoft.graph.servicePrincipal",
        "c1": "#microsoft.graph.orgContact",
    }
    users_only = emu.graph("GET", "groups/m365/members/microsoft.graph.user").json()["value"]
    assert [m["id"] for m in users_only] == ["u01"]


def test_members_paging_and_select(emu: EmulatorHandle) -> None:
    pages = _walk(emu, "groups/g0/members", {"$top": "5", "$select": "id,userPrincipalName"})
    members = [m for p in pages for m in p["value"]]
    assert len(pages) == 3
    assert sorted(m["id"] for m in members) == [f"u{i:02d}" for i in range(12)]
    assert set(members[0]) == {"@odata.type", "id", "userPrincipalName"}


def test_transitive_members_follow_nesting(emu: EmulatorHandle) -> None:
    direct = {m["id"] for m in emu.graph("GET", "groups/g1/members").json()["value"]}
    transitive = {m["id"] for m in emu.graph("GET", "groups/g1/transitiveMembers").json()["value"]}
    assert direct == {"g2", "u23", "u24"}
    assert transitive == {"g2", "u23", "u24", "u00"}
    users = emu.graph("GET", "groups/g1/transitiveMembers/microsoft.graph.user").json()["value"]
    assert {m["id"] for m in users} == {"u23", "u24", "u00"}


def test_member_of_and_directory_objects(emu: EmulatorHandle) -> None:
    groups = emu.graph("GET", "users/u00/memberOf").json()["value"]
    assert {g["id"] for g in groups} == {"g0", "g2"}
    obj = emu.graph("GET", "directoryObjects/d1").json()
    assert obj["@odata.type"] == "#microsoft.graph.device" and obj["operatingSystem"] == "Windows"


def test_wrong_method_is_405(emu: EmulatorHandle) -> None:
    assert emu.graph("PUT", "groups/g0").status_code == 405


def test_filtered_collection_pages_keep_the_filter(emu: EmulatorHandle) -> None:
    pages = _walk(emu, "groups", {"$filter": "startsWith(displayName,'Sales')", "$top": "20"})
    names = [g["displayName"] for p in pages for g in p["value"]]
    assert [len(p["value"]) for p in pages] == [20, 20, 20, 15]
    assert all(n.startswith("Sales") for n in names) and len(set(names)) == 75
    assert "$filter=" in pages[0]["@odata.nextLink"]


def test_select_of_an_unknown_property_is_400_with_graphs_message(emu: EmulatorHandle) -> None:
    for path in ("users", "users/u03", "groups/g0/members"):
        response = emu.graph("GET", path, params={"$select": "displayName,shoeSize"})
        assert response.status_code == 400
        assert "Could not find a property named 'shoeSize'" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("resource", "flt"),
    [("users", "shoeSize eq 'x'"), ("users", "onPremisesDomainName eq 'corp'"), ("groups", "theme eq 'x'")],
)
def test_filter_on_unknown_or_non_filterable_property_is_unsupported_query(
    emu: EmulatorHandle, resource: str, flt: str
) -> None:
    response = emu.graph("GET", resource, params={"$filter": flt})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_list_select_has_no_implicit_id(emu: EmulatorHandle) -> None:
    body = emu.graph("GET", "users", params={"$select": "displayName", "$top": "3"}).json()
    assert [set(u) for u in body["value"]] == [{"displayName"}] * 3


def test_orderby_display_name_and_advanced_rules(emu: EmulatorHandle) -> None:
    pages = _walk(emu, "users", {"$orderby": "displayName desc", "$top": "10", "$select": "displayName"})
    names = [u["displayName"] for page in pages for u in page["value"]]
    assert names == sorted((f"User {i:02d}" for i in range(25)), reverse=True)
    refused = emu.graph("GET", "users", params={"$orderby": "department"})
    assert refused.json()["error"]["code"] == "Request_UnsupportedQuery"
    advanced = emu.graph(
        "GET",
        "users",
        params={"$orderby": "department", "$count": "true", "$select": "department"},
        headers={"ConsistencyLevel": "eventual"},
    )
    assert advanced.status_code == 200
    departments = [u["department"] for u in advanced.json()["value"]]
    assert departments == sorted(departments)


def test_count_segments_need_eventual_consistency(emu: EmulatorHandle) -> None:
    eventual = {"ConsistencyLevel": "eventual"}
    assert emu.graph("GET", "users/$count").status_code == 400
    count = emu.graph("GET", "users/$count", headers=eventual)
    assert (count.status_code, count.text, count.headers["content-type"].split(";")[0]) == (
        200,
        "25",
        "text/plain",
    )
    filtered = emu.graph(
        "GET", "groups/$count", params={"$filter": "startsWith(displayName,'Ops')"}, headers=eventual
    )
    assert filtered.text == "75"
    assert emu.graph("GET", "groups/m365/members/$count", headers=eventual).text == "4"
    assert emu.graph("GET", "groups/m365/members/graph.user/$count", headers=eventual).text == "1"


def test_graph_alias_casts_and_member_refs(emu: EmulatorHandle) -> None:
    users = emu.graph("GET", "groups/m365/members/graph.user").json()["value"]
    assert [u["id"] for u in users] == ["u01"]
    refs = emu.graph("GET", "groups/m365/members/$ref")
    assert refs.status_code == 200
    assert sorted(r["@odata.id"].rsplit("/", 1)[1] for r in refs.json()["value"]) == [
        "c1",
        "d1",
        "sp1",
        "u01",
    ]
    assert all(set(r) == {"@odata.id"} for r in refs.json()["value"])


def test_group_get_carries_graphs_default_property_set(emu: EmulatorHandle) -> None:
    group = emu.graph("GET", "groups/s001").json()
    assert group["displayName"] == "Sales 001" and group["groupTypes"] == []
    for name in ("mail", "membershipRule", "onPremisesSyncEnabled", "securityIdentifier", "visibility"):
        assert name in group and group[name] is None
    assert "allowExternalSenders" not in group  # returned only on $select
    assert "members" not in group
