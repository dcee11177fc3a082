"""writeback end to end: the CLI against the sandbox's Samba AD DC and Graph emulator."""

from __future__ import annotations

import ldap
import pytest

from writeback.testbed.tlsutil import ensure_server_cert

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def dns(users):
    return {u["onPremisesDistinguishedName"].lower() for u in users}


def members(ad, gid):
    g = ad.anchored(gid)
    assert g is not None, f"no AD group anchored to Group_{gid}"
    return {m.lower() for m in g.get("member", [])}


def test_sample_finance_and_sap_scenarios(cloud, workspace, ad):
    fin = cloud.group_by_name("SG-NL-Finance-Department")
    sap = cloud.group_by_name("DSG-AVD-PUBAPP-SAP")
    ws = workspace([fin["id"], sap["id"]])
    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.err
    doc = plan.json()
    assert doc["counts"]["create"] == 2
    sap_report = next(r for r in doc["reports"] if r["cloud_id"] == sap["id"])
    assert len(sap_report["skipped"]) == 2
    assert {s["reason"] for s in sap_report["skipped"]} == {"cloud-only user (not synced from AD)"}

    applied = ws.run("apply")
    assert applied.code == 0, applied.out + applied.err
    assert len(members(ad, fin["id"])) == 3
    assert len(members(ad, sap["id"])) == 4
    g = ad.anchored(fin["id"])
    assert g["cn"][0] == f"SG-NL-Finance-Department_{fin['id'][-12:]}"
    assert g["groupType"] == ["-2147483640"]
    assert ws.run("plan").code == 0  # nothing left to do

    log = ws.run("log", "--json").json()
    assert {e["action"] for e in log} >= {"create", "skip_members"}
    assert ws.run("log", "--since", "1h", "--action", "create", "--json").json()
    assert ws.run("log", "--since", "2999-01-01T00:00", "--json").json() == []
    table = ws.run("log", "--group", "SG-NL-Finance")
    assert "SG-NL-Finance-Department" in table.out and "DSG-AVD" not in table.out


def test_rename_member_add_remove_and_nested(cloud, workspace, ad, fresh_id):
    users = cloud.synced_users()[:4]
    child = cloud.create_group(f"Child {fresh_id}", [users[3]["id"]])
    parent = cloud.create_group(f"Parent {fresh_id}", [users[0]["id"], users[1]["id"], child])
    ws = workspace([parent, child])
    assert ws.run("apply").code == 0
    child_dn = ad.anchored(child)["dn"].lower()
    assert members(ad, parent) == dns(users[:2]) | {child_dn}
    guid = ad.anchored(parent)["objectGUID"]

    cloud.patch_group(parent, displayName=f"Renamed {fresh_id}")
    cloud.add_member(parent, users[2]["id"])
    cloud.remove_member(parent, users[0]["id"])
    plan = ws.run("plan", "--json")
    assert plan.code == 2
    kinds = [c["kind"] for c in plan.json()["changes"]]
    assert kinds == ["update", "move", "add_members", "remove_members"]
    assert ws.run("apply").code == 0
    g = ad.anchored(parent)
    assert g["cn"][0].startswith(f"Renamed {fresh_id}_")
    assert g["objectGUID"] == guid
    assert members(ad, parent) == dns(users[1:3]) | {child_dn}
    assert ws.run("plan").code == 0


def test_changed_target_ou_moves_group(cloud, workspace, ad, ldap_conn, test_ou, fresh_id):
    gid = cloud.create_group(f"Mover {fresh_id}", [cloud.synced_users()[0]["id"]])
    ws = workspace([gid])
    assert ws.run("apply").code == 0
    guid = ad.anchored(gid)["objectGUID"]
    sub = f"OU=Moved,{test_ou}"
    ldap_conn.add_s(sub, [("objectClass", [b"organizationalUnit"])])
    text = ws.config.read_text().replace(f'target_ou = "{test_ou}"', f'target_ou = "{sub}"')
    ws.config.write_text(text)
    assert ws.run("apply").code == 0
    g = ad.anchored(gid)
    assert g["dn"].lower().endswith(sub.lower()) and g["objectGUID"] == guid


