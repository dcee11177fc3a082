"""Microsoft 365 and mail-enabled groups end to end (issue 13, group types): the CLI against the sandbox.

The tests run in file order on purpose: the first ones run against the sandbox's schema as provisioned (no
Exchange schema, the default of `writeback sandbox up`); the last one runs `writeback sandbox up
--exchange-schema` and checks the Exchange recipient attributes. Schema extensions cannot be undone, so the
"without" tests fail (not skip) on a sandbox that already has Exchange's schema: bring up a fresh one.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import ldap
import pytest

pytestmark = [pytest.mark.samba, pytest.mark.emulator]

GUEST = "3e0b6c1a-7d42-4f1e-9a8b-1c2d3e4f5a04"  # sample tenant: Pat Partner (Fabrikam), userType Guest
CLOUD_ONLY = "3e0b6c1a-7d42-4f1e-9a8b-1c2d3e4f5a01"  # sample tenant: Lisa de Vos, cloud-only member
MESG = "0c7e2a91-5b3d-4f6a-8e1c-a1b2c3d4e505"  # sample tenant: MESG-Facilities-Notify
DOMAIN = "corpexample.onmicrosoft.com"  # sample tenant's defaultDomain
DISTRIBUTION = "8"
UNIVERSAL_SECURITY = "-2147483640"
EXCHANGE = ("msExchRecipientTypeDetails", "msExchRecipientDisplayType")
READ = [
    "cn",
    "objectGUID",
    "groupType",
    "mail",
    "proxyAddresses",
    "mailNickname",
    "displayName",
    "member",
    *EXCHANGE,
]
UNIFIED_SETTING = "5c1e0b7a-3d2f-4e6a-9b8c-7d6e5f4a3b21"  # sample tenant's Group.Unified setting


def m365(cloud: Any, name: str, members: list[str], kind: str | None, enabled: bool | None = True) -> str:
    """A Microsoft 365 group made through Graph beta (writebackConfiguration is beta only)."""
    body: dict[str, Any] = {
        "displayName": name,
        "description": f"test group {name}",
        "mailNickname": name.replace(" ", "").lower(),
        "mailEnabled": True,
        "securityEnabled": False,
        "groupTypes": ["Unified"],
        "writebackConfiguration": {"isEnabled": enabled, "onPremisesGroupType": kind},
    }
    gid = str(cloud.call("POST", "/beta/groups", body)["id"])
    for member in members:
        cloud.add_member(gid, member)
    return gid


def ad_group(conn: Any, ou: str, gid: str) -> dict[str, list[str]] | None:
    """The AD group anchored to ``gid``, read independently of writeback's adapter (values as text)."""
    found = conn.search_s(ou, ldap.SCOPE_SUBTREE, f"(msDS-ExternalDirectoryObjectId=Group_{gid})", READ)
    entries = [(dn, attrs) for dn, attrs in found if dn]
    if not entries:
        return None
    ((dn, attrs),) = entries
    out = {k: [v.hex() if k == "objectGUID" else v.decode() for v in vs] for k, vs in attrs.items()}
    out["dn"] = [dn]
    return out


def schema_has(conn: Any, base_dn: str, name: str) -> bool:
    found = conn.search_s(
        f"CN=Schema,CN=Configuration,{base_dn}", ldap.SCOPE_ONELEVEL, f"(lDAPDisplayName={name})", ["cn"]
    )
    return any(dn for dn, _ in found if dn)


def scope_lines(ws: Any, *lines: str) -> None:
    """Add keys to the workspace config's [scope] table."""
    text = ws.config.read_text()
    ws.config.write_text(text.replace("[scope]\n", "[scope]\n" + "".join(f"{line}\n" for line in lines), 1))


@pytest.fixture
def no_exchange_schema(sandbox: Any, ldap_conn: Any) -> None:
    if schema_has(ldap_conn, sandbox.base_dn, "msExchRecipientTypeDetails"):
        pytest.fail(
            f"the sandbox in {sandbox.dir} already has Exchange's schema (extensions are permanent); the path "
            "without it needs a fresh sandbox: `writeback sandbox down`, remove the directory, `sandbox up`",
            pytrace=False,
        )


