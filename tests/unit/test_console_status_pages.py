"""The console's status, actions, error and configuration pages over the service with in-memory fakes (the
browser tests run the same against the sandbox)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_console import Console, make_console
from writeback.app import pause as pausing
from writeback.core.ports import LogQuery


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field on the page"
    return m.group(1)


def _signed_in(tmp_path: Path, operator: bool = True) -> tuple[Console, str]:
    c = make_console(tmp_path)
    c.service.run(once=True)
    return c, c.sign_in(c.operator if operator else c.viewer)


def test_pause_and_resume_from_the_status_page_say_what_was_done_and_log_who(tmp_path: Path) -> None:
    c, csrf = _signed_in(tmp_path)
    r = c.client.post("/actions/pause", data={"csrf": csrf}, follow_redirects=True)
    assert r.status_code == 200
    done = re.search(r'<div id="done" role="status">(.*?)</div>', r.text, re.S)
    assert done and "Paused: writeback keeps reading the cloud" in done.group(1) and "olga" in done.group(1)
    assert "Paused: writeback writes nothing to AD." in r.text  # the banner
    assert 'action="/actions/resume"' in r.text and 'action="/actions/pause"' not in r.text
    # Every page carries the banner while paused; the API says so too.
    assert "Paused: writeback writes nothing to AD." in c.client.get("/config").text
    assert c.client.get("/api/status", headers=c.bearer(c.viewer)).json()["paused"]["by"] == "olga"
    # Provision on demand refuses before it starts, naming how to resume.
    r = c.client.post("/api/provision", json={"group": "G1"}, headers=c.bearer(c.operator))
    assert r.status_code == 409 and "writeback resume" in r.json()["error"]["message"]
    store = c.service.engine.store
    assert [e.actor for e in store.query_log(LogQuery(action="pause"))] == ["olga"]
    r = c.client.post("/actions/resume", data={"csrf": csrf}, follow_redirects=True)
    assert "Resumed: a reconcile starts now" in r.text and "writes nothing to AD" not in r.text
    assert pausing.paused(store) is None
    assert [e.actor for e in store.query_log(LogQuery(action="resume"))] == ["olga"]
    # Another person's result is not shown to someone else.
    r = c.client.post("/actions/reconcile", data={"csrf": csrf}, follow_redirects=False)
    key = re.search(r"done=([0-9a-f]+)", r.headers["location"])
    assert r.status_code == 303 and key
    assert "A deep reconcile starts now" in c.client.get(f"/?done={key.group(1)}").text
    c.client.post("/signout")
    c.sign_in(c.viewer)
    assert "A deep reconcile starts now" not in c.client.get(f"/?done={key.group(1)}").text


def test_allow_and_restart_ask_first_and_say_what_they_do(tmp_path: Path) -> None:
    c, csrf = _signed_in(tmp_path)
    page = c.client.get("/actions/allow?removals=12").text
    assert "Allow held changes?" in page and "Up to 12 member removals" in page
    assert 'name="removals" value="12"' in page
    page = c.client.get("/actions/restart").text
    assert "Restart provisioning?" in page and "reads every user and group from Microsoft Graph again" in page
    r = c.client.post("/actions/restart", data={"csrf": csrf}, follow_redirects=True)
    assert "Restart started" in r.text and c.service.health.restart_pending
    (row,) = c.service.engine.store.query_log(LogQuery(action="restart"))
    assert row.actor == "olga"
    # A viewer sees neither the actions nor the confirmations.
    c.client.post("/signout")
    c.sign_in(c.viewer)
    assert "Restart provisioning" not in c.client.get("/").text
    r = c.client.get("/actions/restart")
    assert r.status_code == 403 and "operator role" in r.text and '<nav aria-label="Console">' in r.text


def test_error_pages_keep_the_layout_and_say_what_to_do(tmp_path: Path) -> None:
    c, _ = _signed_in(tmp_path)
    r = c.client.get("/no/such/page")
    assert r.status_code == 404 and "Page not found" in r.text and '<nav aria-label="Console">' in r.text
    assert "Check the address" in r.text
    assert c.client.get("/api/nothing", headers=c.bearer(c.viewer)).json()["error"]["code"] == "NotFound"


def test_a_bug_is_a_500_page_with_a_request_id_and_no_traceback(tmp_path: Path) -> None:
    c, _ = _signed_in(tmp_path)

    c.service.health = None  # type: ignore[assignment]  # the status page now fails unexpectedly
    from starlette.testclient import TestClient

    client = TestClient(c.client.app, raise_server_exceptions=False, cookies=c.client.cookies)
    r = client.get("/")
    assert r.status_code == 500
    assert "Something went wrong" in r.text and '<nav aria-label="Console">' in r.text
    assert re.search(r"Request id: <code>[0-9a-f-]{36}</code>", r.text)
    assert "Traceback" not in r.text and "AttributeError" not in r.text


def test_the_configuration_page_shows_settings_never_secrets_and_tests_rules(tmp_path: Path) -> None:
    c, _ = _signed_in(tmp_path, operator=False)
    page = c.client.get("/config").text
    csrf = _csrf(page)  # a viewer's testers carry the session's token too
    for setting in ("scope.mode", "target.target_ou", "users.provision", "safety.delete_threshold"):
        assert setting in page
    api = c.client.get("/api/config", headers=c.bearer(c.viewer)).text
    for key in ("bind_password", "client_secret", "tokens_file", "password_file", "private_key"):
        assert key not in page and key not in api
    r = c.client.post(
        "/config/test-rule",
        data={"csrf": csrf, "rule": 'user.displayName -startsWith "User"', "user": ""},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200 and r.text.startswith('<div id="rule-result" role="status">')
    assert re.search(r"\d+ of \d+ users match", r.text)
    r = c.client.post("/config/test-rule", data={"csrf": csrf, "rule": "user.department -eq"})
    assert "rule-result" in r.text and "state-bad" in r.text
    r = c.client.post(
        "/config/test-expression",
        data={"csrf": csrf, "expression": 'Append([displayName], "-AD")', "object": "G1"},
        headers={"HX-Request": "true"},
    )
    assert "G1-AD" in r.text
    # Without the session's CSRF token, nothing runs.
    assert c.client.post("/config/test-rule", data={"rule": "user.a -eq 1"}).status_code == 403


def test_quarantine_banner_and_clear_only_while_quarantined_next_retry_while_degraded(tmp_path: Path) -> None:
    import time

    c, csrf = _signed_in(tmp_path)
    page = c.client.get("/").text
    assert "Quarantined" not in page and "Clear quarantine" not in page and "Next retry" not in page
    h = c.service.health
    h.status, h.consecutive_failures, h.next_cycle = "degraded", 2, time.time() + 125
    h.message, h.last_error = "cycle failed (2 in a row): LDAP server down", "LDAP server down"
    page = c.client.get("/").text
    assert re.search(r"<dt>Next retry</dt><dd><time [^>]*>in 2 min</time> \(after 2 failed cycles", page)
    assert "Clear quarantine" not in page and "cycle failed (2 in a row): LDAP server down" in page
    h.status, h.consecutive_failures = "quarantined", 5
    h.message = "quarantined: 5 cycles in a row failed; ... Last error: LDAP server down"
    page = c.client.get("/").text
    assert 'id="quarantine-title">Quarantined</h3>' in page and "Last error: LDAP server down" in page
    assert page.count("LDAP server down") == 1, "the error once, in the banner"
    assert page.count('action="/actions/clear-quarantine"') == 1
    r = c.client.post("/actions/clear-quarantine", data={"csrf": csrf}, follow_redirects=True)
    assert "Quarantine cleared" in r.text and 'id="quarantine-title"' not in r.text


def test_the_users_counts_come_from_the_log(tmp_path: Path) -> None:
    from writeback.app.accounts import created_accounts
    from writeback.core.ports import LogRecord

    c, _ = _signed_in(tmp_path)
    store = c.service.engine.store

    def row(action: str, uid: str, result: str = "success", target: str = "user") -> LogRecord:
        return LogRecord("run1", action, result, cloud_id=uid, detail={"target": target})

    store.log_rows(
        [
            row("create", "u1"),
            row("create", "u2"),
            row("delete", "u2"),  # created, then deleted
            row("create", "u3", result="error"),  # never created
            row("create", "g1", target="group"),  # a group
            row("create", "u4"),
        ]
    )
    assert created_accounts(store) == 2


def test_the_configuration_shows_no_secret_nor_where_one_is_kept() -> None:
    from dataclasses import replace

    from tests.unit import builders
    from writeback.config import SecretRef
    from writeback.console.configpage import api_config, sections

    s = builders.settings()
    assert s.source is not None
    s = replace(
        s,
        target=replace(s.target, bind_password=SecretRef(env="WB_SECRET_BIND_ENV")),
        source=replace(
            s.source,
            client_secret=SecretRef(file="/run/secrets/wb-client-secret"),
            private_key_file="/run/secrets/wb-key.pem",
        ),
        state=replace(
            s.state, url="postgresql://wbuser@db.example/wb", password=SecretRef(env="WB_PG_PASSWORD")
        ),
        console=replace(s.console, tokens_file="/etc/writeback/wb-tokens"),
    )
    shown = repr(sections(s)) + repr(api_config(s))
    for secret_place in (
        "WB_SECRET_BIND_ENV",
        "/run/secrets/wb-client-secret",
        "/run/secrets/wb-key.pem",
        "wbuser",
        "WB_PG_PASSWORD",
        "wb-tokens",
    ):
        assert secret_place not in shown
    assert "PostgreSQL (shared, high availability)" in shown and s.target.target_ou in shown


def test_a_standby_refuses_restart_but_shares_the_pause(tmp_path: Path) -> None:
    from writeback.adapters.state.sqlite import SqliteStore
    from writeback.app.lease import LeaderLease

    state = tmp_path / "state.sqlite"
    other = LeaderLease(SqliteStore(state), ttl=30, renew_interval=5, holder="web1:4242:0badcafe")
    assert other.tick()
    lease = LeaderLease(SqliteStore(state), ttl=30, renew_interval=5)
    c = make_console(tmp_path, lease)
    assert not lease.tick() and not c.service._lead()  # this instance stands by
    r = c.client.post("/api/restart", headers=c.bearer(c.operator))
    assert r.status_code == 409 and "standing by" in r.json()["error"]["message"]
    assert not c.service.health.restart_pending
    # A pause from a standby's console is in the shared state: the active instance sees it.
    r = c.client.post("/api/pause", headers=c.bearer(c.operator))
    assert r.status_code == 202 and r.json()["by"] == "olga"
    shared = SqliteStore(state)
    try:
        assert pausing.paused(shared) is not None
    finally:
        shared.close()
    status = c.client.get("/api/status", headers=c.bearer(c.viewer)).json()
    assert status["status"] == "standby" and status["paused"]["by"] == "olga"
