"""Operator actions are provisioning-log rows naming who did them: the console's Allow, Reconcile now, Clear
quarantine and provision on demand name the acting token's name (never the token), `writeback allow` the OS user
running it; the console's log page and API and `writeback log` show it."""

from __future__ import annotations

import getpass
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit import builders
from tests.unit.test_console import Console, make_console
from writeback.adapters.state.sqlite import SqliteStore
from writeback.console.backend import ServiceBackend
from writeback.errors import StateUnavailableError


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path)


cli = importlib.import_module("writeback.cli.main")  # the module (writeback.cli.main is also its function)

ACTIONS = [
    ("/api/allow", {"removals": 40}, "allow"),
    ("/api/reconcile", {}, "reconcile"),
    ("/api/clear-quarantine", {}, "clear_quarantine"),
    ("/api/provision", {"group": "G2"}, "provision"),
]


def _raw_log(console: Console) -> str:
    """Every log row as the database holds it, as text (to look for a token in it)."""
    store = SqliteStore(console.service.settings.state.path)
    try:
        return json.dumps(store.read_table("log"), default=str)
    finally:
        store.close()


def _rows(console: Console, action: str) -> list[dict[str, Any]]:
    r = console.client.get("/api/log", params={"action": action}, headers=console.bearer(console.viewer))
    assert r.status_code == 200
    rows: list[dict[str, Any]] = r.json()["value"]
    return rows


@pytest.mark.parametrize(("path", "body", "action"), ACTIONS)
def test_each_operator_action_is_a_log_row_naming_the_token(
    console: Console,
    path: str,
    body: dict[str, Any],
    action: str,
) -> None:
    assert _rows(console, action) == []
    r = console.client.post(path, json=body, headers=console.bearer(console.operator))
    assert r.status_code == 202, r.text
    (row,) = _rows(console, action)
    assert row["actor"] == "olga" and row["result"] == "info" and row["status"] == "info"
    assert row["initiatedBy"] == {"displayName": "olga", "initiatorType": "user"}
    assert row["steps"][0]["description"].endswith("asked by olga")
    if action == "provision":  # in the run's id: the log shows it with the rows the run writes
        assert row["run_id"] == r.json()["id"] and row["group_name"] == "G2"
        assert row["detail"]["requested"] == "G2"
    else:
        assert r.json()["logId"] == row["id"] and r.json()["by"] == "olga"
    if action == "allow":
        assert row["detail"]["removals"] == 40 and row["detail"]["deletes"] == 0
    if action == "clear_quarantine":
        assert row["detail"]["status_before"] == "starting"
    # The token's name, never the token.
    assert console.operator not in _raw_log(console)
    # The console's log page, a row's page and the CSV export show who.
    console.sign_in(console.viewer)
    page = console.client.get("/log", params={"action": action}).text
    assert re.search(r"<td>olga</td>", page) and '<th scope="col">By</th>' in page
    assert f'<option value="{action}"' in page  # the action filter offers it
    assert re.search(
        r"<dt>Initiated by</dt><dd>olga \(operator\)</dd>", console.client.get(f"/log/{row['id']}").text
    )
    csv_lines = console.client.get("/api/log", params={"format": "csv", "action": action}).text.splitlines()
    assert csv_lines[0].split(",")[9] == "actor" and csv_lines[1].split(",")[9] == "olga"


def test_a_form_action_names_the_signed_in_token_and_a_refused_one_writes_nothing(
    console: Console,
) -> None:
    viewer_csrf = console.sign_in(console.viewer)
    assert console.client.post("/actions/reconcile", data={"csrf": viewer_csrf}).status_code == 403
    for path in ("/api/allow", "/api/reconcile", "/api/clear-quarantine", "/api/provision"):
        bearer = console.bearer(console.viewer)
        assert (
            console.client.post(path, json={"removals": 1, "group": "G1"}, headers=bearer).status_code == 403
        )
    csrf = console.sign_in(console.operator)
    forged = console.client.post("/actions/clear-quarantine", data={"csrf": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    for action in ("allow", "reconcile", "clear_quarantine", "provision"):
        assert _rows(console, action) == [], action  # nothing refused was logged
    r = console.client.post("/actions/reconcile", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    (row,) = _rows(console, "reconcile")
    assert row["actor"] == "olga"
    r = console.client.post("/actions/allow", data={"csrf": csrf, "deletes": "2"}, follow_redirects=False)
    assert r.status_code == 303
    (row,) = _rows(console, "allow")
    assert row["actor"] == "olga" and row["detail"]["deletes"] == 2


def test_an_action_is_done_even_when_the_log_cannot_take_its_row(
    console: Console,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ServiceBackend) -> Any:
        raise StateUnavailableError("the state is away")

    monkeypatch.setattr(ServiceBackend, "store", broken)
    console.service.health.status = "quarantined"
    r = console.client.post("/api/clear-quarantine", headers=console.bearer(console.operator))
    assert r.status_code == 202 and r.json()["logId"] is None
    assert console.service.health.status == "starting" and console.service._reconcile_requested


def test_the_engines_own_rows_name_nobody(console: Console) -> None:
    console.service.run(once=True)
    rows = _rows(console, "create")
    assert len(rows) == 3
    assert all(r["actor"] is None for r in rows)
    assert all(r["initiatedBy"] == {"displayName": "writeback", "initiatorType": "system"} for r in rows)


def test_writeback_allow_is_a_log_row_naming_the_os_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = builders.settings(state={"path": str(tmp_path / "state.sqlite")})
    monkeypatch.setattr(cli, "_settings", lambda args: settings)
    user = getpass.getuser()
    assert cli.main(["allow", "--removals", "3"]) == 0
    store = SqliteStore(tmp_path / "state.sqlite")
    try:
        (entry,) = store.read_log(action="allow")
        assert store.allowances() == {"removals": 3}
    finally:
        store.close()
    assert (entry.actor, entry.result, entry.detail) == (
        user,
        "info",
        {"reason": "allowed once for the next reconcile", "deletes": 0, "removals": 3, "updates": 0},
    )
    capsys.readouterr()
    assert cli.main(["log"]) == 0
    header, *rest = capsys.readouterr().out.splitlines()
    assert header.split()[:8] == ["time", "(UTC)", "run", "action", "result", "group", "by", "detail"]
    (line,) = [x for x in rest if " allow " in x]
    assert f" {user} " in line
    assert cli.main(["log", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["actor"] == user and row["action"] == "allow"


def test_writeback_allow_without_a_login_name_names_the_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from writeback.app import operations
    from writeback.app.engine import Allowances

    def no_name() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_name)
    settings = builders.settings(state={"path": str(tmp_path / "state.sqlite")})
    operations.allow(settings, Allowances(deletes=1))
    store = SqliteStore(tmp_path / "state.sqlite")
    try:
        (entry,) = store.read_log(action="allow")
    finally:
        store.close()
    assert entry.actor is not None and re.fullmatch(r"uid \d+", entry.actor)
