"""The sandbox's least-privileged service account, and the delegation docs/least-privilege.md prescribes.

DIR/writeback.toml binds as ``CN=svc-writeback,CN=Users,…``, not as Administrator, so the demo and every test
that runs writeback do so with production's rights: read what Authenticated Users may read, and on the target
OU only create/delete group objects and write the listed properties of groups. The delegation is applied
with ``samba-tool dsacl set`` (Samba's counterpart of ``dsacls``), as the document shows; the schemaIDGUIDs
are read from the DC's schema rather than copied, because the sandbox's own schema extension
(msDS-ExternalDirectoryObjectId) gets a GUID of the DC's choosing.

The same :func:`delegate` serves the test bed, which gives the account this delegation on per-test OUs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ldap
from ldap.controls import RequestControl
from ldap.filter import escape_filter_chars

from writeback.errors import SandboxError
from writeback.testbed.sandbox.ldapconn import describe
from writeback.testbed.sandbox.seed import sid_to_str

SERVICE_SAM = "svc-writeback"
SERVICE_CN = "svc-writeback"

# What writeback writes on its groups after creating them (docs/least-privilege.md, rows 2-9). Creating a
# group needs only Create Child: the attributes of the add request need no Write right.
WRITTEN_ATTRIBUTES: Sequence[str] = (
    "member",
    "description",
    "displayName",
    "adminDescription",
    "msDS-ExternalDirectoryObjectId",
    "cn",
    "name",
    # The engine restores a group's type when it differs from the mapping (drift, or a group adopted from
    # Connect Sync's writeback that has another scope): Write groupType, row 9 of the document.
    "groupType",
    # Mail groups (Microsoft 365, mail-enabled): the base schema's mail attributes, rows 10-11.
    "mail",
    "proxyAddresses",
)
# Written on mail groups where the forest has Exchange's schema (rows 12-14): delegated when the schema
# defines them (`writeback sandbox up --exchange-schema`).
EXCHANGE_WRITTEN_ATTRIBUTES: Sequence[str] = (
    "mailNickname",
    "msExchRecipientDisplayType",
    "msExchRecipientTypeDetails",
)

# LDAP_SERVER_SD_FLAGS_OID with DACL_SECURITY_INFORMATION (4): read the DACL without needing the right to
# read the SACL ([MS-ADTS] 3.1.1.3.4.1.11). BER: SEQUENCE { INTEGER 4 }.
_SD_FLAGS_OID = "1.2.840.113556.1.4.801"
_SD_FLAGS_DACL = b"\x30\x03\x02\x01\x04"


def service_dn(base_dn: str) -> str:
    return f"CN={SERVICE_CN},CN=Users,{base_dn}"


def sid_to_bytes(sid: str) -> bytes:
    """'S-1-5-21-…' -> binary objectSid ([MS-DTYP] 2.4.2.2), to find the SID in a binary security descriptor."""
    parts = sid.split("-")
    if len(parts) < 3 or parts[0] != "S":
        raise ValueError(f"not a SID: {sid!r}")
    subs = [int(p) for p in parts[3:]]
    out = bytes([int(parts[1]), len(subs)]) + int(parts[2]).to_bytes(6, "big")
    return out + b"".join(s.to_bytes(4, "little") for s in subs)


def ensure_account(conn: Any, base_dn: str, password: str) -> str:
    """Create the service account (a normal, enabled user) or reset its password to ``password``; return
    its objectSid. ``conn`` is an Administrator connection over LDAPS (AD sets unicodePwd only over an
    encrypted connection)."""
    dn = service_dn(base_dn)
    encoded = f'"{password}"'.encode("utf-16-le")  # [MS-ADTS] 3.1.1.3.1.5.1: quoted, UTF-16LE
    try:
        try:
            conn.add_s(
                dn,
                [
                    ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
                    ("sAMAccountName", [SERVICE_SAM.encode()]),
                    ("userPrincipalName", [f"{SERVICE_SAM}@{_dns_domain(base_dn)}".encode()]),
                    ("description", [b"writeback service account (least privilege, see docs)"]),
                    ("unicodePwd", [encoded]),
                    ("userAccountControl", [b"66048"]),  # NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD
                ],
            )
        except ldap.ALREADY_EXISTS:
            conn.modify_s(dn, [(ldap.MOD_REPLACE, "unicodePwd", [encoded])])
        found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=user)", ["objectSid"])
    except ldap.LDAPError as exc:
        raise SandboxError(f"creating the service account {dn} failed: {describe(exc)}") from exc
    return sid_to_str(found[0][1]["objectSid"][0])


def existing_sid(conn: Any, base_dn: str) -> str | None:
    """The service account's objectSid, or None when it was not made yet."""
    try:
        found = conn.search_s(service_dn(base_dn), ldap.SCOPE_BASE, "(objectClass=user)", ["objectSid"])
    except ldap.NO_SUCH_OBJECT:
        return None
    except ldap.LDAPError as exc:
        raise SandboxError(f"reading the service account failed: {describe(exc)}") from exc
    return sid_to_str(found[0][1]["objectSid"][0]) if found else None


