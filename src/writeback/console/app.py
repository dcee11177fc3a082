"""The console's pages and JSON API (starlette + jinja2; htmx for the live parts, vendored under static/).

Every route but ``/healthz``, ``/readyz``, ``/static`` and the sign-in page needs a signed-in principal (a
session cookie or ``Authorization: Bearer``); ``/metrics`` too unless ``console.metrics_public``. Operator
actions (Allow, Clear quarantine, Reconcile now, Provision) need the operator role, and from a browser session
the session's CSRF token. Each operator action is also a provisioning-log row (action ``allow``, ``reconcile``,
``clear_quarantine`` or ``provision``, result ``info``) naming the acting token's name in ``actor``, never the
token. Times in the API are ISO 8601 (UTC) besides Unix seconds where the health file has them. Pages read
without JavaScript; htmx only refreshes parts of them.

The status's ``role`` (active, standby, stopped), lease ``holder`` and ``leaseExpires`` come from the leader
lease as its thread last learnt them from the database (every ``lease_renew_interval``); the health file and
``/metrics`` (``writeback_leader``) follow the service loop, which looks at the lease before every cycle.

Every response carries the security headers of :data:`SECURITY_HEADERS` (no framing, scripts and styles only
from /static, no sniffing, no referrer) and, but for /static, ``Cache-Control: no-store``: one middleware,
:class:`Guard`, which also turns an unexpected exception into a JSON 500 (the traceback goes to the log as one
JSON record, never into the response). Every API error is Graph's error JSON,
``{"error": {"code": "BadRequest", "message": "...", "innerError": {"date": ..., "request-id": ...}}}``;
every API input (query, path, body) is checked, and a bad one is a 400 saying which and what to send.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from writeback.app import pause as pausing
from writeback.app import views
from writeback.app.accounts import created_accounts
from writeback.app.engine import Allowances, Engine
from writeback.app.lease import describe_instance
from writeback.app.metrics import CONTENT_TYPE
from writeback.app.reconcile_pass import PassOptions
from writeback.app.service import PHASES
from writeback.app.views import iso, log_query
from writeback.console import configpage, humane
from writeback.console.auth import Authenticator, ConsoleLocked, Principal
from writeback.console.backend import ServiceBackend
from writeback.console.chart import chart as activity_chart
from writeback.core.journal import LOG_ACTIONS, LOG_RESULTS
from writeback.core.ports import LogQuery, LogRecord
from writeback.errors import PausedError, StateLockedError, WritebackError

log = logging.getLogger("writeback.console")
HERE = Path(__file__).parent
COOKIE = "wb_session"

# The console's pages, in its navigation.
NAV_LINKS = (
    ("/", "Status"),
    ("/groups", "Groups"),
    ("/users", "Users"),
    ("/log", "Provisioning log"),
    ("/plan", "Plan"),
    ("/provision", "Provision on demand"),
    ("/config", "Configuration"),
)
# A log row's result as a colour beside its word (console.css .state-*).
RESULT_TONES = {"success": "good", "error": "bad", "held": "warn", "interrupted": "warn", "pending": "warn"}
# The status as a word and a tone (colour), besides the service's own status value.
STATUS_WORDS = {
    "ok": ("In sync", "good"),
    "held": ("Changes held", "warn"),
    "degraded": ("Degraded", "warn"),
    "quarantined": ("Quarantined", "bad"),
    "paused": ("Paused", "warn"),
    "standby": ("Standing by", "idle"),
    "starting": ("Starting", "idle"),
    "stopped": ("Stopped", "bad"),
}
# What to do, on an error page, by HTTP status.
ERROR_ADVICE = {
    400: "Check what was sent and try again.",
    403: "Ask the administrator for a token with the operator role, or sign in with one.",
    404: "Check the address, or start again from the status page.",
    405: "Use the page's own buttons and links: this address does not take that kind of request.",
    409: "Use the console of the active instance, or wait until this one is active.",
    500: "Try again. If it happens again, give the request id below to whoever runs this server: the "
    "service log has the details under it.",
    503: "Try again in a moment.",
}

# On every response. The pages load only /static/console.css and /static/htmx.min.js (no inline script, style
# or event handler: htmx's own indicator style is turned off in base.html), talk only to this origin, and may be
# framed by nobody (a framed console was clickjacked into Allow: issue 23).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Graph's error codes by HTTP status.
ERROR_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
MAX_ID = 2**63 - 1  # log ids and offsets: a 64-bit integer, as SQLite and PostgreSQL store them
MAX_COUNT = 1_000_000_000  # an allowance: far above any directory, far below what a 64-bit column holds
MAX_BODY = 64 * 1024  # an operator action's body: a few small fields
MAX_TEXT = 1024  # a filter or a group's name or id
# Cells a spreadsheet would take as a formula (OWASP, CSV injection): such a cell gets a leading quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class BadRequest(Exception):
    """An API input the console refuses: a 400 with the message (which input, what to send)."""


def error_json(status: int, message: str, request_id: str | None = None) -> JSONResponse:
    """Graph's error JSON: ``{"error": {"code", "message", "innerError": {"date", "request-id"}}}``."""
    inner = {
        "date": iso(time.time()),
        "request-id": request_id or str(uuid.uuid4()),
    }
    body = {"error": {"code": ERROR_CODES.get(status, "Error"), "message": message, "innerError": inner}}
    return JSONResponse(body, status_code=status)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "json" in request.headers.get("accept", "")


