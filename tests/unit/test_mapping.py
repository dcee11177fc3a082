import base64
import json
import random
import uuid

import pytest

from tests.unit.builders import BASE, OU, desire, settings
from tests.unit.fakes import FakeDirectory
from tests.unit.test_planning import plan_of
from writeback.app.gathering import Schema
from writeback.cli.report import render_plan
from writeback.config import ANCHOR_MODES, CONNECT_CN, MappingSettings, MemberSettings
from writeback.core.mapping import (
    ADMIN_DESCRIPTION,
    MSDS_ANCHOR,
    Mapper,
    anchor_attributes,
    assign_sam_account_names,
    immutable_id_to_guid,
    nesting_allowed,
    read_anchor_attributes,
)
from writeback.core.model import (
    CloudGroup,
    CloudUser,
    DirectoryAccount,
    DirectoryGroup,
    MemberRef,
    SkipReason,
)
from writeback.core.planning import REDACTED, ChangeKind, Plan, Policy
from writeback.errors import ConfigError

GID = "3a5c3221-c465-48c0-95b8-e9305786a271"
UNIVERSAL_SECURITY = -2147483640


def mapper(**kw):
    return Mapper(MappingSettings(**kw), OU, BASE)


def config(members=None, **mapping):
    return settings(mapping=MappingSettings(**mapping), members=members)


def group(gid=GID, name="Sales", members=(), **kw):
    return CloudGroup(gid, display_name=name, members=frozenset(members), **kw)


def user_ref(uid):
    return MemberRef("user", uid)


def synced(uid, sid=None, guid=None):
    imm = base64.b64encode(uuid.UUID(guid).bytes_le).decode() if guid else None
    return CloudUser(
        uid, on_premises_sync_enabled=True, on_premises_security_identifier=sid, on_premises_immutable_id=imm
    )


def acct(dn, guid="00000000-0000-0000-0000-000000000001", sid=None):
    return DirectoryAccount(dn, guid, sid)


def map_alone(cfg, g):
    """The desired state of a group alone in the cloud, with nothing in AD."""
    return desire([g], config=cfg).groups[g.id]


def test_cloud_sync_default_cn_and_anchor():
    d = map_alone(config(), group())
    assert d.cn == "Sales_e9305786a271"
    assert d.dn == f"CN=Sales_e9305786a271,{OU}"
    assert d.attributes[MSDS_ANCHOR] == f"Group_{GID}"
    assert d.attributes["displayName"] == "Sales"
    assert d.attributes["description"] is None
    assert d.group_type == UNIVERSAL_SECURITY


def test_long_display_name_is_cut_to_fit_cn_limit():
    d = map_alone(config(), group(name="x" * 200))
    assert len(d.cn) == 64 and d.error is None


def test_connect_style_cn():
    d = map_alone(config(cn=CONNECT_CN), group())
    assert d.cn == f"Group_{GID}"


def test_cn_over_64_characters_is_an_error_not_truncated_silently():
    d = map_alone(
        config(cn='Append([displayName],"-and-a-very-long-suffix-that-goes-past-the-limit-of-sixty-four")'),
        group(),
    )
    assert d.error and "64" in d.error


def test_special_characters_are_escaped_in_dn():
    d = map_alone(config(), group(name="R&D, Lab #1 + <x>"))
    assert d.dn.startswith("CN=R&D\\, Lab #1 \\+ \\<x\\>_e9305786a271,")


def test_target_ou_by_switch_expression():
    m = config(target_ou=f'Switch([displayName],"{OU}","Marketing","OU=Marketing,{BASE}")')
    mk = map_alone(m, group(name="Marketing"))
    other = map_alone(m, group(name="Other"))
    assert mk.parent_dn == f"OU=Marketing,{BASE}"
    assert other.parent_dn == OU


def test_target_ou_outside_base_is_an_error():
    m = config(target_ou='"OU=Elsewhere,DC=other,DC=test"')
    d = map_alone(m, group())
    assert d.error and "outside base_dn" in d.error


