"""`writeback run` under faults: Graph storms and outages, AD refusing writes, the DC stopped mid-apply.

Each test runs the real service (a subprocess) against the sandbox DC and a private Graph emulator (faults on
the shared one would hit every other test session). While a fault lasts the service must say so (health file,
JSON log); once it clears it must converge without anyone restarting it.
"""

from __future__ import annotations

import contextlib
import fcntl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.testbed import service as support
from tests.testbed.ad import AdView
from tests.testbed.fixtures import connect, delete_subtree
from tests.testbed.service import (
    Cloud,
    converged,
    sandbox_tenant,
    service_config,
    synced_user_ids,
    wait_for,
)

from writeback.testbed.sandbox import samba as sandbox_samba
from writeback.testbed.sandbox import sandbox_up
from writeback.testbed.sandbox.layout import SandboxPaths

pytestmark = [pytest.mark.samba]
service_factory = support.service_factory  # shared fixtures
cloud = support.private_cloud_fixture


@pytest.fixture
def users(sandbox: Any) -> list[str]:
    return synced_user_ids(sandbox_tenant(sandbox))


def test_graph_storm_converges_and_a_total_outage_quarantines_then_recovers(
    sandbox: Any,
    cloud: Cloud,
    users: list[str],
    test_ou: str,
    ldap_conn: Any,
    tmp_path: Path,
    service_factory: Any,
) -> None:
    prefix = f"Storm-{uuid.uuid4().hex[:6]}"
    ad = AdView(ldap_conn, test_ou)
    gid = cloud.create_group(f"{prefix} G", users[:2])
    svc = service_factory(service_config(sandbox, cloud, test_ou, tmp_path / "home", prefix))
    wait_for("first reconcile", lambda: converged(ad, cloud, [gid]))

    # A storm the Graph client rides out: 429 with a fractional Retry-After, 503, dropped connections, and
    # access tokens that expire every second (plus one revocation).
    # The *_next counters make each kind of fault certain (the ratios alone may miss one in a short run).
    cloud.faults(
        throttle_ratio=0.3,
        retry_after="0.05",
        error_503_ratio=0.1,
        drop_ratio=0.1,
        token_lifetime=1,
        throttle_next=1,
        error_503_next=1,
        drop_next=1,
    )
    cloud.faults(revoke_tokens=True)
    for u in users[2:7]:
        cloud.add_member(gid, u)
    wait_for("convergence through the storm", lambda: converged(ad, cloud, [gid]), timeout=60)
    outcomes = cloud.stats()["outcomes"]
    assert outcomes.get("throttled") and outcomes.get("unavailable") and outcomes.get("dropped"), outcomes

    # Every Graph request throttled: cycles fail, the service backs off and says it is quarantined.
    cloud.faults(reset=True)
    seen = len(svc.events())
    cloud.faults(throttle_ratio=1.0, retry_after="0.05")
    cloud.raw_add_member(gid, users[8])
    wait_for("quarantine", lambda: svc.health().get("status") == "quarantined", timeout=60)
    health = svc.health()
    assert "429" in health["last_error"] or "throttl" in health["last_error"].lower(), health
    failed = [e for e in svc.events()[seen:] if e.get("event") == "cycle_failed"]
    assert failed[0]["level"] == "WARNING" and failed[0]["error_type"] == "ThrottledError"
    assert failed[-1]["level"] == "ERROR" and failed[-1]["message"].startswith("quarantined: ")
    assert all(e["retry_in"] <= 2 * 1.2 for e in failed), "backoff is capped by service.max_backoff"

    cloud.faults(reset=True)
    wait_for("recovery", lambda: converged(ad, cloud, [gid]), timeout=30)
    wait_for("health ok", lambda: svc.health().get("status") == "ok")
    assert any(e.get("event") == "recovered" for e in svc.events())
    assert svc.stop() == 0


