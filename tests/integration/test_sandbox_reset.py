"""`writeback sandbox reset` and the demo run twice in a row, on a sandbox of this module's own.

Both reset the sandbox they run on, so they cannot use the session's (other test sessions may share it): the
module brings up a small sandbox in a network namespace of its own (tests/testbed/netns.py), where its DC
has the standard ports to itself, and takes it down at the end.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ldap
import pytest
from tests.testbed import netns
from tests.testbed.fixtures import connect

from writeback.testbed.sandbox import SandboxInfo, load_info
from writeback.testbed.sandbox.tenant import load_scenario

pytestmark = [pytest.mark.samba, pytest.mark.emulator]
ROOT = Path(__file__).resolve().parents[2]
USERS = 5
RESET_LIMIT = 30.0  # seconds; measured 3-6 s on 2 vCPUs, the bound leaves room for a loaded CI machine
# What a reset may change in sandbox.json: the restarted processes and the emulator's per-start admin token.
RESTARTED = {"samba_pid", "emulator_pid", "emulator_admin_token"}


@dataclass
class OwnSandbox:
    ns: netns.NetNamespace
    dir: Path
    env: dict[str, str]
    up_output: str

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the namespace, with this sandbox as WRITEBACK_SANDBOX_DIR (and its config)."""
        return subprocess.run(
            self.ns.argv(argv), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def writeback(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "writeback", *args, timeout=timeout)

    @property
    def info(self) -> SandboxInfo:
        return load_info(self.dir)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnSandbox]:
    reason = netns.available()
    if reason:
        pytest.skip(f"a sandbox of this module's own needs a network namespace: {reason}")
    ns = netns.NetNamespace("wbreset")
    directory = tmp_path_factory.mktemp("own-sandbox")
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if k != "WRITEBACK_CONFIG"}
    # scripts/demo sources scripts/lib/setup.sh: point it at this interpreter's virtualenv, not ROOT/.venv.
    env.update(
        WRITEBACK_SANDBOX_DIR=str(directory),
        WRITEBACK_VENV=str(venv),
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    sandbox = OwnSandbox(ns, directory, env, "")
    try:
        up = sandbox.writeback("sandbox", "up", "--users", str(USERS))
        assert up.returncode == 0, up.stdout + up.stderr
        sandbox.up_output = up.stdout
        yield sandbox
    finally:
        sandbox.writeback("sandbox", "down", timeout=120)
        ns.delete()


def test_up_says_why_the_sandbox_has_more_users_than_asked_for(own: OwnSandbox) -> None:
    # The sample tenant's own people (the ones its groups name) come on top of the generated ones.
    fixed = len(load_scenario().directory_users)
    assert f"{fixed + USERS} in OU=Staff = the sample tenant's own {fixed}" in own.up_output
    assert f"{USERS} generated (--users {USERS})" in own.up_output
    with own.ns.entered():
        conn = connect(own.info)
        try:
            staff = conn.search_s(own.info.users_ou, ldap.SCOPE_ONELEVEL, "(objectClass=user)", ["cn"])
        finally:
            conn.unbind_s()
    assert len([dn for dn, _ in staff if dn]) == fixed + USERS


def _admin(info: SandboxInfo) -> httpx.Client:
    assert info.graph_url and info.graph_ca_file and info.emulator_admin_token
    return httpx.Client(
        base_url=info.graph_url,
        verify=ssl.create_default_context(cafile=str(info.graph_ca_file)),
        headers={"Authorization": f"Bearer {info.emulator_admin_token}"},
        timeout=30,
    )


def _cloud_groups(info: SandboxInfo) -> dict[str, tuple[str, list[str]]]:
    with _admin(info) as admin:
        r = admin.get("/_emulator/tenant")
        r.raise_for_status()
        return {g["id"]: (g["displayName"], sorted(g["members"])) for g in r.json()["groups"]}


def test_reset_undoes_changes_in_ad_and_in_the_emulator_in_seconds(own: OwnSandbox) -> None:
    before = own.info
    contract = json.loads((own.dir / "sandbox.json").read_text())
    config_text = before.config.read_text()
    probe = f"CN=Reset Probe,{before.groups_ou}"
    anna = f"CN=Anna Jansen,{before.users_ou}"
    with own.ns.entered():
        cloud_before = _cloud_groups(before)
        finance = next(gid for gid, (name, _) in cloud_before.items() if name == "SG-NL-Finance-Department")
        conn = connect(before)
        try:
            conn.add_s(probe, [("objectClass", [b"top", b"group"]), ("sAMAccountName", [b"reset-probe"])])
            conn.modify_s(anna, [(ldap.MOD_REPLACE, "department", [b"Changed by a test"])])
        finally:
            conn.unbind_s()
        with _admin(before) as admin:
            created = admin.post(
                "/_emulator/objects/groups",
                json={"displayName": "Reset Probe", "securityEnabled": True, "mailEnabled": False},
            )
            assert created.status_code < 300, created.text
            dropped = cloud_before[finance][1][0]
            admin.post("/_emulator/members", json={"group": finance, "remove": [dropped]}).raise_for_status()
        changed = _cloud_groups(before)
        assert created.json()["id"] in changed and dropped not in changed[finance][1]
    (own.dir / "state.sqlite").write_text("a state that describes the directory before the reset")

    started = time.monotonic()
    reset = own.writeback("sandbox", "reset")
    took = time.monotonic() - started
    print(
        f"\nwriteback sandbox reset: {took:.1f} s (command included); it said: {reset.stdout.splitlines()[0]}"
    )
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert took < RESET_LIMIT, f"reset took {took:.1f} s"
    assert "DC restored from" in reset.stdout and "Graph emulator restarted" in reset.stdout
    assert "state.sqlite removed" in reset.stdout

    after = own.info
    with own.ns.entered():
        conn = connect(after)
        try:
            assert not conn.search_s(before.groups_ou, ldap.SCOPE_ONELEVEL, "(cn=Reset Probe)", ["cn"])
            department = conn.search_s(anna, ldap.SCOPE_BASE, attrlist=["department"])[0][1]["department"]
        finally:
            conn.unbind_s()
        assert department == [b"HR"]
        assert _cloud_groups(after) == cloud_before  # the probe gone, the member back
    assert not (own.dir / "state.sqlite").exists()
    # Same domain, ports, CA and secrets: sandbox.json differs only where a restart must.
    now = json.loads((own.dir / "sandbox.json").read_text())
    assert {k for k in contract.keys() | now.keys() if contract.get(k) != now.get(k)} == RESTARTED
    assert before.config.read_text() == config_text
    assert now["samba_pid"] and now["emulator_pid"]


def test_reset_without_a_sandbox_says_so(own: OwnSandbox, tmp_path: Path) -> None:
    missing = own.writeback("sandbox", "reset", "--dir", str(tmp_path / "nothing-here"))
    assert missing.returncode == 1
    assert f"no sandbox in {tmp_path / 'nothing-here'} to reset; run `writeback sandbox up` first" in (
        missing.stderr
    )


def _shown(own: OwnSandbox) -> list[tuple[str, list[str]]]:
    show = own.writeback("show", "--json")
    assert show.returncode == 0, show.stderr
    groups: list[dict[str, Any]] = json.loads(show.stdout)
    return sorted((g["dn"], sorted(g["members"])) for g in groups)


def test_the_demo_runs_twice_in_a_row_and_shows_the_same_groups(own: OwnSandbox) -> None:
    shown = []
    for attempt in (1, 2):
        started = time.monotonic()
        demo = own.run("bash", str(ROOT / "scripts" / "demo"), timeout=600)
        took = time.monotonic() - started
        print(f"\nscripts/demo run {attempt}: exit {demo.returncode} in {took:.1f} s")
        assert demo.returncode == 0, (demo.stdout + demo.stderr)[-4000:]
        # A sandbox runs (this module's): the demo starts from a reset, and ends saying how to stop.
        assert "== writeback sandbox reset" in demo.stdout and "reset in" in demo.stdout
        assert "writeback sandbox down" in demo.stdout.splitlines()[-1]
        shown.append(_shown(own))
    assert shown[0] == shown[1]
    names = {dn.split(",")[0] for dn, _ in shown[0]}
    assert {"CN=SG-NL-Finance-Department_a1b2c3d4e502", "CN=Project Phoenix_a1b2c3d4e504"} <= names
    assert "CN=GG-Finance-Approvers" in names  # the SOA original, taken over in OU=Groups
    # The default config's later plans: nothing to do, no deep reconcile for a configuration change, and no
    # group the demo wrote left behind as "no longer updated".
    plan = own.writeback("plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    out = plan.stdout + plan.stderr
    assert "the configuration changed" not in out and "no longer updated" not in out