def test_members_matched_by_sid_then_immutable_id_and_skips_reported():
    g1 = "11111111-1111-1111-1111-111111111111"
    users = {
        "a": synced("a", sid="S-1-5-21-1-2-3-1105"),
        "b": synced("b", guid=g1),
        "c": CloudUser("c"),  # cloud-only
        "d": synced("d", sid="S-1-5-21-1-2-3-9999"),  # not in AD
    }
    accounts = [acct("CN=A,OU=Staff", sid="S-1-5-21-1-2-3-1105"), acct("CN=B,OU=Staff", g1)]
    refs = [
        user_ref("a"),
        user_ref("b"),
        user_ref("c"),
        user_ref("d"),
        MemberRef("device", "dev"),
        user_ref("zz"),
    ]
    d = desire([group(members=refs)], users=users, accounts=accounts).groups[GID]
    assert d.members == {"CN=A,OU=Staff", "CN=B,OU=Staff"}
    reasons = {s.member_id: s.reason for s in d.skipped}
    assert reasons == {
        "c": SkipReason.CLOUD_ONLY.value,
        "d": SkipReason.NOT_FOUND_IN_AD.value,
        "dev": SkipReason.UNSUPPORTED_KIND.value,
        "zz": SkipReason.UNKNOWN_OBJECT.value,
    }


def test_match_order_immutable_id_only():
    g1 = "11111111-1111-1111-1111-111111111111"
    u = synced("a", sid="S-1-5-21-1-2-3-1105", guid=g1)
    accounts = [acct("CN=BySid", sid="S-1-5-21-1-2-3-1105"), acct("CN=ByGuid", g1)]
    cfg = config(members=MemberSettings(match_order=("immutable_id",)))
    d = desire([group(members=[user_ref("a")])], users={"a": u}, accounts=accounts, config=cfg).groups[GID]
    assert d.members == {"CN=ByGuid"}


def test_nested_in_scope_group_is_a_member_out_of_scope_is_skipped():
    child = group("c" * 8 + "-0000-0000-0000-000000000000", "Child")
    synced_group = group("5" * 8 + "-0000-0000-0000-000000000000", "Synced", on_premises_sync_enabled=True)
    parent = group(members=[MemberRef("group", child.id), MemberRef("group", synced_group.id)])
    d = desire([child, parent, synced_group]).groups[parent.id]
    assert d.members == {f"CN=Child_000000000000,{OU}"}
    assert d.skipped[0].reason == SkipReason.GROUP_OUT_OF_SCOPE.value


def test_domain_local_child_in_universal_parent_is_refused_with_8518():
    child = group("c" * 8 + "-0000-0000-0000-000000000000", "Local")
    parent = group(members=[MemberRef("group", child.id)])
    cfg = config(group_scope='IIF([displayName]="Local","domainLocal","universal")')
    d = desire([child, parent], config=cfg).groups[parent.id]
    assert d.members == frozenset()
    assert d.skipped[0].reason.startswith("8518")


def test_nesting_rules():
    u, g, dl = -2147483640, -2147483646, -2147483644
    assert nesting_allowed(u, u) and nesting_allowed(u, g) and not nesting_allowed(u, dl)
    assert nesting_allowed(g, g) and not nesting_allowed(g, u)
    assert nesting_allowed(dl, u) and nesting_allowed(dl, dl)


def test_member_cap():
    users = {f"u{i}": synced(f"u{i}", sid=f"S-1-5-21-1-2-3-{i}") for i in range(5)}
    accounts = [
        acct(f"CN=u{i}", f"00000000-0000-0000-0000-{i:012d}", f"S-1-5-21-1-2-3-{i}") for i in range(5)
    ]
    cfg = config(members=MemberSettings(max_members=4))
    d = desire(
        [group(members=[user_ref(u) for u in users])], users=users, accounts=accounts, config=cfg
    ).groups[GID]
    assert d.error and "max_members" in d.error