def test_each_group_type_without_exchange_schema(
    cloud: Any, workspace: Any, ldap_conn: Any, test_ou: str, fresh_id: str, no_exchange_schema: None
) -> None:
    synced = cloud.synced_users()[:2]
    ids = [u["id"] for u in synced]
    dl = m365(cloud, f"mt{fresh_id} Dist", [*ids, GUEST, CLOUD_ONLY], "universalDistributionGroup")
    sec = m365(cloud, f"mt{fresh_id} Sec", ids, "universalSecurityGroup")
    mesg = m365(cloud, f"mt{fresh_id} MailSec", ids, "universalMailEnabledSecurityGroup")
    unset = m365(cloud, f"mt{fresh_id} Unset", ids, None, enabled=None)
    ws = workspace([dl, sec, mesg, unset, MESG])
    scope_lines(ws, "include_microsoft365 = true", "include_mail_enabled = true")

    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.out + plan.err
    doc = plan.json()
    assert doc["counts"]["create"] == 5
    # Said once in the plan, not per group: the forest lacks Exchange's attributes.
    warnings = [w for w in doc["warnings"] if "msExchRecipientTypeDetails" in w]
    assert len(warnings) == 1 and "mailNickname" in warnings[0] and "4 mail group(s)" in warnings[0]
    report = next(r for r in doc["reports"] if r["cloud_id"] == dl)
    reasons = {s["member_id"]: s["reason"] for s in report["skipped"]}
    assert reasons[GUEST].startswith("guest user (userType Guest")
    assert reasons[CLOUD_ONLY] == "cloud-only user (not synced from AD)"
    assert "guest user" in ws.run("plan").out  # the text plan shows the reason too

    applied = ws.run("apply")
    assert applied.code == 0, applied.out + applied.err
    members = {u["onPremisesDistinguishedName"].lower() for u in synced}
    g = ad_group(ldap_conn, test_ou, dl)
    assert g is not None
    assert g["groupType"] == [DISTRIBUTION]
    # Graph gave the new group mail and proxyAddresses from its mailNickname and the tenant's default domain.
    assert g["mail"] == [f"mt{fresh_id}dist@{DOMAIN}"]
    assert g["proxyAddresses"] == [f"SMTP:mt{fresh_id}dist@{DOMAIN}"]
    assert g["displayName"] == [f"mt{fresh_id} Dist"]
    assert "mailNickname" not in g and not set(EXCHANGE) & g.keys()
    assert {m.lower() for m in g["member"]} == members  # guest and cloud-only user left out

    g = ad_group(ldap_conn, test_ou, sec)
    assert (
        g is not None
        and g["groupType"] == [UNIVERSAL_SECURITY]
        and "mail" not in g
        and "proxyAddresses" not in g
    )
    g = ad_group(ldap_conn, test_ou, mesg)
    assert g is not None and g["groupType"] == [UNIVERSAL_SECURITY]
    assert g["proxyAddresses"] == [f"SMTP:mt{fresh_id}mailsec@{DOMAIN}"]
    g = ad_group(
        ldap_conn, test_ou, unset
    )  # no onPremisesGroupType: a distribution group, as Connect writes it
    assert g is not None and g["groupType"] == [DISTRIBUTION]
    g = ad_group(ldap_conn, test_ou, MESG)  # the sample's mail-enabled security group, from Exchange Online
    assert g is not None and g["groupType"] == [UNIVERSAL_SECURITY]
    assert g["mail"] == ["facilities-notify@corpexample.onmicrosoft.com"]
    assert g["proxyAddresses"] == ["SMTP:facilities-notify@corpexample.onmicrosoft.com"]

    again = ws.run("plan")
    assert again.code == 0, again.out  # converged: the attributes read back compare equal


