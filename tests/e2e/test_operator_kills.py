"""The operator's daily surfaces together, in several processes, with `kill -9` in between (issue 25).

`writeback run` runs as a real subprocess serving its console, next to the `writeback` CLI, on one SQLite state,
against the sandbox DC and a private Graph emulator:

- A CLI pause survives a `kill -9` of the service: started again it keeps reading the cloud, writes nothing, its
  console says paused; `apply` and `provision` refuse naming how to resume (with the service down and with it
  up), `plan` still plans; `writeback resume` and the change made meanwhile reaches AD.
- Restart provisioning asked through the console (a signed-in operator's form, with its CSRF token) and the
  service killed during the rebuild (the emulator slowed down so the full read lasts seconds): the replica is
  not left half-read, the restarted service reads Graph in full again, AD never loses a member on the way and
  ends equal to the cloud, an unmanaged group is untouched, and the log names the operator who restarted.
- Restart provisioning asked while a long cycle writes, and the service killed before a cycle started it: the
  restarted service still does it (the request is kept in the shared state, not only in the killed process).
"""

from __future__ import annotations

import getpass
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.testbed import service as support
from tests.testbed.ad import AdView
from tests.testbed.service import (
    Cloud,
    RunningService,
    add_canary,
    cli_argv,
    cli_env,
    console_settings,
    converged,
    sandbox_tenant,
    service_config,
    synced_user_ids,
    wait_for,
)

from writeback.console.auth import new_token

pytestmark = [pytest.mark.samba]
service_factory = support.service_factory  # shared fixtures
cloud = support.private_cloud_fixture

RESUME_HINT = "writeback resume"


class Operator:
    """An operator with the console's operator token: runs the CLI and reads the console's API."""

    def __init__(self, url: str, token: str, config: Path) -> None:
        self.url, self.token, self.config = url, token, config

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**cli_env(), "WRITEBACK_CONSOLE_TOKEN": self.token}  # `provision` asks a running service
        return subprocess.run(
            cli_argv(self.config, *args), capture_output=True, text=True, env=env, timeout=120
        )

    def api(self, path: str) -> Any:
        r = httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
        return r.json()

    def ready(self, svc: RunningService) -> bool:
        assert svc.proc.poll() is None, f"writeback run ended: {svc.log_file.read_text()[-3000:]}"
        try:
            return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False


def members_of(ad: AdView, gid: str) -> set[str]:
    (group,) = ad.by_anchor()[gid]
    return set(group.members)


def replica_members(state: Path) -> dict[str, int]:
    """The cloud replica's member count per group, read from the state file (another reader, read-only)."""
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT group_id, COUNT(*) FROM members GROUP BY group_id").fetchall()
    return {str(g): int(n) for g, n in rows}


def delta_links(state: Path) -> dict[str, str | None]:
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        return {str(r): link for r, link in db.execute("SELECT resource, link FROM delta_links")}


def test_a_cli_pause_survives_kill_9_and_blocks_every_writer_until_resume(
    sandbox: Any, cloud: Cloud, test_ou: str, ldap_conn: Any, tmp_path: Path, service_factory: Any
) -> None:
    users = synced_user_ids(sandbox_tenant(sandbox))
    prefix = f"PauseKill-{uuid.uuid4().hex[:6]}"
    name = f"{prefix} A"
    gid = cloud.create_group(name, users[:3])
    token = new_token()
    console, url = console_settings(tmp_path / "console", token, "operator")
    config = service_config(sandbox, cloud, test_ou, tmp_path / "home", prefix, extra=console)
    op = Operator(url, token, config)
    ad = AdView(ldap_conn, test_ou)

    svc: RunningService = service_factory(config)
    wait_for("the console", lambda: op.ready(svc), timeout=60)
    wait_for("the first reconcile", lambda: converged(ad, cloud, [gid]), timeout=30)

    paused = op.cli("pause")
    assert paused.returncode == 0, paused.stderr
    wait_for("the service to see the pause", lambda: svc.health().get("status") == "paused", timeout=15)
    assert svc.stop(signal.SIGKILL) == -signal.SIGKILL

    # A change in the cloud while the service is down.
    newcomer = users[3]
    newcomer_dn = cloud.user_dns()[newcomer]
    cloud.add_member(gid, newcomer)
    before = members_of(ad, gid)
    assert newcomer_dn not in before

    def refused_while_paused(when: str) -> None:
        applied = op.cli("apply")
        assert applied.returncode == 1, f"apply {when}: exit {applied.returncode}: {applied.stderr[-600:]}"
        assert "paused by" in applied.stderr and RESUME_HINT in applied.stderr, applied.stderr[-600:]
        provisioned = op.cli("provision", name)
        assert provisioned.returncode == 1, (
            f"provision {when}: exit {provisioned.returncode}: {provisioned.stdout[-300:]} {provisioned.stderr[-600:]}"
        )
        assert RESUME_HINT in provisioned.stderr, provisioned.stderr[-600:]
        planned = op.cli("plan")  # a dry run still works: 2, the change is pending (README's exit codes)
        assert planned.returncode == 2, f"plan {when}: exit {planned.returncode}: {planned.stderr[-600:]}"
        assert members_of(ad, gid) == before, f"AD written {when}"

    refused_while_paused("with the service killed")

    # Started again, the service is still paused: it reads the cloud and writes nothing.
    started = time.time()
    svc = service_factory(config)
    wait_for("the console after the restart", lambda: op.ready(svc), timeout=60)
    wait_for(
        "a paused cycle of the restarted service",
        lambda: (svc.health().get("last_sync") or 0) > started and svc.health().get("status") == "paused",
        timeout=30,
    )
    status = op.api("/api/status")
    assert status["status"] == "paused", status
    assert status["paused"]["by"] == getpass.getuser(), status["paused"]
    refused_while_paused("with the restarted service paused")
    time.sleep(1.5)  # a few more polls (0.3 s): still nothing written
    assert svc.proc.poll() is None and members_of(ad, gid) == before, "the paused service wrote to AD"
    assert op.api("/api/status")["status"] == "paused"

    resumed = op.cli("resume")
    assert resumed.returncode == 0 and "Resumed" in resumed.stdout, resumed.stderr
    wait_for("the change made while paused in AD", lambda: converged(ad, cloud, [gid]), timeout=20)
    assert newcomer_dn in members_of(ad, gid)
    wait_for("the status back to ok", lambda: op.api("/api/status")["status"] == "ok", timeout=15)

    rows = [
        r for r in op.api("/api/log?limit=1000")["value"] if r["action"] in ("pause", "resume", "provision")
    ]
    assert sorted((r["action"], r["actor"]) for r in rows) == [
        ("pause", getpass.getuser()),
        ("resume", getpass.getuser()),
    ], "one pause, one resume, and no refused provision logged as asked"