def _dns_domain(base_dn: str) -> str:
    return ".".join(rdn.split("=", 1)[1] for rdn in base_dn.split(",") if rdn.upper().startswith("DC="))


def schema_guid(conn: Any, base_dn: str, ldap_name: str) -> str:
    """The schemaIDGUID of a class or attribute, as the GUID string SDDL uses."""
    schema = f"CN=Schema,CN=Configuration,{base_dn}"
    flt = f"(lDAPDisplayName={escape_filter_chars(ldap_name)})"
    try:
        found = [e for e in conn.search_s(schema, ldap.SCOPE_ONELEVEL, flt, ["schemaIDGUID"]) if e[0]]
    except ldap.LDAPError as exc:
        raise SandboxError(f"reading the schemaIDGUID of {ldap_name} failed: {describe(exc)}") from exc
    if not found:
        raise SandboxError(f"the sandbox schema has no {ldap_name}; run `writeback sandbox up` again")
    return str(uuid.UUID(bytes_le=found[0][1]["schemaIDGUID"][0]))


def defined_exchange_attributes(conn: Any, base_dn: str) -> list[str]:
    """The attributes of EXCHANGE_WRITTEN_ATTRIBUTES this schema defines."""
    schema = f"CN=Schema,CN=Configuration,{base_dn}"
    out = []
    for name in EXCHANGE_WRITTEN_ATTRIBUTES:
        flt = f"(lDAPDisplayName={escape_filter_chars(name)})"
        if any(dn for dn, _ in conn.search_s(schema, ldap.SCOPE_ONELEVEL, flt, ["cn"]) if dn):
            out.append(name)
    return out


def delegation_sddl(conn: Any, base_dn: str, sid: str, attributes: Sequence[str] | None = None) -> str:
    """The ACEs of docs/least-privilege.md for ``sid``: Create/Delete Child of class group on the OU and
    below (CI), Write Property of each written attribute, inherited by group objects only (CIIO). With
    ``attributes``: only Write Property of those."""
    group = schema_guid(conn, base_dn, "group")
    if attributes is None:
        aces = [f"(OA;CI;CCDC;{group};;{sid})"]
        attributes = [*WRITTEN_ATTRIBUTES, *defined_exchange_attributes(conn, base_dn)]
    else:
        aces = []
    aces += [f"(OA;CIIO;WP;{schema_guid(conn, base_dn, a)};{group};{sid})" for a in attributes]
    return "".join(aces)


# What writeback writes into the original AD group of an SOA-converted cloud group when it keeps the group's
# name, OU and scope (mapping.keep_adopted_names, the default): members, the mapped text and its anchor.
TAKEOVER_ATTRIBUTES: Sequence[str] = (
    "member",
    "description",
    "displayName",
    "msDS-ExternalDirectoryObjectId",
)


