"""The console (writeback.console) over the service with in-memory fakes and a real SQLite store on disk."""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # starlette suggests its httpx2 fork for the test client; httpx works as well
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.unit import builders
from tests.unit.fakes import FakeDirectory
from tests.unit.test_service import DeltaCloud, gid, group
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.lease import LeaderLease
from writeback.app.service import Service
from writeback.console.auth import new_token, token_line
from writeback.console.server import build
from writeback.core.model import CloudUser


@dataclass
class Console:
    service: Service
    cloud: DeltaCloud
    directory: FakeDirectory
    client: TestClient
    operator: str
    viewer: str

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def sign_in(self, token: str) -> str:
        """Sign in with the form; returns the page's CSRF token."""
        r = self.client.post("/signin", data={"token": token}, follow_redirects=True)
        assert r.status_code == 200 and "Status" in r.text
        m = re.search(r'name="csrf" value="([^"]+)"', r.text)
        return m.group(1) if m else ""


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path)


def make_console(tmp_path: Path, lease: LeaderLease | None = None) -> Console:
    """The console over a service on ``tmp_path``/state.sqlite; ``lease``: the service's leader lease (the lease
    table is in the SQLite schema too, so the PostgreSQL code path runs here on one file)."""
    operator, viewer = new_token(), new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line("olga", "operator", operator) + token_line("vic", "viewer", viewer))
    tokens.chmod(0o600)
    s = builders.settings(
        service={"poll_interval": 1.0, "reconcile_interval": 100.0, "listen": "127.0.0.1:0"},
        state={"path": str(tmp_path / "state.sqlite")},
        console={"tokens_file": str(tokens)},
    )
    users, accounts = builders.synced_people(6)
    cloud = DeltaCloud(users=users, groups={gid(i): group(i, [f"u{i}"]) for i in range(1, 4)})
    directory = FakeDirectory(accounts=accounts)
    service = Service(s, Engine(s, cloud, directory, SqliteStore(s.state.path)), lease=lease)
    app = build(service)
    return Console(service, cloud, directory, TestClient(app.app), operator, viewer)


def test_health_endpoints_need_no_sign_in_and_readyz_waits_for_a_good_cycle(console: Console) -> None:
    assert console.client.get("/healthz").status_code == 200
    r = console.client.get("/readyz")
    assert r.status_code == 503 and "no successful cycle" in r.text
    console.service.run(once=True)
    assert console.client.get("/readyz").status_code == 200


