"""The Graph emulator's tenant state without HTTP: loading, saving, the change log, delta rounds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from writeback.errors import ConfigError
from writeback.testbed.emulator.apierror import GraphApiError
from writeback.testbed.emulator.delta import DeltaEngine, DeltaQuery, DeltaSettings
from writeback.testbed.emulator.rules_hook import default_rule_compiler
from writeback.testbed.emulator.statetoken import TokenSigner
from writeback.testbed.emulator.tenant import OP_MEMBER_ADD, OP_MEMBER_REMOVE, Tenant
from writeback.testbed.emulator.testing import small_tenant


def _tenant(**kwargs: Any) -> Tenant:
    return Tenant.from_dict(small_tenant(**kwargs), rule_compiler=None)


def test_load_yaml_and_json_keep_unknown_properties(tmp_path: Path) -> None:
    data = small_tenant()
    data["users"][0]["customThing"] = {"nested": [1, 2]}
    data["devices"] = [{"id": "d1", "displayName": "pc", "trustType": "AzureAd"}]
    data["somethingElse"] = {"kept": True}
    for name, dump in (("t.yaml", yaml.safe_dump), ("t.json", json.dumps)):
        path = tmp_path / name
        path.write_text(dump(data), encoding="utf-8")
        tenant = Tenant.load(path)
        assert tenant.live["user"]["u00"]["customThing"] == {"nested": [1, 2]}
        assert tenant.live["device"]["d1"]["trustType"] == "AzureAd"
        assert tenant.to_dict()["somethingElse"] == {"kept": True}
        assert list(tenant.members["g0"]) == ["u00", "u01", "u02", "u03", "u04"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.pop("tenant_id"), "tenant_id"),
        (lambda d: d["groups"][0]["members"].append("ghost"), "group g0"),
        (lambda d: d["users"].append(dict(d["users"][0])), "users[10]"),
        (lambda d: d["users"][1].pop("id"), "users[1]"),
    ],
)
def test_broken_tenants_fail_at_load_with_the_key(tmp_path: Path, change: Any, key: str) -> None:
    data = small_tenant()
    change(data)
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Tenant.load(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_member_ids_share_one_string_object() -> None:
    tenant = Tenant.from_dict(json.loads(json.dumps(small_tenant())))
    member = next(iter(tenant.members["g0"]))
    assert member is next(k for k in tenant.live["user"] if k == member)


def test_save_round_trip_with_deleted_items(tmp_path: Path) -> None:
    tenant = _tenant()
    tenant.soft_delete("u01")
    tenant.soft_delete("g2")
    path = tmp_path / "saved.yaml"
    tenant.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = Tenant.load(path)
    assert set(again.deleted) == {"u01", "g2"}
    assert again.visible_members("g0") == ["u00", "u02", "u03", "u04"]
    assert list(again.members["g0"]) == ["u00", "u01", "u02", "u03", "u04"]  # kept while soft-deleted
    again.restore("u01")
    assert again.visible_members("g0") == ["u00", "u01", "u02", "u03", "u04"]


def test_change_log_records_member_changes_and_hard_deletes() -> None:
    tenant = _tenant()
    start = tenant.sequence
    tenant.add_member("g2", "u05")
    tenant.remove_member("g0", "u00")
    tenant.hard_delete("u01")
    ops = [(kind, oid, op, member) for kind, oid, op, member, _ in tenant.changes_since(start)]
    assert ops[:2] == [("group", "g2", OP_MEMBER_ADD, "u05"), ("group", "g0", OP_MEMBER_REMOVE, "u00")]
    assert ("group", "g0", OP_MEMBER_REMOVE, "u01") in ops
    assert ops[-1] == ("user", "u01", "hard", None)
    assert "u01" not in tenant.kinds and "u01" not in tenant.members["g0"]
    with pytest.raises(GraphApiError) as info:
        tenant.add_member("g2", "u05")
    assert info.value.status == 400
    with pytest.raises(GraphApiError) as info:
        tenant.add_member("g2", "u01")
    assert info.value.status == 404


def test_dynamic_membership_uses_the_pluggable_compiler() -> None:
    data = small_tenant()
    data["groups"].append(
        {
            "id": "dyn",
            "displayName": "HR",
            "groupTypes": ["DynamicMembership"],
            "membershipRule": "HR",
            "membershipRuleProcessingState": "On",
        }
    )

    def compiler(rule: str) -> Any:
        return lambda user: user.get("department") == rule

    tenant = Tenant.from_dict(data, rule_compiler=compiler)
    assert sorted(tenant.visible_members("dyn")) == ["u01", "u03", "u05", "u07", "u09"]
    tenant.update_object("u00", {"department": "HR"})
    assert "u00" in tenant.visible_members("dyn")
    tenant.update_object("dyn", {"membershipRuleProcessingState": "Paused"})
    tenant.update_object("u01", {"department": "IT"})
    assert "u01" in tenant.visible_members("dyn")  # paused: frozen


def test_member_of_rules_follow_the_referenced_groups() -> None:
    data = small_tenant()
    rule = 'user.memberOf -any (group.objectId -in ["g0", "g1"])'
    data["groups"].append(
        {
            "id": "mo",
            "groupTypes": ["DynamicMembership"],
            "membershipRule": rule,
            "membershipRuleProcessingState": "On",
        }
    )
    tenant = Tenant.from_dict(data, rule_compiler=default_rule_compiler())
    direct = {m for g in ("g0", "g1") for m in tenant.visible_members(g) if tenant.kinds[m] == "user"}
    assert direct and set(tenant.visible_members("mo")) == direct
    outsider = next(u for u in tenant.live["user"] if u not in direct)
    tenant.add_member("g1", outsider)
    assert outsider in tenant.visible_members("mo")
    assert (OP_MEMBER_ADD, outsider) in [(op, m) for kind, gid, op, m, _ in tenant.log if gid == "mo"]
    tenant.remove_member("g1", outsider)
    assert outsider not in tenant.visible_members("mo")
    insider = sorted(direct)[0]
    tenant.update_object(insider, {"jobTitle": "Changed"})  # re-evaluating one user reads its groups too
    assert insider in tenant.visible_members("mo")


def _walk(
    engine: DeltaEngine, query: DeltaQuery, link: str | None = None
) -> tuple[list[Mapping[str, Any]], str]:
    if link is None:
        page = engine.start(query, "https://e")
    else:
        page = engine.resume(query, link.split("$deltatoken=")[1], "https://e")
    items = list(page["value"])
    while "@odata.nextLink" in page:
        page = engine.next_page(query, page["@odata.nextLink"].split("$skiptoken=")[1], "https://e")
        items += page["value"]
    return items, page["@odata.deltaLink"]


def test_delta_engine_splits_and_merges_without_http() -> None:
    tenant = _tenant(users=40, groups=3)
    tenant.members["g1"] = {u: None for u in tenant.live["user"]}
    engine = DeltaEngine(
        tenant, TokenSigner(b"k" * 32), DeltaSettings(page_size=2, member_slice=7, page_members=10)
    )
    query = DeltaQuery("group", "v1.0", ("displayName", "members"))
    items, link = _walk(engine, query)
    merged: dict[str, set[str]] = {}
    for item in items:
        merged.setdefault(item["id"], set()).update(r["id"] for r in item["members@delta"])
    assert merged["g1"] == set(tenant.live["user"])
    assert sum(1 for i in items if i["id"] == "g1") == 6  # 40 members in slices of 7
    tenant.soft_delete("g0")
    items, _ = _walk(engine, DeltaQuery("group", "v1.0"), link)
    assert items == [{"id": "g0", "@removed": {"reason": "changed"}}]


def test_delta_token_survives_a_save_and_reload(tmp_path: Path) -> None:
    tenant = _tenant()
    tenant.update_object("u01", {"jobTitle": "Lead"})  # sequence 1: a token at 0 is older than the save
    signer = TokenSigner(b"k" * 32)
    query = DeltaQuery("user", "v1.0", ("displayName",))
    _, link = _walk(DeltaEngine(tenant, signer), query)
    path = tmp_path / "t.json"
    tenant.save(path)
    reloaded = Tenant.load(path)
    engine = DeltaEngine(reloaded, signer)
    items, _ = _walk(engine, query, link)
    assert items == []
    reloaded.update_object("u02", {"displayName": "Changed"})
    items, _ = _walk(engine, query, link)
    assert items == [{"id": "u02", "displayName": "Changed"}]
    stale = engine.signer.dumps({"t": "d", "e": tenant.epoch, "s": 0, "k": "user", "v": "v1.0", "at": 1e12})
    with pytest.raises(GraphApiError) as info:
        engine.resume(query, stale, "https://e")
    assert info.value.code == "syncStateNotFound"


def test_rule_hook_uses_writeback_rules() -> None:
    compiler = default_rule_compiler()
    assert compiler is not None
    assert compiler('user.department -eq "HR"')({"department": "HR"}) is True
    assert compiler('user.department -eq "HR"')({"department": "IT"}) is False