def test_type_change_converts_in_place(
    cloud: Any, workspace: Any, ldap_conn: Any, test_ou: str, fresh_id: str, no_exchange_schema: None
) -> None:
    user = cloud.synced_users()[0]["id"]
    gid = m365(cloud, f"mt{fresh_id} Convert", [user], "universalDistributionGroup")
    ws = workspace([gid])
    scope_lines(ws, "include_microsoft365 = true")
    assert ws.run("apply").code == 0
    before = ad_group(ldap_conn, test_ou, gid)
    assert before is not None and before["groupType"] == [DISTRIBUTION]

    cloud.call(
        "PATCH",
        f"/beta/groups/{gid}",
        {"writebackConfiguration": {"onPremisesGroupType": "universalSecurityGroup"}},
    )
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.err
    changes = plan.json()["changes"]
    assert [c["kind"] for c in changes] == ["update"]  # one modify: no delete, no create
    assert changes[0]["attributes"]["groupType"] == int(UNIVERSAL_SECURITY)
    assert changes[0]["attributes"]["mail"] is None and changes[0]["attributes"]["proxyAddresses"] is None
    assert ws.run("apply").code == 0
    after = ad_group(ldap_conn, test_ou, gid)
    assert after is not None and after["objectGUID"] == before["objectGUID"] and after["dn"] == before["dn"]
    assert (
        after["groupType"] == [UNIVERSAL_SECURITY] and "mail" not in after and "proxyAddresses" not in after
    )

    cloud.call(
        "PATCH",
        f"/beta/groups/{gid}",
        {"writebackConfiguration": {"onPremisesGroupType": "universalMailEnabledSecurityGroup"}},
    )
    assert ws.run("apply").code == 0
    again = ad_group(ldap_conn, test_ou, gid)
    assert again is not None and again["objectGUID"] == before["objectGUID"]
    assert again["groupType"] == [UNIVERSAL_SECURITY] and again["mail"] == [f"mt{fresh_id}convert@{DOMAIN}"]
    assert ws.run("plan").code == 0


def set_unified_default(cloud: Any, value: str) -> None:
    body = {"values": [{"name": "NewUnifiedGroupWritebackDefault", "value": value}]}
    cloud.call("PATCH", f"/v1.0/groupSettings/{UNIFIED_SETTING}", body)


def test_is_enabled_semantics_with_the_tenant_default(
    cloud: Any, workspace: Any, ldap_conn: Any, test_ou: str, fresh_id: str
) -> None:
    user = cloud.synced_users()[0]["id"]
    prefix = f"mt{fresh_id}"
    m365_null = m365(cloud, f"{prefix} M365 Null", [user], None, enabled=None)
    m365_off = m365(cloud, f"{prefix} M365 Off", [user], None, enabled=False)
    sec_null = cloud.create_group(f"{prefix} Sec Null", [user])
    sec_on = cloud.create_group(f"{prefix} Sec On", [user])
    cloud.call("PATCH", f"/beta/groups/{sec_on}", {"writebackConfiguration": {"isEnabled": True}})
    ws = workspace([])
    text = ws.config.read_text().replace('mode = "none"', 'mode = "writeback_enabled"')
    ws.config.write_text(text)
    # Only this test's groups: the sandbox tenant has other Microsoft 365 groups.
    scope_lines(
        ws,
        f'filters = [{{clauses = [{{attribute = "displayName", operator = "STARTS_WITH", value = "{prefix}"}}]}}]',
    )

    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.out + plan.err
    created = {c["cloud_id"] for c in plan.json()["changes"] if c["kind"] == "create"}
    # isEnabled null: Microsoft 365 groups are written back, security groups are not.
    assert created == {m365_null, sec_on}
    assert ws.run("apply").code == 0
    assert ad_group(ldap_conn, test_ou, m365_null) is not None
    assert ad_group(ldap_conn, test_ou, m365_off) is None and ad_group(ldap_conn, test_ou, sec_null) is None

    set_unified_default(cloud, "false")
    try:
        plan = ws.run("plan", "--json")
        assert plan.code == 0, plan.out + plan.err  # nothing to write; the AD group is kept, not deleted
        note = next(r for r in plan.json()["reports"] if r["cloud_id"] == m365_null)["note"]
        assert "NewUnifiedGroupWritebackDefault is false" in note
        # An explicit isEnabled true still wins over the tenant default.
        cloud.call("PATCH", f"/beta/groups/{m365_off}", {"writebackConfiguration": {"isEnabled": True}})
        plan = ws.run("plan", "--json")
        assert {c["cloud_id"] for c in plan.json()["changes"] if c["kind"] == "create"} == {m365_off}
    finally:
        set_unified_default(cloud, "true")


