"""`GET /groups/{id}?$expand=members` over plain HTTP, as Graph documents it: at most 20 members, typed, no
nextLink; `$select` nested inside the expansion; Graph's 400s for what it refuses (issue 28)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from writeback.testbed.emulator.odata import EXPANDED_MAX
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator


def _tenant() -> dict[str, Any]:
    tenant = small_tenant(users=50, groups=3)  # g0 holds u00..u24: more than an expansion returns
    tenant["groups"].append(
        {
            "id": "mixed",
            "displayName": "Mixed",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "members": ["u01", "g2", "d1"],
        }
    )
    tenant["devices"] = [{"id": "d1", "displayName": "laptop-1", "operatingSystem": "Windows"}]
    return tenant


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with run_emulator(_tenant(), tmp_path_factory.mktemp("emu")) as handle:
        yield handle


def _get(emu: EmulatorHandle, path: str, **params: str) -> dict[str, Any]:
    response = emu.graph("GET", path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(emu: EmulatorHandle, path: str, **params: str) -> dict[str, Any]:
    response = emu.graph("GET", path, params=params)
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_expand_members_returns_at_most_20_typed_members_and_no_next_link(emu: EmulatorHandle) -> None:
    body = _get(emu, "groups/g0", **{"$expand": "members"})
    assert body["@odata.context"].endswith("/v1.0/$metadata#groups(members())/$entity")
    assert body["id"] == "g0" and body["displayName"] == "Group 0"  # the group's default properties too
    members = body["members"]
    assert EXPANDED_MAX == 20 and len(members) == 20
    assert {m["id"] for m in members} < {f"u{i:02d}" for i in range(25)}
    assert all(m["@odata.type"] == "#microsoft.graph.user" for m in members)
    assert "userPrincipalName" in members[0]  # a user's default properties
    assert not any(k.startswith("members@") for k in body)  # no nextLink: the rest is read from /members
    everyone = _get(emu, "groups/g0/members", **{"$top": "999"})["value"]
    assert len(everyone) == 25


def test_expand_members_types_each_member(emu: EmulatorHandle) -> None:
    members = _get(emu, "groups/mixed", **{"$expand": "members"})["members"]
    assert {m["id"]: m["@odata.type"] for m in members} == {
        "u01": "#microsoft.graph.user",
        "g2": "#microsoft.graph.group",
        "d1": "#microsoft.graph.device",
    }


def test_select_inside_expand_and_on_the_group(emu: EmulatorHandle) -> None:
    body = _get(
        emu, "groups/mixed", **{"$select": "id,displayName", "$expand": "members($select=id,displayName)"}
    )
    assert body["@odata.context"].endswith("#groups(id,displayName,members(id,displayName))/$entity")
    assert set(body) == {"@odata.context", "id", "displayName", "members"}
    assert {m["id"]: set(m) for m in body["members"]} == {
        "u01": {"@odata.type", "id", "displayName"},
        "g2": {"@odata.type", "id", "displayName"},
        "d1": {"@odata.type", "id", "displayName"},
    }
    # A property only some member types declare is left out where the type lacks it, as Graph does.
    upn = _get(emu, "groups/mixed", **{"$expand": "members($select=userPrincipalName)"})["members"]
    assert [m for m in upn if "userPrincipalName" in m] == [
        {"@odata.type": "#microsoft.graph.user", "userPrincipalName": "user01@corp.example.test"}
    ]


@pytest.mark.parametrize(
    ("expand", "code", "message"),
    [
        (
            "members,owners",
            "BadRequest",
            "The result of parsing $expand contained at least 2 items, but the maximum allowed is 1.",
        ),
        (
            "memebers",
            "Request_BadRequest",
            "Parsing OData Select and Expand failed: Could not find a property named 'memebers' on type "
            "'microsoft.graph.group'.",
        ),
        (
            "displayName",
            "Request_BadRequest",
            "Parsing OData Select and Expand failed: Property 'displayName' on type 'microsoft.graph.group' is "
            "not a navigation property or complex property. Only navigation properties can be expanded.",
        ),
        ("members($top=5)", "Request_UnsupportedQuery", "only $select is"),
        ("members($select=id;$filter=id eq 'u01')", "Request_UnsupportedQuery", "only $select is"),
        ("owners", "Request_UnsupportedQuery", "only members is"),
        (
            "members($select=nope)",
            "Request_BadRequest",
            "Could not find a property named 'nope' on type 'microsoft.graph.directoryObject'.",
        ),
    ],
)
def test_what_graph_refuses_is_a_400_in_graphs_shape(
    emu: EmulatorHandle, expand: str, code: str, message: str
) -> None:
    error = _error(emu, "groups/g0", **{"$expand": expand})
    assert error["code"] == code
    assert message in error["message"]


def test_expand_is_for_a_group_object_only(emu: EmulatorHandle) -> None:
    for path in ("users/u01", "groups"):
        error = _error(emu, path, **{"$expand": "members"})
        assert (
            error["code"] == "Request_UnsupportedQuery" and "'$expand' is not supported" in error["message"]
        )


def test_expand_of_a_missing_group_is_graphs_404(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "groups/5f0c7e7a-0000-4000-8000-00000000dead", params={"$expand": "members"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "Request_ResourceNotFound"
