"""`writeback run` as a user runs it (a subprocess), converging while an administrator changes the cloud.

One service process lives through the whole story, so each step also proves the previous ones left the
service healthy: creates, member adds and removes, a rename, soft delete (kept) and restore, hard delete, a
forced 410 Gone full resync (no spurious delete), an idle stretch (a handful of Graph requests, no LDAP
write), and SIGTERM (exit 0, health "stopped", JSON log lines only).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.testbed import service as support
from tests.testbed.ad import AdView
from tests.testbed.service import (
    POLL,
    Cloud,
    converged,
    sandbox_tenant,
    service_config,
    synced_user_ids,
    wait_for,
)

pytestmark = [pytest.mark.samba]
service_factory = support.service_factory  # shared fixtures
cloud = support.private_cloud_fixture


def test_run_converges_through_cloud_changes(
    sandbox: Any, cloud: Cloud, test_ou: str, ldap_conn: Any, tmp_path: Path, service_factory: Any
) -> None:
    users = synced_user_ids(sandbox_tenant(sandbox))
    prefix = f"Run-{uuid.uuid4().hex[:6]}"
    ad = AdView(ldap_conn, test_ou)
    child = cloud.create_group(f"{prefix} Child", users[8:10])
    a = cloud.create_group(f"{prefix} A", [*users[0:3], child])
    b = cloud.create_group(f"{prefix} B", users[3:5])
    live = [child, a, b]
    svc = service_factory(service_config(sandbox, cloud, test_ou, tmp_path / "home", prefix))

    def converges(what: str, ids: list[str], timeout: float = 30) -> None:
        wait_for(what, lambda: converged(ad, cloud, ids), timeout=timeout)

    converges("the first full reconcile", live)
    assert wait_for("health ok", lambda: svc.health().get("status") == "ok")
    guid_a = ad.by_anchor()[a][0].guid

    cloud.add_member(a, users[5])
    cloud.remove_member(b, users[3])
    converges("member add and remove", live)

    cloud.rename(a, f"{prefix} A renamed")
    wait_for("rename", lambda: ad.by_anchor()[a][0].cn.startswith(f"{prefix} A renamed"))
    converges("members after the rename", live)
    assert ad.by_anchor()[a][0].guid == guid_a, "a rename is a modRDN, not a new group"

    d = cloud.create_group(f"{prefix} D", users[6:8])
    live.append(d)
    converges("create while running", live)

    cloud.soft_delete(b)
    live.remove(b)
    time.sleep(6 * POLL)  # several cycles see the soft delete
    kept = ad.by_anchor()
    assert b in kept and len(kept[b][0].members) == 1, "a soft-deleted group is kept (safety.on_soft_delete)"
    cloud.restore(b)
    cloud.add_member(b, users[11])
    live.append(b)
    converges("restore and a member added after it", live)

    cloud.hard_delete(d)
    live.remove(d)
    converges("hard delete", live)

    guids = {gid: gs[0].guid for gid, gs in ad.by_anchor().items()}
    deletes_before = sum(1 for e in svc.events() if e.get("event") == "cycle")
    cloud.faults(force_410=True)
    wait_for("the service's full resync", lambda: any(e.get("event") == "resync" for e in svc.events()))
    cloud.add_member(child, users[12])
    converges("a change after the 410 full resync", live)
    assert {gid: gs[0].guid for gid, gs in ad.by_anchor().items()} == guids, (
        "410 resync recreated or deleted groups"
    )
    cycles = [e for e in svc.events() if e.get("event") == "cycle"][deletes_before:]
    assert cycles and all(e["failed"] == 0 for e in cycles)

    # Idle: each poll costs the two delta requests, and AD sees no write at all.
    time.sleep(2 * POLL)
    cloud.reset_stats()
    before = svc.health()
    time.sleep(10 * POLL)
    after = svc.health()
    polls = after["cycles"] - before["cycles"]
    seen = {k: v for k, v in cloud.stats()["requests"].items() if k != "admin"}  # as the emulator counted
    assert polls >= 5
    assert (after["graph_requests"] - before["graph_requests"]) == 2 * polls, (
        "two delta requests per idle poll"
    )
    assert set(seen) == {"delta"} and seen["delta"] <= 2 * (polls + 1), seen
    writes = ("add", "modify", "modrdn", "delete")
    assert {k: after["ldap_operations"][k] for k in writes} == {
        k: before["ldap_operations"][k] for k in writes
    }
    assert after["ldap_operations"]["search"] == before["ldap_operations"]["search"], "idle polls read AD"

    assert svc.stop() == 0
    assert svc.health()["status"] == "stopped"
    events = svc.events()  # every line is JSON
    assert events[0]["event"] == "start" and events[-1]["event"] == "stop"
    assert {"stopping", "stop"} <= {e.get("event") for e in events}
    unexpected = [e for e in events if e["level"] != "INFO" and "full resync" not in e["message"]]
    assert not unexpected, unexpected  # only the 410 was worth a warning
