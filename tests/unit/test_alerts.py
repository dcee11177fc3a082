"""Alerts (writeback.app.alerts): a webhook received by a local HTTP receiver, an e-mail by a local SMTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from writeback.app.alerts import Alerter
from writeback.app.service import Health
from writeback.config import AlertSettings


class Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    now = 10_000.0

    def __call__(self) -> float:
        return self.now


def test_webhook_alerts_on_transitions_deduplicated(receiver: Receiver) -> None:
    clock = Clock()
    alerter = Alerter(
        AlertSettings(webhook_url=receiver.url, min_interval=600), clock=clock, background=False
    )
    h = Health(
        status="held",
        message="12 deletes held",
        held=[{"kind": "deletes", "count": 12, "message": "12 deletes held"}],
    )
    alerter.observe(h, True)
    alerter.observe(h, True)  # the same hold next cycle: no second alert
    assert [p["kind"] for p in receiver.posts] == ["held"]
    assert "12 deletes held" in receiver.posts[0]["text"] and receiver.posts[0]["time"].endswith("+00:00")
    h.status, h.held = "quarantined", []
    alerter.observe(h, False)
    h.status = "ok"
    alerter.observe(h, True)
    assert [p["kind"] for p in receiver.posts] == ["held", "quarantine_entered", "quarantine_left"]


def test_failing_cycles_alert_once_after_the_setting() -> None:
    clock = Clock()
    alerter = Alerter(
        AlertSettings(webhook_url="http://127.0.0.1:9/none", failing_for=300), clock=clock, background=False
    )
    sent: list[str] = []
    alerter.deliver = lambda alert: sent.append(alert.kind)  # type: ignore[method-assign]
    h = Health(status="degraded", started=clock.now, consecutive_failures=1, last_error="AD down")
    alerter.observe(h, False)
    assert sent == []
    clock.now += 301
    alerter.observe(h, False)
    alerter.observe(h, False)
    assert sent == ["failing"]


def test_rate_limit_caps_alerts_per_interval() -> None:
    alerter = Alerter(AlertSettings(webhook_url="http://127.0.0.1:9/none"), clock=Clock(), background=False)
    alerter.deliver = lambda alert: None  # type: ignore[method-assign]
    results = [alerter.alert("loop", "loop detected", "x", key=f"loop:{i}") for i in range(15)]
    assert results.count(True) == 10


def test_email_alert_reaches_a_local_smtp_server() -> None:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        alerter = Alerter(
            AlertSettings(
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_starttls=False,
                mail_from="wb@example.org",
                mail_to=("ops@example.org",),
            ),
            background=False,
        )
        assert alerter.alert("quarantine_entered", "quarantined", "5 cycles in a row failed")
        deadline = time.monotonic() + 5
        while not mailbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        controller.stop()
    (msg,) = mailbox.messages
    assert msg.rcpt_tos == ["ops@example.org"]
    body = msg.content.decode()
    assert "Subject: writeback: quarantined" in body and "5 cycles in a row failed" in body


def _plan_with_reports(*reports: Any) -> Any:
    from writeback.core.planning import Plan

    return Plan(reports=tuple(reports))


def test_a_plan_reporting_a_loop_alerts_once_per_interval(receiver: Receiver) -> None:
    from writeback.app.engine import ApplyResult
    from writeback.core.planning import GroupReport

    clock = Clock()
    alerter = Alerter(
        AlertSettings(webhook_url=receiver.url, min_interval=600), clock=clock, background=False
    )
    fine = _plan_with_reports(GroupReport("g0", "Fine", None, error="max_members exceeded"))
    alerter.observe_apply(fine, ApplyResult("r0"))
    assert receiver.posts == []  # an error without a loop is not a loop alert
    loop = GroupReport("g1", "Ping", None, error="writeback loop detected: G1 flips every cycle")
    alerter.observe_apply(_plan_with_reports(loop), ApplyResult("r1"))
    alerter.observe_apply(_plan_with_reports(loop), ApplyResult("r2"))  # the same loop next cycle
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["kind"] == "loop" and "loop detected in 1 group" in post["title"]
    assert "Ping (g1): writeback loop detected" in post["text"]
    clock.now += 601
    alerter.observe_apply(_plan_with_reports(loop), ApplyResult("r3"))
    assert len(receiver.posts) == 2


def test_the_event_webhook_gets_each_applied_group_change(receiver: Receiver) -> None:
    from writeback.app.engine import ApplyResult, ChangeResult
    from writeback.core.planning import Change, ChangeKind, Plan

    alerter = Alerter(AlertSettings(event_webhook_url=receiver.url), background=False)
    assert not alerter.enabled  # events are not alerts: no alert webhook or mail is configured
    add = Change(ChangeKind.ADD_MEMBERS, "g1", "CN=Sales,OU=W", "Sales", members=("CN=Anna,OU=Staff",))
    create = Change(
        ChangeKind.CREATE,
        "g2",
        "CN=HR,OU=W",
        "HR",
        attributes={"info": "secret value", "description": "d"},
        redacted=frozenset({"info"}),
    )
    refused = Change(ChangeKind.REMOVE_MEMBERS, "g3", "CN=Ops,OU=W", "Ops", members=("CN=Bob,OU=Staff",))
    result = ApplyResult(
        "run-1",
        [ChangeResult(add, True), ChangeResult(create, True), ChangeResult(refused, False, "refused")],
    )
    alerter.observe_apply(Plan(), result)
    assert [p["action"] for p in receiver.posts] == ["add_members", "create"]  # the refused one is not sent
    first = receiver.posts[0]
    assert first["event"] == "group_change" and first["run_id"] == "run-1" and first["cloud_id"] == "g1"
    assert first["dn"] == "CN=Sales,OU=W" and first["members"] == ["CN=Anna,OU=Staff"]
    assert first["members_total"] == 1 and first["time"].endswith("+00:00")
    assert receiver.posts[1]["attributes"]["info"] != "secret value"  # redacted stays redacted
    assert "secret value" not in json.dumps(receiver.posts)
