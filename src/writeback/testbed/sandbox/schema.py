"""Extend the sandbox schema with msDS-ExternalDirectoryObjectId, as an administrator would.

Samba provisions the 2012 R2 schema, which lacks the attribute Cloud Sync uses as its anchor (Windows Server
2016's schema has it). The definition below is Windows' own (attributeID 1.2.840.113556.1.4.2310, Unicode
string, indexed, in the Global Catalog, the same schemaIDGUID; see [MS-ADA2] 2.320 at
learn.microsoft.com/openspecs/windows_protocols/ms-ada2/0abc1d06-ac09-476f-a60b-5deb05b394f7); it is added over LDAP and made allowed on groups and users.
"""

from __future__ import annotations

import uuid
from typing import Any

import ldap

from writeback.errors import SandboxError
from writeback.testbed.sandbox.ldapconn import describe

ATTRIBUTE = "msDS-ExternalDirectoryObjectId"
_WINDOWS_SCHEMA_ID = uuid.UUID("bd29bf90-66ad-40e1-887b-10df070419a6")
_PUBLIC_INFORMATION = uuid.UUID("77b5b886-944a-11d1-aebd-0000f80367c1")
_ATTRIBUTE_CN = "ms-DS-External-Directory-Object-Id"


def _schema_dn(base_dn: str) -> str:
    return f"CN=Schema,CN=Configuration,{base_dn}"


def _update_now(conn: Any) -> None:
    """Ask the DC to reload its schema cache so the next operation sees the change."""
    conn.modify_s("", [(ldap.MOD_ADD, "schemaUpdateNow", [b"1"])])


def has_attribute(conn: Any, base_dn: str) -> bool:
    found = conn.search_s(_schema_dn(base_dn), ldap.SCOPE_ONELEVEL, f"(lDAPDisplayName={ATTRIBUTE})", ["cn"])
    return any(dn for dn, _ in found if dn)


def may_contain(conn: Any, base_dn: str, class_cn: str) -> list[str]:
    """The mayContain list of a class (e.g. 'Group'): which optional attributes it allows directly."""
    found = conn.search_s(f"CN={class_cn},{_schema_dn(base_dn)}", ldap.SCOPE_BASE, attrlist=["mayContain"])
    return [v.decode() for v in found[0][1].get("mayContain", [])] if found else []


def extend(conn: Any, base_dn: str) -> None:
    """Add the attribute and allow it on Group and User. Idempotent: does only what is missing."""
    schema = _schema_dn(base_dn)
    try:
        if not has_attribute(conn, base_dn):
            conn.add_s(
                f"CN={_ATTRIBUTE_CN},{schema}",
                [
                    ("objectClass", [b"top", b"attributeSchema"]),
                    ("cn", [_ATTRIBUTE_CN.encode()]),
                    ("lDAPDisplayName", [ATTRIBUTE.encode()]),
                    ("attributeID", [b"1.2.840.113556.1.4.2310"]),
                    ("attributeSyntax", [b"2.5.5.12"]),
                    ("oMSyntax", [b"64"]),
                    ("isSingleValued", [b"TRUE"]),
                    # Windows' definition ([MS-ADA2] 2.320): its schemaIDGUID (so ACEs written for Windows,
                    # as in docs/least-privilege.md, name the same attribute here), fATTINDEX |
                    # fPRESERVEONDELETE, 256 characters, in the Public-Information property set.
                    ("schemaIDGUID", [_WINDOWS_SCHEMA_ID.bytes_le]),
                    ("searchFlags", [b"9"]),
                    ("rangeUpper", [b"256"]),
                    ("attributeSecurityGUID", [_PUBLIC_INFORMATION.bytes_le]),
                    ("showInAdvancedViewOnly", [b"FALSE"]),
                    ("isMemberOfPartialAttributeSet", [b"TRUE"]),
                ],
            )
            _update_now(conn)
        changed = False
        for class_cn in ("Group", "User"):
            if ATTRIBUTE.lower() not in (v.lower() for v in may_contain(conn, base_dn, class_cn)):
                conn.modify_s(f"CN={class_cn},{schema}", [(ldap.MOD_ADD, "mayContain", [ATTRIBUTE.encode()])])
                changed = True
        if changed:
            _update_now(conn)
    except ldap.LDAPError as exc:
        raise SandboxError(f"extending the sandbox schema with {ATTRIBUTE} failed: {describe(exc)}") from exc