def test_immutable_id_documented_example():
    assert immutable_id_to_guid("nofCJe0gZk6D8J4gRgrt+A==") == "25c2879e-20ed-4e66-83f0-9e20460aedf8"
    assert immutable_id_to_guid("not base64!") is None
    assert immutable_id_to_guid("AAAA") is None  # 3 bytes: no GUID


def test_immutable_id_reads_as_the_uuid_modules_little_endian_guid() -> None:
    rng = random.Random(27)
    for _ in range(500):
        raw = rng.randbytes(16)
        assert immutable_id_to_guid(base64.b64encode(raw).decode()) == str(uuid.UUID(bytes_le=raw))


def test_anchor_attribute_choice():
    assert anchor_attributes("auto", True) == (MSDS_ANCHOR,)
    assert anchor_attributes("auto", False) == (ADMIN_DESCRIPTION,)
    assert anchor_attributes("both", True) == (MSDS_ANCHOR, ADMIN_DESCRIPTION)


def test_anchors_are_read_from_adminDescription_too_and_from_every_attribute_written():
    """One choice (issue 22: it was written in three places): adminDescription is always read, so a group
    Connect v2 anchored there is found and adopted, whatever mapping.anchor says."""
    assert read_anchor_attributes(True) == (MSDS_ANCHOR, ADMIN_DESCRIPTION)
    assert read_anchor_attributes(False) == (ADMIN_DESCRIPTION,)
    for mode in ANCHOR_MODES:
        for has_msds in (True, False):
            if mode == MSDS_ANCHOR and not has_msds:
                continue  # refused by `writeback config check`: the schema lacks the attribute
            assert set(anchor_attributes(mode, has_msds)) <= set(read_anchor_attributes(has_msds))


def test_the_gathering_step_reads_anchors_where_the_core_says():
    for has_msds in (True, False):
        schema = Schema.of(FakeDirectory(schema_msds=has_msds), MSDS_ANCHOR if has_msds else "auto")
        assert schema.read == read_anchor_attributes(has_msds)


def test_default_sam_account_name_is_deterministic_and_valid():
    c = mapper().sam_candidates(group(name='Sales/EU "team"'))
    assert c[0] == "SalesEU_e9305786a271"
    assert all(len(x) <= 20 for x in c)
    assert c == mapper().sam_candidates(group(name='Sales/EU "team"'))


def test_sam_collisions_resolved_predictably_and_existing_names_kept():
    cands = {"b": ["same", "same_2"], "a": ["same", "same_1"], "c": ["taken", "c_alt"]}
    out = assign_sam_account_names(cands, existing={"z": "keepme"}, taken={"taken"})
    assert out == {"a": "same", "b": "same_2", "c": "c_alt", "z": "keepme"}
    again = assign_sam_account_names(
        dict(reversed(list(cands.items()))), existing={"z": "keepme"}, taken={"taken"}
    )
    assert again == out


def test_sam_last_resort_is_unique_even_when_every_candidate_is_taken():
    gid = "3a5c3221-c465-48c0-95b8-e9305786a271"
    stem = "g3a5c3221c46548c0"
    out = assign_sam_account_names({gid: ["a", "b"]}, existing={}, taken={"a", "b", f"{stem}000"})
    assert out[gid] == f"{stem}001"


# --- IgnoreFlowIfNullOrEmpty and Redact through mapping and the plan -------------------------------


def _managed(d, **attrs):
    """The AD group writeback wrote for ``d``, holding ``attrs`` besides the desired attributes."""
    values = dict(d.attributes)
    values.update(attrs)
    return DirectoryGroup(d.dn, "guid-1", d.anchor, d.sam_account_name, d.group_type, values, frozenset())


def test_ignore_flow_leaves_the_ad_attribute_as_it_is():
    keep = config(attributes={"info": "IgnoreFlowIfNullOrEmpty([description])"})
    clear = config(attributes={"info": "[description]"})
    for g in (group(), group(description="")):
        d = map_alone(keep, g)
        assert "info" not in d.attributes  # dropped from the flow, not set to None
        plan = plan_of({GID: d}, [_managed(d, info="written by hand")], {GID: g}, Policy())
        assert plan.changes == ()
    d = map_alone(clear, group())
    plan = plan_of({GID: d}, [_managed(d, info="written by hand")], {GID: group()}, Policy())
    assert [(c.kind, dict(c.attributes)) for c in plan.changes] == [(ChangeKind.UPDATE, {"info": None})]


