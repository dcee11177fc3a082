"""The life of an account writeback creates for a cloud-only member (`provision = "cloud_members"`) against the
sandbox DC: disabled when its user leaves every in-scope group or is disabled in the cloud and enabled again on
return (the same object); a hard delete in the cloud deletes it, held over `safety.delete_threshold` until
`--allow-deletes`; an apply killed right after the account's LDAP add leaves no duplicate on rerun; an object
writeback did not create at the DN it would choose is reported and never written nor referenced.

Each test uses its own cloud-only user and group (random suffix), made through Graph, in scope alone; every AD
account and cloud object it makes is removed afterwards (other tests share the sandbox)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ldap
import pytest

ANCHOR = "msDS-ExternalDirectoryObjectId"
DISABLED = 0x2
JULIA = "3e0b6c1a-7d42-4f1e-9a8b-1c2d3e4f5a03"  # sample cloud-only user: only her UPN's domain is read

# Runs `python -m writeback ARGS` and SIGKILLs it right after the first LDAP add of a DN ending in argv[1] (the
# account's add, before the provisioning log records it), as tests/integration/test_crash.py does.
_KILL_AFTER_ADD = """
import os, signal, sys
from writeback.adapters.directory import adapter
from writeback import cli
suffix = sys.argv[1].lower()
original = adapter.LdapDirectory._write
def _write(self, kind, dn, values, call):
    original(self, kind, dn, values, call)
    if kind == "add" and dn.lower().endswith(suffix):
        os.kill(os.getpid(), signal.SIGKILL)
adapter.LdapDirectory._write = _write
sys.argv = ["writeback", *sys.argv[2:]]
sys.exit(cli.main())
"""


@dataclass
class Member:
    """A cloud-only user, the only member of a cloud group of its own."""

    id: str
    name: str
    gid: str
    ou: str  # OU=Cloud Users
    extra_dns: list[str] = field(default_factory=list)  # AD objects the test made itself


def _accounts(ldap_conn: Any, base: str, uid: str) -> list[tuple[str, dict[str, list[bytes]]]]:
    found = ldap_conn.search_s(
        base,
        ldap.SCOPE_SUBTREE,
        f"({ANCHOR}=User_{uid})",
        ["objectGUID", "userAccountControl", "adminDescription", ANCHOR],
    )
    return [(dn, attrs) for dn, attrs in found if dn]


def _uac(attrs: dict[str, list[bytes]]) -> int:
    return int(attrs["userAccountControl"][0])


@pytest.fixture
def member(sandbox: Any, cloud: Any, ldap_conn: Any, fresh_id: str) -> Iterator[Member]:
    ou = sandbox.cloud_users_ou
    if not ou:
        pytest.skip("this sandbox predates cloud_users_ou")
    domain = cloud.call("GET", f"/v1.0/users/{JULIA}")["userPrincipalName"].split("@", 1)[1]
    name = f"Lifecycle {fresh_id}"
    user = cloud.call(
        "POST",
        "/v1.0/users",
        {
            "accountEnabled": True,
            "displayName": name,
            "mailNickname": f"lc{fresh_id}",
            "userPrincipalName": f"lc{fresh_id}@{domain}",
            "passwordProfile": {"password": f"Lc-{fresh_id}-Passw0rd!"},
        },
    )
    gid = cloud.create_group(f"SG-Lifecycle-{fresh_id}", [user["id"]])
    m = Member(user["id"], name, gid, ou)
    yield m
    for dn, _ in _accounts(ldap_conn, sandbox.base_dn, m.id):
        ldap_conn.delete_s(dn)
    for dn in m.extra_dns:
        with contextlib.suppress(ldap.NO_SUCH_OBJECT):
            ldap_conn.delete_s(dn)
    for path in (f"/v1.0/users/{m.id}", f"/v1.0/groups/{gid}"):
        cloud.http.request("DELETE", path)  # 404 when the test deleted it already
        cloud.http.request("DELETE", f"/v1.0/directory/deletedItems/{path.rsplit('/', 1)[1]}")
    # (the AD group goes with the test's OU, in test_ou's teardown)
    assert not ldap_conn.search_s(ou, ldap.SCOPE_SUBTREE, f"(cn=*{fresh_id}*)", ["cn"]), "accounts left"
    for oid in (m.id, gid):  # neither live nor in deletedItems
        assert cloud.http.get(f"/v1.0/directoryObjects/{oid}").status_code == 404
        assert cloud.http.get(f"/v1.0/directory/deletedItems/{oid}").status_code == 404


def _workspace(sandbox: Any, workspace: Any, m: Member, safety: str = "") -> Any:
    """Only the member's group in scope; base_dn widened to the domain so OU=Cloud Users is inside it."""
    extra = f'[users]\nprovision = "cloud_members"\ntarget_ou = "{m.ou}"\n{safety}'
    ws = workspace([m.gid], extra=extra)
    text = ws.config.read_text()
    assert f'base_dn = "{ws.ou}"' in text
    ws.config.write_text(text.replace(f'base_dn = "{ws.ou}"', f'base_dn = "{sandbox.base_dn}"'))
    return ws


def _group_members(ad: Any, gid: str) -> set[str]:
    group = ad.anchored(gid)
    assert group is not None
    return {v.lower() for v in group.get("member", [])}


