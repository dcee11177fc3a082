"""The emulator's Microsoft 365 group mail addresses and /groupSettings, over HTTPS like Graph."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.fakes import MemoryReplica

from writeback.adapters.graph import GraphClient, GraphSettings, GraphSource
from writeback.testbed.emulator.group_settings import UNIFIED_TEMPLATE_ID
from writeback.testbed.emulator.tenant import Tenant
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator

UNIFIED = {"mailEnabled": True, "securityEnabled": False, "groupTypes": ["Unified"]}


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    tenant = small_tenant(users=3, groups=1)
    tenant["defaultDomain"] = "contoso.example"
    with run_emulator(tenant, tmp_path) as handle:
        yield handle


def test_new_microsoft365_group_gets_mail_from_its_nickname(emu: EmulatorHandle) -> None:
    created = emu.graph("POST", "groups", json={"displayName": "Sales", "mailNickname": "sales", **UNIFIED})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["mail"] == "sales@contoso.example"
    assert body["proxyAddresses"] == ["SMTP:sales@contoso.example"]
    assert body["visibility"] == "Public"
    # The address is taken now: Graph refuses a second group with it.
    again = emu.graph("POST", "groups", json={"displayName": "Sales 2", "mailNickname": "sales", **UNIFIED})
    assert again.status_code == 400
    assert "proxyAddresses" in again.json()["error"]["message"]
    # mail is read-only in Graph; security groups get none.
    sec = {"displayName": "S", "mailNickname": "s", "mailEnabled": False, "securityEnabled": True}
    assert emu.graph("POST", "groups", json=sec).json()["mail"] is None
    assert emu.graph("POST", "groups", json={**sec, "mailNickname": "t", "mail": "x@y"}).status_code == 400


def _unified_value(body: dict[str, Any]) -> str:
    return next(v["value"] for v in body["values"] if v["name"] == "NewUnifiedGroupWritebackDefault")


def test_group_settings_create_read_update_delete(emu: EmulatorHandle, tmp_path: Path) -> None:
    assert emu.graph("GET", "groupSettings").json()["value"] == []
    values = [{"name": "NewUnifiedGroupWritebackDefault", "value": "false"}]
    created = emu.graph("POST", "groupSettings", json={"templateId": UNIFIED_TEMPLATE_ID, "values": values})
    assert created.status_code == 201, created.text
    setting = created.json()
    assert setting["displayName"] == "Group.Unified" and _unified_value(setting) == "false"
    # Every template value is present, with its default when not given.
    assert {"name": "EnableGroupCreation", "value": "true"} in setting["values"]
    duplicate = emu.graph("POST", "groupSettings", json={"templateId": UNIFIED_TEMPLATE_ID, "values": []})
    assert duplicate.status_code == 409
    bad = [{"name": "NewUnifiedGroupWritebackDefault", "value": False}]  # values are strings
    assert emu.graph("PATCH", f"groupSettings/{setting['id']}", json={"values": bad}).status_code == 400
    unknown = [{"name": "NoSuchSetting", "value": "1"}]
    assert emu.graph("PATCH", f"groupSettings/{setting['id']}", json={"values": unknown}).status_code == 400
    patch = {"values": [{"name": "NewUnifiedGroupWritebackDefault", "value": "true"}]}
    assert emu.graph("PATCH", f"/beta/groupSettings/{setting['id']}", json=patch).status_code == 204
    assert _unified_value(emu.graph("GET", f"groupSettings/{setting['id']}").json()) == "true"
    # Saved with the tenant file.
    saved = tmp_path / "saved.yaml"
    emu.tenant.save(saved)
    assert Tenant.load(saved).extra["groupSettings"][0]["id"] == setting["id"]
    assert emu.graph("DELETE", f"groupSettings/{setting['id']}").status_code == 204
    assert emu.graph("GET", f"groupSettings/{setting['id']}").status_code == 404


def test_graph_source_reads_the_tenant_default_from_the_emulator(emu: EmulatorHandle) -> None:
    values = [{"name": "NewUnifiedGroupWritebackDefault", "value": "false"}]
    assert emu.graph(
        "POST", "groupSettings", json={"templateId": UNIFIED_TEMPLATE_ID, "values": values}
    ).is_success
    gid = emu.graph("POST", "/beta/groups", json={"displayName": "M", "mailNickname": "m", **UNIFIED}).json()[
        "id"
    ]
    settings = GraphSettings(
        tenant_id=emu.tenant_id,
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        authority=emu.authority,
        graph_url=emu.graph_url,
        ca_file=emu.ca_file,
        use_beta_for_groups=True,
        read_group_settings=True,
    )
    replica = MemoryReplica()
    with GraphClient(settings) as client:
        GraphSource(client).sync(replica)
    snapshot = replica.snapshot()
    assert snapshot.unified_writeback_default is False
    group = snapshot.groups[gid]
    assert (group.mail, group.proxy_addresses, group.is_unified) == (
        "m@contoso.example",
        ("SMTP:m@contoso.example",),
        True,
    )
    assert group.writeback_enabled is None