def test_secondary_smtp_addresses_by_setting(
    cloud: Any, workspace: Any, ldap_conn: Any, test_ou: str
) -> None:
    """The sample's Project Phoenix has a secondary smtp: address; Connect writes only the primary one, writeback
    the secondaries too when mapping.secondary_smtp_addresses is set."""
    phoenix = "0c7e2a91-5b3d-4f6a-8e1c-a1b2c3d4e504"
    primary = "SMTP:project.phoenix@corpexample.onmicrosoft.com"
    secondary = "smtp:phoenix@corpexample.onmicrosoft.com"
    ws = workspace([phoenix])
    scope_lines(ws, "include_microsoft365 = true")
    assert ws.run("apply").code == 0
    g = ad_group(ldap_conn, test_ou, phoenix)
    assert g is not None and g["proxyAddresses"] == [primary]
    ws.config.write_text(ws.config.read_text() + "\n[mapping]\nsecondary_smtp_addresses = true\n")
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.out + plan.err
    (change,) = plan.json()["changes"]
    assert change["kind"] == "update" and sorted(change["attributes"]["proxyAddresses"]) == [
        primary,
        secondary,
    ]
    assert ws.run("apply").code == 0
    g = ad_group(ldap_conn, test_ou, phoenix)
    assert g is not None and sorted(g["proxyAddresses"]) == [primary, secondary]
    assert ws.run("plan").code == 0  # read back as a set: converged


def test_exchange_schema_attributes(
    sandbox: Any, cloud: Any, workspace: Any, ldap_conn: Any, test_ou: str, fresh_id: str
) -> None:
    """Last in this file: extends the sandbox schema with Exchange's attributes (permanent)."""
    up = subprocess.run(
        [
            *(sys.executable, "-m", "writeback", "sandbox", "up", "--exchange-schema"),
            *("--dir", str(sandbox.dir), "--users", str(sandbox.users)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    for name in ("mailNickname", *EXCHANGE):
        assert schema_has(ldap_conn, sandbox.base_dn, name), name
    ids = [u["id"] for u in cloud.synced_users()[:2]]
    dl = m365(cloud, f"mt{fresh_id} XDist", ids, "universalDistributionGroup")
    mesg = m365(cloud, f"mt{fresh_id} XMailSec", ids, "universalMailEnabledSecurityGroup")
    sec = m365(cloud, f"mt{fresh_id} XSec", ids, "universalSecurityGroup")
    ws = workspace([dl, mesg, sec])
    scope_lines(ws, "include_microsoft365 = true")
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.err
    assert not [w for w in plan.json()["warnings"] if "schema has no" in w]
    assert ws.run("apply").code == 0
    g = ad_group(ldap_conn, test_ou, dl)
    assert g is not None
    assert (g["msExchRecipientTypeDetails"], g["msExchRecipientDisplayType"]) == (["256"], ["1"])
    assert g["mailNickname"] == [f"mt{fresh_id}xdist"] and g["groupType"] == [DISTRIBUTION]
    g = ad_group(ldap_conn, test_ou, mesg)
    assert g is not None
    assert (g["msExchRecipientTypeDetails"], g["msExchRecipientDisplayType"]) == (["1024"], ["1073741833"])
    g = ad_group(ldap_conn, test_ou, sec)
    assert g is not None and not {"mailNickname", *EXCHANGE} & g.keys()
    assert ws.run("plan").code == 0
