"""USN watermarks and deleted users against the real Samba AD DC of the test bed.

Samba behaves like Windows here (checked): rootDSE dsServiceName names the NTDS Settings object that carries the
DC's invocationId; a deleted user moves to the Deleted Objects container (bound as <WKGUID=18E2EA80…,NC>), keeps
objectGUID and loses objectCategory, and is seen only with the Show Deleted control.
"""

from __future__ import annotations

import uuid
from typing import Any

import ldap
import pytest
from tests.integration.test_directory import add_user, make_settings

from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.codec import guid_to_str
from writeback.core.ports import UsnWatermark

pytestmark = pytest.mark.samba


def invocation_id(conn: Any) -> str:
    service = conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["dsServiceName"])[0][1]["dsServiceName"][
        0
    ]
    raw = conn.search_s(service.decode(), ldap.SCOPE_BASE, "(objectClass=*)", ["invocationId"])[0][1]
    return guid_to_str(raw["invocationId"][0])


def guid_of(conn: Any, dn: str) -> str:
    return guid_to_str(
        conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["objectGUID"])[0][1]["objectGUID"][0]
    )


def test_watermark_carries_the_dcs_invocation_id(sandbox: Any, ldap_conn: Any, test_ou: str) -> None:
    add_user(ldap_conn, test_ou, "usn-a")
    with LdapDirectory(make_settings(sandbox)) as d:
        changes = d.read_user_changes(test_ou, None)
    assert changes.full and changes.watermark.dc == invocation_id(ldap_conn)
    assert [u["onPremisesSamAccountName"] for u in changes.users] == ["usn-a"]


def test_incremental_read_sees_changes_and_deletions_since_the_watermark(
    sandbox: Any, ldap_conn: Any, test_ou: str
) -> None:
    a = add_user(ldap_conn, test_ou, "usn-b")
    b = add_user(ldap_conn, test_ou, "usn-c")
    with LdapDirectory(make_settings(sandbox)) as d:
        first = d.read_user_changes(test_ou, None)
        assert len(first.users) == 2
        b_guid = guid_of(ldap_conn, b)
        ldap_conn.modify_s(a, [(ldap.MOD_REPLACE, "department", [b"Changed"])])
        ldap_conn.delete_s(b)
        second = d.read_user_changes(test_ou, first.watermark)
        third = d.read_user_changes(test_ou, second.watermark)
    assert not second.full
    assert [u.get("department") for u in second.users] == ["Changed"]
    assert b_guid in second.removed
    assert third.users == [] and b_guid not in third.removed


def test_a_watermark_of_another_dc_reads_everything(sandbox: Any, ldap_conn: Any, test_ou: str) -> None:
    add_user(ldap_conn, test_ou, "usn-d")
    with LdapDirectory(make_settings(sandbox)) as d:
        first = d.read_user_changes(test_ou, None)
        # The same USN on another DC (a failover across target.ldap_urls) says nothing about this DC.
        other = UsnWatermark(dc=str(uuid.uuid4()), usn=first.watermark.usn)
        again = d.read_user_changes(test_ou, other)
    assert again.full and [u["onPremisesSamAccountName"] for u in again.users] == ["usn-d"]
    assert again.watermark.dc == first.watermark.dc
