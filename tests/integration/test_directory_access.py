"""Least privilege: a service account delegated only group management in one OU (docs/least-privilege.md).

The delegation is applied with ``samba-tool dsacl set`` exactly as the document lists it; the property and
class GUIDs are read from the DC's schema, so the test also checks that the names in the document exist.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ldap
import pytest

from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.adapters.directory.codec import sid_to_str
from writeback.core.model import UNIVERSAL_SECURITY
from writeback.errors import DirectoryWriteError
from writeback.testbed.sandbox import serviceaccount

pytestmark = pytest.mark.samba


def delegation_sddl(conn: Any, sandbox: Any, sid: str, rights: str = "CCDC") -> str:
    """docs/least-privilege.md's delegation (the sandbox's own, one definition), with ``rights`` on group
    objects in place of Create/Delete Child when a test narrows it."""
    return serviceaccount.delegation_sddl(conn, sandbox.base_dn, sid).replace(
        ";CI;CCDC;", f";CI;{rights};", 1
    )


def dsacl_set(sandbox: Any, object_dn: str, sddl: str) -> None:
    """samba-tool over LDAP with an NTLM (signed) bind as Administrator; the password goes through the
    environment, not the command line."""
    smb_conf = sandbox.dir / "samba" / "etc" / "smb.conf"
    command = [
        "samba-tool",
        "dsacl",
        "set",
        "-H",
        sandbox.starttls_url,
        "-s",
        str(smb_conf),
        "-U",
        "Administrator",
    ]
    done = subprocess.run(
        [*command, f"--objectdn={object_dn}", f"--sddl={sddl}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PASSWD": sandbox.bind_password},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@dataclass
class Delegated:
    allowed_ou: str
    other_ou: str
    member: str
    settings: DirectorySettings
    sid: str


@pytest.fixture
def delegated(sandbox: Any, ldap_conn: Any, test_ou: str) -> Iterator[Delegated]:
    allowed = f"OU=allowed,{test_ou}"
    other = f"OU=other,{test_ou}"
    for ou in (allowed, other):
        ldap_conn.add_s(ou, [("objectClass", [b"top", b"organizationalUnit"])])
    name = f"svc{uuid.uuid4().hex[:8]}"
    password = "Pw-" + secrets.token_urlsafe(18) + "9a"
    svc = f"CN={name},{test_ou}"
    ldap_conn.add_s(
        svc,
        [
            ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
            ("sAMAccountName", [name.encode()]),
            ("unicodePwd", [f'"{password}"'.encode("utf-16-le")]),
            ("userAccountControl", [b"512"]),
        ],
    )
    member = f"CN=m{name},{test_ou}"
    ldap_conn.add_s(
        member,
        [
            ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
            ("sAMAccountName", [f"m{name}".encode()]),
        ],
    )
    sid = sid_to_str(
        ldap_conn.search_s(svc, ldap.SCOPE_BASE, "(objectClass=*)", ["objectSid"])[0][1]["objectSid"][0]
    )
    dsacl_set(sandbox, allowed, delegation_sddl(ldap_conn, sandbox, sid))
    settings = DirectorySettings(
        urls=(sandbox.ldap_url,),
        bind_dn=svc,
        bind_password=password,
        base_dn=sandbox.base_dn,
        ca_file=str(sandbox.ca_file),
        gc_urls=(sandbox.gc_url,),
    )
    yield Delegated(allowed, other, member, settings, sid)


def test_delegated_account_manages_groups_in_its_ou(
    delegated: Delegated, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = str(uuid.uuid4())
    dn = f"CN=Managed,{delegated.allowed_ou}"
    with LdapDirectory(delegated.settings) as d:
        assert d.check_write_access(delegated.allowed_ou) == []
        # The Delete right was read (the OU's DACL and the account's tokenGroups), not skipped.
        assert "cannot check the Delete right" not in caplog.text
        d.create_group(
            dn,
            {
                "sAMAccountName": f"mg{cloud[:8]}",
                "groupType": UNIVERSAL_SECURITY,
                "msDS-ExternalDirectoryObjectId": f"Group_{cloud}",
                "adminDescription": f"Group_{cloud}",
            },
            [delegated.member],
        )
        d.modify_attributes(dn, {"description": "managed", "displayName": "Managed"})
        d.remove_members(dn, [delegated.member])
        d.add_members(dn, [delegated.member])
        renamed = f"CN=Managed renamed,{delegated.allowed_ou}"
        d.move(dn, renamed)
        assert d.check_write_access(delegated.allowed_ou) == []  # now with a group there to check
        (group,) = [
            g
            for g in d.read_managed_groups(("msDS-ExternalDirectoryObjectId",), ("description",))
            if g.cloud_id == cloud
        ]
        assert group.attributes["description"] == "managed"
        assert {m.lower() for m in group.members} == {delegated.member.lower()}
        d.delete(renamed)
        assert d.existing_dns([renamed]) == set()


def test_delegated_account_is_refused_elsewhere(delegated: Delegated, directory_admin: LdapDirectory) -> None:
    foreign = f"CN=Foreign,{delegated.other_ou}"
    directory_admin.create_group(
        foreign, {"sAMAccountName": f"fg{uuid.uuid4().hex[:8]}", "groupType": UNIVERSAL_SECURITY}, []
    )
    with LdapDirectory(delegated.settings) as d:
        problems = d.check_write_access(delegated.other_ou)
        assert any("cannot create groups" in p for p in problems)
        assert any("cannot delete groups" in p for p in problems)
        assert any("cannot write member" in p and foreign in p for p in problems)
        with pytest.raises(DirectoryWriteError) as err:
            d.create_group(
                f"CN=Nope,{delegated.other_ou}",
                {"sAMAccountName": f"np{uuid.uuid4().hex[:8]}", "groupType": UNIVERSAL_SECURITY},
                [],
            )
        assert err.value.result is not None and err.value.result.startswith("INSUFFICIENT_ACCESS")
        with pytest.raises(DirectoryWriteError, match="INSUFFICIENT_ACCESS"):
            d.add_members(foreign, [delegated.member])
        with pytest.raises(DirectoryWriteError, match="INSUFFICIENT_ACCESS"):
            d.delete(foreign)
        with pytest.raises(DirectoryWriteError):  # moving a foreign group into the delegated OU
            d.move(foreign, f"CN=Stolen,{delegated.allowed_ou}")
    assert directory_admin.existing_dns([foreign]) == {foreign}


def test_config_check_sees_a_missing_delete_right(
    sandbox: Any, ldap_conn: Any, test_ou: str, delegated: Delegated
) -> None:
    create_only = f"OU=create-only,{test_ou}"
    ldap_conn.add_s(create_only, [("objectClass", [b"top", b"organizationalUnit"])])
    dsacl_set(sandbox, create_only, delegation_sddl(ldap_conn, sandbox, delegated.sid, rights="CC"))
    dn = f"CN=Undeletable,{create_only}"
    with LdapDirectory(delegated.settings) as d:
        (problem,) = d.check_write_access(create_only)
        assert problem.startswith(f"{delegated.settings.bind_dn} cannot delete groups in {create_only}")
        assert "delegate 'Delete Group objects'" in problem
        # The DC agrees: the account creates a group there but cannot delete it.
        d.create_group(
            dn, {"sAMAccountName": f"ud{uuid.uuid4().hex[:8]}", "groupType": UNIVERSAL_SECURITY}, []
        )
        with pytest.raises(DirectoryWriteError, match="INSUFFICIENT_ACCESS"):
            d.delete(dn)


@pytest.fixture
def directory_admin(sandbox: Any) -> Iterator[LdapDirectory]:
    settings = DirectorySettings(
        urls=(sandbox.ldap_url,),
        bind_dn=sandbox.bind_dn,
        bind_password=sandbox.bind_password,
        base_dn=sandbox.base_dn,
        ca_file=str(sandbox.ca_file),
    )
    with LdapDirectory(settings) as d:
        yield d


def test_samba_computes_allowed_attributes_effective_per_security_descriptor(
    delegated: Delegated, directory_admin: LdapDirectory
) -> None:
    """What the plan's rights check reads (writeback.core.rights): the delegated OU's groups are writable as
    docs/least-privilege.md delegates them (name aside: AD never lists it), a group elsewhere is not — and the
    DC agrees when asked to write."""
    inside = f"CN=Writable,{delegated.allowed_ou}"
    outside = f"CN=Elsewhere,{delegated.other_ou}"
    for dn in (inside, outside):
        directory_admin.create_group(
            dn, {"sAMAccountName": f"aa{uuid.uuid4().hex[:8]}", "groupType": UNIVERSAL_SECURITY}, []
        )
    anchors = ("msDS-ExternalDirectoryObjectId", "adminDescription")
    with LdapDirectory(delegated.settings) as d:
        read = {
            g.dn.lower(): g for g in d.read_groups([inside, outside], anchors, ("description", "displayName"))
        }
        mine, theirs = read[inside.lower()].writable, read[outside.lower()].writable
        assert mine is not None and theirs is not None
        assert {"member", "description", "displayName", "groupType", "cn", *anchors} <= mine
        assert "sAMAccountName" not in mine and "name" not in mine  # not delegated / never listed
        assert theirs == frozenset()
        found = d.unwritable_managed_groups(anchors, ("member",), ())
        assert found == []  # neither carries an anchor: config check lists managed groups only
        d.add_members(inside, [delegated.member])
        with pytest.raises(DirectoryWriteError, match="INSUFFICIENT_ACCESS"):
            d.add_members(outside, [delegated.member])
    # As Administrator everything writeback writes is writable.
    (admin_view,) = directory_admin.read_groups([outside], anchors, ("description",))
    assert (
        admin_view.writable is not None and {"member", "description", "cn", *anchors} <= admin_view.writable
    )