def takeover_sddl(conn: Any, base_dn: str, sid: str) -> str:
    """ACEs on one group object (not inherited): Write Property of each of :data:`TAKEOVER_ATTRIBUTES`."""
    return "".join(f"(OA;;WP;{schema_guid(conn, base_dn, a)};;{sid})" for a in TAKEOVER_ATTRIBUTES)


# -- Cloud users (issue 24): docs/least-privilege.md, "Cloud users" ----------------------------------------
# Cloud Sync's default user mappings (AD attribute <- Entra; how-to-configure "User attribute mappings"), less
# the names: what writeback writes on an account after creating it, and on the original account of an
# SOA-converted user. msDS-ObjectSoa (AD object enforcement) is not in the sandbox's 2012 R2 schema.
USER_MAPPED_ATTRIBUTES: Sequence[str] = (
    "displayName",
    "givenName",
    "sn",
    "department",
    "company",
    "co",
    "l",
    "st",
    "postalCode",
    "streetAddress",
    "mobile",
    "preferredLanguage",
    "employeeID",
    "manager",
)
# Written on the accounts writeback creates in the cloud users' OU: the mapped attributes, the names a rename
# changes (cn and name, userPrincipalName), userAccountControl (disable, enable, smart card required), the anchor
# (msDS-ExternalDirectoryObjectId) and adminDescription (User_<id>, which Connect's inbound rules skip).
# sAMAccountName is set only by the create (Create Child covers the attributes of the add).
CLOUD_USER_WRITTEN_ATTRIBUTES: Sequence[str] = (
    *USER_MAPPED_ATTRIBUTES,
    "cn",
    "name",
    "userPrincipalName",
    "userAccountControl",
    "msDS-ExternalDirectoryObjectId",
    "adminDescription",
)
# The Reset Password extended right (User-Force-Change-Password, [MS-ADTS] 5.1.3.2.1): a random password at
# the create and after, over LDAPS.
RESET_PASSWORD_GUID = "00299570-246d-11d0-a768-00aa006e0529"
# On the original AD account of an SOA-converted user, that account only: the mapped attributes,
# userAccountControl (accountDisabled) and the anchor. Never its names, OU or password (kept, as
# mapping.keep_adopted_names keeps an adopted group's).
USER_TAKEOVER_ATTRIBUTES: Sequence[str] = (
    *USER_MAPPED_ATTRIBUTES,
    "userAccountControl",
    "msDS-ExternalDirectoryObjectId",
)


def cloud_users_sddl(conn: Any, base_dn: str, sid: str) -> str:
    """The ACEs of docs/least-privilege.md ("Cloud users") on the cloud users' OU: Create/Delete Child of class
    user on the OU and below (CI); Write Property of each of :data:`CLOUD_USER_WRITTEN_ATTRIBUTES` and the Reset
    Password right, inherited by user objects only (CIIO)."""
    user = schema_guid(conn, base_dn, "user")
    aces = [f"(OA;CI;CCDC;{user};;{sid})"]
    aces += [
        f"(OA;CIIO;WP;{schema_guid(conn, base_dn, a)};{user};{sid})" for a in CLOUD_USER_WRITTEN_ATTRIBUTES
    ]
    aces.append(f"(OA;CIIO;CR;{RESET_PASSWORD_GUID};{user};{sid})")
    return "".join(aces)


def user_takeover_sddl(conn: Any, base_dn: str, sid: str) -> str:
    """ACEs on one user object (not inherited): Write Property of each of :data:`USER_TAKEOVER_ATTRIBUTES`."""
    return "".join(f"(OA;;WP;{schema_guid(conn, base_dn, a)};;{sid})" for a in USER_TAKEOVER_ATTRIBUTES)


