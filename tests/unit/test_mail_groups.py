"""Microsoft 365 and mail-enabled groups (issue 13, group types): scope, AD type, mail attributes, guests,
type conversions in place, the tenant's NewUnifiedGroupWritebackDefault through the Graph adapter and replicas."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest

from tests.unit.builders import BASE, DOC, OU, desire, resolved, settings
from tests.unit.fakes import MemoryReplica
from tests.unit.test_graph_delta import GROUPS, USERS, ScriptedGraph, group, source_for
from writeback.adapters.graph.convert import group_from_graph, unified_writeback_default
from writeback.adapters.state.sqlite import SqliteStore
from writeback.config import CONNECT_DISPLAY_NAME_CN, MappingSettings, parse_settings
from writeback.core.desired import DirectoryFacts, cloud_intents, desired_state
from writeback.core.mapping import (
    EXCHANGE_ATTRIBUTES,
    MSDS_ANCHOR,
    Mapper,
    group_type_change_refused,
)
from writeback.core.model import (
    GROUP_TYPE_DOMAIN_LOCAL,
    GROUP_TYPE_GLOBAL,
    GROUP_TYPE_SECURITY,
    GROUP_TYPE_UNIVERSAL,
    CloudGroup,
    CloudSnapshot,
    CloudUser,
    DirectoryAccount,
    DirectoryGroup,
    MemberRef,
    SkipReason,
)
from writeback.core.planning import ChangeKind, Plan, Policy, compute_plan
from writeback.core.scope import out_of_scope_reason

GID = "3a5c3221-c465-48c0-95b8-e9305786a271"
DISTRIBUTION = GROUP_TYPE_UNIVERSAL  # 8
UNIVERSAL_SECURITY = GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY  # -2147483640


def m365(gid: str = GID, *, enabled: bool | None = None, kind: str | None = None, **kw: object) -> CloudGroup:
    fields: dict[str, object] = {
        "display_name": "Sales Team",
        "mail_nickname": "sales",
        "mail_enabled": True,
        "security_enabled": False,
        "group_types": ("Unified",),
        "mail": "sales@corp.example",
        "proxy_addresses": ("SMTP:sales@corp.example", "smtp:sales@corp.onmicrosoft.com", "SPO:x"),
        "visibility": "Private",
        "writeback_enabled": enabled,
        "writeback_group_type": kind,
    }
    fields.update(kw)
    return CloudGroup(gid, **fields)  # type: ignore[arg-type]


def security(gid: str = GID, **kw: object) -> CloudGroup:
    return CloudGroup(gid, display_name="Sec", **kw)  # type: ignore[arg-type]


def scope(**table: object):  # type: ignore[no-untyped-def]
    return settings(scope=table).scope


# -- scope: isEnabled semantics and the tenant default ----------------------------------------------------


def test_writeback_enabled_mode_follows_microsofts_meaning_of_null() -> None:
    s = scope(mode="writeback_enabled")
    assert out_of_scope_reason(m365(enabled=None), s) is None  # M365: null means written back
    assert out_of_scope_reason(m365(enabled=None), s, True) is None
    reason = out_of_scope_reason(m365(enabled=None), s, False)
    assert reason is not None and "NewUnifiedGroupWritebackDefault is false" in reason
    assert out_of_scope_reason(m365(enabled=True), s, False) is None  # explicit true beats the tenant default
    assert out_of_scope_reason(m365(enabled=False), s) == "writebackConfiguration.isEnabled is not true"
    # Security groups: null means not written, whatever the tenant setting says.
    assert out_of_scope_reason(security(), s, True) == "writebackConfiguration.isEnabled is not true"
    assert out_of_scope_reason(security(writeback_enabled=True), s) is None


def test_all_and_selected_modes_take_mail_groups_only_when_configured() -> None:
    reason = out_of_scope_reason(m365(), scope())
    assert reason is not None and "scope.include_microsoft365 = true" in reason
    assert out_of_scope_reason(m365(), scope(include_microsoft365=True)) is None
    dl = CloudGroup("d1", display_name="DL", mail_enabled=True, security_enabled=False, mail="dl@x")
    reason = out_of_scope_reason(dl, scope(include_microsoft365=True))
    assert reason is not None and "scope.include_mail_enabled" in reason
    assert out_of_scope_reason(dl, scope(include_mail_enabled=True)) is None
    selected = scope(mode="selected", group_ids=[GID], include_microsoft365=True)
    assert out_of_scope_reason(m365(), selected) is None
    assert out_of_scope_reason(m365("other"), selected) == "not in scope.group_ids"
    reason = out_of_scope_reason(m365(), scope(mode="selected", group_ids=[GID]))
    assert reason is not None and 'mode "selected"' in reason
    # Still never: synced from AD, or soft-deleted.
    assert "synced" in str(
        out_of_scope_reason(m365(on_premises_sync_enabled=True), scope(include_microsoft365=True))
    )
    assert (
        out_of_scope_reason(m365(deleted=True), scope(include_microsoft365=True))
        == "soft-deleted in the cloud"
    )


def test_scope_filters_see_mail_properties() -> None:
    s = scope(
        include_microsoft365=True,
        filters=[{"clauses": [{"attribute": "visibility", "operator": "EQUALS", "value": "Public"}]}],
    )
    assert out_of_scope_reason(m365(visibility="Public"), s) is None
    assert out_of_scope_reason(m365(visibility="Private"), s) == "no scope filter matches"


# -- AD type and mail attributes ---------------------------------------------------------------------------


def mapper(**kw: object) -> Mapper:
    return Mapper(MappingSettings(**kw), OU, BASE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "group_type", "mail"),
    [
        (None, DISTRIBUTION, True),  # unset: Connect writes a Microsoft 365 group as a distribution group
        ("universalDistributionGroup", DISTRIBUTION, True),
        ("universalSecurityGroup", UNIVERSAL_SECURITY, False),
        ("universalMailEnabledSecurityGroup", UNIVERSAL_SECURITY, True),
    ],
)
def test_on_premises_group_type_gives_the_ad_type(kind: str | None, group_type: int, mail: bool) -> None:
    intent = mapper(group_scope="global").intent(m365(kind=kind))  # mail groups are always universal
    assert intent.group_type == group_type
    attrs = intent.attributes
    if mail:
        assert attrs["mail"] == "sales@corp.example"
        # Only the primary address, as Connect writes it; never the secondaries or SPO: addresses.
        assert attrs["proxyAddresses"] == "SMTP:sales@corp.example"
        assert attrs["mailNickname"] == "sales"
        assert attrs["displayName"] == "Sales Team"
    else:  # a plain security group: the mail attributes are cleared (a conversion stops it being a recipient)
        assert all(attrs[a] is None for a in ("mail", "proxyAddresses", "mailNickname", *EXCHANGE_ATTRIBUTES))


def test_exchange_recipient_values_per_type() -> None:
    dl = mapper().intent(m365(kind="universalDistributionGroup")).attributes
    assert (dl["msExchRecipientTypeDetails"], dl["msExchRecipientDisplayType"]) == ("256", "1")
    sec = mapper().intent(m365(kind="universalMailEnabledSecurityGroup")).attributes
    assert (sec["msExchRecipientTypeDetails"], sec["msExchRecipientDisplayType"]) == ("1024", "1073741833")


def test_mail_enabled_security_group_and_distribution_list() -> None:
    mesg = CloudGroup("m1", display_name="MESG", mail_enabled=True, security_enabled=True, mail="mesg@x")
    intent = mapper().intent(mesg)
    assert intent.group_type == UNIVERSAL_SECURITY and intent.attributes["proxyAddresses"] == "SMTP:mesg@x"
    dl = CloudGroup(
        "d1", display_name="DL", mail_enabled=True, security_enabled=False, proxy_addresses=("SMTP:dl@x",)
    )
    intent = mapper().intent(dl)
    assert (
        intent.group_type == DISTRIBUTION and intent.attributes["mail"] == "dl@x"
    )  # from the primary address


def test_plain_security_groups_get_no_mail_attributes_and_mappings_win() -> None:
    assert "mail" not in mapper().intent(security()).attributes
    mapped = mapper(attributes={"mail": '"fixed@x"'}).intent(m365())
    assert mapped.attributes["mail"] == "fixed@x"


def test_connect_naming_presets() -> None:
    assert mapper(cn='Append("Group_",[objectId])').intent(m365()).cn == f"Group_{GID}"
    assert mapper(cn=CONNECT_DISPLAY_NAME_CN).intent(m365()).cn == "Sales Team_e9305786a271"
    for style, cn in (
        ("connect", 'Append("Group_",[objectId])'),
        ("connect_display_name", CONNECT_DISPLAY_NAME_CN),
    ):
        assert parse_settings({**DOC, "mapping": {"cn_style": style}}, "t.toml").mapping.cn == cn


# -- desired state: schema without Exchange's, guests, conversions ------------------------------------------


def facts(**kw: object) -> DirectoryFacts:
    return DirectoryFacts(anchor_attributes=(MSDS_ANCHOR,), **kw)  # type: ignore[arg-type]


def test_without_exchange_schema_the_base_attributes_are_written_and_the_plan_says_so_once() -> None:
    config = settings(scope={"include_microsoft365": True})
    snapshot = CloudSnapshot(
        users={}, groups={g.id: g for g in (m365(), m365("g2", mail="b@x", mail_nickname="b"))}
    )
    missing = frozenset({"mailNickname", *EXCHANGE_ATTRIBUTES})
    state = desired_state(cloud_intents(snapshot, config), facts(missing_attributes=missing), config)
    attrs = state.groups[GID].attributes
    assert attrs["mail"] == "sales@corp.example" and attrs["proxyAddresses"] == "SMTP:sales@corp.example"
    assert not missing & attrs.keys()
    assert len(state.warnings) == 1
    assert "msExchRecipientDisplayType" in state.warnings[0] and "2 mail group(s)" in state.warnings[0]
    full = desired_state(cloud_intents(snapshot, config), facts(), config)
    assert full.warnings == () and full.groups[GID].attributes["msExchRecipientTypeDetails"] == "256"


def test_guests_and_cloud_only_members_have_their_own_reasons() -> None:
    users = {
        "synced": CloudUser(
            "synced", on_premises_sync_enabled=True, on_premises_security_identifier="S-1-5-21-1-1"
        ),
        "guest": CloudUser("guest", user_principal_name="ext#EXT#@x", attributes={"userType": "Guest"}),
        "cloud": CloudUser("cloud", user_principal_name="c@x", attributes={"userType": "Member"}),
    }
    account = DirectoryAccount(f"CN=synced,{BASE}", "00000000-0000-0000-0000-000000000001", "S-1-5-21-1-1")
    g = m365(members=frozenset(MemberRef("user", u) for u in users))
    state = desire(
        [g], users=users, accounts=[account], config=settings(scope={"include_microsoft365": True})
    )
    d = state.groups[GID]
    assert d.members == {account.dn}
    reasons = {s.member_id: s.reason for s in d.skipped}
    assert reasons == {"guest": SkipReason.GUEST.value, "cloud": SkipReason.CLOUD_ONLY.value}
    assert resolved([account]).by_sid  # the builder resolves the synced member by SID


def managed(group_type: int, **attrs: str | None) -> DirectoryGroup:
    return DirectoryGroup(
        f"CN=Sales Team_e9305786a271,{OU}",
        "guid-1",
        f"Group_{GID}",
        "Sales_e9305786a271",
        group_type,
        {MSDS_ANCHOR: f"Group_{GID}", "displayName": "Sales Team", "description": None, **attrs},
        frozenset(),
    )


def test_security_to_distribution_is_one_update_of_the_same_object() -> None:
    config = settings(scope={"include_microsoft365": True})
    current = managed(UNIVERSAL_SECURITY, mail=None)
    state = desire([m365(kind="universalDistributionGroup")], managed=[current], config=config)
    plan = compute_plan(state, Policy())
    assert [c.kind for c in plan.changes] == [ChangeKind.UPDATE]  # no delete + create: same objectGUID
    change = plan.changes[0]
    assert change.dn == current.dn and change.attributes["groupType"] == DISTRIBUTION
    assert change.attributes["proxyAddresses"] == "SMTP:sales@corp.example"


def test_distribution_to_security_clears_the_mail_attributes() -> None:
    config = settings(scope={"include_microsoft365": True})
    current = managed(DISTRIBUTION, mail="sales@corp.example", proxyAddresses="SMTP:sales@corp.example")
    state = desire([m365(kind="universalSecurityGroup")], managed=[current], config=config)
    plan = compute_plan(state, Policy())
    (change,) = plan.changes
    assert change.attributes["groupType"] == UNIVERSAL_SECURITY
    assert change.attributes["mail"] is None and change.attributes["proxyAddresses"] is None


def test_ad_refuses_global_to_domain_local_directly() -> None:
    assert group_type_change_refused(
        GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY, GROUP_TYPE_DOMAIN_LOCAL | GROUP_TYPE_SECURITY
    )
    assert group_type_change_refused(GROUP_TYPE_DOMAIN_LOCAL, GROUP_TYPE_GLOBAL)
    assert group_type_change_refused(UNIVERSAL_SECURITY, DISTRIBUTION) is None
    assert group_type_change_refused(GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY, UNIVERSAL_SECURITY) is None
    config = settings(mapping=MappingSettings(group_scope="domainLocal"))
    state = desire([security()], managed=[managed(GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY)], config=config)
    error = state.groups[GID].error
    assert error is not None and "change its scope to universal first" in error
    plan = compute_plan(state, Policy())
    assert plan.changes == () and plan.reports[0].error == error


# -- Graph adapter, replicas ---------------------------------------------------------------------------------


def test_group_from_graph_reads_mail_properties() -> None:
    g = group_from_graph(
        {
            "id": "g",
            "mail": "a@x",
            "proxyAddresses": ["SMTP:a@x", "smtp:b@x"],
            "visibility": "Private",
            "groupTypes": ["Unified"],
            "mailEnabled": True,
            "securityEnabled": False,
        }
    )
    assert (g.mail, g.proxy_addresses, g.visibility, g.is_unified) == (
        "a@x",
        ("SMTP:a@x", "smtp:b@x"),
        "Private",
        True,
    )
    assert "mail" not in g.attributes


def test_unified_writeback_default_from_group_settings() -> None:
    def unified(value: str) -> dict[str, object]:
        return {
            "displayName": "Group.Unified",
            "values": [{"name": "NewUnifiedGroupWritebackDefault", "value": value}],
        }

    assert unified_writeback_default([unified("false")]) is False
    assert unified_writeback_default([unified("True")]) is True
    assert unified_writeback_default([]) is None
    assert unified_writeback_default([{"displayName": "Group.Unified.Guest", "values": []}]) is None


def test_sync_reads_the_tenant_setting_and_marks_null_m365_groups_changed() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    beta = "/beta/groups/delta"
    graph.delta_round(
        beta,
        None,
        [
            [
                group(
                    "m1", groupTypes=["Unified"], mailEnabled=True, writebackConfiguration={"isEnabled": None}
                ),
                group("s1"),
            ]
        ],
        "G1",
    )
    graph.set("/beta/directory/deletedItems/microsoft.graph.group", None, {"value": []})
    setting = {
        "displayName": "Group.Unified",
        "values": [{"name": "NewUnifiedGroupWritebackDefault", "value": "false"}],
    }
    graph.set("/v1.0/groupSettings", None, {"value": [setting]})
    replica = MemoryReplica()
    report = source_for(graph, use_beta_for_groups=True, read_group_settings=True).sync(replica)
    assert replica.snapshot().unified_writeback_default is False
    assert "m1" in report.changed_groups
    graph.delta_round(beta, "G1", [[]], "G2")
    graph.delta_round(USERS, "U1", [[]], "U2")
    report = source_for(graph, use_beta_for_groups=True, read_group_settings=True).sync(replica)
    assert report.changed_groups == set()  # unchanged setting: nothing to reconcile


def test_sync_without_group_settings_permission_fails_clearly() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    graph.delta_round(GROUPS, None, [[]], "G1")
    graph.set(
        "/v1.0/groupSettings",
        None,
        httpx.Response(
            403, json={"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}}
        ),
    )
    with pytest.raises(Exception, match="Authorization_RequestDenied|403"):
        source_for(graph, read_group_settings=True).sync(MemoryReplica())


@pytest.mark.parametrize("make", [MemoryReplica, lambda: SqliteStore(":memory:")])
def test_replicas_keep_the_tenant_setting_and_mail_fields(make) -> None:  # type: ignore[no-untyped-def]
    replica = make()
    g = m365()
    with replica.transaction() as tx:
        tx.upsert_group(g)
        tx.set_unified_writeback_default(False)
    snap = replica.snapshot()
    assert snap.unified_writeback_default is False
    assert snap.groups[GID] == dataclasses.replace(g, members=frozenset())
    with pytest.raises(RuntimeError), replica.transaction() as tx:
        tx.set_unified_writeback_default(True)
        raise RuntimeError("rolled back")
    assert replica.snapshot().unified_writeback_default is False
    with replica.transaction() as tx:
        tx.set_unified_writeback_default(None)
    assert replica.snapshot(()).unified_writeback_default is None


def test_a_changed_delta_query_starts_a_full_round() -> None:
    """A delta link replays changes only: after switching to beta (or adding properties), unchanged groups
    must be read again, or their writebackConfiguration would never arrive."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    graph.delta_round(GROUPS, None, [[group("m1", groupTypes=["Unified"], mailEnabled=True)]], "G1")
    replica = MemoryReplica()
    source_for(graph).sync(replica)
    assert replica.snapshot().groups["m1"].writeback_group_type is None
    beta = "/beta/groups/delta"
    config = {"isEnabled": True, "onPremisesGroupType": "universalSecurityGroup"}
    graph.delta_round(
        beta, None, [[group("m1", groupTypes=["Unified"], writebackConfiguration=config)]], "B1"
    )
    graph.set("/beta/directory/deletedItems/microsoft.graph.group", None, {"value": []})
    graph.delta_round(USERS, "U1", [[]], "U2")
    report = source_for(graph, use_beta_for_groups=True).sync(replica)
    assert report.full_resync and "m1" in report.changed_groups
    assert replica.snapshot().groups["m1"].writeback_group_type == "universalSecurityGroup"
    assert replica.get_delta_link("groups") == f"https://graph.example.test{beta}?$deltatoken=B1"
    # The same query again: incremental.
    graph.delta_round(beta, "B1", [[]], "B2")
    graph.delta_round(USERS, "U2", [[]], "U3")
    assert not source_for(graph, use_beta_for_groups=True).sync(replica).full_resync


