"""``read_groups_with_accounts`` against the real Samba AD DC: member values with their objectGUID and objectSid
(LDAP_SERVER_EXTENDED_DN_OID, MS-ADTS 3.1.1.3.4.1.5), on the ranged ``member;range=`` reads too.

The group holds users, a nested group, a contact (no objectSid) and a foreign security principal (made by the
DC when a member is added by a SID of another domain, as Windows does). The accounts returned are checked
against each object's own objectGUID/objectSid, read without the control, and against ``resolve_accounts``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import ldap
import pytest
from tests.testbed.fixtures import directory_settings

from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.codec import guid_to_str, sid_to_str
from writeback.core.dn import normalize_dn

pytestmark = pytest.mark.samba

ANCHORS = ("msDS-ExternalDirectoryObjectId", "adminDescription")
MAPPED = ("description", "displayName", "managedBy")
FOREIGN_SID = "S-1-5-21-1111111111-2222222222-3333333333-4321"
USERS = 5


def _sam() -> bytes:
    return f"mk{uuid.uuid4().hex[:10]}".encode()


def _keys(conn: Any, dn: str) -> tuple[str, str | None]:
    """(objectGUID, objectSid) of ``dn`` as read without the control."""
    attrs = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["objectGUID", "objectSid"])[0][1]
    sid = attrs.get("objectSid")
    return guid_to_str(attrs["objectGUID"][0]), sid_to_str(sid[0]) if sid else None


@pytest.fixture
def mixed_group(ldap_conn: Any, test_ou: str) -> Iterator[dict[str, Any]]:
    """A group of USERS users, a nested group, a contact and a foreign security principal; managedBy set."""
    users = [f"CN=mk user {i},{test_ou}" for i in range(USERS)]
    for dn in users:
        ldap_conn.add_s(
            dn,
            [
                ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
                ("sAMAccountName", [_sam()]),
            ],
        )
    contact = f"CN=mk contact,{test_ou}"
    ldap_conn.add_s(contact, [("objectClass", [b"top", b"person", b"organizationalPerson", b"contact"])])
    child = f"CN=mk child,{test_ou}"
    ldap_conn.add_s(child, [("objectClass", [b"top", b"group"]), ("sAMAccountName", [_sam()])])
    parent = f"CN=mk parent,{test_ou}"
    ldap_conn.add_s(
        parent,
        [
            ("objectClass", [b"top", b"group"]),
            ("sAMAccountName", [_sam()]),
            ("description", [b"mixed members"]),
            ("managedBy", [users[0].encode()]),  # a DN-valued mapped attribute: extended by the control too
            ("member", [m.encode() for m in [*users, contact, child]]),
        ],
    )
    # A SID of another domain: the DC makes a foreignSecurityPrincipal for it (MS-ADTS 3.1.1.5.2.3).
    ldap_conn.modify_s(parent, [(ldap.MOD_ADD, "member", [f"<SID={FOREIGN_SID}>".encode()])])
    yield {"parent": parent, "users": users, "contact": contact, "child": child}


def test_read_with_accounts_equals_read_groups_and_gives_each_members_keys(
    sandbox: Any, ldap_conn: Any, mixed_group: dict[str, Any]
) -> None:
    parent = mixed_group["parent"]
    with LdapDirectory(directory_settings(sandbox)) as d:
        (plain,) = d.read_groups([parent], ANCHORS, MAPPED)
        before = d.stats["search"]
        (group,), accounts = d.read_groups_with_accounts([parent], ANCHORS, MAPPED, range_size=2)
        searches = d.stats["search"] - before

    assert group == plain  # the same value: plain member DNs, the same attributes (managedBy too)
    assert group.attributes["managedBy"] == mixed_group["users"][0]
    fsp = [m for m in group.members if ",CN=ForeignSecurityPrincipals," in m]
    assert len(group.members) == USERS + 3 and len(fsp) == 1
    # 8 values 2 at a time: the first read and three ranged reads at least, each answered with extended DNs
    assert searches >= 4

    expected = {dn: _keys(ldap_conn, dn) for dn in [*mixed_group["users"], mixed_group["child"]]}
    contact_guid, contact_sid = _keys(ldap_conn, mixed_group["contact"])
    assert contact_sid is None
    for dn, (guid, sid) in expected.items():
        assert sid is not None
        by_sid, by_guid = accounts.by_sid[sid.upper()], accounts.by_guid[guid]
        assert by_sid == by_guid
        assert (normalize_dn(by_sid.dn), by_sid.object_guid, by_sid.object_sid) == (
            normalize_dn(dn),
            guid,
            sid,
        )
    assert accounts.by_guid[contact_guid].dn.lower() == mixed_group["contact"].lower()
    assert accounts.by_guid[contact_guid].object_sid is None
    # The foreign security principal is not an account of this forest: left out, as resolve_accounts does.
    assert FOREIGN_SID not in accounts.by_sid
    assert _keys(ldap_conn, fsp[0])[0] not in accounts.by_guid
    assert set(accounts.by_guid) == {g for g, _ in expected.values()} | {contact_guid}
    assert set(accounts.by_sid) == {s.upper() for _, s in expected.values() if s}


def test_member_accounts_are_the_accounts_resolve_accounts_finds(
    sandbox: Any, mixed_group: dict[str, Any]
) -> None:
    with LdapDirectory(directory_settings(sandbox)) as d:
        _groups, known = d.read_groups_with_accounts([mixed_group["parent"]], ANCHORS, MAPPED, range_size=3)
        users = {normalize_dn(u) for u in mixed_group["users"]}
        sids = [s for s, a in known.by_sid.items() if normalize_dn(a.dn) in users]
        guids = [g for g, a in known.by_guid.items() if normalize_dn(a.dn) in users]
        found = d.resolve_accounts(sids, guids)
    assert len(sids) == len(guids) == USERS
    for sid in sids:
        assert (found.by_sid[sid].dn, found.by_sid[sid].object_guid) == (
            known.by_sid[sid].dn,
            known.by_sid[sid].object_guid,
        )
    for guid in guids:
        assert (found.by_guid[guid].dn, found.by_guid[guid].object_sid) == (
            known.by_guid[guid].dn,
            known.by_guid[guid].object_sid,
        )


def test_missing_and_non_group_dns_are_left_out(
    sandbox: Any, mixed_group: dict[str, Any], test_ou: str
) -> None:
    missing = f"CN=mk nobody,{test_ou}"
    with LdapDirectory(directory_settings(sandbox)) as d:
        groups, accounts = d.read_groups_with_accounts(
            [missing, mixed_group["users"][1], mixed_group["child"]], ANCHORS, MAPPED
        )
    (child,) = groups
    assert normalize_dn(child.dn) == normalize_dn(mixed_group["child"]) and child.members == frozenset()
    assert not accounts.by_sid and not accounts.by_guid
