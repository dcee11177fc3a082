"""Dynamic groups: the cloud HR rule group written back, and on-prem dynamic groups following AD changes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import ldap
import pytest

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def test_cloud_dynamic_hr_group_written_with_synced_members_only(cloud, workspace, ad):
    hr = cloud.group_by_name("HR-All-Staff")
    assert "DynamicMembership" in hr["groupTypes"]
    ws = workspace([hr["id"]])
    result = ws.run("apply", "--json")
    assert result.code == 0, result.err
    synced_hr = {
        u["onPremisesDistinguishedName"].lower() for u in cloud.synced_users() if u.get("department") == "HR"
    }
    got = {m.lower() for m in ad.anchored(hr["id"])["member"]}
    assert got == synced_hr and len(got) == 4
    report = next(r for r in result.json()["plan"]["reports"] if r["cloud_id"] == hr["id"])
    assert [s["reason"] for s in report["skipped"]] == ["cloud-only user (not synced from AD)"]


def add_user(conn, ou, name, department, disabled=False):
    dn = f"CN={name},{ou}"
    conn.add_s(
        dn,
        [
            ("objectClass", [b"user"]),
            ("sAMAccountName", [name.encode()]),
            ("department", [department.encode()]),
            ("userAccountControl", [b"514" if disabled else b"512"]),
        ],
    )
    return dn


def dynamic_config(fresh_id, extra=""):
    return f"""
[[dynamic_groups]]
id = "eng-{fresh_id}"
name = "Engineering {fresh_id}"
rule = 'user.department -eq "Eng-{fresh_id}" -and user.accountEnabled -eq true'
description = "All enabled engineers"
{extra}
[service]
poll_interval = 0.3
"""


def test_onprem_dynamic_group_plan_apply_and_follow_ad_changes_during_run(
    workspace, ldap_conn, test_ou, ad, fresh_id
):
    dept = f"Eng-{fresh_id}"
    a = add_user(ldap_conn, test_ou, f"dyn-a-{fresh_id}", dept)
    b = add_user(ldap_conn, test_ou, f"dyn-b-{fresh_id}", dept)
    add_user(ldap_conn, test_ou, f"dyn-c-{fresh_id}", dept, disabled=True)
    c = add_user(ldap_conn, test_ou, f"dyn-d-{fresh_id}", "Sales")
    ws = workspace([], extra=dynamic_config(fresh_id))

    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.err
    create = next(ch for ch in plan.json()["changes"] if ch["kind"] == "create")
    assert create["cloud_id"] == f"dynamic:eng-{fresh_id}"
    assert {m.lower() for m in create["members"]} == {a.lower(), b.lower()}
    assert ws.run("apply").code == 0
    group = ad.by_cn()[f"Engineering {fresh_id}"]
    assert group["msDS-ExternalDirectoryObjectId"] == [f"WritebackDynamic_eng-{fresh_id}"]
    assert {m.lower() for m in group["member"]} == {a.lower(), b.lower()}
    assert ws.run("plan").code == 0

    health = ws.config.parent / "health.json"
    ws.config.write_text(ws.config.read_text() + f'health_file = "{health}"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "writeback", "--config", str(ws.config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ws.env,
    )
    try:
        _wait(lambda: health.exists() and json.loads(health.read_text())["status"] == "ok", 60)
        ldap_conn.modify_s(c, [(ldap.MOD_REPLACE, "department", [dept.encode()])])  # joins
        ldap_conn.modify_s(a, [(ldap.MOD_REPLACE, "userAccountControl", [b"514"])])  # disabled: leaves
        want = {b.lower(), c.lower()}
        _wait(
            lambda: {m.lower() for m in ad.by_cn()[f"Engineering {fresh_id}"].get("member", [])} == want, 30
        )
        # A member deleted in AD leaves the cached users at the next poll (Deleted Objects, Show Deleted), so
        # the next change — a new engineer joining — is applied without trying to add the deleted DN back.
        ldap_conn.delete_s(b)
        e = add_user(ldap_conn, test_ou, f"dyn-e-{fresh_id}", dept)
        want = {c.lower(), e.lower()}
        _wait(
            lambda: {m.lower() for m in ad.by_cn()[f"Engineering {fresh_id}"].get("member", [])} == want, 30
        )
        _wait(lambda: json.loads(health.read_text())["last_cycle"] is not None, 10)
        health_now = json.loads(health.read_text())
        assert health_now["changes_failed"] == 0 and health_now["status"] == "ok", health_now
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(health.read_text())["status"] == "stopped"


def _wait(check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_dynamic_group_config_errors_are_clear(workspace, fresh_id):
    ws = workspace(
        [], extra=dynamic_config(fresh_id).replace("-and user.accountEnabled", "-and user.accountEnabled -eq")
    )
    r = ws.run("plan")
    assert r.code == 1 and "dynamic_groups[0].rule" in r.err and "position" in r.err