def is_delegated(conn: Any, ou_dn: str, sid: str) -> bool:
    """True when the OU's own DACL names ``sid`` (the delegation was applied before)."""
    control = RequestControl(_SD_FLAGS_OID, True, _SD_FLAGS_DACL)
    try:
        found = conn.search_ext_s(
            ou_dn, ldap.SCOPE_BASE, "(objectClass=*)", ["nTSecurityDescriptor"], serverctrls=[control]
        )
    except ldap.LDAPError as exc:
        raise SandboxError(f"reading the security descriptor of {ou_dn} failed: {describe(exc)}") from exc
    descriptor = found[0][1].get("nTSecurityDescriptor", [b""])[0] if found else b""
    return sid_to_bytes(sid) in descriptor


def delegate(
    conn: Any,
    *,
    smb_conf: Path,
    ldap_url: str,
    base_dn: str,
    admin_password: str,
    ou_dn: str,
    sid: str,
    sddl: str | None = None,
    attributes: Sequence[str] | None = None,
) -> None:
    """Give ``sid`` the delegation of docs/least-privilege.md on ``ou_dn`` (once: skipped when present).
    With ``attributes``, add Write Property of just those (e.g. after the schema gained them), always; with
    ``sddl``, exactly those ACEs (e.g. rights on one object only).

    ``samba-tool dsacl set`` binds as Administrator over ``ldap_url`` (StartTLS URL; samba-tool signs the
    NTLM bind); the password goes through the environment (PASSWD), never the command line.
    """
    if attributes is None and sddl is None and is_delegated(conn, ou_dn, sid):
        return
    sddl = sddl or delegation_sddl(conn, base_dn, sid, attributes)
    tool = shutil.which("samba-tool") or "/usr/bin/samba-tool"
    argv = [tool, "dsacl", "set", "-H", ldap_url, "-s", str(smb_conf), "-U", "Administrator"]
    argv += [f"--objectdn={ou_dn}", f"--sddl={sddl}"]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PASSWD": admin_password},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"samba-tool dsacl set on {ou_dn} did not run: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-10:])
        raise SandboxError(
            f"delegating group management on {ou_dn} to the service account failed "
            f"(samba-tool dsacl set, exit {done.returncode}):\n{tail}"
        )


# Run by the system's python3, which has Samba's own bindings: they open the DC's sam.ldb as the system (the
# way `samba-tool -H …/sam.ldb` does). Over LDAP even Administrator cannot change Deleted Objects' descriptor
# without first taking ownership ("Retrieving Deleted Objects", learn.microsoft.com/windows/win32/ad/
# retrieving-deleted-objects); samba-tool dsacl cannot address that container at all.
_GRANT_DELETED_OBJECTS = """
import sys
import ldb
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB

conf, sam, base, sid = sys.argv[1:5]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=sam, session_info=system_session(), lp=lp)
dn = "CN=Deleted Objects," + base
controls = ["show_deleted:1", "sd_flags:1:4"]
res = db.search(dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"], controls=controls)
desc = ndr_unpack(security.descriptor, res[0]["nTSecurityDescriptor"][0])
if sid not in desc.as_sddl():
    ace = security.ace()
    ace.type = security.SEC_ACE_TYPE_ACCESS_ALLOWED
    ace.access_mask = security.SEC_ADS_LIST | security.SEC_ADS_READ_PROP
    ace.trustee = security.dom_sid(sid)
    desc.dacl_add(ace)
    msg = ldb.Message()
    msg.dn = ldb.Dn(db, dn)
    msg["nTSecurityDescriptor"] = ldb.MessageElement(ndr_pack(desc), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
    db.modify(msg, controls=controls)
"""


def grant_deleted_objects_read(*, smb_conf: Path, sam_ldb: Path, base_dn: str, sid: str) -> None:
    """List Contents + Read Property on the Deleted Objects container for ``sid`` (docs/least-privilege.md,
    "Deleted users"): what `dsacls … /takeownership` then `/G svc:LCRP` grant on Windows. Idempotent."""
    python = "/usr/bin/python3"
    argv = [python, "-c", _GRANT_DELETED_OBJECTS, str(smb_conf), str(sam_ldb), base_dn, sid]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"granting read of Deleted Objects did not run: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-10:])
        raise SandboxError(f"granting the service account read of Deleted Objects failed:\n{tail}")