# -- secondary smtp: addresses (mapping.secondary_smtp_addresses): a multi-valued attribute ----------------------


def test_secondary_smtp_addresses_by_setting() -> None:
    assert mapper().intent(m365()).attributes["proxyAddresses"] == "SMTP:sales@corp.example"
    both = mapper(secondary_smtp_addresses=True).intent(m365()).attributes["proxyAddresses"]
    # Primary first, then the secondary smtp: ones; never other address types (SPO:, X500: ...).
    assert both == ("SMTP:sales@corp.example", "smtp:sales@corp.onmicrosoft.com")
    assert parse_settings(
        {**DOC, "mapping": {"secondary_smtp_addresses": True}}, "t.toml"
    ).mapping.secondary_smtp_addresses


def test_multi_valued_attributes_compare_as_sets_and_survive_saved_plans() -> None:
    config = settings(
        scope={"include_microsoft365": True}, mapping=MappingSettings(secondary_smtp_addresses=True)
    )
    wanted = ("SMTP:sales@corp.example", "smtp:sales@corp.onmicrosoft.com")
    same = managed(DISTRIBUTION, mail="sales@corp.example", proxyAddresses=tuple(reversed(wanted)))  # type: ignore[arg-type]
    state = desire([m365(kind="universalDistributionGroup")], managed=[same], config=config)
    plan = compute_plan(state, Policy())
    assert "proxyAddresses" not in next(c.attributes for c in plan.changes if c.kind is ChangeKind.UPDATE)
    fewer = managed(DISTRIBUTION, mail="sales@corp.example", proxyAddresses=("SMTP:sales@corp.example",))  # type: ignore[arg-type]
    state = desire([m365(kind="universalDistributionGroup")], managed=[fewer], config=config)
    plan = compute_plan(state, Policy())
    (update,) = [c for c in plan.changes if c.kind is ChangeKind.UPDATE]
    assert update.attributes["proxyAddresses"] == wanted
    saved = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert saved.digest() == plan.digest() and saved.changes[0].attributes["proxyAddresses"] == wanted


def test_directory_reads_and_writes_every_proxy_address() -> None:
    from writeback.adapters.directory.adapter import _encoded
    from writeback.adapters.directory.entries import group_from_entry

    raw = {
        "objectguid": [bytes(16)],
        "grouptype": [b"8"],
        "proxyaddresses": [b"SMTP:a@x", b"smtp:b@x"],
        "mail": [b"a@x"],
    }
    g = group_from_entry("CN=g,DC=x", raw, [], (), ("proxyAddresses", "mail", "mailNickname"))
    assert g.attributes["proxyAddresses"] == ("SMTP:a@x", "smtp:b@x")
    assert g.attributes["mail"] == "a@x" and g.attributes["mailNickname"] is None
    assert _encoded(("SMTP:a@x", "smtp:b@x")) == [b"SMTP:a@x", b"smtp:b@x"] and _encoded(8) == [b"8"]
