"""Alerts: a JSON webhook (Teams/Slack-style receivers take ``{"text": ...}``) and e-mail over SMTP.

The service calls :meth:`Alerter.observe` after every cycle with its :class:`~writeback.app.service.Health`;
the alerter turns *transitions* into alerts, so a state that lasts does not send one message per poll:

- ``held``: changes held by a safety threshold (again only when what is held changes);
- ``quarantine_entered`` / ``quarantine_left``;
- ``failing``: cycles have failed for longer than ``alerts.failing_for`` seconds;
- ``loop``: a plan reports a group whose error names a loop (:meth:`Alerter.observe_apply`, after each
  apply; the same looping groups alert again only after ``alerts.min_interval``).

Separately, and opt-in, ``alerts.event_webhook_url`` gets one JSON POST per group change the service applied
(``{"event": "group_change", ...}``), so an access-request workflow can learn that a membership reached AD
instead of polling. Events are not de-duplicated or rate-limited (each is a fact, not a warning); they are
posted in order on one background thread per cycle.

De-duplicated (the same key is sent at most once per ``alerts.min_interval`` seconds) and rate-limited (at most
:data:`MAX_PER_INTERVAL` alerts of any kind per interval). Sending happens on a short-lived thread: a slow
receiver never delays a cycle. Failures to send are logged, never raised.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from writeback.config import AlertSettings, resolve_secret
from writeback.core.planning import Change, Plan

if TYPE_CHECKING:
    from writeback.app.engine import ApplyResult

log = logging.getLogger("writeback.alerts")
MAX_PER_INTERVAL = 10


class HealthLike(Protocol):
    status: str
    message: str
    held: list[dict[str, Any]]
    consecutive_failures: int
    last_success: float | None
    started: float
    last_error: str | None


MAX_EVENT_MEMBERS = 1000


def group_change_event(change: Change, run_id: str, when: float) -> dict[str, Any]:
    """The event webhook's body for one applied change. Redacted attributes stay redacted; at most
    :data:`MAX_EVENT_MEMBERS` member DNs (``members_total`` says how many the change had)."""
    members = list(change.members)
    return {
        "event": "group_change",
        "text": f"writeback: {change.kind.value} {change.display_name or change.dn}",
        "time": dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "action": change.kind.value,
        "cloud_id": change.cloud_id,
        "group": change.display_name,
        "dn": change.new_dn or change.dn,
        "old_dn": change.dn if change.new_dn else None,
        "attributes": change.shown_attributes(),
        "members": members[:MAX_EVENT_MEMBERS],
        "members_total": len(members),
    }


@dataclass(frozen=True)
class Alert:
    key: str  # de-duplication key
    kind: str  # held, quarantine_entered, quarantine_left, failing, loop, group_change
    title: str
    text: str
    time: float

    def payload(self) -> dict[str, Any]:
        return {
            "text": f"writeback: {self.title}\n{self.text}",  # what Slack/Teams-style receivers show
            "title": f"writeback: {self.title}",
            "kind": self.kind,
            "time": dt.datetime.fromtimestamp(self.time, dt.UTC).isoformat(timespec="seconds"),
        }


class Alerter:
    """Turns health transitions into alerts and sends them to the configured webhook and mailbox."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        self.settings, self.clock, self.background = settings, clock, background
        self._sent: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._held_key: str | None = None
        self._quarantined = False
        self._failing_sent = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.webhook_url or self.settings.smtp_host)

    def observe(self, health: HealthLike, ok: bool) -> None:
        """Called after each cycle: alert on what changed since the last one."""
        now = self.clock()
        held_key = "|".join(sorted(str(h.get("message", "")) for h in health.held)) or None
        if held_key and held_key != self._held_key:
            self.alert("held", "changes held by a safety threshold", health.message, key=f"held:{held_key}")
        self._held_key = held_key
        quarantined = health.status == "quarantined"
        if quarantined and not self._quarantined:
            self.alert("quarantine_entered", "quarantined", health.message)
        elif self._quarantined and not quarantined:
            self.alert("quarantine_left", "quarantine left", f"status now {health.status}: {health.message}")
        self._quarantined = quarantined
        if ok:
            self._failing_sent = False
        elif not self._failing_sent:
            since = health.last_success or health.started
            if now - since >= self.settings.failing_for:
                self._failing_sent = True
                self.alert(
                    "failing",
                    f"cycles failing for {int(now - since)} s",
                    f"{health.consecutive_failures} cycles in a row failed. Last error: {health.last_error}",
                )

    def observe_apply(self, plan: Plan, result: ApplyResult) -> None:
        """Called after each apply of the service: the loop alert and the event webhook."""
        loops = [r for r in plan.reports if r.error and "loop" in r.error.lower()]
        if loops:
            self.alert(
                "loop",
                f"loop detected in {len(loops)} group{'s' if len(loops) != 1 else ''}",
                "\n".join(f"{r.display_name} ({r.cloud_id}): {r.error}" for r in loops[:20]),
                key="loop:" + ",".join(sorted(r.cloud_id for r in loops)),
            )
        url = self.settings.event_webhook_url
        events = [group_change_event(r.change, result.run_id, self.clock()) for r in result.results if r.ok]
        if not url or not events:
            return

        def send() -> None:
            for event in events:
                post_json(url, event, self.settings.ca_file, "event webhook")

        if self.background:
            threading.Thread(target=send, name="writeback-events", daemon=True).start()
        else:
            send()

    def alert(self, kind: str, title: str, text: str, *, key: str | None = None) -> bool:
        """Send one alert unless a duplicate was sent recently or the rate limit is reached."""
        if not self.enabled:
            return False
        now = self.clock()
        key = key or kind
        window = self.settings.min_interval
        with self._lock:
            last = self._sent.get(key)
            if last is not None and now - last < window:
                log.info("alert %s not sent again (sent %.0f s ago)", key, now - last)
                return False
            while self._recent and now - self._recent[0] >= window:
                self._recent.popleft()
            if len(self._recent) >= MAX_PER_INTERVAL:
                log.warning(
                    "alert %s dropped: %d alerts sent in the last %.0f s", key, len(self._recent), window
                )
                return False
            self._sent[key] = now
            self._recent.append(now)
        alert = Alert(key, kind, title, text, now)
        if self.background:
            threading.Thread(target=self.deliver, args=(alert,), name="writeback-alert", daemon=True).start()
        else:
            self.deliver(alert)
        return True

    def deliver(self, alert: Alert) -> None:
        s = self.settings
        if s.webhook_url:
            post_json(s.webhook_url, alert.payload(), s.ca_file, "alert webhook")
        if s.smtp_host:
            try:
                send_mail(s, alert)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("cannot send the alert e-mail through %s:%d: %s", s.smtp_host, s.smtp_port, exc)


def post_json(url: str, payload: dict[str, Any], ca_file: str | None, what: str) -> bool:
    """POST ``payload``; TLS verified (against ``ca_file`` when set). The URL is not logged: webhook URLs
    carry their secret in the path."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    try:
        response = httpx.post(url, json=payload, timeout=10.0, verify=verify)
    except httpx.HTTPError as exc:
        log.warning("cannot deliver the %s: %s", what, type(exc).__name__)
        return False
    if response.status_code >= 300:
        log.warning("the %s receiver answered HTTP %d", what, response.status_code)
        return False
    return True


def send_mail(s: AlertSettings, alert: Alert) -> None:
    msg = EmailMessage()
    msg["Subject"] = f"writeback: {alert.title}"
    msg["From"] = s.mail_from or ""
    msg["To"] = ", ".join(s.mail_to)
    msg.set_content(f"{alert.text}\n\n{alert.payload()['time']} ({alert.kind})\n")
    assert s.smtp_host is not None
    with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=15) as smtp:
        if s.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context(cafile=s.ca_file))
        if s.smtp_username and s.smtp_password:
            smtp.login(s.smtp_username, resolve_secret(s.smtp_password, "alerts.smtp_password"))
        smtp.send_message(msg)
