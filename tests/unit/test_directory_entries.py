"""Raw LDAP entries -> model values (anchor choice, protection, mapped attributes)."""

from __future__ import annotations

import uuid

from writeback.adapters.directory.codec import sid_from_str
from writeback.adapters.directory.entries import (
    account_from_entry,
    find_anchor,
    group_from_entry,
    is_protected,
)

GUID = uuid.UUID("6f1e1c5a-7a53-4bd8-9d55-0c7c1f0a9b11")
DOMAIN = "S-1-5-21-1-2-3"
ANCHORS = ("msDS-ExternalDirectoryObjectId", "adminDescription")


def _group(**extra: list[bytes]) -> dict[str, list[bytes]]:
    attrs = {
        "objectguid": [GUID.bytes_le],
        "objectsid": [sid_from_str(DOMAIN + "-1105")],
        "samaccountname": [b"Sales"],
        "grouptype": [b"-2147483640"],
    }
    attrs.update({k.lower(): v for k, v in extra.items()})
    return attrs


def test_anchor_is_first_attribute_in_order_with_group_value() -> None:
    attrs = _group(**{"msDS-ExternalDirectoryObjectId": [b"Group_new"], "adminDescription": [b"Group_old"]})
    assert find_anchor(attrs, ANCHORS) == "Group_new"
    assert find_anchor(attrs, tuple(reversed(ANCHORS))) == "Group_old"


def test_anchor_skips_values_without_prefix() -> None:
    attrs = _group(**{"msDS-ExternalDirectoryObjectId": [b"User_x"], "adminDescription": [b"Group_abc"]})
    assert find_anchor(attrs, ANCHORS) == "Group_abc"
    assert find_anchor(_group(adminDescription=[b"hand-made"]), ANCHORS) is None


def test_group_from_entry() -> None:
    attrs = _group(adminDescription=[b"Group_abc"], description=[b"Sales team"])
    group = group_from_entry(
        "CN=Sales,OU=W,DC=x", attrs, ["CN=u1,DC=x"], ANCHORS, ("description", "displayName")
    )
    assert group.object_guid == str(GUID)
    assert group.anchor == "Group_abc"
    assert group.cloud_id == "abc"
    assert group.sam_account_name == "Sales"
    assert group.group_type == -2147483640
    assert group.members == frozenset({"CN=u1,DC=x"})
    assert group.attributes == {
        "description": "Sales team",
        "displayName": None,
        "msDS-ExternalDirectoryObjectId": None,
        "adminDescription": "Group_abc",
    }
    assert group.protected is False


def test_protection_rules() -> None:
    assert is_protected(_group(admincount=[b"1"]))
    assert is_protected(_group(iscriticalsystemobject=[b"TRUE"]))
    assert is_protected({**_group(), "objectsid": [sid_from_str(DOMAIN + "-512")]})
    assert not is_protected(_group(admincount=[b"0"], iscriticalsystemobject=[b"FALSE"]))


def test_account_from_entry() -> None:
    attrs = {
        "objectguid": [GUID.bytes_le],
        "objectsid": [sid_from_str(DOMAIN + "-1200")],
        "objectclass": [b"top", b"person", b"organizationalPerson", b"user"],
    }
    account = account_from_entry("CN=Anna,OU=Staff,DC=x", attrs)
    assert account.object_guid == str(GUID)
    assert account.object_sid == DOMAIN + "-1200"
    assert account.object_class == "user"
    assert account.group_type is None


def test_a_dn_read_as_account_and_as_member_values_is_one_string() -> None:
    """Issue 17 (memory): 1,000,000 member values of 100,000 users are 100,000 strings, not a million."""
    dn = "CN=Noor Jansen,OU=Staff,DC=corp,DC=example,DC=test"
    user = {"objectguid": [GUID.bytes_le], "objectclass": [b"top", b"user"]}
    account = account_from_entry(dn.encode().decode(), user)
    g1 = group_from_entry("CN=G1,DC=x", _group(), [dn.encode().decode()], ANCHORS, ())
    g2 = group_from_entry("CN=G2,DC=x", _group(), [dn.encode().decode()], ANCHORS, ())
    (m1,) = g1.members
    (m2,) = g2.members
    assert m1 == dn and m1 is m2 and m1 is account.dn
