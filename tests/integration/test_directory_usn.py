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
from writeback.adapters.directory import adapter as adapter_module
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


def _anchored_group(conn: Any, ou: str, name: str, anchor: str, members: list[str]) -> str:
    dn = f"CN={name},{ou}"
    conn.add_s(
        dn,
        [
            ("objectClass", [b"group"]),
            ("sAMAccountName", [name.encode()]),
            ("msDS-ExternalDirectoryObjectId", [anchor.encode()]),
            *([("member", [m.encode() for m in members])] if members else []),
        ],
    )
    return dn


def test_group_stamps_rise_with_a_member_change_and_list_no_members(
    sandbox: Any, ldap_conn: Any, test_ou: str
) -> None:
    """The quick reconcile's premise on this DC: a member link added or removed raises the group's uSNChanged
    (MS-ADTS 3.1.1.1.9), and the listing is read after the watermark."""
    a = add_user(ldap_conn, test_ou, "stamp-a")
    b = add_user(ldap_conn, test_ou, "stamp-b")
    gid = str(uuid.uuid4())
    dn = _anchored_group(ldap_conn, test_ou, "stamped", f"Group_{gid}", [a])
    other = _anchored_group(ldap_conn, test_ou, "untouched", f"Group_{uuid.uuid4()}", [])
    unanchored = f"CN=plain,{test_ou}"
    ldap_conn.add_s(unanchored, [("objectClass", [b"group"]), ("sAMAccountName", [b"plain-stamp"])])
    with LdapDirectory(make_settings(sandbox)) as d:
        mark, before = d.read_group_stamps(("msDS-ExternalDirectoryObjectId",), ("Group_",))
        ldap_conn.modify_s(dn, [(ldap.MOD_ADD, "member", [b.encode()])])
        _, after = d.read_group_stamps(("msDS-ExternalDirectoryObjectId",), ("Group_",))
        ldap_conn.modify_s(dn, [(ldap.MOD_DELETE, "member", [a.encode()])])
        _, last = d.read_group_stamps(("msDS-ExternalDirectoryObjectId",), ("Group_",))
        searches = d.stats.get("search", 0)
    assert mark.dc == invocation_id(ldap_conn)
    stamp = {s.dn.lower(): s for s in before}
    assert unanchored.lower() not in stamp and stamp[dn.lower()].key == gid
    assert all(s.usn <= mark.usn for s in before), "the watermark is read before the listing"
    usn = [{s.dn.lower(): s.usn for s in x}[dn.lower()] for x in (before, after, last)]
    assert usn[0] < usn[1] < usn[2], usn
    assert {s.dn.lower(): s.usn for s in after}[other.lower()] == stamp[other.lower()].usn
    assert searches > 0


@pytest.mark.parametrize("base_reads", [200, 1], ids=["base-reads", "one-listing"])
def test_group_stamps_of_some_dns_read_just_those(
    sandbox: Any, ldap_conn: Any, test_ou: str, base_reads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an incremental cycle reads after its writes: the stamps at the DNs it wrote, the same as the full
    listing gives for them; a DN that is gone or not a managed group is left out — by base reads, or from one
    listing when the cycle wrote many groups."""
    monkeypatch.setattr(adapter_module, "STAMP_BASE_READS", base_reads)
    gid = str(uuid.uuid4())
    tag = gid[:8]
    dn = _anchored_group(ldap_conn, test_ou, f"some-a-{tag}", f"Group_{gid}", [])
    other = _anchored_group(ldap_conn, test_ou, f"some-b-{tag}", f"Group_{uuid.uuid4()}", [])
    unanchored = f"CN=plain-{tag},{test_ou}"
    ldap_conn.add_s(unanchored, [("objectClass", [b"group"]), ("sAMAccountName", [f"plain-{tag}".encode()])])
    with LdapDirectory(make_settings(sandbox)) as d:
        _, listed = d.read_group_stamps(("msDS-ExternalDirectoryObjectId",), ("Group_",))
        mark, some = d.read_group_stamps(
            ("msDS-ExternalDirectoryObjectId",), ("Group_",), dns=[dn, unanchored, f"CN=gone,{test_ou}"]
        )
    assert mark.dc == invocation_id(ldap_conn)
    assert [(s.dn.lower(), s.key) for s in some] == [(dn.lower(), gid)]
    assert some[0].usn == {s.dn.lower(): s.usn for s in listed}[dn.lower()]
    assert other.lower() in {s.dn.lower() for s in listed}


def test_changed_account_keys_are_the_users_changed_after_the_usn(
    sandbox: Any, ldap_conn: Any, test_ou: str
) -> None:
    a = add_user(ldap_conn, test_ou, "keys-a")
    add_user(ldap_conn, test_ou, "keys-b")
    with LdapDirectory(make_settings(sandbox)) as d:
        mark, _ = d.read_group_stamps(("msDS-ExternalDirectoryObjectId",), ("Group_",))
        ldap_conn.modify_s(a, [(ldap.MOD_REPLACE, "department", [b"Moved"])])
        keys = d.changed_account_keys(test_ou, mark.usn)
    assert [g for _, g in keys] == [guid_of(ldap_conn, a)]
    assert keys[0][0] is not None and keys[0][0].startswith("S-1-5-21-")
