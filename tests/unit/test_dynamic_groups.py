"""On-prem dynamic groups: their config, rule evaluation over AD users, sAMAccountName candidates and the AD
user properties rules see (writeback.core.desired.dynamic_intents, writeback.adapters.directory.users)."""

import struct
import uuid

import pytest

from writeback.adapters.directory.codec import sid_to_str
from writeback.adapters.directory.users import user_properties
from writeback.config import parse_settings
from writeback.core.desired import DirectoryFacts, desired_state, dynamic_intents
from writeback.core.mapping import dynamic_sam_candidates as sam_candidates
from writeback.errors import ConfigError

BASE = "DC=corp,DC=test"
DOC = {
    "target": {
        "ldap_urls": ["ldaps://dc"],
        "bind_dn": "x",
        "bind_password_env": "Y",
        "base_dn": BASE,
        "target_ou": f"OU=Writeback,{BASE}",
    },
    "scope": {"mode": "none"},
    "dynamic_groups": [
        {
            "id": "hr",
            "name": "HR Staff",
            "rule": 'user.department -eq "HR" -and user.accountEnabled -eq true',
        },
        {
            "id": "reports",
            "name": "Team Anna",
            "rule": 'Direct Reports for "00000000-0000-0000-0000-000000000001"',
            "users_base": f"OU=Staff,{BASE}",
            "group_scope": "global",
        },
    ],
}


def user(n, dept, enabled=True, ou="OU=Staff", manager=None):
    d = {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "department": dept,
        "accountEnabled": enabled,
        "onPremisesDistinguishedName": f"CN=u{n},{ou},{BASE}",
    }
    if manager:
        d["managerDn"] = manager
    return d


def test_config_without_source_for_onprem_only():
    s = parse_settings(DOC, "w.toml")
    assert s.source is None and len(s.dynamic_groups) == 2
    assert s.dynamic_groups[0].ou == f"OU=Writeback,{BASE}"


def test_bad_dynamic_rule_and_duplicate_id_are_config_errors():
    bad = {**DOC, "dynamic_groups": [{"id": "x", "name": "X", "rule": "user.department -eq"}]}
    with pytest.raises(ConfigError, match=r"dynamic_groups\[0\].rule"):
        parse_settings(bad, "w.toml")
    dup = {**DOC, "dynamic_groups": [DOC["dynamic_groups"][0], DOC["dynamic_groups"][0]]}
    with pytest.raises(ConfigError, match="duplicate dynamic group id"):
        parse_settings(dup, "w.toml")


def test_source_still_required_for_cloud_modes():
    with pytest.raises(ConfigError, match="source"):
        parse_settings({**DOC, "scope": {"mode": "all"}}, "w.toml")


def test_desired_dynamic_groups_evaluates_rules_and_scopes():
    s = parse_settings(DOC, "w.toml")
    anna = f"CN=u1,OU=Staff,{BASE}"
    users = [
        user(1, "HR"),
        user(2, "HR", enabled=False),
        user(3, "Sales", manager=anna),
        user(4, "HR", ou="OU=Other"),
        user(5, "IT", ou="OU=Other", manager=anna),
    ]
    facts = DirectoryFacts(anchor_attributes=("msDS-ExternalDirectoryObjectId",))
    d = desired_state(dynamic_intents(s, users), facts, s).groups
    hr = d["dynamic:hr"]
    assert hr.members == {f"CN=u1,OU=Staff,{BASE}", f"CN=u4,OU=Other,{BASE}"}
    assert (
        hr.anchor == "WritebackDynamic_hr"
        and hr.attributes["msDS-ExternalDirectoryObjectId"] == "WritebackDynamic_hr"
    )
    reports = d["dynamic:reports"]
    assert reports.members == {f"CN=u3,OU=Staff,{BASE}"}  # u5 reports to Anna but is outside users_base
    assert reports.group_type == -2147483646
    assert (hr.sam_account_name, reports.sam_account_name) == ("HRStaff", "TeamAnna")


def test_sam_candidates_deterministic():
    assert sam_candidates("hr", "HR Staff") == sam_candidates("hr", "HR Staff")
    assert sam_candidates("hr", "HR Staff")[0] == "HRStaff"


def test_ad_user_properties_mapping():
    guid = uuid.uuid4()
    sid = bytes([1, 5, 0, 0, 0, 0, 0, 5]) + struct.pack("<5I", 21, 1, 2, 3, 1105)
    props = user_properties(
        "CN=x,DC=corp",
        {
            "title": [b"Engineer"],
            "department": [b"R&D"],
            "userAccountControl": [b"514"],
            "objectGUID": [guid.bytes_le],
            "objectSid": [sid],
            "proxyAddresses": [b"SMTP:x@corp.test", b"smtp:y@corp.test"],
            "extensionAttribute3": [b"E3"],
            "l": [b"Lagos"],
        },
    )
    assert props["jobTitle"] == "Engineer" and props["department"] == "R&D" and props["city"] == "Lagos"
    assert props["accountEnabled"] is False
    assert props["id"] == str(guid)
    assert props["onPremisesSecurityIdentifier"] == "S-1-5-21-1-2-3-1105"
    assert props["proxyAddresses"] == ["SMTP:x@corp.test", "smtp:y@corp.test"]
    assert props["onPremisesExtensionAttributes"]["extensionAttribute3"] == "E3"
    assert sid_to_str(sid) == "S-1-5-21-1-2-3-1105"