def test_restart_provisioning_killed_mid_rebuild_reads_in_full_again_and_loses_nothing(
    sandbox: Any, cloud: Cloud, test_ou: str, ldap_conn: Any, tmp_path: Path, service_factory: Any
) -> None:
    users = synced_user_ids(sandbox_tenant(sandbox))
    prefix = f"RestartKill-{uuid.uuid4().hex[:6]}"
    gids = [cloud.create_group(f"{prefix} {i}", users[4 * i : 4 * i + 4]) for i in range(3)]
    token = new_token()
    console, url = console_settings(tmp_path / "console", token, "operator")
    home = tmp_path / "home"
    config = service_config(sandbox, cloud, test_ou, home, prefix, extra=console)
    state = home / "state.sqlite"
    op = Operator(url, token, config)
    ad = AdView(ldap_conn, test_ou)
    canary = add_canary(ldap_conn, test_ou, cloud.user_dns()[users[0]])

    svc: RunningService = service_factory(config)
    wait_for("the console", lambda: op.ready(svc), timeout=60)
    wait_for("the first reconcile", lambda: converged(ad, cloud, gids, extra_groups=1), timeout=30)
    replica_before = replica_members(state)
    assert all(replica_before.get(g) == 4 for g in gids), replica_before

    # Every Graph request now takes 0.4 s: the full read of the tenant lasts several seconds.
    cloud.faults(latency_ms=400)

    # The operator signs in to the console and confirms Restart provisioning (a form with its CSRF token).
    with httpx.Client(base_url=url, timeout=30) as browser:
        signed = browser.post("/signin", data={"token": token})
        assert signed.status_code == 303, signed.text[:300]
        confirm = browser.get("/actions/restart")
        assert confirm.status_code == 200 and "Restart provisioning?" in confirm.text
        found = re.search(r'name="csrf" value="([^"]+)"', confirm.text)
        assert found, "the confirmation form carries a CSRF token"
        forged = browser.post("/actions/restart", data={})
        assert forged.status_code == 403, "a form without the session's CSRF token is refused"
        asked = browser.post("/actions/restart", data={"csrf": found.group(1)})
        assert asked.status_code == 303, asked.text[:300]

    wait_for(
        "the rebuild to start", lambda: svc.health().get("phase") == "rebuild", timeout=20, interval=0.05
    )
    time.sleep(1.0)
    assert svc.health().get("phase") == "rebuild", "the rebuild was meant to last a few seconds"
    assert svc.stop(signal.SIGKILL) == -signal.SIGKILL

    # Killed half-way through the full read: the replica is the one before it (the round is one transaction),
    # and the dropped delta links make the next start read Graph in full again.
    assert replica_members(state) == replica_before, "the replica was left half-read"
    links = delta_links(state)
    assert not links.get("groups"), f"a delta link survived the restart's drop: {links}"
    assert members_of(ad, gids[0]) and len(ad.groups()) == len(gids) + 1

    # Changes made while the service is down, then the service started again (Graph at full speed).
    leaving = cloud.members(gids[1])[0]
    cloud.remove_member(gids[1], leaving)
    cloud.add_member(gids[0], users[20])
    cloud.faults(latency_ms=0)
    ad_before = {g: members_of(ad, g) for g in gids}
    leaving_dn = cloud.user_dns()[leaving]

    svc = service_factory(config)
    wait_for("the console after the restart", lambda: op.ready(svc), timeout=60)
    lost: list[str] = []

    def settled() -> bool:
        now = {g: members_of(ad, g) for g in gids}
        lost.extend(
            f"{g}: {dn}"
            for g in gids
            for dn in ad_before[g] - now[g]
            if not (g == gids[1] and dn == leaving_dn)
        )
        return converged(ad, cloud, gids, extra_groups=1)

    wait_for("AD equal to the cloud after the rebuild", settled, timeout=30, interval=0.1)
    assert not lost, f"members removed from AD on the way (a partly read replica?): {sorted(set(lost))[:5]}"
    assert replica_members(state) == {gids[0]: 5, gids[1]: 3, gids[2]: 4} | {
        g: n for g, n in replica_members(state).items() if g not in gids
    }
    events = svc.events()
    assert any(e.get("event") == "resync" for e in events), "the restarted service read Graph in full"

    # The unmanaged group is as it was; the log names the operator who asked for the restart.
    (kept,) = [g for g in ad.groups() if g.dn.lower() == canary.lower()]
    assert kept.members == {cloud.user_dns()[users[0]]} and not kept.anchor
    (row,) = op.api("/api/log?action=restart")["value"]
    assert row["actor"] == "olga", row
    wait_for("a healthy status", lambda: op.api("/api/status")["status"] == "ok", timeout=15)


