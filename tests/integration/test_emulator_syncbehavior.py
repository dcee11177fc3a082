"""onPremisesSyncBehavior (beta) as Graph documents it: Group Source of Authority conversion and rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from writeback.testbed.emulator.testing import TEST_CLIENT_ID, EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator

REF = "https://graph.microsoft.com/v1.0/directoryObjects/{}"
SID = "S-1-5-21-1-2-3-4001"


def _tenant(roles: list[str] | None = None) -> dict[str, Any]:
    tenant = small_tenant(users=4, groups=1)
    tenant["groups"].append(
        {
            "id": "fromad",
            "displayName": "From AD",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "onPremisesSyncEnabled": True,
            "onPremisesSecurityIdentifier": SID,
            "members": [],
        }
    )
    if roles is not None:
        tenant["apps"][0]["roles"] = roles
    return tenant


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(_tenant(), tmp_path) as handle:
        yield handle


def behavior(emu: EmulatorHandle, method: str = "GET", json: Any = None, version: str = "beta") -> Any:
    return emu.graph(method, f"/{version}/groups/fromad/onPremisesSyncBehavior", json=json)


def test_conversion_then_rollback(emu: EmulatorHandle) -> None:
    assert behavior(emu).json()["isCloudManaged"] is False
    # Still mastered on-premises: member writes refused.
    refused = emu.graph("POST", "groups/fromad/members/$ref", json={"@odata.id": REF.format("u01")})
    assert refused.status_code == 400 and "on-premises mastered" in refused.json()["error"]["message"]

    assert behavior(emu, "PATCH", {"isCloudManaged": True}).status_code == 204
    assert behavior(emu).json()["isCloudManaged"] is True
    group = emu.graph(
        "GET", "groups/fromad", params={"$select": "onPremisesSyncEnabled,onPremisesSecurityIdentifier"}
    )
    assert (
        group.json()["onPremisesSyncEnabled"] is None and group.json()["onPremisesSecurityIdentifier"] == SID
    )
    assert "onPremisesSyncBehavior" not in emu.graph("GET", "/beta/groups/fromad").json()  # a relationship
    added = emu.graph("POST", "groups/fromad/members/$ref", json={"@odata.id": REF.format("u01")})
    assert added.status_code == 204  # cloud-managed now

    assert behavior(emu, "PATCH", {"isCloudManaged": False}).status_code == 204
    assert behavior(emu).json()["isCloudManaged"] is False
    assert emu.graph("GET", "groups/fromad").json().get("onPremisesSyncEnabled") is None  # stays null


def test_beta_only_validated_and_permission_checked(emu: EmulatorHandle, tmp_path: Path) -> None:
    assert behavior(emu, version="v1.0").status_code == 400
    assert behavior(emu, "PATCH", {"isCloudManaged": "yes"}).status_code == 400
    assert behavior(emu, "PATCH", {"other": True}).status_code == 400
    assert (
        emu.graph(
            "GET", "/beta/groups/5f0c7e7a-0000-4000-8000-00000000dead/onPremisesSyncBehavior"
        ).status_code
        == 404
    )
    roles = ["Directory.Read.All", "Group.ReadWrite.All"]
    with run_emulator(_tenant(roles), tmp_path / "narrow") as narrow:
        assert narrow.client_id == TEST_CLIENT_ID
        denied = behavior(narrow)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "Authorization_RequestDenied"