class Guard:
    """The one middleware every response passes: adds :data:`SECURITY_HEADERS` (and ``Cache-Control:
    no-store`` to all but /static), and turns an unexpected exception into a JSON 500 naming a request id, while
    the traceback goes to the log as one JSON record with that id (never into the response, nor to
    uvicorn's plain-text printer)."""

    def __init__(self, app: ASGIApp, page: Callable[[Scope, str], Response] | None = None) -> None:
        self.app, self.page = app, page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not path.startswith("/static/"):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            request_id = str(uuid.uuid4())
            log.exception(
                "unexpected error answering %s %s (a bug: please report it)",
                scope.get("method"),
                path,
                extra={"event": "bug", "method": scope.get("method"), "path": path, "request_id": request_id},
            )
            if started:  # the response is on its way: nothing else can be sent
                return
            message = (
                f"unexpected error (a bug): the service log has its details under request id {request_id}"
            )
            response: Response = error_json(500, message, request_id)
            if self.page is not None and not path.startswith("/api/"):
                try:  # the console's own page, with its navigation: a person reads it
                    response = self.page(scope, request_id)
                except Exception:  # the page itself failed: the JSON answer still names the request id
                    log.exception("the error page failed", extra={"event": "bug", "request_id": request_id})
            await response(scope, receive, send_with_headers)