def test_a_restart_asked_while_a_cycle_runs_survives_a_kill_before_it_starts(
    sandbox: Any, cloud: Cloud, test_ou: str, ldap_conn: Any, tmp_path: Path, service_factory: Any
) -> None:
    """The console answers "Restart started" at once, but the service starts it with its next cycle: the one
    running meanwhile (here writing 60 new groups) may last a while. A kill then must not lose the request."""
    users = synced_user_ids(sandbox_tenant(sandbox))
    prefix = f"RestartAsked-{uuid.uuid4().hex[:6]}"
    gids = [cloud.create_group(f"{prefix} {i}", users[4 * i : 4 * i + 4]) for i in range(2)]
    token = new_token()
    console, url = console_settings(tmp_path / "console", token, "operator")
    home = tmp_path / "home"
    config = service_config(sandbox, cloud, test_ou, home, prefix, extra=console)
    state = home / "state.sqlite"
    op = Operator(url, token, config)
    ad = AdView(ldap_conn, test_ou)

    svc: RunningService = service_factory(config)
    wait_for("the console", lambda: op.ready(svc), timeout=60)
    wait_for("the first reconcile", lambda: converged(ad, cloud, gids), timeout=30)
    in_ad = members_of(ad, gids[0])
    # The replica lost a group's members (the kind of damage a restart repairs); no delta round brings them back.
    with sqlite3.connect(state) as db:
        assert db.execute("DELETE FROM members WHERE group_id = ?", (gids[0],)).rowcount == 4

    # A cycle that lasts: 60 new groups to create in AD. The operator asks for a restart while it writes.
    # The service's delta reads fail meanwhile, so that one cycle reads all 60 groups.
    cloud.faults(error_503_ratio=1.0, path_contains="delta")
    gids += [cloud.create_group(f"{prefix} new {i}", users[i % 8 : i % 8 + 1]) for i in range(60)]
    cloud.faults(error_503_ratio=0.0, path_contains=None)

    def writing() -> bool:
        h = svc.health()
        return h.get("phase") == "apply" and (h.get("progress_total") or 0) >= 60 and h["progress_done"] < 40

    wait_for("the cycle writing the new groups", writing, timeout=30, interval=0.05)
    asked = httpx.post(url + "/api/restart", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert asked.status_code == 202 and "Restart started" in asked.json()["message"], asked.text[:300]
    health = svc.health()
    assert (health.get("phase"), health.get("cycle_kind")) != ("rebuild", "restart"), health
    assert svc.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not [e for e in svc.events() if e.get("event") == "restart"], "the restart had started: no test"
    assert replica_members(state).get(gids[0]) is None

    svc = service_factory(config)
    wait_for("the console after the kill", lambda: op.ready(svc), timeout=60)
    wait_for(
        "the restart asked before the kill to rebuild the replica",
        lambda: replica_members(state).get(gids[0]) == 4,
        timeout=30,
    )
    assert [e for e in svc.events() if e.get("event") == "restart"], "the restarted service did the restart"
    wait_for("AD equal to the cloud", lambda: converged(ad, cloud, gids), timeout=60)
    assert members_of(ad, gids[0]) == in_ad
    (row,) = op.api("/api/log?action=restart")["value"]
    assert row["actor"] == "olga", row
