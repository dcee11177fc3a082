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


# -- Exchange's recipient attributes (`writeback sandbox up --exchange-schema`) ---------------------------------
# The attributes writeback writes on mail groups that only a forest prepared for Exchange has. Each is Exchange's
# own definition: lDAPDisplayName, attributeID, syntax and schemaIDGUID as Exchange's schema files define them
# (ms-Exch-Recipient-Display-Type 1.2.840.113556.1.4.7000.102.50730, Enumeration/INTEGER 2.5.5.9, GUID
# b893abb0-767e-4f20-915f-3857bbc96afe; ms-Exch-Recipient-Type-Details 1.2.840.113556.1.4.7000.102.50855,
# LargeInteger 2.5.5.16, GUID 069ba1f8-540a-42a9-bf26-a7dd35475346; ms-Exch-Mail-Nickname
# 1.2.840.113556.1.2.447, Unicode string 2.5.5.12, 1-64 characters). Exchange allows them on every recipient
# through the Mail-Recipient auxiliary class, which Group (and User) already carry, so they are added there.
EXCHANGE_ATTRIBUTES: tuple[dict[str, Any], ...] = (
    {
        "cn": "ms-Exch-Recipient-Display-Type",
        "lDAPDisplayName": "msExchRecipientDisplayType",
        "attributeID": "1.2.840.113556.1.4.7000.102.50730",
        "attributeSyntax": "2.5.5.9",
        "oMSyntax": "2",
        "schemaIDGUID": uuid.UUID("b893abb0-767e-4f20-915f-3857bbc96afe"),
    },
    {
        "cn": "ms-Exch-Recipient-Type-Details",
        "lDAPDisplayName": "msExchRecipientTypeDetails",
        "attributeID": "1.2.840.113556.1.4.7000.102.50855",
        "attributeSyntax": "2.5.5.16",
        "oMSyntax": "65",
        "schemaIDGUID": uuid.UUID("069ba1f8-540a-42a9-bf26-a7dd35475346"),
    },
    {
        "cn": "ms-Exch-Mail-Nickname",
        "lDAPDisplayName": "mailNickname",
        "attributeID": "1.2.840.113556.1.2.447",
        "attributeSyntax": "2.5.5.12",
        "oMSyntax": "64",
        "rangeLower": "1",
        "rangeUpper": "64",
    },
)
EXCHANGE_CLASS = "Mail-Recipient"


def _defined(conn: Any, base_dn: str, ldap_name: str) -> bool:
    found = conn.search_s(_schema_dn(base_dn), ldap.SCOPE_ONELEVEL, f"(lDAPDisplayName={ldap_name})", ["cn"])
    return any(dn for dn, _ in found if dn)


def has_exchange_schema(conn: Any, base_dn: str) -> bool:
    return all(_defined(conn, base_dn, a["lDAPDisplayName"]) for a in EXCHANGE_ATTRIBUTES)


def extend_exchange(conn: Any, base_dn: str) -> None:
    """Add Exchange's recipient attributes and allow them on Mail-Recipient. Idempotent. Irreversible, as in
    AD: schema objects are never deleted, so a sandbox keeps them until it is made afresh."""
    schema = _schema_dn(base_dn)
    try:
        added = False
        for a in EXCHANGE_ATTRIBUTES:
            if _defined(conn, base_dn, a["lDAPDisplayName"]):
                continue
            entry = [
                ("objectClass", [b"top", b"attributeSchema"]),
                ("isSingleValued", [b"TRUE"]),
                ("searchFlags", [b"1"]),  # indexed, as Exchange defines them
                ("isMemberOfPartialAttributeSet", [b"TRUE"]),
            ]
            for key, value in a.items():
                raw = value.bytes_le if isinstance(value, uuid.UUID) else str(value).encode()
                entry.append((key, [raw]))
            conn.add_s(f"CN={a['cn']},{schema}", entry)
            added = True
        if added:
            _update_now(conn)
        allowed = {v.lower() for v in may_contain(conn, base_dn, EXCHANGE_CLASS)}
        wanted = [
            a["lDAPDisplayName"] for a in EXCHANGE_ATTRIBUTES if a["lDAPDisplayName"].lower() not in allowed
        ]
        if wanted:
            conn.modify_s(
                f"CN={EXCHANGE_CLASS},{schema}", [(ldap.MOD_ADD, "mayContain", [w.encode() for w in wanted])]
            )
            _update_now(conn)
    except ldap.LDAPError as exc:
        raise SandboxError(
            f"extending the sandbox schema with Exchange's attributes failed: {describe(exc)}"
        ) from exc