def test_drift_is_reverted(cloud, workspace, ad, ldap_conn, fresh_id):
    users = cloud.synced_users()[:3]
    gid = cloud.create_group(
        f"Drift {fresh_id}", [u["id"] for u in users[:2]], description="Owned by the cloud"
    )
    ws = workspace([gid])
    assert ws.run("apply").code == 0
    dn = ad.anchored(gid)["dn"]
    ldap_conn.modify_s(
        dn,
        [
            (ldap.MOD_DELETE, "member", [users[0]["onPremisesDistinguishedName"].encode()]),
            (ldap.MOD_ADD, "member", [users[2]["onPremisesDistinguishedName"].encode()]),
            (ldap.MOD_REPLACE, "description", [b"edited by hand"]),
        ],
    )
    plan = ws.run("plan", "--json")
    assert plan.code == 2
    doc = plan.json()
    # A quick reconcile: the group's uSNChanged moved, so it alone is read and compared (issue 17).
    assert doc["deep"] is False and "1 group to compare (1 changed in AD" in doc["scope"], doc["scope"]
    assert sorted(c["kind"] for c in doc["changes"]) == ["add_members", "remove_members", "update"]
    assert all(c["reason"].startswith("drift:") for c in doc["changes"])
    assert ws.run("apply").code == 0
    assert members(ad, gid) == dns(users[:2])
    assert ad.anchored(gid)["description"] == ["Owned by the cloud"]
    # In step again, stamped with the USN of writeback's own writes: nothing to compare, nothing to do.
    quiet = ws.run("plan")
    assert quiet.code == 0 and "Compared: quick reconcile: 0 groups to compare" in quiet.out, quiet.out
    deep = ws.run("plan", "--deep", "--json")
    assert (
        deep.code == 0 and deep.json()["deep"] is True and "an operator asked for one" in deep.json()["scope"]
    )


def test_unanchored_group_untouched_and_anchored_group_adopted(
    cloud, workspace, ad, ldap_conn, test_ou, fresh_id
):
    users = cloud.synced_users()[:2]
    manual_dn = f"CN=Manual {fresh_id},{test_ou}"
    ldap_conn.add_s(
        manual_dn,
        [
            ("objectClass", [b"group"]),
            ("sAMAccountName", [f"manual{fresh_id}".encode()]),
            ("member", [users[0]["onPremisesDistinguishedName"].encode()]),
        ],
    )
    adopt = cloud.create_group(f"Adopt {fresh_id}", [u["id"] for u in users])
    # Written earlier by Connect Sync group writeback v2: CN=Group_<id>, anchor in adminDescription.
    old_dn = f"CN=Group_{adopt},{test_ou}"
    ldap_conn.add_s(
        old_dn,
        [
            ("objectClass", [b"group"]),
            ("sAMAccountName", [f"adopt{fresh_id}".encode()]),
            ("adminDescription", [f"Group_{adopt}".encode()]),
        ],
    )
    # A cloud group whose CN collides with an unmanaged object: refused, object untouched.
    clash = cloud.create_group(f"Manual {fresh_id}", [users[1]["id"]], mailNickname=f"clash{fresh_id}")
    clash_dn = f"CN=Manual {fresh_id}_{clash[-12:]},{test_ou}"
    ldap_conn.add_s(
        clash_dn, [("objectClass", [b"group"]), ("sAMAccountName", [f"clash{fresh_id}".encode()])]
    )

    ws = workspace([adopt, clash])
    result = ws.run("apply", "--json")
    doc = result.json()
    assert any("not managed by writeback" in (r["error"] or "") for r in doc["plan"]["reports"])
    groups = ad.by_cn()
    assert (
        len(
            [
                g
                for g in groups.values()
                if f"Group_{adopt}"
                in g.get("adminDescription", []) + g.get("msDS-ExternalDirectoryObjectId", [])
            ]
        )
        == 1
    )
    adopted = ad.anchored(adopt)
    assert adopted["msDS-ExternalDirectoryObjectId"] == [f"Group_{adopt}"]
    assert members(ad, adopt) == dns(users)
    manual = groups[f"Manual {fresh_id}"]
    assert manual["member"] == [users[0]["onPremisesDistinguishedName"]]
    assert "member" not in groups[f"Manual {fresh_id}_{clash[-12:]}"]


