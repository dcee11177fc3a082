"""The console's pages for groups, users and the provisioning log (issue 25), with their JSON twins.

- ``/groups``: the managed groups, searchable (``q``: name, id or DN), sortable (``sort`` name, state or synced;
  ``dir`` asc or desc) and paged (``page``); groups no longer updated under their own heading with the reason.
- ``/groups/{id}`` and ``/api/groups/{id}``: one group: its AD object (read from AD on the service's thread),
  its cloud group, members side by side with their state, the accounts writeback created for its members, its
  log history, and Provision / Allow where they apply (the existing operator actions, CSRF as everywhere).
- ``/users`` (a search by name, UPN or id), ``/users/{id}`` and ``/api/users/{id}``: which groups writeback
  added the user to or removed them from, and when, and the user's AD account where writeback manages one.
- ``/log``, ``/log/{id}``, ``/api/log``, ``/api/log/{id}``: the log with filters and keyset paging; ``/api/log``
  answers Graph's collection form, ``{"value": [...], "@odata.nextLink": url}`` (no next link on the last page;
  ``format=csv`` exports the same filters). A row's details open beside the list (htmx ``hx-get`` into
  ``#details``); ``/log/{id}`` is the same details as a page of its own, without JavaScript.
"""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from writeback.app import pages, views
from writeback.app.engine import Engine
from writeback.app.views import LOG_COLUMNS
from writeback.console.app import (
    BadRequest,
    Console,
    _check_text,
    _log_id,
    _log_query,
    _whole,
    csv_cell,
    error_json,
)
from writeback.console.auth import Principal
from writeback.core.journal import OPERATOR_ACTIONS
from writeback.core.logtext import dn_name
from writeback.core.ports import LogQuery
from writeback.errors import WritebackError

AD_READ_TIMEOUT = 30.0  # seconds the group page waits for the service thread to read the AD group
# The date-time presets of the log's filter: (label, since).
LOG_PRESETS = (("Last hour", "1h"), ("Last 24 hours", "24h"), ("Last 7 days", "7d"))