def test_ad_refusing_a_write_is_reported_and_retried_until_it_works(
    sandbox: Any,
    cloud: Cloud,
    users: list[str],
    test_ou: str,
    ldap_conn: Any,
    tmp_path: Path,
    service_factory: Any,
) -> None:
    prefix = f"Refused-{uuid.uuid4().hex[:6]}"
    later = f"OU=Later,{test_ou}"  # the target OU does not exist yet: AD refuses the create
    ok_gid = cloud.create_group(f"{prefix} Fine", users[:1])
    gid = cloud.create_group(f"{prefix} G", users[:2])
    home = tmp_path / "home"
    config = service_config(sandbox, cloud, test_ou, home, prefix, target_ou=later)
    svc = service_factory(config)
    health = wait_for(
        "degraded health",
        lambda: (h := svc.health()).get("status") == "degraded" and h["failing_groups"] == 2 and h,
    )
    assert "NO_SUCH_OBJECT" in health["message"] or "no such object" in health["message"].lower(), health
    failures = [e for e in svc.events() if e.get("event") == "group_failed"]
    assert {e["cloud_id"] for e in failures} == {gid, ok_gid}
    assert svc.proc.poll() is None, "a refused write must not stop the service"

    ldap_conn.add_s(later, [("objectClass", [b"top", b"organizationalUnit"])])
    ad = AdView(ldap_conn, later)
    wait_for("convergence once AD accepts the write", lambda: converged(ad, cloud, [gid, ok_gid]), timeout=30)
    wait_for("health ok", lambda: svc.health().get("status") == "ok" and svc.health()["failing_groups"] == 0)
    assert svc.stop() == 0


@contextlib.contextmanager
def samba_stopped(sandbox: Any) -> Iterator[None]:
    """Stop the sandbox's DC (other test modules share it) and always start it again, through sandbox_up so
    the sandbox's info file names the new process."""
    paths = SandboxPaths(Path(sandbox.dir).resolve())
    try:
        with open(paths.lock_file, "a+b") as lock:  # the lock sandbox_up/down take: no start/stop races
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                sandbox_samba.stop(paths)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        yield
    finally:
        sandbox_up(Path(sandbox.dir), users=sandbox.users)


@pytest.fixture
def restart_ou(sandbox: Any) -> Iterator[str]:
    """Like ``test_ou``, but cleaned up over a new connection: the DC restarts in between."""
    dn = f"OU=t-{uuid.uuid4().hex[:12]},{sandbox.base_dn}"
    conn = connect(sandbox)
    conn.add_s(dn, [("objectClass", [b"top", b"organizationalUnit"])])
    conn.unbind_s()
    yield dn
    conn = connect(sandbox)
    try:
        delete_subtree(conn, dn)
    finally:
        conn.unbind_s()


def test_dc_stopped_mid_apply_and_restarted_converges(
    sandbox: Any, cloud: Cloud, users: list[str], restart_ou: str, tmp_path: Path, service_factory: Any
) -> None:
    test_ou = restart_ou
    prefix = f"Restart-{uuid.uuid4().hex[:6]}"
    conn = connect(sandbox)
    ad = AdView(conn, test_ou)
    first = cloud.create_group(f"{prefix} 00", users[:2])
    svc = service_factory(service_config(sandbox, cloud, test_ou, tmp_path / "home", prefix))
    wait_for("first reconcile", lambda: converged(ad, cloud, [first]))

    ids = [first] + [cloud.create_group(f"{prefix} {i:02d}", users[i : i + 2]) for i in range(1, 40)]
    wait_for("the apply to be under way", lambda: len(ad.by_anchor()) >= 4, timeout=30)
    conn.unbind_s()
    with samba_stopped(sandbox):
        cloud.add_member(first, users[20])  # a change made while AD is down
        health = wait_for(
            "degraded health", lambda: (h := svc.health()).get("status") in ("degraded", "quarantined") and h
        )
        assert "ldap" in health["last_error"].lower() or "unavailable" in health["last_error"].lower(), health
        failed = [e for e in svc.events() if e.get("event") == "cycle_failed"]
        assert failed and failed[0]["error_type"] == "DirectoryUnavailable", failed
    conn = connect(sandbox)
    try:
        ad = AdView(conn, test_ou)
        wait_for("convergence after the DC is back", lambda: converged(ad, cloud, ids), timeout=90)
        wait_for("health ok", lambda: svc.health().get("status") == "ok")
        assert any(e.get("event") == "recovered" for e in svc.events())
        assert svc.stop() == 0
    finally:
        conn.unbind_s()
