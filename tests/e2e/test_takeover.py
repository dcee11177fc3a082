"""Taking over, never duplicating: the CLI against the sandbox's Samba AD DC and Graph emulator.

Groups synced from AD are staged the way Entra Connect / Cloud Sync leaves them in Entra ID (through the
emulator's admin API: Graph itself refuses to create a synced object), and converted or rolled back through
Graph's beta ``onPremisesSyncBehavior`` exactly as an administrator does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import ldap
import pytest

from writeback.adapters.directory.codec import sid_to_str

pytestmark = [pytest.mark.samba, pytest.mark.emulator]

GLOBAL_SECURITY = -2147483646
DOMAIN_LOCAL_SECURITY = -2147483644
MSDS = "msDS-ExternalDirectoryObjectId"


def ad_group(conn: Any, dn: str, sam: str, *, group_type: int = GLOBAL_SECURITY, **attrs: list[str]) -> str:
    """Create an AD group as an administrator would (or Connect did); returns its objectSid."""
    entry = [
        ("objectClass", [b"group"]),
        ("sAMAccountName", [sam.encode()]),
        ("groupType", [str(group_type).encode()]),
    ]
    entry += [(k, [v.encode() for v in vs]) for k, vs in attrs.items()]
    conn.add_s(dn, entry)
    return sid_of(conn, dn)


def sid_of(conn: Any, dn: str) -> str:
    ((_, found),) = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["objectSid"])
    return sid_to_str(found["objectSid"][0])


def read(conn: Any, dn: str) -> dict[str, list[bytes]]:
    ((_, found),) = conn.search_s(
        dn,
        ldap.SCOPE_BASE,
        "(objectClass=*)",
        ["objectGUID", "sAMAccountName", "groupType", "member", MSDS, "adminDescription", "cn"],
    )
    return dict(found)


def values(entry: dict[str, list[bytes]], name: str) -> set[str]:
    return {v.decode().lower() for v in entry.get(name, [])}


def synced_twin(cloud: Any, name: str, sid: str, members: list[str]) -> str:
    """The cloud group Entra Connect made of an AD group (admin API: Graph refuses to create synced objects)."""
    gid = str(uuid.uuid4())
    body = {
        "id": gid,
        "displayName": name,
        "mailEnabled": False,
        "securityEnabled": True,
        "groupTypes": [],
        "onPremisesSyncEnabled": True,
        "onPremisesSecurityIdentifier": sid,
        "members": members,
    }
    admin = {"Authorization": f"Bearer {cloud.info.emulator_admin_token}"}
    r = cloud.http.post("/_emulator/objects/groups", json=body, headers=admin)
    assert r.status_code < 300, r.text
    return gid


def set_cloud_managed(cloud: Any, gid: str, value: bool) -> None:
    cloud.call("PATCH", f"/beta/groups/{gid}/onPremisesSyncBehavior", {"isCloudManaged": value})


def group_count(conn: Any, ou: str) -> int:
    return len([dn for dn, _ in conn.search_s(ou, ldap.SCOPE_SUBTREE, "(objectClass=group)", ["cn"]) if dn])


def test_soa_conversion_writes_the_original_group_and_rollback_lets_go(
    cloud, workspace, ldap_conn, test_ou, fresh_id
):
    users = cloud.synced_users()[:3]
    dns = [u["onPremisesDistinguishedName"] for u in users]
    original = f"CN=Finance Approvers {fresh_id},{test_ou}"
    sid = ad_group(ldap_conn, original, f"finappr{fresh_id}", member=[dns[0]])
    before = read(ldap_conn, original)
    gid = synced_twin(cloud, f"Finance Approvers {fresh_id}", sid, [users[0]["id"]])
    ws = workspace([gid])

    # Still synced from AD: never written.
    plan = ws.run("plan", "--json")
    assert plan.code == 0, plan.out + plan.err
    assert plan.json()["changes"] == []

    # Source of authority moved to the cloud; the cloud administrator changes the members.
    set_cloud_managed(cloud, gid, True)
    cloud.add_member(gid, users[1]["id"])
    cloud.add_member(gid, users[2]["id"])
    cloud.remove_member(gid, users[0]["id"])
    count = group_count(ldap_conn, test_ou)
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.out + plan.err
    doc = plan.json()
    assert doc["counts"]["create"] == 0 and doc["counts"]["move"] == 0
    assert {c["dn"].lower() for c in doc["changes"]} == {original.lower()}
    applied = ws.run("apply")
    assert applied.code == 0, applied.out + applied.err

    after = read(ldap_conn, original)  # same DN: not moved, not renamed
    assert after["objectGUID"] == before["objectGUID"]
    assert after["sAMAccountName"] == before["sAMAccountName"]
    assert after["groupType"] == [str(GLOBAL_SECURITY).encode()]  # a global group keeps its scope
    assert values(after, MSDS) == {f"group_{gid}"}
    assert values(after, "member") == {dns[1].lower(), dns[2].lower()}  # members from the cloud
    assert group_count(ldap_conn, test_ou) == count  # nothing created
    assert ws.run("plan").code == 0

    # Rolled back: writeback lets go. Members, name and scope stay as they are; only its anchor goes.
    set_cloud_managed(cloud, gid, False)
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.out + plan.err
    (change,) = plan.json()["changes"]
    assert change["kind"] == "update" and change["attributes"] == {MSDS: None}
    assert change["reason"].startswith("released")
    assert ws.run("apply").code == 0
    released = read(ldap_conn, original)
    assert released["objectGUID"] == before["objectGUID"] and MSDS not in released
    assert values(released, "member") == {dns[1].lower(), dns[2].lower()}
    assert (
        released["groupType"] == after["groupType"] and released["sAMAccountName"] == after["sAMAccountName"]
    )
    assert ws.run("plan").code == 0


def test_missing_original_is_reported_and_nothing_created(cloud, workspace, ldap_conn, test_ou, fresh_id):
    users = cloud.synced_users()[:1]
    # The SID of a group that was deleted from AD after its conversion.
    doomed = f"CN=Gone {fresh_id},{test_ou}"
    sid = ad_group(ldap_conn, doomed, f"gone{fresh_id}")
    ldap_conn.delete_s(doomed)
    gid = synced_twin(cloud, f"Gone {fresh_id}", sid, [users[0]["id"]])
    set_cloud_managed(cloud, gid, True)
    ws = workspace([gid])
    result = ws.run("apply", "--json")
    doc = result.json()
    assert doc["plan"]["changes"] == []
    (report,) = [r for r in doc["plan"]["reports"] if r["cloud_id"] == gid]
    assert (
        "no longer exists" in report["error"] and "Recycle Bin" in report["error"] and sid in report["error"]
    )
    assert group_count(ldap_conn, test_ou) == 0
    text = ws.run("plan")
    assert "Recycle Bin" in text.out

    # The administrator accepts a new group (new SID).
    ws2 = workspace([gid], extra="[mapping]\ncreate_missing_originals = true\n")
    assert ws2.run("apply").code == 0
    assert group_count(ldap_conn, test_ou) == 1


def test_connect_groups_taken_over_in_place_with_zero_recreated(
    cloud, workspace, ad, ldap_conn, test_ou, fresh_id
):
    users = cloud.synced_users()[:2]
    dns = [u["onPremisesDistinguishedName"] for u in users]
    legacy_ou = f"OU=Connect,{test_ou}"
    ldap_conn.add_s(legacy_ou, [("objectClass", [b"top", b"organizationalUnit"])])
    default_form = cloud.create_group(f"Conn A {fresh_id}", [u["id"] for u in users])
    name_form = cloud.create_group(f"Conn B {fresh_id}", [users[0]["id"]])
    # What Connect Sync group writeback v2 left: CN=Group_<id> (default) or CN=<displayName>_<last 12> (the
    # "display name" option), adminDescription = Group_<id>, no msDS-ExternalDirectoryObjectId.
    a_dn = f"CN=Group_{default_form},{legacy_ou}"
    b_dn = f"CN=Conn B {fresh_id}_{name_form[-12:]},{legacy_ou}"
    ad_group(
        ldap_conn,
        a_dn,
        f"conna{fresh_id}",
        group_type=-2147483640,
        adminDescription=[f"Group_{default_form}"],
        member=dns,
    )
    ad_group(
        ldap_conn, b_dn, f"connb{fresh_id}", group_type=-2147483640, adminDescription=[f"Group_{name_form}"]
    )
    guids = {dn: read(ldap_conn, dn)["objectGUID"] for dn in (a_dn, b_dn)}
    count = group_count(ldap_conn, test_ou)

    ws = workspace([default_form, name_form])
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.out + plan.err
    doc = plan.json()
    assert doc["counts"]["create"] == 0 and doc["counts"]["move"] == 0
    assert ws.run("apply").code == 0
    assert group_count(ldap_conn, test_ou) == count
    for dn, gid in ((a_dn, default_form), (b_dn, name_form)):
        g = read(ldap_conn, dn)
        assert g["objectGUID"] == guids[dn]
        assert values(g, MSDS) == {f"group_{gid}"}  # stamped with Cloud Sync's anchor
        assert values(g, "adminDescription") == {f"group_{gid}"}
    assert values(read(ldap_conn, b_dn), "member") == {dns[0].lower()}
    assert read(ldap_conn, a_dn)["sAMAccountName"] == [f"conna{fresh_id}".encode()]
    assert ws.run("plan").code == 0  # and it stays where it is

    # Asking for renames: the mapping's names and OU apply (still the same objects).
    ws2 = workspace([default_form, name_form], extra="[mapping]\nkeep_adopted_names = false\n")
    assert ws2.run("apply").code == 0
    moved = ad.anchored(default_form)
    assert moved["cn"] == [f"Conn A {fresh_id}_{default_form[-12:]}"]
    assert moved["objectGUID"] == guids[a_dn]
    assert moved["dn"].lower().endswith(test_ou.lower()) and "ou=connect" not in moved["dn"].lower()


def test_groups_synced_from_ad_nested_in_a_cloud_group_are_referenced(
    cloud, workspace, ad, ldap_conn, test_ou, fresh_id
):
    users = cloud.synced_users()[:2]
    eng_dn = f"CN=Engineers {fresh_id},{test_ou}"
    printers_dn = f"CN=Printers {fresh_id},{test_ou}"
    eng_sid = ad_group(ldap_conn, eng_dn, f"eng{fresh_id}")
    printers_sid = ad_group(ldap_conn, printers_dn, f"prn{fresh_id}", group_type=DOMAIN_LOCAL_SECURITY)
    eng = synced_twin(cloud, f"Engineers {fresh_id}", eng_sid, [])
    printers = synced_twin(cloud, f"Printers {fresh_id}", printers_sid, [])
    parent = cloud.create_group(f"All Tech {fresh_id}", [users[0]["id"], eng, printers])
    ws = workspace([parent, eng, printers])
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.out + plan.err
    doc = plan.json()
    assert {c["cloud_id"] for c in doc["changes"]} == {parent}  # the synced groups are never written
    (report,) = [r for r in doc["reports"] if r["cloud_id"] == parent]
    (skip,) = report["skipped"]
    assert skip["member_id"] == printers and skip["reason"].startswith("8518")
    assert ws.run("apply").code == 0
    members = {m.lower() for m in ad.anchored(parent)["member"]}
    assert members == {users[0]["onPremisesDistinguishedName"].lower(), eng_dn.lower()}
    assert MSDS not in read(ldap_conn, eng_dn)


def test_loop_guard_reports_a_synced_copy_of_a_written_group(cloud, workspace, ad, ldap_conn, fresh_id):
    users = cloud.synced_users()[:1]
    gid = cloud.create_group(f"Ops {fresh_id}", [users[0]["id"]])
    ws = workspace([gid])
    assert ws.run("apply").code == 0
    written = ad.anchored(gid)
    # Connect picked up writeback's target OU and synced the group back to Entra ID as a new group.
    copy = synced_twin(cloud, f"Ops {fresh_id}", sid_of(ldap_conn, written["dn"]), [users[0]["id"]])
    ws2 = workspace([gid, copy])  # even selected, the copy is never written
    plan = ws2.run("plan", "--json")
    doc = plan.json()
    assert doc["changes"] == []
    (report,) = [r for r in doc["reports"] if r["cloud_id"] == copy]
    assert report["error"].startswith("loop:") and written["dn"] in report["error"]
    assert any(w.startswith("loop:") for w in doc["warnings"])
    text = ws2.run("plan")
    assert "loop:" in text.out and "loop:" in text.err  # in the plan and in the log
    assert ws2.run("apply").code == 0
    assert len([g for g in ad.by_cn().values() if g["cn"][0].startswith(f"Ops {fresh_id}")]) == 1


def test_sample_tenant_soa_group_is_planned_into_its_original(sandbox, cloud, ldap_conn, tmp_path):
    """The sample tenant's SOA-converted GG-Finance-Approvers carries its AD group's SID and is written there."""
    original = f"CN=GG-Finance-Approvers,{sandbox.onprem_groups_ou}"
    soa = cloud.group_by_name("GG-Finance-Approvers")
    props = cloud.call(
        "GET", f"/v1.0/groups/{soa['id']}?$select=onPremisesSecurityIdentifier,onPremisesSyncEnabled"
    )
    assert props["onPremisesSecurityIdentifier"] == sid_of(ldap_conn, original)
    assert props["onPremisesSyncEnabled"] is None
    assert cloud.call("GET", f"/beta/groups/{soa['id']}/onPremisesSyncBehavior")["isCloudManaged"] is True

    # The sandbox's own config (svc-writeback, every security group in scope) with a private state file: plan only.
    text = (Path(sandbox.dir) / "writeback.toml").read_text()
    config = tmp_path / "writeback.toml"
    config.write_text(re.sub(r"(?m)^path = .*$", f'path = "{tmp_path / "state.sqlite"}"', text))
    run = subprocess.run(
        [sys.executable, "-m", "writeback", "--config", str(config), "plan", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode in (0, 2), run.stdout + run.stderr
    mine = [c for c in json.loads(run.stdout)["changes"] if c["cloud_id"] == soa["id"]]
    assert {c["kind"] for c in mine} <= {"update", "add_members", "remove_members"}  # never create or move
    assert {c["dn"].lower() for c in mine} <= {original.lower()}
    if values(read(ldap_conn, original), MSDS) != {f"group_{soa['id']}"}:
        # A fresh sandbox: the first apply stamps the original (an update, never a create).
        assert any(c["kind"] == "update" and c["attributes"].get(MSDS) == f"Group_{soa['id']}" for c in mine)