class Pages:
    """The handlers; ``console`` gives sign-in, rendering, errors and the backend."""

    def __init__(self, console: Console) -> None:
        self.c = console
        self.backend = console.backend
        env = console.templates
        env.filters["dn_name"] = dn_name
        env.globals["shown"] = shown_value
        env.globals["log_operator_actions"] = OPERATOR_ACTIONS

    def routes(self) -> list[Route]:
        page, api = self.c.page, self.c.api
        return [
            Route("/log", page(self.log_page)),
            Route("/log/{id}", page(self.log_row_page)),
            Route("/groups", page(self.groups_page)),
            Route("/groups/{id}", page(self.group_page)),
            Route("/users", page(self.users_page)),
            Route("/users/{id}", page(self.user_page)),
            Route("/api/log", api(self.api_log)),
            Route("/api/log/{id}", api(self.api_log_row)),
            Route("/api/groups", api(self.api_groups)),
            Route("/api/groups/{id}", api(self.api_group)),
            Route("/api/users/{id}", api(self.api_user)),
        ]

    @property
    def target_ou(self) -> str:
        return str(self.backend.settings.target.target_ou)

    # -- the log --------------------------------------------------------------------------------------------
    def _log(self, q: LogQuery, member: str) -> tuple[list[dict[str, Any]], int | None]:
        with self.backend.store() as store:
            if member:
                q = replace(q, member=views.member_terms(store, member))
            return views.log_page(store, q, self.target_ou)

    def _query(self, request: Request) -> tuple[LogQuery, str]:
        member = request.query_params.get("member", "")
        _check_text("member", member)
        return _log_query(request.query_params), member.strip()

    async def api_log(self, request: Request, who: Principal) -> Response:
        q, member = self._query(request)
        rows, before = await run_in_threadpool(self._log, q, member)
        if request.query_params.get("format") == "csv":
            return _csv(rows)
        nxt = views.next_link("/api/log", request.query_params, before)
        body: dict[str, Any] = {"value": rows}
        if nxt:
            body["@odata.nextLink"] = str(request.base_url).rstrip("/") + nxt
        return JSONResponse(body)

    async def log_page(self, request: Request, who: Principal) -> Response:
        f = request.query_params
        ctx: dict[str, Any] = {"f": f, "presets": LOG_PRESETS, "qs": request.url.query, "next": None}
        try:
            q, member = self._query(request)
        except BadRequest as exc:
            return self.c.render(request, who, "log.html", {**ctx, "rows": [], "error": str(exc)}, 400)
        rows, before = await run_in_threadpool(self._log, q, member)
        first = not (f.get("before") or f.get("offset"))
        export = "&".join(p for p in request.url.query.split("&") if not p.startswith(("before=", "offset=")))
        return self.c.render(
            request,
            who,
            "log.html",
            {
                **ctx,
                "rows": rows,
                "error": None,
                "next": views.next_link("/log", f, before),
                "first": None if first else _first_link(f),
                "export": export,
            },
        )

    def _row(self, entry_id: int) -> dict[str, Any] | None:
        with self.backend.store() as store:
            e = store.log_entry(entry_id)
            return None if e is None else views.entry_dict(e, self.target_ou)

    async def api_log_row(self, request: Request, who: Principal) -> Response:
        row = await run_in_threadpool(self._row, _log_id(request.path_params["id"]))
        return JSONResponse(row) if row else error_json(404, "no such log entry")

    async def log_row_page(self, request: Request, who: Principal) -> Response:
        row = await run_in_threadpool(self._row, _log_id(request.path_params["id"]))
        if row is None:
            return self.c._error(request, 404, "no such log entry")
        # From the list (htmx): the details alone, into the pane beside it; else the whole page.
        partial = request.headers.get("hx-request") == "true"
        return self.c.render(request, who, "log_details.html" if partial else "log_row.html", {"r": row})

    # -- groups ---------------------------------------------------------------------------------------------
    def _groups(self, params: Any) -> dict[str, Any]:
        q = params.get("q", "")
        _check_text("q", q)
        sort = params.get("sort") or "name"
        if sort not in pages.SORTS:
            raise BadRequest(f"sort {sort!r} is not one of: {', '.join(pages.SORTS)}")
        order = params.get("dir") or "asc"
        if order not in ("asc", "desc"):
            raise BadRequest(f"dir {order!r} is not one of: asc, desc")
        page = _whole("page", params["page"], 1, 1_000_000) if params.get("page") else 1
        size = _whole("size", params["size"], 1, 500) if params.get("size") else pages.PAGE_SIZE
        with self.backend.store() as store:
            found = pages.groups_list(
                store, self.backend.settings, q=q, sort=sort, desc=order == "desc", page=page, size=size
            )
        found.update(q=q, sort=sort, dir=order)
        return found

    async def api_groups(self, request: Request, who: Principal) -> Response:
        found = await run_in_threadpool(self._groups, request.query_params)
        if found["page"] < found["pages"]:
            found["@odata.nextLink"] = str(request.base_url).rstrip("/") + _groups_link(
                found, found["page"] + 1, api=True
            )
        return JSONResponse(found)

    async def groups_page(self, request: Request, who: Principal) -> Response:
        try:
            found = await run_in_threadpool(self._groups, request.query_params)
        except BadRequest as exc:
            return self.c._error(request, 400, str(exc))
        links = {
            "prev": _groups_link(found, found["page"] - 1) if found["page"] > 1 else None,
            "next": _groups_link(found, found["page"] + 1) if found["page"] < found["pages"] else None,
        }
        sorts = {
            s: _groups_link(
                {
                    **found,
                    "sort": s,
                    "dir": "desc" if found["sort"] == s and found["dir"] == "asc" else "asc",
                },
                1,
            )
            for s in pages.SORTS
        }
        return self.c.render(request, who, "groups.html", {"g": found, "links": links, "sorts": sorts})

    def _read_ad(self, dn: str) -> tuple[dict[str, Any] | None, str | None]:
        """The AD group at ``dn`` read on the service's thread, or why it was not read."""

        def job(engine: Engine) -> dict[str, Any] | None:
            return pages.read_ad_group(engine.directory, engine.schema().read, dn)

        try:
            found = self.backend.call(job, timeout=AD_READ_TIMEOUT)
        except WritebackError as exc:
            return None, f"AD was not read: {exc}"
        except FutureTimeout:
            return None, f"AD was not read: the service was busy for {AD_READ_TIMEOUT:.0f} s (a long cycle?)"
        if found is None:
            return None, f"AD has no group at {dn}"
        return found, None

    def _group(self, cid: str) -> dict[str, Any] | None:
        with self.backend.store() as store:
            dn = store.applied_dns().get(cid)
        ad, ad_error = self._read_ad(dn) if dn else (None, "writeback has not written this group to AD")
        with self.backend.store() as store:
            found = pages.group_detail(store, self.backend.settings, cid, ad)
        if found is None:
            return None
        found["adError"] = ad_error
        found["serviceHeld"] = [
            h for h in self.backend.health()["held"] if h["kind"] in ("deletes", "removals", "updates")
        ]
        return found

    async def api_group(self, request: Request, who: Principal) -> Response:
        found = await run_in_threadpool(self._group, _id(request))
        return (
            JSONResponse(found)
            if found
            else error_json(404, "no such group (neither in the replica nor managed)")
        )

    async def group_page(self, request: Request, who: Principal) -> Response:
        found = await run_in_threadpool(self._group, _id(request))
        if found is None:
            return self.c._error(
                request, 404, "no such group: it is neither in the cloud replica nor managed"
            )
        return self.c.render(request, who, "group.html", {"g": found})

    # -- users ----------------------------------------------------------------------------------------------
    def _user(self, uid: str) -> dict[str, Any] | None:
        with self.backend.store() as store:
            user = store.find_user(uid)
            key = user.id if user is not None else uid
            return pages.user_detail(store, self.backend.settings, key, views.member_terms(store, key))

    async def api_user(self, request: Request, who: Principal) -> Response:
        found = await run_in_threadpool(self._user, _id(request))
        return JSONResponse(found) if found else error_json(404, "no such user in the replica or the log")

    async def user_page(self, request: Request, who: Principal) -> Response:
        found = await run_in_threadpool(self._user, _id(request))
        if found is None:
            return self.c._error(
                request, 404, "no such user: not in the cloud replica, and the log never names it"
            )
        return self.c.render(request, who, "user.html", {"u": found})

    async def users_page(self, request: Request, who: Principal) -> Response:
        q = request.query_params.get("q", "").strip()
        _check_text("q", q)

        def find() -> list[dict[str, Any]]:
            with self.backend.store() as store:
                return pages.find_users(store, q)

        matches = await run_in_threadpool(find) if q else []
        return self.c.render(request, who, "users.html", {"q": q, "matches": matches})


def shown_value(value: Any) -> str:
    """A plan's value as the page shows it: a list joined with "; ", none as "(empty)"."""
    if value is None or value == "" or value == []:
        return "(empty)"
    return "; ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _id(request: Request) -> str:
    value = str(request.path_params["id"])
    _check_text("the id", value)
    return value


def _first_link(params: Any) -> str:
    """The first page of the same filters."""
    kept = [(k, v) for k, v in params.items() if k not in ("before", "offset") and v != ""]
    return "/log?" + urlencode(kept) if kept else "/log"


def _groups_link(found: dict[str, Any], page: int, *, api: bool = False) -> str:
    size = "" if found["size"] == pages.PAGE_SIZE else str(found["size"])
    params = {"q": found["q"], "sort": found["sort"], "dir": found["dir"], "size": size, "page": str(page)}
    return ("/api/groups?" if api else "/groups?") + urlencode({k: v for k, v in params.items() if v})


def _csv(rows: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*LOG_COLUMNS, "activityDateTime", "detail"])
    for r in rows:
        cells = [*(r[c] for c in LOG_COLUMNS), r["activityDateTime"], json.dumps(r["detail"])]
        writer.writerow([csv_cell(c) for c in cells])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="writeback-log.csv"'},
    )