def test_ignore_flow_with_a_value_writes_it():
    d = map_alone(
        config(attributes={"info": "IgnoreFlowIfNullOrEmpty([description])"}), group(description="x")
    )
    assert d.attributes["info"] == "x"


SECRET_MAPPING = {"info": 'Redact(Append("door code ", [mailNickname]))'}


def test_redact_writes_the_value_and_hides_it_in_plan_text_and_json():
    g = group(mail_nickname="4711")
    d = map_alone(config(attributes=SECRET_MAPPING), g)
    assert d.attributes["info"] == "door code 4711" and d.redacted == {"info"}

    create = plan_of({GID: d}, [], {GID: g}, Policy())
    assert create.changes[0].attributes["info"] == "door code 4711"  # what the engine writes to AD
    assert create.changes[0].redacted == {"info"}
    saved = json.dumps(create.to_dict())
    assert "4711" not in saved and REDACTED in saved

    update = plan_of({GID: d}, [_managed(d, info="old")], {GID: g}, Policy())
    text = render_plan(update)
    assert "4711" not in text and f"info: {REDACTED} -> {REDACTED}" in text
    assert "4711" not in json.dumps(update.to_dict())
    assert "info" in json.dumps(update.to_dict())  # which attribute changes is still shown


def test_unredacted_values_are_still_shown():
    g = group(mail_nickname="4711")
    d = map_alone(config(attributes={"info": "[mailNickname]"}), g)
    update = plan_of({GID: d}, [_managed(d, info="old")], {GID: g}, Policy())
    assert "info: 'old' -> '4711'" in render_plan(update)
    assert "redacted" not in update.changes[0].to_dict()


def test_a_saved_plan_gets_redacted_values_from_the_fresh_plan():
    g = group(mail_nickname="4711")
    d = map_alone(config(attributes=SECRET_MAPPING), g)
    fresh = plan_of({GID: d}, [], {GID: g}, Policy())
    saved = Plan.from_dict(json.loads(json.dumps(fresh.to_dict())))
    assert saved.changes[0].attributes["info"] == REDACTED
    assert saved.digest() == fresh.digest()
    ready = saved.with_redacted_values_from(fresh)
    assert ready.changes[0].attributes["info"] == "door code 4711"

    other = map_alone(config(attributes=SECRET_MAPPING), group(name="Other", mail_nickname="4711"))
    with pytest.raises(ValueError, match="plan again"):
        saved.with_redacted_values_from(plan_of({GID: other}, [], {GID: g}, Policy()))


def test_redacted_display_name_is_not_the_plan_heading():
    g = group(name="Secret project")
    d = map_alone(config(display_name="Redact([displayName])", cn=CONNECT_CN), g)  # CN=Group_<objectId>
    change = plan_of({GID: d}, [], {GID: g}, Policy()).changes[0]
    assert change.display_name == d.cn and "Secret project" not in json.dumps(change.to_dict())


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ({"cn": "Redact([displayName])"}, "mapping.cn"),
        ({"target_ou": 'Redact("OU=x,DC=corp,DC=test")'}, "mapping.target_ou"),
        ({"sam_account_name": "Redact([mailNickname])"}, "mapping.sam_account_name"),
    ],
)
def test_redact_cannot_hide_what_names_the_group(setting, key):
    with pytest.raises(ConfigError, match="Redact") as info:
        map_alone(config(**setting), group())
    assert info.value.key == key


def test_refused_function_in_a_mapping_says_why():
    with pytest.raises(ConfigError, match=r"Guid\(\) is not supported by writeback"):
        map_alone(config(attributes={"info": "Guid()"}), group())
