"""``LdapDirectory.read_groups_with_accounts`` against the connection double answering as Windows Server does
(tests/unit/ad_double.py): the extended DN control on every search of the read, ranged slices under
MaxValRange included, and only the accounts ``resolve_accounts`` could find."""

from __future__ import annotations

import uuid

from pyasn1.codec.ber import decoder

from tests.unit.ad_double import WindowsDC
from tests.unit.test_directory_ranges import settings
from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.adapter import EXTENDED_DN_OID, ExtendedDNControl
from writeback.adapters.directory.codec import sid_from_str

ANCHORS = ("adminDescription",)
MAPPED = ("description", "managedBy")
DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"


def windows_dc() -> WindowsDC:
    """A DC whose schema defines adminDescription (the anchor read here)."""
    dc = WindowsDC()
    schema = f"CN=Schema,CN=Configuration,{dc.nc}"
    dc._put(schema, {"objectClass": [b"dMD"]})
    dc._put(
        f"CN=Admin-Description,{schema}",
        {"objectClass": [b"attributeSchema"], "lDAPDisplayName": [b"adminDescription"]},
    )
    return dc


def add_account(dc: WindowsDC, name: str, rid: int, parent: str | None = None) -> str:
    dn = dc.add_user(name, parent)
    dc.entries[dn.lower()][1]["objectsid"] = [sid_from_str(f"{DOMAIN_SID}-{rid}")]
    return dn


def test_the_control_value_is_flag_1_string_form() -> None:
    """MS-ADTS 3.1.1.3.4.1.5: ExtendedDNRequestValue ::= SEQUENCE { Flag INTEGER }; 1 = string GUID and SID."""
    control = ExtendedDNControl()
    value = control.encodeControlValue()
    assert (control.controlType, control.criticality) == (EXTENDED_DN_OID, False)
    assert value == bytes.fromhex("3003020101")
    assert int(decoder.decode(value)[0][0]) == 1


def test_a_big_group_read_in_windows_ranges_comes_with_every_members_keys() -> None:
    dc = windows_dc()
    users = [add_account(dc, f"user{i:05d}", 2000 + i, f"OU=Staff,{dc.nc}") for i in range(3200)]
    contact = f"CN=Contact,{dc.nc}"
    dc._put(contact, {"objectClass": [b"top", b"person", b"contact"]})
    dn = dc.add_group("Big", [*users, contact])
    dc.entries[dn.lower()][1]["managedby"] = [users[0].encode()]
    with LdapDirectory(settings(), connect=dc.connect) as d:
        (plain,) = d.read_groups([dn], ANCHORS, MAPPED)
        plain_asks = [a for kind, (_b, _s, _f, attrs) in dc.log if kind == "search" for a in attrs or ()]
        assert next(a for a in plain_asks if a[:6] == "member") == "member;range=0-49999", (
            "bounded from the start"
        )
        dc.log.clear()
        (group,), accounts = d.read_groups_with_accounts([dn], ANCHORS, MAPPED)
    assert group == plain and len(group.members) == 3201
    assert group.attributes["managedBy"] == users[0]  # a DN-valued attribute, extended too: compared plain
    ranged = [
        attrs for kind, (_b, _s, _f, attrs) in dc.log if kind == "search" and attrs and "member;" in attrs[0]
    ]
    assert len(ranged) == 2, "1,500 values in the first answer, then two ranged reads"
    asked = [
        a
        for kind, (_b, _s, _f, attrs) in dc.log
        if kind == "search"
        for a in attrs or ()
        if a[:6] == "member"
    ]
    # Samba answers an unranged read whole, and with the control never answered one of 250,000 values
    # (MEMBER_RANGE): even the first request names a bounded range.
    assert asked and all(";range=" in a and not a.endswith("-*") for a in asked), asked
    assert len(accounts.by_sid) == 3200 and len(accounts.by_guid) == 3201
    for i in (0, 1499, 1500, 3199):  # from each slice
        account = accounts.by_sid[f"{DOMAIN_SID}-{2000 + i}"]
        assert account.dn == users[i] and account.object_guid == dc.guid_of(users[i])
        assert accounts.by_guid[account.object_guid] == account
    assert accounts.by_guid[dc.guid_of(contact)].object_sid is None


def test_members_resolve_accounts_could_not_find_are_left_out() -> None:
    dc = windows_dc()
    child_nc = "DC=child,DC=corp,DC=test"
    dc.add_child_domain(child_nc)
    here = add_account(dc, "here", 1101, f"OU=Staff,{dc.nc}")
    child = add_account(dc, "child", 1102, f"OU=Staff,{child_nc}")
    other_tree = add_account(dc, "other", 1103, "OU=Staff,DC=other,DC=test")
    fsp = add_account(dc, "S-1-5-21-1-2-3-1104", 1104, f"CN=ForeignSecurityPrincipals,{dc.nc}")
    dns_zone = add_account(dc, "zone", 1105, f"DC=DomainDnsZones,{dc.nc}")
    dn = dc.add_group("Mixed", [here, child, other_tree, fsp, dns_zone])

    def found(**overrides: object) -> set[str]:
        with LdapDirectory(settings(**overrides), connect=dc.connect) as d:
            (group,), accounts = d.read_groups_with_accounts([dn], ANCHORS, MAPPED)
        assert len(group.members) == 5
        assert {a.dn for a in accounts.by_sid.values()} == {a.dn for a in accounts.by_guid.values()}
        return {a.dn for a in accounts.by_guid.values()}

    assert found() == {here}
    # With a Global Catalog resolve_accounts searches the forest: only the foreign security principal is out.
    assert found(gc_urls=("ldaps://gc.corp.test:3269",)) == {here, child, other_tree, dns_zone}


def test_a_dc_that_ignores_the_control_gives_groups_and_no_accounts() -> None:
    dc = windows_dc()
    user = add_account(dc, "u", 1200, f"OU=Staff,{dc.nc}")
    dn = dc.add_group("G", [user])

    class Ignoring(WindowsDC):
        def extended(self, dn: str, flag: int) -> str:
            return dn

    dc.__class__ = Ignoring
    with LdapDirectory(settings(), connect=dc.connect) as d:
        (group,), accounts = d.read_groups_with_accounts(
            [dn, f"CN=gone-{uuid.uuid4()},{dc.nc}"], ANCHORS, MAPPED
        )
    assert group.members == frozenset({user})
    assert not accounts.by_sid and not accounts.by_guid
