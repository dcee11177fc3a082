"""Which AD groups writeback never touches: AD's protected and privileged groups. Pure; the one place this is
decided (the directory adapter reads the attributes, :func:`protection` judges them).

Microsoft's lists, and how each group is recognised:

- **Protected** (AdminSDHolder): SDProp stamps ``adminCount=1`` on the protected groups and on every account it
  protects ("Appendix C: Protected Accounts and Groups in Active Directory",
  https://learn.microsoft.com/windows-server/identity/ad-ds/plan/security-best-practices/appendix-c--protected-accounts-and-groups-in-active-directory).
  ``isCriticalSystemObject`` marks the default objects AD itself needs.
- **Built-in and default groups with a fixed SID** ("Appendix B: Privileged Accounts and Groups in Active
  Directory", Table B-1,
  https://learn.microsoft.com/windows-server/identity/ad-ds/plan/security-best-practices/appendix-b--privileged-accounts-and-groups-in-active-directory;
  their SIDs: "Well-known SIDs", https://learn.microsoft.com/windows/win32/secauthz/well-known-sids): the
  Built-in container's groups are aliases of the built-in domain ``S-1-5-32-<RID>`` (Administrators 544, Account
  Operators 548, Backup Operators 551, ...), the Users container's ones ``<domain SID>-<RID>`` with a RID below
  1000 (Domain Admins 512, Enterprise Admins 519, Protected Users 525, ...). Accounts created later get RIDs
  from the domain's RID pool, above every well-known one. Recognised by SID: it cannot be renamed or reused.
- **Default groups without a fixed RID**: DnsAdmins, DnsUpdateProxy, DHCP Administrators, DHCP Users and
  WinRMRemoteWMIUsers__ are created by a role or feature with an ordinary RID above 1000 and carry no
  ``adminCount`` (AdminSDHolder does not protect them), yet Table B-1 lists them, and DnsAdmins' members can make
  the DNS service on a DC load a DLL of their choice. Debugger Users is "neither a default nor a built-in group"
  there but grants remote debugging. These have no stable SID to match, so they are recognised by name: the
  ``sAMAccountName`` (unique in the domain, so no second group can share it, and kept when the group is moved
  out of the Users container, which Table B-1 allows) or the CN, case-insensitively, wherever the group lives.
  A false match costs only that writeback leaves an ordinary group of that name alone; a miss would let a cloud
  group's members administer a DC's DNS. (Renaming both names of such a group hides it from this rule; its
  adminCount, if an administrator protects it, still counts.)

Why it matters here: an SOA-converted group is written back into its *original* AD group, found by its SID, and
a managed group's anchor can be set by anyone who may edit it; either way a cloud administrator must not gain
control of a privileged AD group's members.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

BUILTIN_DOMAIN = (
    "S-1-5-32"  # the built-in domain of every DC: its aliases are the Built-in container's groups
)
FIRST_ORDINARY_RID = 1000  # every well-known domain RID is below; accounts created later are above

# Table B-1's groups with a fixed RID in the domain (<domain SID>-<RID>), by RID (names for messages and tests).
WELL_KNOWN_DOMAIN_GROUPS: Mapping[int, str] = {
    498: "Enterprise Read-only Domain Controllers",
    512: "Domain Admins",
    513: "Domain Users",
    514: "Domain Guests",
    515: "Domain Computers",
    516: "Domain Controllers",
    517: "Cert Publishers",
    518: "Schema Admins",
    519: "Enterprise Admins",
    520: "Group Policy Creator Owners",
    521: "Read-only Domain Controllers",
    522: "Cloneable Domain Controllers",
    525: "Protected Users",
    526: "Key Admins",
    527: "Enterprise Key Admins",
    553: "RAS and IAS Servers",
    571: "Allowed RODC Password Replication Group",
    572: "Denied RODC Password Replication Group",
}
# Table B-1's Built-in container groups: aliases S-1-5-32-<RID>.
BUILTIN_GROUPS: Mapping[int, str] = {
    544: "Administrators",
    545: "Users",
    546: "Guests",
    547: "Power Users",
    548: "Account Operators",
    549: "Server Operators",
    550: "Print Operators",
    551: "Backup Operators",
    552: "Replicator",
    554: "Pre-Windows 2000 Compatible Access",
    555: "Remote Desktop Users",
    556: "Network Configuration Operators",
    557: "Incoming Forest Trust Builders",
    558: "Performance Monitor Users",
    559: "Performance Log Users",
    560: "Windows Authorization Access Group",
    561: "Terminal Server License Servers",
    562: "Distributed COM Users",
    568: "IIS_IUSRS",
    569: "Cryptographic Operators",
    573: "Event Log Readers",
    574: "Certificate Service DCOM Access",
    575: "RDS Remote Access Servers",
    576: "RDS Endpoint Servers",
    577: "RDS Management Servers",
    578: "Hyper-V Administrators",
    579: "Access Control Assistance Operators",
    580: "Remote Management Users",
    582: "Storage Replica Administrators",
}
# Table B-1's default groups created with an ordinary RID (no fixed SID): recognised by name.
PRIVILEGED_GROUP_NAMES = (
    "DnsAdmins",
    "DnsUpdateProxy",
    "DHCP Administrators",
    "DHCP Users",
    "WinRMRemoteWMIUsers__",
    "Debugger Users",
)
_BY_NAME = {n.lower(): n for n in PRIVILEGED_GROUP_NAMES}
_DOMAIN_ACCOUNT_SID = re.compile(r"S-1-5-21-\d+-\d+-\d+-(\d+)", re.IGNORECASE)


def protection(
    *,
    object_sid: str | None,
    sam_account_name: str | None,
    cn: str | None,
    admin_count: int | None = None,
    critical_system_object: bool = False,
) -> str | None:
    """Why writeback must never modify this AD group, or None for an ordinary group.

    ``object_sid`` in SDDL form (S-1-5-...); ``cn`` the unescaped value of the group's RDN."""
    if admin_count:
        return "adminCount is set: AdminSDHolder protects it"
    if critical_system_object:
        return "a critical system object of AD"
    if object_sid:
        sid = object_sid.upper()
        if sid.startswith(BUILTIN_DOMAIN + "-"):
            rid = sid.rpartition("-")[2]
            name = BUILTIN_GROUPS.get(int(rid)) if rid.isdigit() else None
            return f"a built-in group of AD ({name or 'the built-in domain ' + BUILTIN_DOMAIN})"
        account = _DOMAIN_ACCOUNT_SID.fullmatch(sid)
        if account is None:
            return f"a well-known SID ({object_sid}), not an account of the domain"
        rid_value = int(account.group(1))
        if rid_value < FIRST_ORDINARY_RID:
            name = WELL_KNOWN_DOMAIN_GROUPS.get(rid_value)
            return f"a well-known group of the domain ({name or f'RID {rid_value}'})"
    for value in (sam_account_name, cn):
        if value and (name := _BY_NAME.get(value.strip().lower())):
            return f"a default privileged group of AD ({name})"
    return None
