"""`writeback run` with `[target] auth = "kerberos"` (sealed on port 389, the sandbox's keytab): it converges a
cloud group, keeps its ticket in a 0600 file in a 0700 directory of its own (gone when it stops), and neither
its config nor its environment (/proc/PID/environ) nor its log holds an AD password."""

from __future__ import annotations

import os
import signal
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_kerberos_cli import kerberize, krb5
from tests.testbed import service as support
from tests.testbed.ad import AdView
from tests.testbed.service import converged, sandbox_tenant, service_config, synced_user_ids, wait_for

pytestmark = [pytest.mark.samba]
service_factory = support.service_factory
cloud = support.private_cloud_fixture
__all__ = ["krb5"]  # the autouse fixture: KRB5_CONFIG at the sandbox's krb5.conf


def test_the_service_runs_over_kerberos_with_no_password_in_its_config_or_environment(
    sandbox: Any,
    cloud: Any,
    test_ou: str,
    ldap_conn: Any,
    tmp_path: Path,
    service_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # where the service makes its ticket's directory
    users = synced_user_ids(sandbox_tenant(sandbox))
    prefix = f"Krb-{uuid.uuid4().hex[:6]}"
    group = cloud.create_group(f"{prefix} A", users[0:3])
    config = service_config(sandbox, cloud, test_ou, tmp_path / "home", prefix)
    text = kerberize(config, sandbox)
    svc = service_factory(config)
    ad = AdView(ldap_conn, test_ou)
    wait_for("the first reconcile over Kerberos", lambda: converged(ad, cloud, [group]), timeout=60)
    assert wait_for("health ok", lambda: svc.health().get("status") == "ok")

    (ticket_dir,) = runtime.glob("writeback-krb5-*")
    assert stat.S_IMODE(ticket_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ticket_dir / "ccache").stat().st_mode) == 0o600
    environ = Path(f"/proc/{svc.proc.pid}/environ").read_bytes()
    for secret in (sandbox.service_bind_password, sandbox.bind_password):
        assert secret.encode() not in environ
        assert secret not in text
    assert b"KRB5_CONFIG=" in environ and os.fsencode(str(sandbox.service_keytab)) not in environ

    cloud.add_member(group, users[3])
    wait_for("a member added", lambda: converged(ad, cloud, [group]), timeout=60)
    assert svc.stop(signal.SIGTERM) == 0
    assert not ticket_dir.exists(), "the ticket is removed when the service stops"
    for line in svc.log_lines():
        for secret in (sandbox.service_bind_password, sandbox.bind_password):
            assert secret not in line
