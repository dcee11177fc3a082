"""`[users] provision = "soa"` against the sandbox: a cloud-managed (SOA-converted) user is written into its
original AD account — same object, DN, SID, names and password — with the cloud's values and the `User_` anchor;
a rollback releases it (only the anchor goes). The sandbox seeds Nora Kok, a synced user converted to the cloud
(department "Treasury" in the cloud, "Finance" in AD), with write rights on her account only for the mapped
attributes and the anchor (docs/least-privilege.md, Cloud users)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ldap
import pytest

ANCHOR = "msDS-ExternalDirectoryObjectId"
WATCHED = [
    "objectGUID",
    "objectSid",
    "sAMAccountName",
    "userPrincipalName",
    "cn",
    "pwdLastSet",
    "department",
    ANCHOR,
]


def _nora(cloud: Any) -> dict[str, Any]:
    (user,) = [u for u in cloud.users() if u.get("onPremisesSamAccountName") == "nora.kok"]
    return user


def _account(ldap_conn: Any, dn: str) -> dict[str, list[bytes]]:
    ((_, attrs),) = ldap_conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=user)", WATCHED)
    return {k: list(v) for k, v in attrs.items()}


@pytest.fixture
def nora(cloud: Any, ldap_conn: Any) -> Iterator[dict[str, Any]]:
    """Nora, cloud-managed; her AD account put back as the sandbox made it afterwards (other tests share it)."""
    user = _nora(cloud)
    dn = user["onPremisesDistinguishedName"]
    before = _account(ldap_conn, dn)
    yield user
    cloud.call("PATCH", f"/beta/users/{user['id']}/onPremisesSyncBehavior", {"isCloudManaged": True})
    restore = [(ldap.MOD_REPLACE, "department", before["department"])]
    restore.append((ldap.MOD_DELETE, ANCHOR, None)) if ANCHOR in _account(ldap_conn, dn) else None
    ldap_conn.modify_s(dn, restore)


def test_a_cloud_managed_user_is_written_into_its_original_account_and_released_on_rollback(
    cloud: Any, workspace: Any, ldap_conn: Any, nora: dict[str, Any]
) -> None:
    portal = cloud.group_by_name("SG-Treasury-Portal")
    dn = nora["onPremisesDistinguishedName"]
    before = _account(ldap_conn, dn)
    assert before["department"] == [b"Finance"] and ANCHOR not in before

    off = workspace([portal["id"]])
    assert "Users (" not in off.run("plan").out, "provision off (the default) plans no user"
    ws = workspace([portal["id"]], extra='[users]\nprovision = "soa"\n')
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.err
    (change,) = [c for c in plan.json()["changes"] if c.get("target") == "user"]
    assert change["kind"] == "update" and change["dn"].lower() == dn.lower()
    assert change["attributes"] == {"department": "Treasury", ANCHOR: f"User_{nora['id']}"}

    applied = ws.run("apply")
    assert applied.code == 0, applied.out + applied.err
    after = _account(ldap_conn, dn)
    assert after["department"] == [b"Treasury"] and after[ANCHOR] == [f"User_{nora['id']}".encode()]
    for same in ("objectGUID", "objectSid", "sAMAccountName", "userPrincipalName", "cn", "pwdLastSet"):
        assert after.get(same) == before.get(same), f"{same} changed"
    assert ws.run("plan").code == 0, "nothing left to do"
    rows = ws.run("log", "--json").json()
    assert any(r["action"] == "update" and r["dn"] and r["dn"].lower() == dn.lower() for r in rows)

    # Rolled back: AD masters her again. Only the anchor writeback stamped is removed; her values stay.
    cloud.call("PATCH", f"/beta/users/{nora['id']}/onPremisesSyncBehavior", {"isCloudManaged": False})
    released = ws.run("apply")
    assert released.code == 0, released.out + released.err
    after = _account(ldap_conn, dn)
    assert ANCHOR not in after and after["department"] == [b"Treasury"]
    assert after["objectGUID"] == before["objectGUID"] and after["pwdLastSet"] == before["pwdLastSet"]


def test_provision_on_demand_of_a_cloud_managed_user_by_upn(
    cloud: Any, workspace: Any, ldap_conn: Any, ad: Any, nora: dict[str, Any]
) -> None:
    portal = cloud.group_by_name("SG-Treasury-Portal")
    upn = cloud.call("GET", f"/v1.0/users/{nora['id']}?$select=userPrincipalName")["userPrincipalName"]
    ws = workspace([portal["id"]], extra='[users]\nprovision = "soa"\n')
    done = ws.run("provision", upn.upper())
    assert done.code == 0, done.out + done.err
    assert f"found user Nora Kok ({nora['id']}), held by 1 in-scope group" in done.out
    assert "its original AD account found by SID" in done.out
    assert done.out.strip().splitlines()[-1].startswith("succeeded"), done.out
    after = _account(ldap_conn, nora["onPremisesDistinguishedName"])
    assert after[ANCHOR] == [f"User_{nora['id']}".encode()] and after["department"] == [b"Treasury"]
    assert ad.anchored(portal["id"]) is None, "only the user is provisioned, not the group holding it"


def test_config_check_warns_of_user_anchors_writeback_never_wrote(
    cloud: Any, workspace: Any, ldap_conn: Any, nora: dict[str, Any]
) -> None:
    """Accounts anchored User_ by someone else (a Cloud Sync user provisioning job on the same domain)."""
    portal = cloud.group_by_name("SG-Treasury-Portal")
    ws = workspace([portal["id"]], extra='[users]\nprovision = "soa"\n')
    other = next(u for u in cloud.synced_users() if u["id"] != nora["id"])["onPremisesDistinguishedName"]
    ldap_conn.modify_s(other, [(ldap.MOD_REPLACE, ANCHOR, [b"User_00000000-0000-0000-0000-00000000abcd"])])
    try:
        check = ws.run("config", "check")
        assert "WARNING: AD accounts with a User_ anchor writeback never wrote: 1 (" in check.out, check.out
        assert other in check.out
    finally:
        ldap_conn.modify_s(other, [(ldap.MOD_DELETE, ANCHOR, None)])
    assert "every one written by this writeback" in ws.run("config", "check").out
