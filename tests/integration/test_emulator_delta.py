"""Delta queries over HTTPS: first rounds, incremental rounds through every kind of change, tokens, 410."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator

GROUP_SELECT = "displayName,description,securityEnabled,members"
REF = "https://graph.microsoft.com/v1.0/directoryObjects/{}"


@dataclass
class Round:
    """A walked delta round: raw pages plus a merged view (like a client's replica would build)."""

    pages: list[dict[str, Any]]
    delta_link: str
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    added_members: dict[str, set[str]] = field(default_factory=dict)
    removed_members: dict[str, set[str]] = field(default_factory=dict)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [item for page in self.pages for item in page["value"]]


def walk(emu: EmulatorHandle, url: str) -> Round:
    pages = []
    while True:
        response = emu.graph("GET", url)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            break
        url = body["@odata.nextLink"]
    result = Round(pages, body["@odata.deltaLink"])
    for item in result.entries:
        if "@removed" in item:
            result.removed[item["id"]] = item["@removed"]["reason"]
            continue
        result.objects.setdefault(item["id"], {}).update(
            {k: v for k, v in item.items() if k != "members@delta"}
        )
        for ref in item.get("members@delta", []):
            bucket = result.removed_members if "@removed" in ref else result.added_members
            bucket.setdefault(item["id"], set()).add(ref["id"])
    return result


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(small_tenant(users=10, groups=3), tmp_path) as handle:
        yield handle


def test_first_group_round_lists_everything_with_typed_members(emu: EmulatorHandle) -> None:
    first = walk(emu, f"groups/delta?$select={GROUP_SELECT}")
    assert set(first.objects) == {"g0", "g1", "g2"}
    assert first.added_members["g0"] == {"u00", "u01", "u02", "u03", "u04"}
    assert first.added_members["g1"] == {"g2", "u08", "u09"}
    g1 = next(e for e in first.entries if e["id"] == "g1")
    types = {ref["id"]: ref["@odata.type"] for ref in g1["members@delta"]}
    assert types["g2"] == "#microsoft.graph.group" and types["u08"] == "#microsoft.graph.user"
    assert set(g1) == {"id", "displayName", "description", "securityEnabled", "members@delta"}
    assert "$deltatoken=" in first.delta_link
    assert first.pages[0]["@odata.context"].endswith(
        "#groups(displayName,description,securityEnabled,members)"
    )


def test_group_rounds_through_creates_renames_members_and_deletes(emu: EmulatorHandle) -> None:
    first = walk(emu, f"groups/delta?$select={GROUP_SELECT}")
    # Nothing changed: an empty round with a new link.
    quiet = walk(emu, first.delta_link)
    assert quiet.entries == []

    created = emu.graph(
        "POST",
        "groups",
        json={
            "displayName": "New group",
            "mailNickname": "newgroup",
            "mailEnabled": False,
            "securityEnabled": True,
            "members@odata.bind": [REF.format("u05")],
        },
    ).json()
    assert emu.graph("PATCH", "groups/g0", json={"displayName": "Renamed"}).status_code == 204
    assert (
        emu.graph("POST", "groups/g2/members/$ref", json={"@odata.id": REF.format("u07")}).status_code == 204
    )
    assert emu.graph("DELETE", "groups/g1/members/u08/$ref").status_code == 204

    second = walk(emu, quiet.delta_link)
    assert set(second.objects) == {created["id"], "g0", "g1", "g2"}
    assert second.objects["g0"]["displayName"] == "Renamed"
    assert second.objects["g0"]["description"] == "test group 0"  # all selected properties, not just changes
    assert second.added_members == {created["id"]: {"u05"}, "g2": {"u07"}}
    assert second.removed_members == {"g1": {"u08"}}
    assert "g0" not in second.added_members  # a rename carries no member changes

    assert emu.graph("DELETE", "groups/g2").status_code == 204
    third = walk(emu, second.delta_link)
    assert third.removed == {"g2": "changed"}

    restored = emu.graph("POST", "directory/deletedItems/g2/restore")
    assert restored.status_code == 200
    fourth = walk(emu, third.delta_link)
    # A restored group comes back as new, with all its members; its parent sees it as a member again.
    assert fourth.objects["g2"]["displayName"] == "Group 2"
    assert fourth.added_members["g2"] == {"u00", "u07"}
    assert fourth.added_members["g1"] == {"g2"}

    assert emu.graph("DELETE", "groups/g2").status_code == 204
    assert emu.graph("DELETE", "directory/deletedItems/g2").status_code == 204
    fifth = walk(emu, fourth.delta_link)
    assert fifth.removed == {"g2": "deleted"}
    assert fifth.removed_members == {"g1": {"g2"}}


def test_user_rounds_through_creates_updates_and_deletes(emu: EmulatorHandle) -> None:
    first = walk(emu, "users/delta?$select=displayName,department,onPremisesSecurityIdentifier")
    assert len(first.objects) == 10
    assert first.objects["u03"]["onPremisesSecurityIdentifier"] == "S-1-5-21-1-2-3-1103"

    new = emu.graph(
        "POST",
        "users",
        json={
            "accountEnabled": True,
            "displayName": "Nina New",
            "mailNickname": "nina",
            "userPrincipalName": "nina@corp.example.test",
            "passwordProfile": {"password": "Xy-123456789!"},
        },
    ).json()
    emu.graph("PATCH", "users/u01", json={"department": "Finance"})
    emu.graph("DELETE", "users/u02")
    second = walk(emu, first.delta_link)
    assert second.objects[new["id"]]["displayName"] == "Nina New"
    assert second.objects["u01"]["department"] == "Finance"
    assert second.removed == {"u02": "changed"}
    assert set(second.objects) == {new["id"], "u01"}

    emu.graph("POST", "directory/deletedItems/u02/restore")
    third = walk(emu, second.delta_link)
    assert set(third.objects) == {"u02"} and third.removed == {}

    emu.graph("DELETE", "users/u02")
    emu.graph("DELETE", "directory/deletedItems/u02")
    fourth = walk(emu, third.delta_link)
    assert fourth.removed == {"u02": "deleted"}


def test_soft_deleted_member_stays_until_hard_delete(emu: EmulatorHandle) -> None:
    first = walk(emu, f"groups/delta?$select={GROUP_SELECT}")
    emu.graph("DELETE", "users/u01")
    second = walk(emu, first.delta_link)
    assert second.entries == []  # Graph: soft-deleted users keep their memberships
    emu.graph("DELETE", "directory/deletedItems/u01")
    third = walk(emu, second.delta_link)
    assert third.removed_members == {"g0": {"u01"}}


def test_membership_changes_do_not_show_without_members_selected(emu: EmulatorHandle) -> None:
    first = walk(emu, "groups/delta?$select=displayName")
    assert all("members@delta" not in e for e in first.entries)
    emu.graph("DELETE", "groups/g0/members/u00/$ref")
    assert walk(emu, first.delta_link).entries == []


def test_latest_token_returns_only_a_link(emu: EmulatorHandle) -> None:
    latest = emu.graph(
        "GET", "groups/delta", params={"$deltatoken": "latest", "$select": GROUP_SELECT}
    ).json()
    assert latest["value"] == []
    assert "@odata.nextLink" not in latest
    emu.graph("PATCH", "groups/g1", json={"description": "changed"})
    after = walk(emu, latest["@odata.deltaLink"])
    assert set(after.objects) == {"g1"}
    assert after.objects["g1"]["description"] == "changed"


@pytest.mark.parametrize("token", ["garbage", "A" * 60])
def test_bad_delta_token_is_sync_state_not_found(emu: EmulatorHandle, token: str) -> None:
    response = emu.graph("GET", "groups/delta", params={"$deltatoken": token})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "syncStateNotFound"


def test_token_of_another_resource_is_refused(emu: EmulatorHandle) -> None:
    users_link = walk(emu, "users/delta").delta_link
    token = users_link.split("$deltatoken=")[1]
    response = emu.graph("GET", "groups/delta", params={"$deltatoken": token})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "syncStateNotFound"


def test_forced_resync_answers_410_with_location(emu: EmulatorHandle) -> None:
    first = walk(emu, f"groups/delta?$select={GROUP_SELECT}")
    emu.force_resync()
    gone = emu.graph("GET", first.delta_link)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "resyncRequired"
    location = gone.headers["Location"]
    assert "/v1.0/groups/delta?" in location and "$deltatoken=" in location
    fresh = walk(emu, location)
    assert set(fresh.objects) == {"g0", "g1", "g2"}
    assert fresh.added_members["g0"] == {"u00", "u01", "u02", "u03", "u04"}  # the select list survived
    assert walk(emu, fresh.delta_link).entries == []


def test_forced_resync_also_stops_a_round_in_progress(emu: EmulatorHandle) -> None:
    emu.set_delta_settings(page_size=1)
    page = emu.graph("GET", "users/delta").json()
    emu.admin("faults", {"force_410": True})
    assert emu.graph("GET", page["@odata.nextLink"]).status_code == 410


def test_big_groups_are_split_across_pages_and_repeated(tmp_path: Path) -> None:
    tenant = small_tenant(users=60, groups=6)
    tenant["groups"][3]["members"] = [u["id"] for u in tenant["users"]]  # 60 members
    with run_emulator(tenant, tmp_path) as emu:
        emu.set_delta_settings(page_size=3, member_slice=10, page_members=25)
        first = walk(emu, f"groups/delta?$select={GROUP_SELECT}")
        assert first.added_members["g3"] == {u["id"] for u in tenant["users"]}
        g3_entries = [e for e in first.entries if e["id"] == "g3"]
        assert len(g3_entries) == 6  # 60 members in slices of 10, each repeating the group
        assert all(len(e["members@delta"]) <= 10 and e["displayName"] == "Group 3" for e in g3_entries)
        assert all(sum(len(e.get("members@delta", [])) for e in p["value"]) <= 25 for p in first.pages)
        order = [e["id"] for e in first.entries]
        first_g3, last_g3 = order.index("g3"), len(order) - 1 - order[::-1].index("g3")
        assert any(i != "g3" for i in order[first_g3:last_g3])  # interleaved: out of order
        assert len(first.pages) > 3

        # Incremental changes of a big group are split the same way.
        for user in tenant["users"][:30]:
            emu.graph("POST", "groups/g4/members/$ref", json={"@odata.id": REF.format(user["id"])})
        second = walk(emu, first.delta_link)
        assert second.added_members["g4"] == {u["id"] for u in tenant["users"][:30]}
        assert len([e for e in second.entries if e["id"] == "g4"]) == 3


def test_a_retried_page_is_answered_again(emu: EmulatorHandle) -> None:
    emu.set_delta_settings(page_size=2)
    first = emu.graph("GET", f"groups/delta?$select={GROUP_SELECT}").json()
    second = emu.graph("GET", first["@odata.nextLink"]).json()
    again = emu.graph("GET", first["@odata.nextLink"]).json()
    assert second == again
    assert [e["id"] for e in second["value"]] == ["g2"]


def test_beta_group_delta_carries_writeback_configuration(emu: EmulatorHandle) -> None:
    emu.graph(
        "PATCH",
        "/beta/groups/g1",
        json={"writebackConfiguration": {"isEnabled": True, "onPremisesGroupType": "universalSecurityGroup"}},
    )
    beta = walk(emu, "/beta/groups/delta?$select=displayName,writebackConfiguration,members")
    assert beta.objects["g1"]["writebackConfiguration"]["onPremisesGroupType"] == "universalSecurityGroup"
    assert "/beta/groups/delta?" in beta.delta_link
    refused = emu.graph("GET", "groups/delta", params={"$select": "displayName,writebackConfiguration"})
    assert refused.status_code == 400


def test_delta_filter_by_ids_only(emu: EmulatorHandle) -> None:
    first = walk(emu, f"groups/delta?$select={GROUP_SELECT}&$filter=id eq 'g0' or id eq 'g2'")
    assert set(first.objects) == {"g0", "g2"}
    emu.graph("PATCH", "groups/g1", json={"description": "x"})
    emu.graph("PATCH", "groups/g2", json={"description": "y"})
    assert set(walk(emu, first.delta_link).objects) == {"g2"}
    refused = emu.graph("GET", "groups/delta", params={"$filter": "startsWith(displayName,'G')"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "Request_UnsupportedQuery"
    assert emu.graph("GET", "groups/delta", params={"$top": "5"}).status_code == 400


def test_delta_alias_function_name(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "groups/microsoft.graph.delta")
    assert response.status_code == 200
    assert len(response.json()["value"]) == 3


def test_expired_delta_token_is_sync_state_not_found(emu: EmulatorHandle) -> None:
    link = walk(emu, "users/delta").delta_link
    emu.set_delta_settings(token_ttl=0)  # Graph keeps directory delta tokens for 7 days; here: none
    response = emu.graph("GET", link)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "syncStateNotFound"


@pytest.mark.parametrize("segment", ["delta()", "microsoft.graph.delta()", "graph.delta"])
def test_delta_function_forms(emu: EmulatorHandle, segment: str) -> None:
    # The SDKs call the function as /groups/microsoft.graph.delta() ("group: delta").
    response = emu.graph("GET", f"groups/{segment}")
    assert response.status_code == 200, response.text
    assert {g["id"] for g in response.json()["value"]} == {"g0", "g1", "g2"}


def test_group_delta_without_select_includes_members_and_omits_unset(emu: EmulatorHandle) -> None:
    body = {"displayName": "Empty", "mailNickname": "empty", "mailEnabled": False, "securityEnabled": True}
    empty_id = emu.graph("POST", "groups", json=body).json()["id"]
    first = walk(emu, "groups/delta")
    by_id = {e["id"]: e for e in first.entries}
    # "group: delta": members@delta by default; default properties, but never-set ones left out.
    assert {m["id"] for m in by_id["g0"]["members@delta"]} == first.added_members["g0"]
    assert first.added_members["g0"]
    assert by_id["g0"]["displayName"] == "Group 0"
    assert all(v is not None for e in first.entries for v in e.values())
    assert "classification" not in by_id["g0"]  # part of the default set, never set
    # A group with no members has no members@delta in a first round.
    assert "members@delta" not in by_id[empty_id]
    emu.graph("DELETE", "groups/g0/members/u00/$ref")
    later = walk(emu, first.delta_link)
    assert later.removed_members == {"g0": {"u00"}}


def test_delta_always_returns_id_and_selected_properties_only(emu: EmulatorHandle) -> None:
    first = walk(emu, "users/delta?$select=displayName,department,employeeId")
    for entry in first.entries:
        assert set(entry) == {"id", "displayName", "department"}  # employeeId never set: omitted


def test_property_set_to_null_is_returned_as_null(emu: EmulatorHandle) -> None:
    first = walk(emu, "groups/delta?$select=displayName,description")
    assert emu.graph("PATCH", "groups/g1", json={"description": None}).status_code == 204
    later = walk(emu, first.delta_link)
    assert later.entries == [{"id": "g1", "displayName": "Group 1", "description": None}]


def test_prefer_return_minimal_returns_only_changed_properties(emu: EmulatorHandle) -> None:
    first = walk(emu, f"groups/delta?$select={GROUP_SELECT}")
    emu.graph("PATCH", "groups/g1", json={"description": "renamed"})
    emu.graph("DELETE", "groups/g0/members/u00/$ref")
    response = emu.graph("GET", first.delta_link, headers={"Prefer": "return=minimal"})
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "return=minimal"
    entries = {e["id"]: e for e in response.json()["value"]}
    assert entries["g1"] == {"id": "g1", "description": "renamed"}
    assert set(entries["g0"]) == {"id", "members@delta"}
    # Without the header the same round carries every selected property that is set.
    full = walk(emu, first.delta_link)
    assert {e["id"]: set(e) for e in full.entries}["g1"] == {
        "id",
        "displayName",
        "description",
        "securityEnabled",
    }


def test_delta_select_of_unknown_property_is_400(emu: EmulatorHandle) -> None:
    response = emu.graph("GET", "users/delta", params={"$select": "displayName,members"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Could not find a property named 'members' on type 'microsoft.graph.user'."
    )