def test_everything_else_needs_sign_in(console: Console) -> None:
    for path in ("/api/status", "/api/log", "/api/groups", "/metrics"):
        assert console.client.get(path).status_code == 401, path
    r = console.client.get("/log", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")
    assert console.client.get("/api/status", headers=console.bearer("not-a-token")).status_code == 401


def test_status_api_and_page(console: Console) -> None:
    console.service.run(once=True)
    r = console.client.get("/api/status", headers=console.bearer(console.viewer))
    data = r.json()
    assert r.status_code == 200 and data["managedGroups"] == 3 and data["code"] == "Paused"  # run(once) stops
    assert data["lastSuccessfulExecutionWithExports"].endswith("+00:00")
    console.sign_in(console.viewer)
    page = console.client.get("/").text
    assert "Managed groups" in page and "<svg" in page and "Reconcile now" not in page  # viewer: no actions


def test_a_viewer_cannot_do_an_operators_action(console: Console) -> None:
    for path in ("/api/allow", "/api/reconcile", "/api/clear-quarantine", "/api/provision"):
        r = console.client.post(
            path, json={"deletes": 1, "group": "G1"}, headers=console.bearer(console.viewer)
        )
        assert r.status_code == 403 and "operator role" in r.json()["error"]["message"], path
    csrf = console.sign_in(console.viewer)
    assert csrf == ""  # no operator forms rendered for a viewer
    assert console.client.post("/actions/reconcile", data={"csrf": "x"}).status_code == 403
    assert not console.service._reconcile_requested


def test_forms_need_the_sessions_csrf_token(console: Console) -> None:
    csrf = console.sign_in(console.operator)
    assert csrf
    r = console.client.post("/actions/reconcile", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and not console.service._reconcile_requested
    r = console.client.post("/actions/reconcile", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and console.service._reconcile_requested


def test_allow_records_an_allowance_as_writeback_allow_does(console: Console) -> None:
    r = console.client.post("/api/allow", json={"removals": 40}, headers=console.bearer(console.operator))
    assert r.status_code == 202
    store = SqliteStore(console.service.settings.state.path)
    try:
        assert store.allowances() == {"removals": 40}
    finally:
        store.close()
    bad = console.client.post("/api/allow", json={}, headers=console.bearer(console.operator))
    assert bad.status_code == 400


def test_log_filters_row_details_and_export(console: Console) -> None:
    console.service.run(once=True)
    h = console.bearer(console.viewer)
    rows = console.client.get("/api/log", params={"action": "create"}, headers=h).json()["value"]
    assert len(rows) == 3 and all(r["status"] == "success" for r in rows)
    page = console.client.get("/log", headers=h).text
    for status in ("pending", "interrupted"):  # a killed run's rows can be found (the write-ahead journal)
        assert f'<option value="{status}"' in page
    assert console.client.get("/api/log", params={"action": "delete"}, headers=h).json()["value"] == []
    (one,) = console.client.get("/api/log", params={"group": "G2", "action": "create"}, headers=h).json()[
        "value"
    ]
    assert one["sourceIdentity"]["id"] == gid(2) and one["activityDateTime"].endswith("+00:00")
    assert (
        console.client.get("/api/log", params={"group": "G_%"}, headers=h).json()["value"] == []
    )  # literal, not LIKE
    run = console.client.get("/api/log", params={"run": one["run_id"]}, headers=h).json()["value"]
    assert len(run) >= 3
    assert console.client.get("/api/log", params={"since": "2999-01-01"}, headers=h).json()["value"] == []
    assert console.client.get("/api/log", params={"since": "yesterday"}, headers=h).status_code == 400
    detail = console.client.get(f"/api/log/{one['id']}", headers=h).json()
    # The steps say what happened to this group (writeback.core.logtext), not four fixed lines.
    assert [s["type"] for s in detail["steps"]] == ["matching", "processing", "export"]
    assert detail["steps"][-1]["description"].startswith(f"created {one['dn']}"), detail["steps"]
    csv_text = console.client.get("/api/log", params={"format": "csv", "action": "create"}, headers=h).text
    assert csv_text.splitlines()[0].startswith("id,time,run_id") and len(csv_text.splitlines()) == 4
    console.sign_in(console.viewer)
    page = console.client.get(f"/log/{one['id']}").text
    assert "Steps" in page and "Modified properties" in page and "Summary" in page


def test_metrics_show_cycles_and_need_sign_in(console: Console) -> None:
    console.service.run(once=True)
    text = console.client.get("/metrics", headers=console.bearer(console.viewer)).text
    assert 'writeback_cycles_total{result="success"} 1.0' in text
    assert 'writeback_changes_total{result="success"} 3.0' in text
    assert "writeback_managed_groups 3.0" in text
    assert "writeback_cycle_duration_seconds_count 1.0" in text


def test_provision_on_demand_runs_on_the_service_thread_step_by_step(console: Console) -> None:
    console.service.run(once=True)
    console.cloud.groups[gid(2)] = group(2, ["u2", "u4"], name="G2")
    events: list[str] = []  # what the event webhook would send: on-demand changes count too
    console.service.on_apply.append(
        lambda plan, result: events.extend(r.change.cloud_id for r in result.results)
    )
    h = console.bearer(console.operator)
    r = console.client.post("/api/provision", json={"group": "g2"}, headers=h)
    assert r.status_code == 202
    run_id = r.json()["id"]
    assert (
        console.client.get(f"/api/provision/{run_id}", headers=h).json()["steps"] == []
    )  # waits for the loop
    console.service.run_jobs()
    run = console.client.get(f"/api/provision/{run_id}", headers=h).json()
    assert run["done"] and run["ok"], run
    assert [s["type"] for s in run["steps"]] == [
        "import",
        "import",
        "scoping",
        "matching",
        "processing",
        "export",
    ]
    members = next(
        e["member"]
        for e in console.directory.groups.values()
        if e.get("msDS-ExternalDirectoryObjectId") == f"Group_{gid(2)}"
    )
    assert {m.split(",")[0][3:] for m in members} == {"user2", "user4"}
    assert events and set(events) == {gid(2)}
    missing = console.client.post("/api/provision", json={"group": "nope"}, headers=h).json()["id"]
    console.service.run_jobs()
    run = console.client.get(f"/api/provision/{missing}", headers=h).json()
    assert run["done"] and run["ok"] is False and "no single cloud group" in run["steps"][-1]["description"]


def ask_plan(console: Console) -> Any:
    """GET /api/plan as a viewer while the service loop (this thread) runs the console's jobs."""
    out: dict[str, Any] = {}

    def ask() -> None:
        out["r"] = console.client.get("/api/plan", headers=console.bearer(console.viewer))

    t = threading.Thread(target=ask)
    t.start()
    while t.is_alive():
        console.service.run_jobs()
        t.join(0.05)
    return out["r"]


def test_plan_page_asks_the_service_loop(console: Console) -> None:
    console.service.run(once=True)
    console.cloud.groups[gid(3)] = group(3, [], name="G3")
    out = {"r": ask_plan(console)}
    plan = out["r"].json()
    assert [c["kind"] for c in plan["changes"]] == ["remove_members"]


def test_log_retention_deletes_old_rows_only(tmp_path: Path) -> None:
    from writeback.console.server import Retention

    path = str(tmp_path / "s.sqlite")
    store = SqliteStore(path)
    store.log("old", "create", "success")
    store.db.execute("UPDATE log SET time = time - 100 * 86400")
    store.log("new", "create", "success")
    Retention(builders.settings(state={"path": path}), 90).observe(None, True)
    assert [e.run_id for e in store.read_log()] == ["new"]
    store.close()


def test_metrics_show_memberships_skipped_members_replica_lag_and_graph_throttling(console: Console) -> None:
    # u5 is a cloud-only user: skipped with its reason.
    console.cloud.users["u5"] = CloudUser("u5", on_premises_sync_enabled=False)
    console.cloud.groups[gid(3)] = group(3, ["u3", "u5"], name="G3")
    console.service.run(once=True)
    text = console.client.get("/metrics", headers=console.bearer(console.viewer)).text
    assert "writeback_managed_memberships 3.0" in text  # one synced user in each of the three groups
    assert 'writeback_skipped_members{reason="cloud_only"} 1.0' in text
    lag = re.search(r"^writeback_replica_lag_seconds (\S+)$", text, re.M)
    assert lag and 0 <= float(lag.group(1)) < 60
    assert "writeback_graph_throttled_total 0.0" in text
    assert "writeback_graph_throttle_wait_seconds_total 0.0" in text
    status = console.client.get("/api/status", headers=console.bearer(console.viewer)).json()
    assert status["managedMemberships"] == 3 and status["skippedMembers"] == {"cloud_only": 1}
    assert 0 <= status["replicaLagSeconds"] < 60


def test_ldap_operations_by_kind_and_result_and_graph_waits() -> None:
    from writeback.app.metrics import ServiceMetrics
    from writeback.app.service import Health

    h = Health(
        ldap_operations={"add": 3, "add_errors": 1, "modify": 2, "values_written": 7, "bind": 1},
        graph_stats={"throttled": 2, "unavailable": 1, "throttle_wait_ms": 4500},
        managed_memberships=40,
        skipped_members={"not_found_in_ad": 2},
    )
    text = ServiceMetrics(lambda: h).render().decode()
    assert 'writeback_ldap_operations_total{kind="add",result="success"} 2.0' in text
    assert 'writeback_ldap_operations_total{kind="add",result="error"} 1.0' in text
    assert 'writeback_ldap_operations_total{kind="modify",result="error"} 0.0' in text
    assert 'kind="values_written"' not in text and 'kind="add_errors"' not in text
    assert "writeback_ldap_member_values_written_total 7.0" in text
    assert "writeback_graph_throttled_total 3.0" in text
    assert "writeback_graph_throttle_wait_seconds_total 4.5" in text
    assert "writeback_managed_memberships 40.0" in text
    assert "writeback_replica_lag_seconds" not in text  # no sync yet: no lag to report


def test_skip_reasons_become_a_bounded_set_of_labels() -> None:
    from writeback.app.metrics import skip_reason_label
    from writeback.core.model import SkipReason

    assert skip_reason_label(SkipReason.NOT_FOUND_IN_AD.value) == "not_found_in_ad"
    assert skip_reason_label("nested group is not written: 5001 members exceeds members.max_members") == (
        "nested_group_not_written"
    )
    assert skip_reason_label("nested group is part of a nesting cycle") == "nesting_cycle"
    assert skip_reason_label("something new") == "other"


def test_log_filters_take_only_known_actions_and_results(console: Console) -> None:
    console.service.run(once=True)
    h = console.bearer(console.viewer)
    for query, known in (("action=bogus", "skip_members"), ("status=bogus", "interrupted")):
        r = console.client.get(f"/api/log?{query}", headers=h)
        error = r.json()["error"]["message"]
        assert r.status_code == 400 and "'bogus' is not one of" in error and known in error, error
    assert console.client.get("/api/log?action=skip_members&status=info", headers=h).status_code == 200
    page = console.client.get("/log", headers=h).text
    assert all(
        f'<option value="{a}"' in page for a in ("create", "skip_members", "clear_quarantine", "provision")
    )


def test_a_change_the_plan_page_read_from_graph_is_written_by_the_next_cycle(console: Console) -> None:
    """The plan page syncs the service's replica (and so consumes the Graph delta): the next incremental cycle
    still plans the group it changed, from the replica's pending marks, not the hourly reconcile."""
    console.service.run(once=True)
    console.cloud.groups[gid(2)] = group(2, [], name="G2")
    console.cloud.changed_groups = {gid(2)}
    out = {"r": ask_plan(console)}
    assert [c["kind"] for c in out["r"].json()["changes"]] == ["remove_members"]
    assert console.cloud.changed_groups == set()  # the plan's sync took the change; the cycle's sees none

    outcome = console.service.cycle()
    assert not outcome.full and outcome.applied == 1, outcome
    (entry,) = [
        e
        for e in console.directory.groups.values()
        if e.get("msDS-ExternalDirectoryObjectId") == f"Group_{gid(2)}"
    ]
    assert not entry.get("member")
    assert console.service.cycle().planned == 0  # settled: not planned again


def test_the_log_names_users_as_their_own_target_type(console: Console) -> None:
    from writeback.core.ports import LogRecord

    store = console.service.engine.store
    store.log_rows(
        [
            LogRecord(
                "r1", "update", "success", cloud_id="u-1", group_name="Nora Kok", detail={"target": "user"}
            ),
            LogRecord("r1", "update", "success", cloud_id="g-1", group_name="G1", detail={"reason": "x"}),
        ]
    )
    h = console.bearer(console.viewer)
    rows = {r["cloud_id"]: r for r in console.client.get("/api/log", headers=h).json()["value"]}
    assert rows["u-1"]["targetType"] == "user" and rows["u-1"]["sourceIdentity"]["type"] == "user"
    assert rows["g-1"]["targetType"] == "group" and rows["g-1"]["targetIdentity"]["type"] == "group"
    page = console.client.get("/log", headers=h).text
    assert '>Nora Kok</a> <span class="kind">(user)</span>' in page and "G1</a> <span" not in page
