"""[users] metrics on /metrics, through the console's real endpoint over the service's cycles (fakes for AD and
Graph, SQLite on disk): accounts writeback manages by kind, the created ones disabled, account changes applied
by kind and result, and those held."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

with warnings.catch_warnings():  # starlette suggests its httpx2 fork for the test client; httpx works as well
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.unit import builders
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_users_cloud_members import GROUP_ID, JULIA, USERS_OU, cloud_user
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.metrics import ServiceMetrics
from writeback.app.service import Health, Service
from writeback.console.auth import new_token, token_line
from writeback.console.server import build
from writeback.core.model import CloudGroup, CloudUser, MemberRef

BOB = "44444444-0000-0000-0000-000000000004"


def _group(*users: CloudUser) -> CloudGroup:
    return CloudGroup(
        GROUP_ID, display_name="SG-Treasury-Portal", members=frozenset(MemberRef("user", u.id) for u in users)
    )


def _value(text: str, sample: str) -> float:
    m = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert m, f"{sample} not in /metrics:\n{text}"
    return float(m.group(1))


def test_user_metrics_follow_creates_leaves_and_held_deletes(tmp_path: Path) -> None:
    viewer = new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line("vic", "viewer", viewer))
    tokens.chmod(0o600)
    s = builders.settings(
        service={"poll_interval": 1.0, "reconcile_interval": 10_000.0, "listen": "127.0.0.1:0"},
        state={"path": str(tmp_path / "state.sqlite")},
        console={"tokens_file": str(tokens)},
        users={"provision": "cloud_members", "target_ou": USERS_OU},
        safety={"delete_threshold": 0},
    )
    julia, bob = cloud_user(), cloud_user(BOB, "bob@contoso.example", display_name="Bob")
    cloud = FakeCloud(users={JULIA: julia, BOB: bob}, groups={GROUP_ID: _group(julia, bob)}, incremental=True)
    service = Service(s, Engine(s, cloud, FakeDirectory(), SqliteStore(s.state.path)))
    client = TestClient(build(service).app)

    def metrics() -> str:
        r = client.get("/metrics", headers={"Authorization": f"Bearer {viewer}"})
        assert r.status_code == 200
        return r.text

    assert "writeback_user_" not in metrics()  # nothing counted before a cycle
    service.run(once=True)  # the first, deep, cycle creates both accounts
    text = metrics()
    assert _value(text, 'writeback_user_accounts{kind="created"}') == 2
    assert _value(text, 'writeback_user_accounts{kind="soa"}') == 0
    assert _value(text, "writeback_user_accounts_disabled") == 0
    assert _value(text, 'writeback_user_changes_total{kind="create",result="success"}') == 2

    cloud.groups[GROUP_ID] = _group(bob)  # Julia leaves: an incremental cycle disables her account
    service.run(once=True)
    text = metrics()
    assert _value(text, 'writeback_user_changes_total{kind="update",result="success"}') == 1
    assert _value(text, "writeback_user_accounts_disabled") == 1
    assert _value(text, 'writeback_user_accounts{kind="created"}') == 2

    del cloud.users[BOB]  # Bob is hard-deleted: his delete is held (safety.delete_threshold = 0)
    cloud.groups[GROUP_ID] = _group()
    service.run(once=True)
    text = metrics()
    assert _value(text, 'writeback_held_user_changes{kind="delete"}') == 1
    assert _value(text, 'writeback_user_changes_total{kind="delete",result="success"}') == 0
    assert _value(text, 'writeback_user_accounts{kind="created"}') == 2


def test_user_metrics_render_from_health_and_are_absent_without_users() -> None:
    h = Health(
        users={
            "accounts_created": 5,
            "accounts_soa": 2,
            "accounts_created_disabled": 1,
            "create_success": 5,
            "delete_error": 1,
            "held_delete": 3,
        }
    )
    text = ServiceMetrics(lambda: h).render().decode()
    assert _value(text, 'writeback_user_accounts{kind="created"}') == 5
    assert _value(text, 'writeback_user_accounts{kind="soa"}') == 2
    assert _value(text, "writeback_user_accounts_disabled") == 1
    assert _value(text, 'writeback_user_changes_total{kind="delete",result="error"}') == 1
    assert _value(text, 'writeback_held_user_changes{kind="delete"}') == 3
    assert "writeback_user_" not in ServiceMetrics(lambda: Health()).render().decode()
