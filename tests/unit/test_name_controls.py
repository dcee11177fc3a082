"""Control characters never reach a name writeback derives (issue 23, finding 10): ESC in a cloud name made a
group unwritable forever ("sAMAccountName contains invalid 0x1b") and NUL was stored in AD's CN."""

from __future__ import annotations

import pytest

from tests.unit.builders import BASE, OU
from writeback.config import MappingSettings, parse_settings
from writeback.core.mapping import Mapper, clean_sam_account_name, dynamic_sam_candidates
from writeback.core.model import CloudGroup
from writeback.errors import ConfigError

GID = "3a5c3221-c465-48c0-95b8-e9305786a271"
# Every C0 control, DEL and every C1 control, between letters.
CONTROLS = "".join(chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)))


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def _group(name: str) -> CloudGroup:
    return CloudGroup(GID, display_name=name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A\x1b[8mB", "A8mB"),  # ESC and the brackets go; AD refused the ESC
        ("Nul\x00Byte", "NulByte"),
        ("C1\x9bcsi\x85nel", "C1csinel"),
        (f"x{CONTROLS}y", "xy"),
        ('Sales/EU "A"', "SalesEUA"),  # Microsoft's documented invalid characters, as before
    ],
)
def test_sam_account_name_has_no_control_characters(value: str, expected: str) -> None:
    assert clean_sam_account_name(value, 20) == expected


def test_the_default_names_of_a_hostile_cloud_name_have_no_control_characters() -> None:
    intent = Mapper(MappingSettings(), OU, BASE).intent(_group("A\x1b[8mB\x00"))
    assert intent.cn == "A[8mB_e9305786a271"  # Cloud Sync's CN rule, the controls removed
    assert not _has_control(intent.dn)
    assert all(not _has_control(s) for s in intent.sam_candidates)
    assert intent.sam_candidates[0] == "A8mB_e9305786a271"
    assert intent.error is None


def test_mapped_cn_and_sam_account_name_have_no_control_characters() -> None:
    m = Mapper(MappingSettings(cn="[displayName]", sam_account_name="[displayName]"), OU, BASE)
    intent = m.intent(_group(f"Ops{CONTROLS}Team"))
    assert intent.cn == "OpsTeam"
    assert intent.sam_candidates[0] == "OpsTeam"
    assert all(not _has_control(s) for s in intent.sam_candidates)


def test_a_cn_of_only_control_characters_is_empty_and_reported() -> None:
    intent = Mapper(MappingSettings(cn="[displayName]"), OU, BASE).intent(_group("\x1b\x00\x9b"))
    assert intent.error == "mapped cn is empty; fix mapping.cn"


def test_the_cn_length_is_counted_without_the_control_characters() -> None:
    name = "x" * 60 + "\x1b" * 10
    intent = Mapper(MappingSettings(cn="[displayName]"), OU, BASE).intent(_group(name))
    assert intent.cn == "x" * 60 and intent.error is None


def test_dynamic_group_account_names_have_no_control_characters() -> None:
    assert all(not _has_control(s) for s in dynamic_sam_candidates("d1", "Dyn\x1b[31mamic"))


def test_a_dynamic_group_name_with_a_control_character_is_refused_at_load() -> None:
    doc = {
        "source": {"tenant_id": "t", "client_id": "c", "client_secret_env": "WB_SECRET"},
        "target": {
            "ldap_urls": ["ldaps://dc1.corp.test"],
            "bind_dn": "CN=svc,DC=corp,DC=test",
            "bind_password_file": "pw",
            "base_dn": "DC=corp,DC=test",
            "target_ou": "OU=Writeback,DC=corp,DC=test",
        },
        "dynamic_groups": [{"id": "d1", "name": "Sales\x1b[8m", "rule": 'user.department -eq "Sales"'}],
    }
    with pytest.raises(ConfigError, match=r"dynamic_groups\[0\]\.name: .*control character"):
        parse_settings(doc, "f.toml")
