"""Safety rules through the CLI against the sandbox: nested references that would break ownership or the
parent, and thresholds that hold mass member removals while the rest is applied."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ldap

from writeback.core.dn import join_rdn


def _members(ad: Any, gid: str) -> set[str]:
    g = ad.anchored(gid)
    assert g is not None, f"no AD group anchored to {gid}"
    return {m.lower() for m in g.get("member", [])}


def _reports(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["cloud_id"]: r for r in doc["reports"]}


def test_child_held_by_an_unmanaged_group_or_over_the_cap_is_not_nested(
    cloud, workspace, ad, ldap_conn, fresh_id
):
    users = cloud.synced_users()[:4]
    squatted = cloud.create_group(f"Squat {fresh_id}", [users[0]["id"]])
    big = cloud.create_group(f"Big {fresh_id}", [u["id"] for u in users[:3]])
    parent = cloud.create_group(f"Parent {fresh_id}", [squatted, big, users[3]["id"]])
    ws = workspace([squatted, big, parent], extra="[members]\nmax_members = 2\n")
    # Someone else's group already holds the DN the child would get.
    foreign = join_rdn("CN", f"Squat {fresh_id}_{squatted[-12:]}", ws.ou)
    ldap_conn.add_s(foreign, [("objectClass", [b"group"]), ("sAMAccountName", [f"sq{fresh_id}".encode()])])

    plan = ws.run("plan", "--json")
    assert plan.code == 2, plan.err
    reports = _reports(plan.json())
    assert "not managed by writeback" in reports[squatted]["error"]
    assert "max_members" in reports[big]["error"]
    skipped = {s["member_id"]: s["reason"] for s in reports[parent]["skipped"]}
    assert (
        skipped[squatted].startswith("nested group is not written: ") and "not managed" in skipped[squatted]
    )
    assert skipped[big].startswith("nested group is not written: ") and "max_members" in skipped[big]

    applied = ws.run("apply")
    assert applied.code == 0, applied.out + applied.err
    # The parent is written, with its user and without either child; the foreign group is untouched.
    assert _members(ad, parent) == {users[3]["onPremisesDistinguishedName"].lower()}
    assert ad.anchored(squatted) is None and ad.anchored(big) is None
    ((_, attrs),) = ldap_conn.search_s(
        foreign, ldap.SCOPE_BASE, "(objectClass=*)", ["member", "adminDescription"]
    )
    assert "member" not in attrs and "adminDescription" not in attrs


def test_mass_member_removal_is_held_the_rest_applied_until_allowed(
    cloud, workspace, ad, sandbox, fresh_id, tmp_path
):
    users = cloud.synced_users()[:30]
    a = cloud.create_group(f"Keep A {fresh_id}", [u["id"] for u in users])
    b = cloud.create_group(f"Keep B {fresh_id}", [u["id"] for u in users])
    health = tmp_path / "health.json"
    ws = workspace([a, b], extra=f'[service]\nhealth_file = "{health}"\npoll_interval = 0.5\n')
    assert ws.run("apply").code == 0
    assert len(_members(ad, a)) == 30  # 60 managed member values in all

    for u in users[:20]:  # 20 of 60 managed values (33 %) leave group A; B is renamed meanwhile
        cloud.remove_member(a, u["id"])
    cloud.rename(b, f"Renamed B {fresh_id}")

    plan = ws.run("plan")
    assert plan.code == 3, (
        plan.out + plan.err
    )  # held changes: 3, as apply says, never "nothing to do" (2 or 0)
    assert "Member removal threshold exceeded: 20 of the 60 member values" in plan.out
    assert "--allow-removals 20" in plan.out

    held = ws.run("apply")
    assert held.code == 3, held.out + held.err

    # Only the held removals are left: the plan still exits 3 and shows what they would write.
    again = ws.run("plan", "--verbose")
    assert again.code == 3, again.out + again.err
    assert "AD matches the cloud" not in again.out and "1 change held by a safety threshold" in again.out
    removed = [line for line in again.out.splitlines() if line.strip().startswith("- CN=")]
    assert len(removed) == 20 and "remove members" in again.out
    assert len(_members(ad, a)) == 30  # nothing removed
    assert ad.anchored(b)["displayName"] == [f"Renamed B {fresh_id}"]  # the rest went through
    rows = ws.run("log", "--action", "held", "--json").json()
    assert [r["cloud_id"] for r in rows] == [a] and "Member removal threshold" in rows[0]["error"]

    # The service holds them too, says so in its health file, and applies them once an operator allows it.
    service = subprocess.Popen(
        [sys.executable, "-m", "writeback", "--config", str(ws.config), "run"],
        env=ws.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = _wait(lambda: _status(health, "held"), "the service reports the hold")
        assert status["held"][0]["kind"] == "removals" and "--removals 20" in status["message"]
        assert len(_members(ad, a)) == 30
        allowed = ws.run("allow", "--removals", "20")
        assert allowed.code == 0, allowed.err
        _wait(lambda: len(_members(ad, a)) == 10, "the allowed removals reach AD")
        assert _members(ad, a) == {u["onPremisesDistinguishedName"].lower() for u in users[20:]}
        _wait(lambda: _status(health, "ok"), "the service is ok again")
    finally:
        service.terminate()
        _, err = service.communicate(timeout=30)
    assert service.returncode == 0, err[-2000:]
    assert ws.run("plan").code == 0


def _status(path: Path, status: str) -> dict[str, Any] | None:
    """The health file when it says ``status``."""
    try:
        health: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return health if health.get("status") == status else None


def _wait(check: Callable[[], object], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_replica_rebuilt_after_410_never_looks_like_a_removal(cloud, workspace, ad, fresh_id):
    users = cloud.synced_users()[:30]
    a = cloud.create_group(f"Resync A {fresh_id}", [u["id"] for u in users])
    b = cloud.create_group(f"Resync B {fresh_id}", [u["id"] for u in users])
    ws = workspace([a, b])
    assert ws.run("apply").code == 0
    cloud.faults(force_410=True)
    plan = ws.run("plan", "--json")
    assert plan.code == 0, plan.out + plan.err
    assert "full resync" in plan.err, "the 410 must have rebuilt the replica, or this test proves nothing"
    assert plan.json()["held"] == [] and plan.json()["changes"] == []
    assert len(_members(ad, a)) == 30 and len(_members(ad, b)) == 30