class Console:
    """The ASGI app over one backend. ``app`` is the Starlette application."""

    def __init__(self, backend: ServiceBackend, auth: Authenticator, *, https: bool) -> None:
        self.backend, self.auth, self.https = backend, auth, https
        self._locked_by: str | None = None  # the last "console locked" message logged
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True)
        )
        self.templates.filters["iso"] = iso
        # Every time on a page: <time datetime="ISO" title="full time">2 min ago</time> (writeback.console.humane).
        self.templates.filters["when"] = lambda value, empty="never": humane.time_element(
            value, time.time(), empty
        )
        self.templates.filters["duration"] = humane.duration
        self.templates.globals["log_results"] = LOG_RESULTS
        self.templates.globals["log_actions"] = LOG_ACTIONS
        self.templates.globals["nav_links"] = NAV_LINKS
        self.templates.globals["result_tones"] = RESULT_TONES
        # An action's result, shown once on the page its redirect leads to: key -> (who, message, log row, time).
        self._flash: dict[str, tuple[str, str, int | None, float]] = {}
        page, api, op, signed = self.page, self.api, self.operator, self.signed
        from writeback.console.pages import (
            Pages,  # its module imports this one: the groups, users and log pages
        )

        self.app = Starlette(
            routes=[
                *Pages(self).routes(),
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics_route),
                Route("/signin", self.signin, methods=["GET", "POST"]),
                Route("/signout", self.signout, methods=["POST"]),
                Route("/", page(self.status_page)),
                Route("/plan", page(self.plan_page)),
                Route("/provision", page(self.provision_page)),
                Route("/provision", op(self.provision_start), methods=["POST"]),
                Route("/provision/{id}", page(self.provision_run)),
                Route("/actions/allow", op(self.allow), methods=["POST"]),
                Route("/actions/clear-quarantine", op(self.clear_quarantine), methods=["POST"]),
                Route("/actions/reconcile", op(self.reconcile), methods=["POST"]),
                Route("/actions/allow", page(self.allow_confirm)),
                Route("/actions/pause", op(self.pause), methods=["POST"]),
                Route("/actions/resume", op(self.resume), methods=["POST"]),
                Route("/actions/restart", page(self.restart_confirm)),
                Route("/actions/restart", op(self.restart), methods=["POST"]),
                Route("/config", page(self.config_page)),
                Route("/config/test-rule", signed(self.test_rule), methods=["POST"]),
                Route("/config/test-expression", signed(self.test_expression), methods=["POST"]),
                Route("/api/status", api(self.api_status)),
                Route("/api/plan", api(self.api_plan)),
                Route("/api/provision", op(self.provision_start), methods=["POST"]),
                Route("/api/provision/{id}", api(self.api_provision_run)),
                Route("/api/allow", op(self.allow), methods=["POST"]),
                Route("/api/clear-quarantine", op(self.clear_quarantine), methods=["POST"]),
                Route("/api/reconcile", op(self.reconcile), methods=["POST"]),
                Route("/api/pause", op(self.pause), methods=["POST"]),
                Route("/api/resume", op(self.resume), methods=["POST"]),
                Route("/api/restart", op(self.restart), methods=["POST"]),
                Route("/api/config", api(self.api_config)),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ],
            middleware=[Middleware(Guard, page=self._bug_page)],
            exception_handlers={
                BadRequest: self._bad_request,
                ConsoleLocked: self._locked,
                HTTPException: self._http_error,
            },
        )

    # -- errors ---------------------------------------------------------------------------------------------
    async def _bad_request(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 400, str(exc))

    async def _locked(self, request: Request, exc: Exception) -> Response:
        """The tokens file cannot be used: nobody is signed in until it is fixed; the message says how."""
        if str(exc) != self._locked_by:  # once per cause, not at every request
            self._locked_by = str(exc)
            log.error("%s", exc, extra={"event": "console_locked"})
        if _wants_json(request) or request.headers.get("authorization"):
            return error_json(503, str(exc))
        return self.render(
            request, None, "message.html", {"title": "Console locked", "message": str(exc)}, 503
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's own errors (no such path, method not allowed): Graph's error JSON under /api/."""
        assert isinstance(exc, HTTPException)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        if _wants_json(request):
            response: Response = error_json(exc.status_code, str(exc.detail))
        else:
            what = {404: "There is no page at this address."}.get(exc.status_code, str(exc.detail))
            response = self._error_page(request, exc.status_code, what)
        response.headers.update(exc.headers or {})
        return response

    def _error_page(
        self,
        request: Request,
        status: int,
        message: str,
        request_id: str | None = None,
        todo: str | None = None,
    ) -> HTMLResponse:
        """An error as a page of the console: its layout and navigation, what happened and what to do."""
        try:
            who = self.principal(request)
        except ConsoleLocked:
            who = None
        titles = {400: "Not done", 403: "Not allowed", 404: "Page not found", 409: "Not done here"}
        title = titles.get(status, "Something went wrong" if status >= 500 else "Not done")
        todo = todo or ERROR_ADVICE.get(status, "Go back and try again.")
        ctx = {"title": title, "message": message, "todo": todo, "request_id": request_id, "show_nav": True}
        return self.render(request, who, "error.html", ctx, status)

    def _bug_page(self, scope: Scope, request_id: str) -> Response:
        """The 500 page :class:`Guard` shows a browser: the request id, never the traceback."""
        message = "The console met an unexpected error (a bug) and did not finish this request."
        return self._error_page(Request(scope), 500, message, request_id)

    # -- sign-in --------------------------------------------------------------------------------------------
    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.auth.check_token(header[7:].strip())
        sid = request.cookies.get(COOKIE)
        return self.auth.session(sid) if sid else None

    def _unauthorized(self, request: Request, api: bool) -> Response:
        if api or request.url.path.startswith("/api/") or request.headers.get("authorization"):
            response = error_json(
                401, "sign in: send Authorization: Bearer <token> (a token from console.tokens_file)"
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return RedirectResponse(f"/signin?next={request.url.path}", status_code=303)

    Handler = Callable[[Request, Principal], Awaitable[Response]]

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            who = self.principal(request)
            if who is None:
                return self._unauthorized(request, api=False)
            return await handler(request, who)

        return endpoint

    api = page

    def operator(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """An operator's action: the operator role, and the session's CSRF token from a browser."""

        async def endpoint(request: Request) -> Response:
            who = self.principal(request)
            if who is None:
                return self._unauthorized(request, api=True)
            if not who.operator:
                return self._error(
                    request, 403, f"{who.name} is a viewer: this action needs the operator role"
                )
            refused = await self._csrf_refused(request, who)
            return refused or await handler(request, who)

        return endpoint

    def signed(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A form any signed-in role may post (it changes nothing: the configuration's testers), with the
        session's CSRF token from a browser."""

        async def endpoint(request: Request) -> Response:
            who = self.principal(request)
            if who is None:
                return self._unauthorized(request, api=True)
            refused = await self._csrf_refused(request, who)
            return refused or await handler(request, who)

        return endpoint

    async def _csrf_refused(self, request: Request, who: Principal) -> Response | None:
        if not who.csrf:  # a bearer request carries no CSRF token
            return None
        form = await request.form() if "form" in request.headers.get("content-type", "") else {}
        sent = request.headers.get("x-csrf-token") or str(form.get("csrf", ""))
        if hmac.compare_digest(sent.encode(), who.csrf.encode()):
            return None
        return self._error(request, 403, "the form is out of date (CSRF check failed): reload the page")

    def _error(self, request: Request, status: int, message: str, todo: str | None = None) -> Response:
        """An error: Graph's error JSON for the API, else a page saying what to do (``todo``, or the usual
        advice for ``status``)."""
        if _wants_json(request):
            return error_json(status, message)
        return self._error_page(request, status, message, todo=todo)

    def render(
        self, request: Request, who: Principal | None, name: str, ctx: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        """A page. Signed in, every page carries the pause banner while writeback is paused."""
        paused = None
        if who is not None and "paused" not in ctx:
            try:
                paused = self.backend.paused()
            except WritebackError:  # the state cannot be read: the page says what it can without the banner
                paused = None
        html = self.templates.get_template(name).render(
            request=request, who=who, path=request.url.path, **{"paused": paused, **ctx}
        )
        return HTMLResponse(html, status_code=status)

    async def signin(self, request: Request) -> Response:
        nxt = request.query_params.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"  # never an open redirect
        if request.method == "GET":
            return self.render(request, None, "signin.html", {"next": nxt, "error": None})
        form = await request.form()
        token = str(form.get("token", "")).strip()
        who = self.auth.check_token(token)
        if who is None:
            return self.render(
                request, None, "signin.html", {"next": nxt, "error": "That token is not valid."}, 401
            )
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            COOKIE,
            self.auth.start_session(who, token),
            httponly=True,
            samesite="strict",
            secure=self.https,
            path="/",
        )
        return response

    async def signout(self, request: Request) -> Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            self.auth.end_session(sid)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- health and metrics ---------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def ready(self) -> tuple[bool, str]:
        h = self.backend.health()
        window = max(60.0, 5 * self.backend.settings.service.poll_interval)
        if h["last_success"] is None:
            return False, "no successful cycle yet"
        age = time.time() - h["last_success"]
        if age > window:
            return False, f"last successful cycle {age:.0f} s ago (more than {window:.0f} s)"
        return True, "ok"

    async def readyz(self, request: Request) -> Response:
        ok, why = self.ready()
        return PlainTextResponse(why + "\n", status_code=200 if ok else 503)

    async def metrics_route(self, request: Request) -> Response:
        if not self.backend.settings.console.metrics_public and self.principal(request) is None:
            return self._unauthorized(request, api=True)
        if self.backend.metrics is None:
            return PlainTextResponse("metrics are not enabled\n", status_code=404)
        return Response(self.backend.metrics.render(), media_type=CONTENT_TYPE)

    # -- status ---------------------------------------------------------------------------------------------
    def leadership(self, h: dict[str, Any]) -> dict[str, Any]:
        """This instance's role (active, standby, stopped), who holds the leader lease and when it ends.

        With a PostgreSQL state: what the lease last learnt from the database (the standby names the active
        instance). With a SQLite state there is no lease: the role is active while the service runs, the holder
        this instance (its writer lock) and the expiry None, as a lock has no end; after a stop, no holder."""
        lease = self.backend.service.lease
        stopped = h["status"] == "stopped"
        if lease is None:
            holder = None if stopped else {**describe_instance(h["instance"]), "token": None}
            return {
                "role": "stopped" if stopped else "active",
                "instance": h["instance"],
                "holder": holder,
                "leaseExpires": None,
                "leaseCheckedAt": None,
            }
        seen = lease.current
        return {
            "role": "stopped" if stopped else lease.role,
            "instance": lease.holder,
            "holder": seen.to_dict() if seen else None,
            "leaseExpires": iso(seen.expires) if seen else None,
            "leaseCheckedAt": iso(seen.checked) if seen else None,
        }

    def status(self) -> dict[str, Any]:
        """The status after Graph's synchronizationStatus (code, quarantine, last executions), with this
        instance's role and the leader lease's holder (:meth:`leadership`)."""
        h = self.backend.health()
        users_on = self.backend.settings.users.enabled
        with self.backend.store() as store:
            managed, per_day = views.status_counts(store)
            paused = pausing.paused(store)
            created = created_accounts(store) if users_on else None
        status = h["status"]
        if paused is not None and status in ("ok", "held", "degraded", "starting"):
            # The shared state says paused (the CLI, or another instance's console) before this service's next
            # cycle has seen it.
            status = "paused"
        code = {"ok": "Active", "held": "Active", "degraded": "Active", "quarantined": "Quarantine"}.get(
            status, "NotRun" if status == "starting" else "Paused"
        )
        ready, why = self.ready()
        label, tone = STATUS_WORDS.get(status, (status, "idle"))
        message = h["message"] if status == h["status"] else f"{paused.describe() if paused else status}"
        retrying = status in ("degraded", "quarantined") and h["consecutive_failures"] > 0
        return {
            "status": status,
            "message": message,
            "label": label,
            "tone": tone,
            "detail": _badge_detail(status, label, message),
            "phase": h["phase"],
            "phaseText": PHASES.get(h["phase"], h["phase"]),
            "phaseStarted": iso(h["phase_started"]),
            "cycleKind": h["cycle_kind"],
            "progress": {"done": h["progress_done"], "total": h["progress_total"]},
            "lastCycleSeconds": h["last_cycle_seconds"],
            "nextRetry": iso(h["next_cycle"]) if retrying else None,
            "nextGroupRetry": iso(h["next_group_retry"]),
            "paused": paused.to_dict() if paused else None,
            "restartPending": h["restart_pending"],
            "users": {"managed": h["managed_users"], "created": created} if users_on else None,
            **self.leadership(h),
            "code": code,
            "ready": ready,
            "readyReason": why,
            "quarantine": {"since": None, "reason": h["last_error"]}
            if h["status"] == "quarantined"
            else None,
            "lastExecution": iso(h["last_cycle"]),
            "lastSuccessfulExecution": iso(h["last_success"]),
            "lastSuccessfulExecutionWithExports": iso(h["last_change"]),
            "lastFullReconcile": iso(h["last_full_reconcile"]),
            "nextCycle": iso(h["next_cycle"]),
            "nextFullReconcile": iso(
                (h["last_full_reconcile"] or h["started"]) + self.backend.settings.service.reconcile_interval
            ),
            "consecutiveFailures": h["consecutive_failures"],
            "failingGroups": h["failing_groups"],
            "managedGroups": managed,
            "managedMemberships": h["managed_memberships"],
            "skippedMembers": h["skipped_members"],
            "replicaLagSeconds": round(time.time() - h["last_sync"], 1) if h["last_sync"] else None,
            "cycles": h["cycles"],
            "changesApplied": h["changes_applied"],
            "changesFailed": h["changes_failed"],
            "held": h["held"],
            "lastError": h["last_error"],
            "actionsPerDay": [{"day": d, "status": r, "count": n} for d, r, n in per_day],
        }

    async def api_status(self, request: Request, who: Principal) -> Response:
        return JSONResponse(await run_in_threadpool(self.status))

    async def status_page(self, request: Request, who: Principal) -> Response:
        status = await run_in_threadpool(self.status)
        flash = self._flash_for(request, who)
        today = dt.datetime.now(dt.UTC).date()
        ctx = {
            "s": status,
            "chart": activity_chart(status["actionsPerDay"], today=today),
            "flash": flash,
            "paused": status["paused"],
        }
        return self.render(request, who, "status.html", ctx)

    # -- operator actions -----------------------------------------------------------------------------------
    async def allow_confirm(self, request: Request, who: Principal) -> Response:
        """Allow's confirmation: exactly which held changes it releases, then the form that does it."""
        if not who.operator:
            return self._error(request, 403, f"{who.name} is a viewer: Allow needs the operator role")
        params = request.query_params
        allow = Allowances(*(_count(params, name) for name in ("deletes", "removals", "updates")))
        if allow == Allowances():
            return self._error(request, 400, "nothing to allow: the status page's Allow button says how many")
        held = {h["kind"]: h for h in self.backend.health()["held"]}
        words = {
            "deletes": "group deletes",
            "removals": "member removals",
            "updates": "groups updated or moved",
        }
        items = []
        for kind in ("deletes", "removals", "updates"):
            n = getattr(allow, kind)
            if n:
                why = held[kind]["message"] if kind in held else "no longer held by the last reconcile"
                items.append(f"Up to {n} {words[kind]}: {why}")
        ctx = {
            "title": "Allow held changes?",
            "what": [
                "These changes are held because they pass a safety threshold. Allow lets the next reconcile "
                "(a deep one, started at once) apply them, once; later changes over a threshold are held again.",
                "It releases:",
            ],
            "items": items,
            "action": "/actions/allow",
            "fields": [
                (k, getattr(allow, k)) for k in ("deletes", "removals", "updates") if getattr(allow, k)
            ],
            "button": "Allow and reconcile now",
        }
        return self.render(request, who, "confirm.html", ctx)

    async def restart_confirm(self, request: Request, who: Principal) -> Response:
        if not who.operator:
            return self._error(request, 403, f"{who.name} is a viewer: Restart needs the operator role")
        ctx = {
            "title": "Restart provisioning?",
            "what": [
                "The cloud replica's delta links are dropped, so the next cycle, started at once, reads every "
                "user and group from Microsoft Graph again, like the first start. Then a deep reconcile "
                "compares every managed group and account with AD and writes what differs.",
                "The provisioning log, the groups writeback manages and their last-applied state are kept. "
                "Changes over a safety threshold are still held. While writeback is paused the replica is "
                "read again at once and the reconcile waits for the resume.",
            ],
            "items": [],
            "action": "/actions/restart",
            "fields": [],
            "button": "Restart provisioning",
        }
        return self.render(request, who, "confirm.html", ctx)

    async def pause(self, request: Request, who: Principal) -> Response:
        await _payload(request, ())
        pause, started = await run_in_threadpool(self.backend.pause, who.name)
        if not started:
            return self._done(request, f"Already {pause.describe()}: nothing changed.", who, None)
        row = await self._last_row("pause", who)
        return self._done(
            request,
            "Paused: writeback keeps reading the cloud and writes nothing to AD until resumed.",
            who,
            row,
        )

    async def resume(self, request: Request, who: Principal) -> Response:
        await _payload(request, ())
        ended = await run_in_threadpool(self.backend.resume, who.name)
        if ended is None:
            return self._done(request, "Not paused: nothing to resume.", who, None)
        row = await self._last_row("resume", who)
        return self._done(
            request, "Resumed: a reconcile starts now and writes what changed while paused.", who, row
        )

    async def restart(self, request: Request, who: Principal) -> Response:
        await _payload(request, ())
        try:
            self.backend.restart()
        except StateLockedError as exc:  # a standby: it names the active instance
            return self._error(request, 409, str(exc))
        row = await self._journal(
            who,
            "restart",
            {
                "reason": "restart provisioning: the cloud replica is read again in full, then a deep reconcile"
            },
        )
        message = (
            "Restart started: the cloud replica is read again in full from Microsoft Graph, then a deep "
            "reconcile follows."
        )
        return self._done(request, message + await self._waits_if_paused(), who, row)

    async def _waits_if_paused(self) -> str:
        """What an action that starts a reconcile adds while writeback is paused."""
        try:
            paused = await run_in_threadpool(self.backend.paused)
        except WritebackError:
            return ""
        return " writeback is paused: the reconcile waits for Resume." if paused else ""

    async def _last_row(self, action: str, who: Principal) -> int | None:
        """The id of the newest log row of ``action`` by ``who`` (the row writeback.app.pause just wrote)."""

        def find() -> int | None:
            with self.backend.store() as store:
                rows = store.query_log(LogQuery(action=action, limit=20))
            return next((e.id for e in rows if e.actor == who.name), None)

        try:
            return await run_in_threadpool(find)
        except WritebackError:
            return None

    async def allow(self, request: Request, who: Principal) -> Response:
        data = await _payload(request, ("deletes", "removals", "updates"))
        allow = Allowances(*(_count(data, name) for name in ("deletes", "removals", "updates")))
        if allow == Allowances():
            return self._error(request, 400, "nothing to allow: give deletes, removals and/or updates (> 0)")
        await run_in_threadpool(self.backend.allow, allow)
        row = await self._journal(
            who,
            "allow",
            {"reason": "allowed once for the next reconcile", **asdict(allow)},
        )
        released = ", ".join(
            f"{n} {word}"
            for n, word in (
                (allow.deletes, "deletes"),
                (allow.removals, "removals"),
                (allow.updates, "updates"),
            )
            if n
        )
        message = f"Allowed once: {released}. A deep reconcile starts now and applies them."
        return self._done(request, message + await self._waits_if_paused(), who, row)

    async def clear_quarantine(self, request: Request, who: Principal) -> Response:
        await _payload(request, ())
        h = self.backend.health()
        self.backend.clear_quarantine()
        row = await self._journal(
            who,
            "clear_quarantine",
            {
                "reason": "quarantine cleared; a reconcile starts now",
                "status_before": h["status"],
                "failed_cycles_before": h["consecutive_failures"],
            },
        )
        return self._done(request, "Quarantine cleared; a reconcile starts now.", who, row)

    async def reconcile(self, request: Request, who: Principal) -> Response:
        await _payload(request, ())
        self.backend.reconcile_now()
        row = await self._journal(who, "reconcile", {"reason": "a deep reconcile, started now"})
        message = "A deep reconcile starts now: every managed group is read and compared."
        return self._done(request, message + await self._waits_if_paused(), who, row)

    async def _journal(
        self,
        who: Principal,
        action: str,
        detail: dict[str, object],
        *,
        run_id: str | None = None,
        group_name: str | None = None,
    ) -> int | None:
        """Record an operator's action in the provisioning log, naming the token (never the token itself); the
        row's id, or None when the state cannot take it. Best effort: the action is done by then, and clearing
        a quarantine must work even while the state is what fails."""
        record = LogRecord(
            run_id or uuid.uuid4().hex[:12],
            action,
            "info",
            group_name=group_name,
            detail=detail,
            actor=who.name,
        )

        def write() -> int:
            with self.backend.store() as store:
                return store.log_rows([record])[0]

        try:
            return await run_in_threadpool(write)
        except WritebackError as exc:
            log.warning(
                "%s by %s was done but not recorded in the provisioning log: %s",
                action,
                who.name,
                exc,
                extra={"event": "operator_action", "action": action, "actor": who.name},
            )
            return None

    def _done(self, request: Request, message: str, who: Principal, row: int | None) -> Response:
        """An action's answer: JSON for the API; for a browser a redirect to the status page, which shows
        ``message`` once in its live region (``role="status"``), to the same person only."""
        if request.url.path.startswith("/api/"):
            body: dict[str, Any] = {"ok": True, "message": message, "by": who.name, "logId": row}
            return JSONResponse(body, status_code=202)
        key = uuid.uuid4().hex
        self._flash[key] = (who.name, message, row, time.time())
        while len(self._flash) > 200:  # a bounded memory: the oldest results go first
            self._flash.pop(next(iter(self._flash)))
        return RedirectResponse(f"/?done={key}", status_code=303)

    def _flash_for(self, request: Request, who: Principal) -> dict[str, Any] | None:
        key = request.query_params.get("done", "")
        found = self._flash.get(key)
        if found is None or found[0] != who.name:
            return None
        by, message, row, at = found
        return {"by": by, "message": message, "row": row, "at": at}

    # -- configuration (read-only) and its testers ----------------------------------------------------------
    async def api_config(self, request: Request, who: Principal) -> Response:
        return JSONResponse(configpage.api_config(self.backend.settings))

    async def config_page(self, request: Request, who: Principal) -> Response:
        ctx = {"sections": configpage.sections(self.backend.settings), "rule": None, "expression": None}
        return self.render(request, who, "config.html", ctx)

    def _replica(self) -> Any:
        with self.backend.store() as store:
            return store.snapshot()

    async def test_rule(self, request: Request, who: Principal) -> Response:
        """The rule tester: the result replaces the form's output (htmx); without JavaScript, the whole page."""
        data = await _payload(request, ("rule", "user"))
        rule, user = _text_long(data, "rule", 3072), _text(data, "user")
        if not rule:
            result: dict[str, Any] = {
                "ok": False,
                "error": 'Give a rule, such as user.department -eq "Sales".',
            }
        else:
            result = configpage.test_rule(rule, user, await run_in_threadpool(self._replica))
        return self._tester(request, who, "rule", {"rule": rule, "user": user, **result})

    async def test_expression(self, request: Request, who: Principal) -> Response:
        data = await _payload(request, ("expression", "object"))
        text, wanted = _text_long(data, "expression", 3072), _text(data, "object")
        if not text or not wanted:
            result: dict[str, Any] = {"ok": False, "error": "Give an expression and a cloud group or user."}
        else:
            result = configpage.test_expression(text, wanted, await run_in_threadpool(self._replica))
        return self._tester(request, who, "expression", {"expression": text, "object": wanted, **result})

    def _tester(self, request: Request, who: Principal, kind: str, result: dict[str, Any]) -> Response:
        if request.url.path.startswith("/api/") or _wants_json(request):
            return JSONResponse(result)
        if request.headers.get("hx-request") == "true":
            return self.render(request, who, f"config_{kind}.html", {kind: result})
        ctx: dict[str, Any] = {"sections": configpage.sections(self.backend.settings)}
        ctx.update({"rule": None, "expression": None, kind: result})
        return self.render(request, who, "config.html", ctx)

    # -- plan and provision on demand ------------------------------------------------------------------------
    def plan(self) -> dict[str, Any]:
        def job(engine: Engine) -> dict[str, Any]:
            # A dry-run deep pass: what a deep reconcile would do now; it leaves the state as it was.
            options = PassOptions("full", deep=True, dry_run=True)
            return self.backend.service.passes.run(options).plan.to_dict()

        return dict(self.backend.call(job))

    async def _plan_or_error(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return await run_in_threadpool(self.plan), None
        except WritebackError as exc:
            return None, str(exc)
        except FutureTimeout:
            return None, "the service did not answer within 5 minutes (a long cycle?); try again"

    async def api_plan(self, request: Request, who: Principal) -> Response:
        plan, error = await self._plan_or_error()
        return JSONResponse(plan) if plan is not None else error_json(503, error or "no plan")

    async def plan_page(self, request: Request, who: Principal) -> Response:
        plan, error = await self._plan_or_error()
        return self.render(request, who, "plan.html", {"plan": plan, "error": error})

    async def provision_page(self, request: Request, who: Principal) -> Response:
        q = request.query_params.get("q", "").strip().lower()
        matches: list[dict[str, Any]] = []
        if q:
            with self.backend.store() as store:
                matches = views.find_cloud_groups(store, q)
        return self.render(request, who, "provision.html", {"q": q, "matches": matches})

    async def provision_start(self, request: Request, who: Principal) -> Response:
        data = await _payload(request, ("group",))
        group = _text(data, "group")
        if not group:
            return self._error(request, 400, "give the group: its name or object id")
        try:
            await run_in_threadpool(self.backend.refuse_if_paused)
        except PausedError as exc:  # nothing is started or logged
            todo = "Resume writing with the Resume button on the status page, then provision again."
            return self._error(request, 409, str(exc), todo)
        try:
            run = self.backend.provision(group)
        except StateLockedError as exc:  # a standby: it names the active instance and writes nothing
            return self._error(request, 409, str(exc))
        # The operator's request, in the run's id so the log shows it with the rows the run writes.
        await self._journal(
            who,
            "provision",
            {"reason": f"provision on demand of {group!r}", "requested": group},
            run_id=run.id,
            group_name=group,
        )
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                run.to_dict(), status_code=202, headers={"Location": f"/api/provision/{run.id}"}
            )
        return RedirectResponse(f"/provision/{run.id}", status_code=303)

    async def api_provision_run(self, request: Request, who: Principal) -> Response:
        run = self.backend.runs.get(request.path_params["id"])
        return JSONResponse(run.to_dict()) if run else error_json(404, "no such run")

    async def provision_run(self, request: Request, who: Principal) -> Response:
        run = self.backend.runs.get(request.path_params["id"])
        if run is None:
            return self._error(request, 404, "no such provisioning run")
        partial = request.headers.get("hx-request") == "true"
        return self.render(
            request, who, "provision_steps.html" if partial else "provision_run.html", {"run": run.to_dict()}
        )


async def _payload(request: Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """An operator action's fields: a JSON object, or a form (its ``csrf`` field aside). Anything else, and any
    field but ``fields``, is a :class:`BadRequest`."""
    ctype = request.headers.get("content-type", "")
    if "form" in ctype:
        data: Any = {k: v for k, v in (await request.form()).items() if k != "csrf"}
    else:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the body is {len(raw)} bytes: an action takes a JSON object of a few fields")
        if not raw.strip():
            data = {}
        elif "json" not in ctype:
            raise BadRequest("send a JSON object with Content-Type: application/json")
        else:
            try:
                data = json.loads(raw, parse_constant=_no_constant)
            except (ValueError, RecursionError) as exc:
                raise BadRequest(f"the body is not valid JSON ({_short(exc)}): send a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body is a JSON {type(data).__name__}, not an object: send a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        takes = f"it takes {', '.join(fields)}" if fields else "it takes no fields"
        raise BadRequest(f"unknown field {', '.join(map(repr, unknown))} for this action: {takes}")
    return dict(data)


def _badge_detail(status: str, label: str, message: str) -> str | None:
    """The words beside the status page's badge: the service's message, unless it only repeats the status
    ("ok") or what the page shows below anyway (the held changes' advice, the quarantine banner's error)."""
    if status == "held":
        return "Changes over a safety threshold wait for an operator (see Changes held below)."
    if status == "paused":
        return "Reading the cloud, writing nothing to AD."
    if status == "quarantined" or message.lower() in (status, label.lower()):
        return None
    return message


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _short(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]


def _count(data: Mapping[str, Any], name: str) -> int:
    """A whole number from 0 to :data:`MAX_COUNT` (absent, null or an empty form field: 0)."""
    value = data.get(name)
    if value is None or value == "":
        return 0
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value.strip()):  # a form field
        value = int(value.strip())
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise BadRequest(f"{name} must be a whole number from 0 to {MAX_COUNT}, not {_shown(value)}")
    return value


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, not {_shown(value)}")
    _check_text(name, value)
    return value.strip()


def _text_long(data: Mapping[str, Any], name: str, limit: int) -> str:
    """A longer text field (a rule or an expression: up to ``limit`` characters, line breaks allowed)."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, not {_shown(value)}")
    if len(value) > limit:
        raise BadRequest(f"{name} is {len(value)} characters long: at most {limit}")
    if any((ord(c) < 32 and c not in "\r\n\t") or 127 <= ord(c) < 160 for c in value):
        raise BadRequest(f"{name} holds a control character: send it without")
    return value.strip()


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_TEXT:
        raise BadRequest(f"{name} is {len(value)} characters long: at most {MAX_TEXT}")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise BadRequest(f"{name} holds a control character: send it without")


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(name: str, text: str, low: int, high: int) -> int:
    """``text`` as a whole number from ``low`` to ``high`` (ASCII digits only: no sign, fraction or exponent)."""
    if not re.fullmatch(r"[0-9]{1,19}", text) or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, not {_shown(text)}")
    return int(text)


def _log_id(text: str) -> int:
    return _whole("a log entry's id", text, 1, MAX_ID)


LOG_PARAMS = (
    "since",
    "until",
    "status",
    "action",
    "group",
    "run",
    "limit",
    "offset",
    "before",
    "member",
    "format",
)


def _log_query(params: Mapping[str, str]) -> LogQuery:
    """The log's filters (:func:`writeback.app.views.log_query`), each checked: a bad one is a BadRequest."""
    for name in LOG_PARAMS:
        _check_text(name, params.get(name) or "")
    if params.get("format") not in (None, "", "json", "csv"):
        raise BadRequest(f"format {_shown(params.get('format'))} is not one of: json, csv")
    if params.get("limit"):
        _whole("limit", params["limit"], 1, 10_000)
    if params.get("offset"):
        _whole("offset", params["offset"], 0, MAX_ID)
    if params.get("before"):
        _whole("before", params["before"], 1, MAX_ID)
    for name in ("since", "until"):
        value = params.get(name) or ""
        if not value.isascii() or len(value) > 64:
            raise BadRequest(
                f"{name} {_shown(value)}: use 90m, 12h, 7d or an ISO time such as 2026-11-22T08:00"
            )
    try:
        return log_query(params)
    except OverflowError:
        raise BadRequest("since or until is out of range: use 90m, 12h, 7d or an ISO time") from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one that starts like a formula (``=``, ``+``, ``-``, ``@``, tab
    or CR) gets a leading ``'``, as OWASP advises against CSV injection."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
