"""AD's protected and privileged groups are never touched (issue 23, protected-group review): every group of
Microsoft's Table B-1 ("Appendix B: Privileged Accounts and Groups in Active Directory") is recognised, those
with a fixed SID by SID, those created with an ordinary RID (DnsAdmins, ...) by name, and AdminSDHolder's
adminCount and isCriticalSystemObject as before."""

from __future__ import annotations

import uuid

import pytest

from tests.unit.builders import desire
from writeback.adapters.directory.codec import sid_from_str
from writeback.adapters.directory.entries import group_from_entry, is_protected
from writeback.core.model import CloudGroup, DirectoryAccount
from writeback.core.protected import (
    BUILTIN_GROUPS,
    PRIVILEGED_GROUP_NAMES,
    WELL_KNOWN_DOMAIN_GROUPS,
    protection,
)

DOMAIN = "S-1-5-21-1004336348-1177238915-682003330"
ANCHORS = ("msDS-ExternalDirectoryObjectId", "adminDescription")


def _entry(sid: str, sam: str, **extra: list[bytes]) -> dict[str, list[bytes]]:
    attrs = {
        "objectguid": [uuid.uuid4().bytes_le],
        "objectsid": [sid_from_str(sid)],
        "samaccountname": [sam.encode()],
        "grouptype": [b"-2147483644"],
    }
    attrs.update(extra)
    return attrs


@pytest.mark.parametrize(("rid", "name"), sorted(WELL_KNOWN_DOMAIN_GROUPS.items()))
def test_each_well_known_domain_group_is_protected_by_its_sid(rid: int, name: str) -> None:
    # A renamed copy keeps its SID: the name given here is not the default one.
    reason = protection(object_sid=f"{DOMAIN}-{rid}", sam_account_name="renamed", cn="renamed")
    assert reason == f"a well-known group of the domain ({name})"
    assert is_protected(_entry(f"{DOMAIN}-{rid}", "renamed"), "CN=renamed,CN=Users,DC=corp,DC=test")


@pytest.mark.parametrize(("rid", "name"), sorted(BUILTIN_GROUPS.items()))
def test_each_builtin_group_is_protected_by_its_sid(rid: int, name: str) -> None:
    reason = protection(object_sid=f"S-1-5-32-{rid}", sam_account_name="renamed", cn="renamed")
    assert reason == f"a built-in group of AD ({name})"
    assert is_protected(_entry(f"S-1-5-32-{rid}", "renamed"), "CN=renamed,CN=Builtin,DC=corp,DC=test")


@pytest.mark.parametrize("name", PRIVILEGED_GROUP_NAMES)
def test_each_default_group_without_a_fixed_rid_is_protected_by_name(name: str) -> None:
    """DnsAdmins and its kind get an ordinary RID (above 1000) and no adminCount: the old rule (adminCount,
    critical system object or RID below 1000) let writeback write their members."""
    sid = f"{DOMAIN}-1101"
    assert (
        protection(object_sid=sid, sam_account_name=name, cn=name)
        == f"a default privileged group of AD ({name})"
    )
    # by sAMAccountName wherever it was moved, case-insensitively ...
    assert is_protected(_entry(sid, name.upper()), "CN=Some Name,OU=Moved,DC=corp,DC=test")
    # ... and by CN when only the pre-Windows 2000 name was changed
    assert is_protected(_entry(sid, "renamed"), f"CN={name},CN=Users,DC=corp,DC=test")


def test_the_old_rule_missed_dnsadmins() -> None:
    """A DnsAdmins as Samba and Windows create it: RID above 1000, no adminCount, not a critical object."""
    attrs = _entry(f"{DOMAIN}-1101", "DnsAdmins", iscriticalsystemobject=[b"FALSE"])
    group = group_from_entry("CN=DnsAdmins,CN=Users,DC=corp,DC=test", attrs, [], ANCHORS, ())
    assert group.protected is True


@pytest.mark.parametrize(
    ("admin_count", "critical", "reason"),
    [
        (1, False, "adminCount is set: AdminSDHolder protects it"),
        (None, True, "a critical system object of AD"),
    ],
)
def test_admin_count_and_critical_objects_still_count(
    admin_count: int | None, critical: bool, reason: str
) -> None:
    kw = {"object_sid": f"{DOMAIN}-4242", "sam_account_name": "Ops", "cn": "Ops"}
    assert protection(**kw, admin_count=admin_count, critical_system_object=critical) == reason


def test_an_unreadable_admin_count_counts_as_set() -> None:
    assert is_protected(_entry(f"{DOMAIN}-4242", "Ops", admincount=[b"yes"]))


def test_a_sid_outside_the_domains_accounts_is_well_known() -> None:
    assert protection(object_sid="S-1-5-9", sam_account_name="x", cn="x") is not None  # Enterprise DCs


@pytest.mark.parametrize(
    ("sam", "cn"),
    [("Sales", "Sales"), ("DnsAdminsTeam", "DnsAdmins Team"), ("Dns_Admins", "DHCP"), (None, None)],
)
def test_ordinary_groups_are_not_protected(sam: str | None, cn: str | None) -> None:
    assert protection(object_sid=f"{DOMAIN}-1105", sam_account_name=sam, cn=cn, admin_count=0) is None
    assert protection(object_sid=None, sam_account_name=sam, cn=cn) is None


def test_an_soa_converted_dnsadmins_is_not_written_back() -> None:
    """The threat: DnsAdmins synced to Entra, its source of authority converted to the cloud; writeback would
    write the cloud group's members into the original AD group, found by its SID, and a cloud administrator
    would administer the DCs' DNS service. It is reported and left as it is."""
    gid = "3a5c3221-c465-48c0-95b8-e9305786a271"
    sid = f"{DOMAIN}-1101"
    dn = "CN=DnsAdmins,CN=Users,DC=corp,DC=test"
    dns = group_from_entry(dn, _entry(sid, "DnsAdmins"), ["CN=admin,DC=corp,DC=test"], ANCHORS, ())
    cloud = CloudGroup(
        gid, display_name="DnsAdmins", on_premises_security_identifier=sid, is_cloud_managed=True
    )
    account = DirectoryAccount(dn, dns.object_guid, sid, "group", dns.group_type)
    state = desire([cloud], by_sid=[account], originals=[dns])
    assert f"its original AD group {dn} is an AD protected group" in (state.groups[gid].error or "")
    assert all(g.dn != dn for g in state.actual)  # not compared, so never updated


def test_a_managed_dnsadmins_is_left_alone() -> None:
    """Even carrying a writeback anchor (set by whoever could edit it), a default privileged group is
    reported and never changed."""
    gid = "3a5c3221-c465-48c0-95b8-e9305786a271"
    attrs = _entry(
        f"{DOMAIN}-1101", "DnsAdmins", **{"msds-externaldirectoryobjectid": [f"Group_{gid}".encode()]}
    )
    dns = group_from_entry("CN=DnsAdmins,CN=Users,DC=corp,DC=test", attrs, [], ANCHORS, ())
    state = desire([CloudGroup(gid, display_name="DnsAdmins")], managed=[dns])
    assert "never modifies it" in (state.groups[gid].error or "")
    assert all(g.dn != dns.dn for g in state.actual)
