"""Rights checked before apply (issue 28, part 4), against the sandbox DC as its least-privileged account.

An SOA-converted group's original AD group outside the target OU, with no delegation on it: `plan` and
`config check` report it with the dsacls lines of docs/least-privilege.md, `apply` holds its changes (exit 3)
and writes the rest; once the administrator grants the rights (the test bed's `samba-tool dsacl set`, the
sandbox's equivalent of those dsacls lines), the next apply writes it. Samba computes allowedAttributesEffective
from the security descriptor as Windows does ([MS-ADTS] 3.1.1.4.5.7), which this test relies on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import Workspace
from tests.e2e.test_takeover import MSDS, ad_group, read, set_cloud_managed, synced_twin, values
from tests.testbed.config import GraphApp, selected, write_config
from tests.testbed.fixtures import connect

from writeback.core.rights import dsacls_lines
from writeback.testbed.sandbox import serviceaccount
from writeback.testbed.sandbox.layout import SandboxPaths

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def test_original_without_rights_is_reported_held_then_written_once_granted(
    sandbox: Any, cloud: Any, ldap_conn: Any, test_ou: str, tmp_path: Path, fresh_id: str
) -> None:
    users = cloud.synced_users()[:2]
    dns = [u["onPremisesDistinguishedName"] for u in users]
    # Outside the target OU, where nothing is delegated: the sandbox's OU=Groups, like GG-Finance-Approvers.
    original = f"CN=Audit Approvers {fresh_id},OU=Groups,{sandbox.base_dn}"
    sid = ad_group(ldap_conn, original, f"auditappr{fresh_id}", member=[dns[0]])
    try:
        gid = synced_twin(cloud, f"Audit Approvers {fresh_id}", sid, [users[0]["id"]])
        set_cloud_managed(cloud, gid, True)
        cloud.add_member(gid, users[1]["id"])
        other = cloud.create_group(f"Rights other {fresh_id}", [users[1]["id"]])

        home = tmp_path / "ws"
        config = write_config(
            home, sandbox, test_ou, graph=GraphApp.of_sandbox(sandbox), scope=selected([gid, other])
        )
        # The whole domain is read (the original is outside the target OU); writes are delegated on test_ou only.
        text = config.read_text().replace(f'base_dn = "{test_ou}"', f'base_dn = "{sandbox.base_dn}"')
        config.write_text(text)
        ws = Workspace(config, test_ou, {k: v for k, v in os.environ.items() if k != "WRITEBACK_CONFIG"}, [])

        plan = ws.run("plan", "--json")
        assert plan.code == 3, plan.out + plan.err  # held changes
        doc = plan.json()
        assert {c["dn"].lower() for c in doc["held"]} == {original.lower()}
        assert {c["kind"] for c in doc["held"]} == {"update", "add_members"}
        assert any(c["kind"] == "create" and c["cloud_id"] == other for c in doc["changes"])
        (hold,) = [h for h in doc["holds"] if h["kind"] == "rights"]
        assert hold["groups"] == [gid]
        (report,) = [r for r in doc["reports"] if r["cloud_id"] == gid]
        for line in dsacls_lines(original, ["member", MSDS, "displayName"]):
            assert line in report["error"], report["error"]

        # config check finds it too, though it carries no anchor yet (its first stamp is what is held): from
        # the cloud replica the plan synced, by the SID of the SOA-converted group, with the same dsacls lines.
        check = ws.run("config", "check")
        assert check.code == 1 and "taken over outside the target OU" in check.out, check.out + check.err
        assert "SOA-converted groups' originals in AD: 1 found, 1 without the rights" in check.out, check.out
        for line in dsacls_lines(original, ["member", MSDS, "displayName"]):
            assert line in check.out, check.out

        applied = ws.run("apply")
        assert applied.code == 3, applied.out + applied.err
        assert "INSUFFICIENT_ACCESS" not in applied.out + applied.err  # not attempted
        held = read(ldap_conn, original)
        assert values(held, "member") == {dns[0].lower()} and MSDS not in held
        assert ws.run("plan", "--json").json()["changes"] == []  # the rest was written

        # The administrator grants the rights on the group itself, as the sandbox does for its SOA sample group.
        admin = connect(sandbox)
        try:
            serviceaccount.delegate(
                admin,
                smb_conf=SandboxPaths(sandbox.dir).smb_conf,
                ldap_url=sandbox.starttls_url,
                base_dn=sandbox.base_dn,
                admin_password=sandbox.bind_password,
                ou_dn=original,
                sid=str(sandbox.service_sid),
                sddl=serviceaccount.takeover_sddl(admin, sandbox.base_dn, str(sandbox.service_sid)),
            )
        finally:
            admin.unbind_s()
        granted = ws.run("apply")
        assert granted.code == 0, granted.out + granted.err
        written = read(ldap_conn, original)
        assert values(written, MSDS) == {f"group_{gid}"}
        assert values(written, "member") == {dns[0].lower(), dns[1].lower()}
        assert ws.run("plan").code == 0
    finally:
        ldap_conn.delete_s(original)