def test_leaving_or_a_disabled_cloud_account_disables_it_and_return_enables_the_same_object(
    sandbox: Any, cloud: Any, workspace: Any, ldap_conn: Any, ad: Any, member: Member
) -> None:
    ws = _workspace(sandbox, workspace, member)
    first = ws.run("apply")
    assert first.code == 0, first.out + first.err
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    guid = account["objectGUID"]
    assert _uac(account) & DISABLED == 0
    assert dn.lower() in _group_members(ad, member.gid)

    cloud.remove_member(member.gid, member.id)  # left every in-scope group
    left = ws.run("apply", "--deep")  # leaving is decided by full plans (README)
    assert left.code == 0, left.out + left.err
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    assert _uac(account) & DISABLED, "on_leave = disable (the default) sets ACCOUNTDISABLE"
    assert account["objectGUID"] == guid

    cloud.add_member(member.gid, member.id)  # back in the group
    back = ws.run("apply")
    assert back.code == 0, back.out + back.err
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    assert _uac(account) & DISABLED == 0, "enabled again on return"
    assert account["objectGUID"] == guid, "the same account, not a new one"
    assert dn.lower() in _group_members(ad, member.gid)

    cloud.call("PATCH", f"/v1.0/users/{member.id}", {"accountEnabled": False})
    off = ws.run("apply")
    assert off.code == 0, off.out + off.err
    ((_, account),) = _accounts(ldap_conn, member.ou, member.id)
    assert _uac(account) & DISABLED, "disabled in the cloud: ACCOUNTDISABLE"
    assert account["objectGUID"] == guid

    cloud.call("PATCH", f"/v1.0/users/{member.id}", {"accountEnabled": True})
    on = ws.run("apply")
    assert on.code == 0, on.out + on.err
    ((_, account),) = _accounts(ldap_conn, member.ou, member.id)
    assert _uac(account) & DISABLED == 0 and account["objectGUID"] == guid
    assert ws.run("plan").code == 0, "nothing left to do"


def test_a_hard_delete_in_the_cloud_is_held_over_the_threshold_then_deletes_the_account(
    sandbox: Any, cloud: Any, workspace: Any, ldap_conn: Any, member: Member
) -> None:
    ws = _workspace(sandbox, workspace, member, safety="\n[safety]\ndelete_threshold = 0\n")
    first = ws.run("apply")
    assert first.code == 0, first.out + first.err
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)

    cloud.call("DELETE", f"/v1.0/users/{member.id}")
    cloud.call("DELETE", f"/v1.0/directory/deletedItems/{member.id}")
    held = ws.run("apply", "--deep")
    assert held.code == 3, held.out + held.err
    assert _accounts(ldap_conn, member.ou, member.id) == [(dn, account)], "held: the account is still there"

    allowed = ws.run("apply", "--deep", "--allow-deletes", "1")
    assert allowed.code == 0, allowed.out + allowed.err
    assert not _accounts(ldap_conn, sandbox.base_dn, member.id), "the account is deleted"
    assert not ldap_conn.search_s(member.ou, ldap.SCOPE_ONELEVEL, f"(cn={member.name}_*)", ["cn"])


def test_an_apply_killed_right_after_the_account_add_makes_no_second_account_on_rerun(
    sandbox: Any, workspace: Any, ldap_conn: Any, ad: Any, member: Member
) -> None:
    ws = _workspace(sandbox, workspace, member)
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_ADD, member.ou, "--config", str(ws.config), "apply"],
        capture_output=True,
        text=True,
        env=ws.env,
        timeout=300,
    )
    ws.outputs += [killed.stdout, killed.stderr]
    assert killed.returncode == -9, killed.stdout + killed.stderr
    ((dn, _),) = _accounts(ldap_conn, member.ou, member.id)  # the add happened, its log row did not

    again = ws.run("apply")
    assert again.code == 0, again.out + again.err
    ((dn_after, _),) = _accounts(ldap_conn, sandbox.base_dn, member.id)
    assert dn_after.lower() == dn.lower(), "exactly one account with the anchor: the one of the killed run"
    assert ldap_conn.search_s(member.ou, ldap.SCOPE_ONELEVEL, f"(cn={member.name}_*)", ["cn"]) == [
        (dn_after, {"cn": [dn_after.split(",", 1)[0][3:].encode()]})
    ]
    assert dn.lower() in _group_members(ad, member.gid)
    assert ws.run("plan").code == 0, "nothing left to do"


def test_a_same_name_account_writeback_did_not_create_is_never_taken_over(
    sandbox: Any, workspace: Any, ldap_conn: Any, ad: Any, member: Member, fresh_id: str
) -> None:
    cn = f"{member.name}_{member.id[-12:]}"
    squatter = f"CN={cn},{member.ou}"
    member.extra_dns.append(squatter)
    ldap_conn.add_s(
        squatter,
        [
            ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
            ("sAMAccountName", f"sq{fresh_id}".encode()),
            ("description", b"made by an administrator"),
        ],
    )
    before = ldap_conn.search_s(squatter, ldap.SCOPE_BASE, "(objectClass=*)", ["*", "uSNChanged"])

    ws = _workspace(sandbox, workspace, member)
    plan = ws.run("plan")
    assert "never takes over" in plan.out + plan.err, plan.out + plan.err
    assert squatter.lower() in (plan.out + plan.err).lower()

    applied = ws.run("apply")
    after = ldap_conn.search_s(squatter, ldap.SCOPE_BASE, "(objectClass=*)", ["*", "uSNChanged"])
    assert after == before, "the object is never written"
    assert ANCHOR not in after[0][1] and "adminDescription" not in after[0][1]
    assert not _accounts(ldap_conn, sandbox.base_dn, member.id), "no account made elsewhere either"
    assert squatter.lower() not in _group_members(ad, member.gid), (
        "the group does not reference it",
        applied.out + applied.err,
    )