def test_hard_delete_deletes_soft_delete_keeps_and_threshold(cloud, workspace, ad, fresh_id):
    u = cloud.synced_users()[0]["id"]
    ids = [cloud.create_group(f"Del{i} {fresh_id}", [u]) for i in range(4)]
    ws = workspace(ids, extra="[safety]\ndelete_threshold = 2\n")
    assert ws.run("apply").code == 0
    cloud.soft_delete(ids[0])
    assert ws.run("apply").code == 0
    assert ad.anchored(ids[0]) is not None  # soft delete keeps
    for gid in ids[1:]:
        cloud.hard_delete(gid)
    plan = ws.run("plan")
    assert "Delete threshold exceeded: 3" in plan.out and "--allow-deletes 3" in plan.out
    blocked = ws.run("apply")
    assert blocked.code == 3  # applied what it could, held the rest
    assert all(ad.anchored(gid) is not None for gid in ids[1:])
    staged = ws.run("log", "--action", "staged_delete", "--json").json()
    assert len(staged) == 3
    assert ws.run("apply", "--allow-deletes", "3").code == 0
    assert all(ad.anchored(gid) is None for gid in ids[1:])
    assert ad.anchored(ids[0]) is not None


def test_saved_plan_applies_only_while_it_matches(cloud, workspace, ad, tmp_path, fresh_id):
    users = cloud.synced_users()[:2]
    gid = cloud.create_group(f"Saved {fresh_id}", [users[0]["id"]])
    ws = workspace([gid])
    saved = tmp_path / "plan.json"
    assert ws.run("plan", "--out", str(saved)).code == 2
    assert ws.run("apply", "--plan", str(saved)).code == 0
    assert members(ad, gid) == dns(users[:1])
    assert ws.run("plan", "--out", str(saved)).code == 0
    cloud.add_member(gid, users[1]["id"])
    stale = ws.run("apply", "--plan", str(saved))
    assert stale.code == 1 and "no longer matches" in stale.err
    assert members(ad, gid) == dns(users[:1])


def test_plan_exit_codes_and_clear_errors(cloud, workspace, tmp_path, sandbox, fresh_id):
    gid = cloud.create_group(f"Codes {fresh_id}", [])
    ws = workspace([gid])
    assert ws.run("plan").code == 2
    assert ws.run("apply").code == 0
    assert ws.run("plan").code == 0

    wrong_ca = ensure_server_cert(tmp_path / "otherca", "other").ca_file
    bad_tls = workspace([gid], ca_file=str(wrong_ca))
    r = bad_tls.run("plan")
    assert r.code == 1 and "certificate" in r.err.lower()

    pw = tmp_path / "wrong_pw"
    pw.write_text("not-the-password")
    bad_bind = workspace([gid], password_file=pw)
    r = bad_bind.run("plan")
    assert r.code == 1 and ("credentials" in r.err.lower() or "bind" in r.err.lower())

    broken = tmp_path / "broken.toml"
    broken.write_text(ws.config.read_text().replace('mode = "selected"', 'mode = "sometimes"'))
    r = ws.run("--config", str(broken), "plan")
    assert r.code == 1 and "scope.mode" in r.err


def test_wrong_client_secret_is_a_clear_error_without_the_secret(cloud, workspace, fresh_id):
    gid = cloud.create_group(f"Secret {fresh_id}", [])
    ws = workspace([gid])
    (ws.config.parent / "client_secret").write_text("wrong-secret-value")
    r = ws.run("plan")
    assert r.code == 1
    assert "wrong-secret-value" not in r.err + r.out
    assert "AADSTS" in r.err or "client" in r.err.lower()


def test_config_check_reports_ok_and_problems(cloud, workspace, sandbox, fresh_id):
    ws = workspace([cloud.create_group(f"Check {fresh_id}", [])])
    ok = ws.run("config", "check")
    assert ok.code == 0, ok.out + ok.err
    assert "msDS-ExternalDirectoryObjectId present" in ok.out and "Configuration OK" in ok.out
    missing_ou = ws.config.read_text().replace(f'target_ou = "{ws.ou}"', f'target_ou = "OU=Nope,{ws.ou}"')
    ws.config.write_text(missing_ou)
    bad = ws.run("config", "check")
    assert bad.code == 1 and "does not exist" in bad.out
