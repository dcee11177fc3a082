"""The Microsoft Graph routes: ``/{v1.0|beta}/...`` reads, delta, writes and deleted items.

One Starlette route catches the Graph namespace and dispatches on path segments here, because Graph's
paths mix ids, type casts (``/members/microsoft.graph.user``) and function names (``/delta``,
``/microsoft.graph.delta``) in ways a route table of templates expresses poorly. Handlers are ``async``
and never await while they touch the tenant, so they run one at a time on the event loop; the tenant's
lock only guards against test threads poking the state directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from writeback.testbed.emulator import batch, group_settings
from writeback.testbed.emulator.apierror import (
    GraphApiError,
    bad_request,
    error_body,
    not_found,
    unsupported_query,
)
from writeback.testbed.emulator.delta import DeltaQuery
from writeback.testbed.emulator.odata import (
    EXPANDABLE,
    EXPANDED_MAX,
    ODATA_TYPES,
    Expand,
    Filter,
    OrderBy,
    check_advanced,
    context_url,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_select,
    parse_top,
    render,
)
from writeback.testbed.emulator.profile import objects_in, request_cost
from writeback.testbed.emulator.state import EmulatorState, SortedIds
from writeback.testbed.emulator.tenant import COLLECTIONS, is_dynamic, is_guid, now_iso

JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
# Graph path segment -> object kind (``contacts`` is Graph's name for organizational contacts).
SEGMENT_KINDS = {
    "users": "user",
    "groups": "group",
    "devices": "device",
    "servicePrincipals": "servicePrincipal",
    "contacts": "orgContact",
}
SYNCED_OBJECT_MESSAGE = (
    "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects "
    "currently undergoing migration."
)
READ_ONLY_GROUP_MESSAGE = "Cannot Update a mail-enabled security groups and or distribution list."
DYNAMIC_MEMBERS_MESSAGE = "Insufficient privileges to complete the operation."
USER_READ_ONLY = frozenset(
    {
        "onPremisesSyncEnabled",
        "onPremisesSecurityIdentifier",
        "onPremisesDistinguishedName",
        "onPremisesSamAccountName",
        "onPremisesDomainName",
        "onPremisesUserPrincipalName",
        "onPremisesLastSyncDateTime",
        "createdDateTime",
        "deletedDateTime",
    }
)
GROUP_READ_ONLY = frozenset(
    {
        "onPremisesSyncEnabled",
        "onPremisesSecurityIdentifier",
        "onPremisesSamAccountName",
        "onPremisesDomainName",
        "onPremisesNetBiosName",
        "onPremisesLastSyncDateTime",
        "createdDateTime",
        "deletedDateTime",
        "mail",
        "securityIdentifier",
    }
)
WRITEBACK_TYPES = (
    "universalDistributionGroup",
    "universalSecurityGroup",
    "universalMailEnabledSecurityGroup",
)


class Ctx:
    """One Graph request: version, path segments, query options, base URL, and the emulator state."""

    def __init__(self, request: Request, state: EmulatorState, version: str, segments: list[str]) -> None:
        self.request = request
        self.state = state
        self.tenant = state.tenant
        self.version = version
        self.segments = segments
        self.base = f"{request.url.scheme}://{request.url.netloc}"
        self.params = {k.lower(): v for k, v in request.query_params.items()}
        self.request_id = request_ids(request)[0]
        self.roles: frozenset[str] = frozenset()  # the token's application permissions
        self.objects = 0  # objects in the answer, for the profile's per-object response time

    def param(self, name: str) -> str | None:
        return self.params.get(name.lower())

    def check_id(self, object_id: str, *, upn: bool = False) -> str:
        """Graph's 400 for an id that is not a GUID ("Invalid object identifier"), before any 404.

        Graph ids are GUIDs; a tenant file may use readable ids (tests do), so ids the tenant holds or held
        pass too: only an id no Graph tenant could have issued is malformed. ``/users/{id | userPrincipalName}`` also takes a UPN (https://learn.microsoft.com/graph/api/
        user-get).
        """
        tenant = self.tenant
        if is_guid(object_id) or object_id in tenant.kinds or object_id in tenant.retired_ids:
            return object_id
        if upn and "@" in object_id:
            return object_id
        raise bad_request(f"Invalid object identifier '{object_id}'.")

    @property
    def count_requested(self) -> bool:
        return (self.param("$count") or "").lower() == "true"

    @property
    def eventual(self) -> bool:
        return (self.request.headers.get("consistencylevel") or "").lower() == "eventual"

    async def json_body(self) -> dict[str, Any]:
        raw = await self.request.body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set."
            ) from exc
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        return body


def request_ids(request: Request) -> tuple[str, str]:
    """(request-id, client-request-id) of this request: the ones the app's middleware put in the scope
    (so the headers and an error's innerError agree), else fresh ones."""
    state = request.scope.get("state") or {}
    request_id = str(state.get("request_id") or uuid.uuid4())
    return request_id, request.headers.get("client-request-id") or request_id


def json_response(ctx: Ctx, body: Mapping[str, Any] | None, status: int = 200) -> Response:
    request_id, client_request_id = request_ids(ctx.request)
    headers = {"request-id": request_id, "client-request-id": client_request_id, "OData-Version": "4.0"}
    ctx.objects = objects_in(body)
    if body is None:
        return Response(status_code=status, headers=headers)
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(data, status_code=status, headers=headers, media_type=JSON_TYPE)


def error_response(exc: GraphApiError, request: Request) -> Response:
    request_id, client_request_id = request_ids(request)
    body = json.dumps(error_body(exc.code, exc.message, client_request_id, request_id)).encode("utf-8")
    headers = {"request-id": request_id, "client-request-id": client_request_id, **exc.headers}
    return Response(body, status_code=exc.status, headers=headers, media_type="application/json")


# ---------------------------------------------------------------------------- collection reads


def _reject_unsupported(ctx: Ctx, allowed: Sequence[str]) -> None:
    for name in ctx.params:
        if name.startswith("$") and name not in allowed:
            raise unsupported_query(f"The query parameter '{name}' is not supported on this resource.")


def _filter(ctx: Ctx, kind: str | None) -> Filter | None:
    text = ctx.param("$filter")
    if text is None:
        return None
    flt = parse_filter(text, kind or "directoryObject", ctx.version)
    check_advanced(flt, ctx.eventual, ctx.count_requested)
    return flt


def _page_links(ctx: Ctx, last_id: str) -> str:
    """The nextLink: the same URL with ``$skiptoken`` naming where the page ended (opaque, signed)."""
    token = ctx.state.signer.dumps({"t": "l", "a": last_id, "p": ctx.request.url.path})
    query = [(k, v) for k, v in ctx.request.query_params.multi_items() if k.lower() != "$skiptoken"]
    query.append(("$skiptoken", token))
    return f"{ctx.base}{ctx.request.url.path}?{urllib.parse.urlencode(query, safe='$,()/:')}"


def _cursor(ctx: Ctx) -> str | None:
    token = ctx.param("$skiptoken")
    if token is None:
        return None
    payload = ctx.state.signer.loads(token)
    if payload is None or payload.get("t") != "l" or payload.get("p") != ctx.request.url.path:
        raise bad_request("The $skiptoken is invalid or expired.", code="Request_BadRequest")
    return str(payload["a"])


def _paged(
    ctx: Ctx,
    sorted_ids: list[str],
    fetch: Callable[[str], tuple[dict[str, Any], str] | None],
    flt: Filter | None,
    select: tuple[str, ...] | None,
    entity_set: str,
    with_type: bool,
    order: OrderBy | None = None,
    top: int | None = None,
) -> Response:
    """One page of a collection: ids in sorted order (or ``$orderby``) after the cursor, filtered, rendered.
    ``top``: at most this many, whatever ``$top`` asks (Graph may answer fewer)."""
    asked = parse_top(ctx.param("$top"))
    top = asked if top is None else min(asked, top)
    candidates = sorted_ids
    if flt is not None and flt.ids is not None:
        candidates = sorted(flt.ids.intersection(sorted_ids))  # look pinned ids up instead of scanning
    cursor = _cursor(ctx)
    if order is not None:
        found_objects = [(i, f[0]) for i in candidates if (f := fetch(i)) is not None]
        found_objects.sort(key=lambda pair: order.key(pair[1]), reverse=order.descending)
        candidates = [i for i, _ in found_objects]
        start = candidates.index(cursor) + 1 if cursor in candidates else 0
    else:
        start = SortedIds.start_after(candidates, cursor)
    values: list[dict[str, Any]] = []
    last_id: str | None = None
    index = start
    for index in range(start, len(candidates)):
        found = fetch(candidates[index])
        if found is None:
            continue
        obj, kind = found
        if flt is not None and not flt.predicate(obj):
            continue
        item = render(obj, kind, ctx.version, select)
        if with_type:
            item = {"@odata.type": ODATA_TYPES[kind], **item}
        values.append(item)
        if len(values) == top:
            last_id = candidates[index]
            break
    body: dict[str, Any] = {"@odata.context": context_url(ctx.base, ctx.version, entity_set, select)}
    if ctx.count_requested:
        if not ctx.eventual:
            raise bad_request(
                "$count is not currently supported without the ConsistencyLevel: eventual header."
            )
        body["@odata.count"] = sum(
            1
            for i in candidates
            if (found := fetch(i)) is not None and (flt is None or flt.predicate(found[0]))
        )
    if last_id is not None and index < len(candidates) - 1:
        body["@odata.nextLink"] = _page_links(ctx, last_id)
    body["value"] = values
    return json_response(ctx, body)


def _fetch_live(ctx: Ctx, kind: str | None = None) -> Callable[[str], tuple[dict[str, Any], str] | None]:
    tenant = ctx.tenant

    def fetch(object_id: str) -> tuple[dict[str, Any], str] | None:
        found_kind = tenant.kinds.get(object_id)
        if found_kind is None or object_id in tenant.deleted or (kind is not None and found_kind != kind):
            return None
        return tenant.live[found_kind][object_id], found_kind

    return fetch


async def list_objects(ctx: Ctx, kind: str) -> Response:
    _reject_unsupported(ctx, ("$select", "$top", "$filter", "$skiptoken", "$count", "$orderby"))
    select = parse_select(ctx.param("$select"), kind, ctx.version)
    flt = _filter(ctx, kind)
    order = parse_orderby(
        ctx.param("$orderby"),
        kind,
        ctx.version,
        advanced=ctx.eventual and ctx.count_requested,
        filtered=flt is not None,
    )
    tenant = ctx.tenant
    with tenant.lock:
        ids = ctx.state.sorted_ids.get(
            f"kind:{kind}", tenant.version(f"kind:{kind}"), lambda: list(tenant.live[kind])
        )
        return _paged(
            ctx, ids, _fetch_live(ctx, kind), flt, select, COLLECTIONS[kind], with_type=False, order=order
        )


def _require_eventual_for_count(ctx: Ctx) -> None:
    # "Advanced query capabilities on Microsoft Entra ID objects": the /$count segment needs
    # ConsistencyLevel: eventual (https://learn.microsoft.com/graph/aad-advanced-queries).
    if not ctx.eventual:
        raise bad_request("$count is not currently supported without the ConsistencyLevel: eventual header.")


def count_response(ctx: Ctx, count: int) -> Response:
    """``/$count``: the number as text/plain, as Graph answers it."""
    request_id, client_request_id = request_ids(ctx.request)
    headers = {"request-id": request_id, "client-request-id": client_request_id, "OData-Version": "4.0"}
    return Response(str(count), headers=headers, media_type="text/plain")


async def count_objects(ctx: Ctx, kind: str) -> Response:
    _reject_unsupported(ctx, ("$filter",))
    _require_eventual_for_count(ctx)
    flt = _filter(ctx, kind)
    with ctx.tenant.lock:
        objects = ctx.tenant.live[kind].values()
        return count_response(ctx, sum(1 for o in objects if flt is None or flt.predicate(o)))


async def get_object(ctx: Ctx, kind: str, object_id: str) -> Response:
    _reject_unsupported(ctx, ("$select", "$expand") if kind in EXPANDABLE else ("$select",))
    ctx.check_id(object_id, upn=kind == "user")
    select = parse_select(ctx.param("$select"), kind, ctx.version)
    expand = parse_expand(ctx.param("$expand"), kind, ctx.version)
    with ctx.tenant.lock:
        obj = ctx.tenant.find_user(object_id) if kind == "user" else ctx.tenant.get_live(object_id, kind)
        # "@odata.context": ".../$metadata#users(displayName,mail)/$entity" when selected, as Graph sends it;
        # an expansion adds "members()" or "members(id,displayName)" to the list.
        shown = list(select or ())
        if expand is not None:
            shown.append(f"{expand.name}({','.join(expand.select or ())})")
        context = context_url(ctx.base, ctx.version, COLLECTIONS[kind], shown) + "/$entity"
        body: dict[str, Any] = {"@odata.context": context}
        body.update(render(obj, kind, ctx.version, select))
        if expand is not None:
            body[expand.name] = _expanded_members(ctx, object_id, expand)
        return json_response(ctx, body)


def _expanded_members(ctx: Ctx, group_id: str, expand: Expand) -> list[dict[str, Any]]:
    """The first EXPANDED_MAX members, typed, as ``$expand=members`` returns them (no nextLink: the rest
    is read from ``/groups/{id}/members``)."""
    fetch = _fetch_live(ctx)
    found = (f for i in _member_ids(ctx, group_id, False) if (f := fetch(i)) is not None)
    return [
        {"@odata.type": ODATA_TYPES[kind], **render(obj, kind, ctx.version, expand.select)}
        for obj, kind in itertools.islice(found, EXPANDED_MAX)
    ]


async def get_directory_object(ctx: Ctx, object_id: str) -> Response:
    _reject_unsupported(ctx, ("$select",))
    ctx.check_id(object_id)
    with ctx.tenant.lock:
        obj = ctx.tenant.get_live(object_id)
        kind = ctx.tenant.kinds[object_id]
        select = parse_select(ctx.param("$select"), kind, ctx.version)
        body = {
            "@odata.context": context_url(ctx.base, ctx.version, "directoryObjects/$entity"),
            "@odata.type": ODATA_TYPES[kind],
        }
        body.update(render(obj, kind, ctx.version, select))
        return json_response(ctx, body)


def _cast_kind(cast: str | None) -> str | None:
    if cast is None:
        return None
    prefix = "microsoft.graph."  # the dispatcher has already expanded the ``graph.`` alias
    kind = cast[len(prefix) :] if cast.startswith(prefix) else ""
    if kind not in COLLECTIONS:
        raise bad_request(f"Resource not found for the segment '{cast}'.")
    return kind


def _member_ids(ctx: Ctx, group_id: str, transitive: bool) -> list[str]:
    tenant = ctx.tenant
    tenant.get_live(group_id, "group")
    if transitive:
        return sorted(tenant.transitive_members(group_id))
    return ctx.state.sorted_ids.get(
        f"members:{group_id}",
        tenant.version(f"members:{group_id}"),
        lambda: tenant.visible_members(group_id),
    )


async def list_members(ctx: Ctx, group_id: str, transitive: bool, cast: str | None = None) -> Response:
    _reject_unsupported(ctx, ("$select", "$top", "$filter", "$skiptoken", "$count"))
    ctx.check_id(group_id)
    kind = _cast_kind(cast)
    flt = _filter(ctx, kind)
    tenant = ctx.tenant
    slow = None if transitive else ctx.state.profile.slow_members.get(group_id)
    if slow is not None:  # a test's slow group (profile.slow_members): waited before the page is read
        await asyncio.sleep(slow.page_ms / 1000.0)
    with tenant.lock:
        ids = _member_ids(ctx, group_id, transitive)
        select = parse_select(ctx.param("$select"), kind or "directoryObject", ctx.version)
        entity_set = f"{'users' if kind == 'user' else 'groups' if kind == 'group' else 'directoryObjects'}"
        return _paged(
            ctx,
            ids,
            _fetch_live(ctx, kind),
            flt,
            select,
            entity_set,
            with_type=True,
            top=None if slow is None else slow.page_size,
        )


async def count_members(ctx: Ctx, group_id: str, transitive: bool, cast: str | None = None) -> Response:
    _reject_unsupported(ctx, ("$filter",))
    ctx.check_id(group_id)
    _require_eventual_for_count(ctx)
    kind = _cast_kind(cast)
    flt = _filter(ctx, kind)
    with ctx.tenant.lock:
        fetch = _fetch_live(ctx, kind)
        found = (f for i in _member_ids(ctx, group_id, transitive) if (f := fetch(i)) is not None)
        return count_response(ctx, sum(1 for obj, _ in found if flt is None or flt.predicate(obj)))


async def list_member_refs(ctx: Ctx, group_id: str) -> Response:
    """``GET /groups/{id}/members/$ref``: the members as ``@odata.id`` references only
    (https://learn.microsoft.com/graph/api/group-list-members, "$ref")."""
    _reject_unsupported(ctx, ("$top", "$skiptoken"))
    ctx.check_id(group_id)
    top = parse_top(ctx.param("$top"))
    with ctx.tenant.lock:
        ids = [i for i in _member_ids(ctx, group_id, False) if ctx.tenant.is_live(i)]
        start = SortedIds.start_after(ids, _cursor(ctx))
        page = ids[start : start + top]
        body: dict[str, Any] = {"@odata.context": f"{ctx.base}/{ctx.version}/$metadata#directoryObjects"}
        if start + top < len(ids):
            body["@odata.nextLink"] = _page_links(ctx, page[-1])
        body["value"] = [{"@odata.id": f"{ctx.base}/{ctx.version}/directoryObjects/{i}"} for i in page]
        return json_response(ctx, body)


async def member_of(ctx: Ctx, user_id: str) -> Response:
    _reject_unsupported(ctx, ("$select", "$top", "$skiptoken"))
    tenant = ctx.tenant
    with tenant.lock:
        user = tenant.find_user(user_id)
        select = parse_select(ctx.param("$select"), "group", ctx.version)
        ids = sorted(tenant.member_of(user["id"]))
        return _paged(ctx, ids, _fetch_live(ctx, "group"), None, select, "directoryObjects", with_type=True)


async def get_manager(ctx: Ctx, user_id: str) -> Response:
    with ctx.tenant.lock:
        user = ctx.tenant.find_user(user_id)
        manager_id = user.get("manager")
        if not manager_id or not ctx.tenant.is_live(str(manager_id)):
            raise not_found("manager")
        manager = ctx.tenant.get_live(str(manager_id), "user")
        body = {"@odata.context": context_url(ctx.base, ctx.version, "directoryObjects/$entity")}
        body["@odata.type"] = ODATA_TYPES["user"]
        body.update(
            render(manager, "user", ctx.version, parse_select(ctx.param("$select"), "user", ctx.version))
        )
        return json_response(ctx, body)


# ---------------------------------------------------------------------------- delta


def _delta_query(ctx: Ctx, kind: str) -> DeltaQuery:
    for name in ("$expand", "$orderby", "$top", "$search", "$count", "$skip"):
        if ctx.param(name) is not None:
            raise unsupported_query(f"The query parameter '{name}' is not supported with change tracking.")
    navigation = ("members",) if kind == "group" else ()
    select = parse_select(ctx.param("$select"), kind, ctx.version, navigation=navigation)
    ids = None
    text = ctx.param("$filter")
    if text:
        flt = parse_filter(text, kind, ctx.version)
        if not flt.ids_only or flt.ids is None:
            raise unsupported_query("Change tracking supports only $filter=id eq '{id}' [or id eq '{id}'].")
        if len(flt.ids) > 50:
            raise unsupported_query("Change tracking accepts at most 50 ids in $filter.")
        ids = flt.ids
    return DeltaQuery(kind=kind, version=ctx.version, select=select, ids=ids)


def _max_page_size(prefer: Sequence[str]) -> int | None:
    """``odata.maxpagesize=N`` from the Prefer header (OData 4.01 Part 1, 8.2.8.3: a preference a service may
    honour or ignore; a malformed one is ignored), else None."""
    for item in prefer:
        name, _, value = item.partition("=")
        if name.strip() == "odata.maxpagesize" and value.strip().isdigit() and int(value) >= 1:
            return int(value)
    return None


async def delta(ctx: Ctx, kind: str) -> Response:
    """``GET /users/delta``, ``/groups/delta``.

    Pages: ``Prefer: odata.maxpagesize=N`` (the delta functions' request header, e.g. "message: delta",
    https://learn.microsoft.com/graph/api/message-delta) gives smaller pages; the answer then carries
    ``Preference-Applied: odata.maxpagesize=<size used>``. The default and the largest page for directory
    objects are not in the API reference; Microsoft's answer on Q&A ("contact: delta API what limit can we use
    for odata.maxpagesize", https://learn.microsoft.com/answers/a/2052165) gives 200 objects, a larger
    preference being capped: :class:`DeltaSettings.page_size <.delta.DeltaSettings>`.

    ``$deltatoken=latest`` ("sync from now") answers no objects and a deltaLink from now on; Graph documents it
    for directory resources such as users and groups ("Use delta query to track changes in Microsoft Graph
    data", https://learn.microsoft.com/graph/delta-query-overview, "$deltaToken=latest").
    """
    engine = ctx.state.delta
    skiptoken, deltatoken = ctx.param("$skiptoken"), ctx.param("$deltatoken")
    url_query = DeltaQuery(kind=kind, version=ctx.version)
    # "Prefer: return=minimal": later rounds return only the properties that changed
    # (https://learn.microsoft.com/graph/delta-query-overview#optional-query-parameters-and-headers).
    prefer = [p.strip().lower() for p in (ctx.request.headers.get("prefer") or "").split(",")]
    minimal = "return=minimal" in prefer
    page_size = _max_page_size(prefer)
    if skiptoken:
        page = engine.next_page(url_query, skiptoken, ctx.base, page_size=page_size)
    elif deltatoken == "latest":
        page = engine.latest(_delta_query(ctx, kind), ctx.base)
    elif deltatoken:
        page = engine.resume(url_query, deltatoken, ctx.base, minimal=minimal, page_size=page_size)
    else:  # a first round (an empty $deltatoken, as in a 410's Location, is one too)
        page = engine.start(_delta_query(ctx, kind), ctx.base, minimal=minimal, page_size=page_size)
    response = json_response(ctx, page)
    applied = []
    if minimal:
        applied.append("return=minimal")
    if page_size is not None and deltatoken != "latest":
        applied.append(f"odata.maxpagesize={engine.page_size(page_size)}")
    if applied:
        response.headers["Preference-Applied"] = ", ".join(applied)
    return response


# ---------------------------------------------------------------------------- writes


def _require(body: Mapping[str, Any], names: Sequence[str], resource: str) -> None:
    for name in names:
        if body.get(name) is None or body.get(name) == "":
            raise bad_request(f"Invalid value specified for property '{name}' of resource '{resource}'.")


def _reject_read_only(body: Mapping[str, Any], read_only: frozenset[str]) -> None:
    for name in body:
        if name in read_only:
            raise bad_request(f"Property '{name}' is read-only and cannot be set.")


# userType is "Member" or "Guest" (https://learn.microsoft.com/graph/api/resources/user: "Possible values are
# Member and Guest"); a user created through POST /users is a Member unless the body says otherwise.
USER_TYPES = ("Member", "Guest")


def _check_user_values(body: Mapping[str, Any]) -> None:
    """Graph's 400 for a wrongly typed accountEnabled or an unknown userType."""
    if "accountEnabled" in body and not isinstance(body["accountEnabled"], bool):
        raise bad_request("Invalid value specified for property 'accountEnabled' of resource 'User'.")
    if "userType" in body and body["userType"] not in USER_TYPES:
        raise bad_request("Invalid value specified for property 'userType' of resource 'User'.")


def _upn_taken(ctx: Ctx, upn: str, except_id: str | None = None) -> bool:
    wanted = upn.lower()
    return any(
        str(u.get("userPrincipalName") or "").lower() == wanted and u["id"] != except_id
        for u in ctx.tenant.live["user"].values()
    )


def _bind_ids(ctx: Ctx, values: Any) -> list[str]:
    """Object ids from ``members@odata.bind`` / ``$ref`` URLs (Graph's host or this emulator's)."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        raise bad_request("Invalid object identifier: expected a list of URLs.")
    ids = []
    own_hosts = {ctx.request.url.netloc, "graph.microsoft.com"}
    for value in values:
        parsed = urllib.parse.urlparse(str(value))
        segments = [s for s in parsed.path.split("/") if s]
        if parsed.netloc not in own_hosts and parsed.hostname not in ("127.0.0.1", "localhost"):
            raise bad_request(f"Invalid object identifier '{value}'.")
        if len(segments) < 2 or segments[-2] not in ("directoryObjects", *SEGMENT_KINDS):
            raise bad_request(f"Invalid object identifier '{value}'.")
        ids.append(ctx.check_id(segments[-1]))
    return ids


def _check_member_writes(group: Mapping[str, Any]) -> None:
    """Graph policy for member changes: not on synced, mail-enabled security/distribution or dynamic groups."""
    if group.get("onPremisesSyncEnabled"):
        raise bad_request(SYNCED_OBJECT_MESSAGE)
    if group.get("mailEnabled") and "Unified" not in (group.get("groupTypes") or ()):
        raise bad_request(READ_ONLY_GROUP_MESSAGE)
    if is_dynamic(group):
        raise bad_request(DYNAMIC_MEMBERS_MESSAGE)


def _check_writeback(ctx: Ctx, body: Mapping[str, Any], group: Mapping[str, Any]) -> None:
    if "writebackConfiguration" not in body:
        return
    if ctx.version == "v1.0":
        raise bad_request(
            "Property 'writebackConfiguration' does not exist as a declared property or extension property."
        )
    config = body["writebackConfiguration"]
    if config is None:
        return
    if not isinstance(config, dict):
        raise bad_request(
            "Invalid value specified for property 'writebackConfiguration' of resource 'Group'."
        )
    group_type = config.get("onPremisesGroupType")
    unified = "Unified" in (group.get("groupTypes") or ())
    if group_type is not None and (
        group_type not in WRITEBACK_TYPES or (not unified and group_type != "universalSecurityGroup")
    ):
        raise bad_request(f"Invalid value specified for property 'onPremisesGroupType': '{group_type}'.")


def _check_dynamic(ctx: Ctx, group: Mapping[str, Any]) -> None:
    rule = group.get("membershipRule")
    if is_dynamic(group):
        if not rule:
            raise bad_request("Invalid value specified for property 'membershipRule' of resource 'Group'.")
        state = group.get("membershipRuleProcessingState")
        if state not in (None, "On", "Paused"):
            raise bad_request(
                "Invalid value specified for property 'membershipRuleProcessingState' of resource 'Group'."
            )
        ctx.tenant.check_rule(str(rule))
    elif rule:
        raise bad_request(
            "A membershipRule can be set only on groups with 'DynamicMembership' in groupTypes."
        )


async def create_user(ctx: Ctx) -> Response:
    body = await ctx.json_body()
    _require(
        body,
        ("accountEnabled", "displayName", "mailNickname", "userPrincipalName", "passwordProfile"),
        "User",
    )
    _reject_read_only(body, USER_READ_ONLY)
    _check_user_values(body)
    with ctx.tenant.lock:
        if _upn_taken(ctx, str(body["userPrincipalName"])):
            raise bad_request(
                "Another object with the same value for property userPrincipalName already exists."
            )
        user = {
            k: v
            for k, v in body.items()
            if k not in ("passwordProfile", "id") and not k.endswith("@odata.bind")
        }
        user["createdDateTime"] = now_iso()
        user.setdefault("userType", "Member")
        created = ctx.tenant.add_object("user", user)
        out = {"@odata.context": context_url(ctx.base, ctx.version, "users/$entity")}
        out.update(render(created, "user", ctx.version, None))
        return json_response(ctx, out, 201)


async def create_group(ctx: Ctx) -> Response:
    body = await ctx.json_body()
    _require(body, ("displayName", "mailNickname"), "Group")
    for flag in ("mailEnabled", "securityEnabled"):
        if not isinstance(body.get(flag), bool):
            raise bad_request(f"Invalid value specified for property '{flag}' of resource 'Group'.")
    _reject_read_only(body, GROUP_READ_ONLY)
    if body["mailEnabled"] and "Unified" not in (body.get("groupTypes") or ()):
        raise bad_request("Cannot create a mail-enabled security groups and or distribution list.")
    _check_writeback(ctx, body, body)
    _check_dynamic(ctx, body)
    with ctx.tenant.lock:
        member_ids = _bind_ids(ctx, body.get("members@odata.bind", []))
        for member_id in member_ids:
            if not ctx.tenant.is_live(member_id):
                raise not_found(member_id)
        if member_ids and is_dynamic(body):
            raise bad_request(DYNAMIC_MEMBERS_MESSAGE)
        group = {k: v for k, v in body.items() if k != "id" and not k.endswith("@odata.bind")}
        group.setdefault("groupTypes", [])
        if "Unified" in group["groupTypes"]:
            group_settings.assign_unified_mail(ctx.tenant, group)
        if is_dynamic(group):
            group.setdefault("membershipRuleProcessingState", "On")
        group["createdDateTime"] = now_iso()
        created = ctx.tenant.add_object("group", group, members=member_ids)
        out = {"@odata.context": context_url(ctx.base, ctx.version, "groups/$entity")}
        out.update(render(created, "group", ctx.version, None))
        return json_response(ctx, out, 201)


async def update_object(ctx: Ctx, kind: str, object_id: str) -> Response:
    body = await ctx.json_body()
    ctx.check_id(object_id, upn=kind == "user")
    tenant = ctx.tenant
    with tenant.lock:
        obj = tenant.find_user(object_id) if kind == "user" else tenant.get_live(object_id, kind)
        object_id = obj["id"]
        if kind == "user":
            _reject_read_only(body, USER_READ_ONLY)
            _check_user_values(body)
            if obj.get("onPremisesSyncEnabled") and body:
                raise bad_request(SYNCED_OBJECT_MESSAGE)
            if "userPrincipalName" in body and _upn_taken(ctx, str(body["userPrincipalName"]), object_id):
                raise bad_request(
                    "Another object with the same value for property userPrincipalName already exists."
                )
            changes = {k: v for k, v in body.items() if k != "passwordProfile"}
        elif kind == "group":
            _reject_read_only(body, GROUP_READ_ONLY)
            if obj.get("onPremisesSyncEnabled"):
                raise bad_request(SYNCED_OBJECT_MESSAGE)
            if obj.get("mailEnabled") and "Unified" not in (obj.get("groupTypes") or ()):
                raise bad_request(READ_ONLY_GROUP_MESSAGE)
            merged = {**obj, **body}
            _check_writeback(ctx, body, merged)
            if any(k in body for k in ("groupTypes", "membershipRule", "membershipRuleProcessingState")):
                _check_dynamic(ctx, merged)
            member_ids = _bind_ids(ctx, body.get("members@odata.bind", []))
            if member_ids:
                _check_member_writes(merged)
                if len(member_ids) > 20:
                    raise bad_request("A maximum of 20 members can be added in a single request.")
                for member_id in member_ids:
                    if member_id in tenant.members.get(object_id, {}):
                        raise bad_request(
                            "One or more added object references already exist for the following modified "
                            "properties: 'members'."
                        )
                    if not tenant.is_live(member_id):
                        raise not_found(member_id)
            changes = {k: v for k, v in body.items() if not k.endswith("@odata.bind")}
            for member_id in member_ids:
                tenant.add_member(object_id, member_id)
        else:
            changes = dict(body)
        changes.pop("id", None)
        if changes:
            tenant.update_object(object_id, changes)
        return json_response(ctx, None, 204)


# -- onPremisesSyncBehavior (beta): Group and User Source of Authority -------------------------------------
# GET/PATCH /beta/{groups|users}/{id}/onPremisesSyncBehavior; body {"isCloudManaged": bool}; PATCH answers 204
# (https://learn.microsoft.com/graph/api/resources/onpremisessyncbehavior?view=graph-rest-beta: "for group,
# user, and orgContact resources"; https://learn.microsoft.com/graph/api/onpremisessyncbehavior-get?view=
# graph-rest-beta and -update). Each resource has its own permission, the only one listed, for reads too:
# Group-OnPremisesSyncBehavior.ReadWrite.All for groups, User-OnPremisesSyncBehavior.ReadWrite.All for users.
# Beta only: v1.0 has no such segment. A conversion stops sync from AD: onPremisesSyncEnabled goes from true
# to null; a rollback sets isCloudManaged false and leaves onPremisesSyncEnabled null until a sync client
# takes the object again; the SID stays ("Status of attributes after you convert SOA", entra-docs
# how-to-user-source-of-authority-configure and concept-group-source-of-authority-guidance). Stored in the
# tenant file as the object's ``onPremisesSyncBehavior`` (a relationship: never rendered as a property).
SYNC_BEHAVIOR = "onPremisesSyncBehavior"
SYNC_BEHAVIOR_ROLES = {
    "group": "Group-OnPremisesSyncBehavior.ReadWrite.All",
    "user": "User-OnPremisesSyncBehavior.ReadWrite.All",
}
SYNC_BEHAVIOR_TYPE = "#microsoft.graph.onPremisesSyncBehavior"
# The resource's properties (id: the parent object's id, read-only; isCloudManaged). The get page says "Optional
# query parameters: Not supported", yet Microsoft's own user SOA how-to reads it with
# ``?$select=isCloudManaged`` and ``?$select=id,isCloudManaged``: $select of these names is answered.
SYNC_BEHAVIOR_PROPERTIES = ("id", "isCloudManaged")


def _sync_behavior_ctx(ctx: Ctx, kind: str, object_id: str) -> dict[str, Any]:
    if ctx.version != "beta":
        raise bad_request(f"Resource not found for the segment '{SYNC_BEHAVIOR}'.")
    if SYNC_BEHAVIOR_ROLES[kind] not in ctx.roles:
        raise GraphApiError(403, "Authorization_RequestDenied", DYNAMIC_MEMBERS_MESSAGE)
    ctx.check_id(object_id, upn=kind == "user")
    if kind == "user":
        return ctx.tenant.find_user(object_id)
    return ctx.tenant.get_live(object_id, kind)


def sync_behavior_of(obj: Mapping[str, Any]) -> bool:
    behavior = obj.get(SYNC_BEHAVIOR)
    return bool(behavior.get("isCloudManaged")) if isinstance(behavior, Mapping) else False


def _sync_behavior_select(ctx: Ctx) -> tuple[str, ...]:
    _reject_unsupported(ctx, ("$select",))
    text = ctx.param("$select")
    if text is None:
        return SYNC_BEHAVIOR_PROPERTIES
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise bad_request("Invalid $select: the list of properties is empty.")
    for name in names:
        if name not in SYNC_BEHAVIOR_PROPERTIES:
            raise bad_request(
                f"Could not find a property named '{name}' on type 'microsoft.graph.onPremisesSyncBehavior'."
            )
    return names


async def get_sync_behavior(ctx: Ctx, kind: str, object_id: str) -> Response:
    with ctx.tenant.lock:
        obj = _sync_behavior_ctx(ctx, kind, object_id)
        select = _sync_behavior_select(ctx)
        shown = f"({','.join(select)})" if ctx.param("$select") is not None else ""
        collection = COLLECTIONS[kind]
        values = {"id": obj["id"], "isCloudManaged": sync_behavior_of(obj)}
        body: dict[str, Any] = {
            "@odata.context": (
                f"{ctx.base}/beta/$metadata#{collection}('{obj['id']}')/{SYNC_BEHAVIOR}{shown}/$entity"
            ),
        }
        body.update({name: values[name] for name in select})
        return json_response(ctx, body)


async def update_sync_behavior(ctx: Ctx, kind: str, object_id: str) -> Response:
    body = await ctx.json_body()
    with ctx.tenant.lock:
        obj = _sync_behavior_ctx(ctx, kind, object_id)
        for key, given in body.items():
            if key == "isCloudManaged":
                continue
            # The update page's own example sends the type annotation along.
            if key == "@odata.type" and given == SYNC_BEHAVIOR_TYPE:
                continue
            if key == "id":
                raise bad_request("Property 'id' is read-only and cannot be set.")
            raise bad_request(
                f"Property '{key}' does not exist as a declared property or extension property."
            )
        value = body.get("isCloudManaged")
        if not isinstance(value, bool):
            raise bad_request(
                "Invalid value specified for property 'isCloudManaged' of resource 'onPremisesSyncBehavior'."
            )
        # The relationship itself is not a property of the object: changing it alone is no delta change (Graph
        # does not document one), so a reader must ask for it; a conversion changes onPremisesSyncEnabled,
        # which is. The SID (onPremisesSecurityIdentifier) and the other on-premises identifiers stay.
        obj[SYNC_BEHAVIOR] = {"isCloudManaged": value}
        if value and obj.get("onPremisesSyncEnabled"):
            ctx.tenant.update_object(obj["id"], {"onPremisesSyncEnabled": None})
        return json_response(ctx, None, 204)


async def delete_object(ctx: Ctx, kind: str, object_id: str) -> Response:
    ctx.check_id(object_id, upn=kind == "user")
    with ctx.tenant.lock:
        obj = ctx.tenant.find_user(object_id) if kind == "user" else ctx.tenant.get_live(object_id, kind)
        if obj.get("onPremisesSyncEnabled"):
            raise bad_request(SYNCED_OBJECT_MESSAGE)
        ctx.tenant.soft_delete(obj["id"])
        return json_response(ctx, None, 204)


async def add_member_ref(ctx: Ctx, group_id: str) -> Response:
    body = await ctx.json_body()
    if "@odata.id" not in body:
        raise bad_request("The request body must contain '@odata.id'.")
    ctx.check_id(group_id)
    (member_id,) = _bind_ids(ctx, [body["@odata.id"]])
    with ctx.tenant.lock:
        group = ctx.tenant.get_live(group_id, "group")
        _check_member_writes(group)
        ctx.tenant.add_member(group_id, member_id)
        return json_response(ctx, None, 204)


async def remove_member_ref(ctx: Ctx, group_id: str, member_id: str) -> Response:
    ctx.check_id(group_id)
    ctx.check_id(member_id)
    with ctx.tenant.lock:
        group = ctx.tenant.get_live(group_id, "group")
        _check_member_writes(group)
        ctx.tenant.remove_member(group_id, member_id)
        return json_response(ctx, None, 204)


# ---------------------------------------------------------------------------- deleted items


def _fetch_deleted(ctx: Ctx, kind: str | None) -> Callable[[str], tuple[dict[str, Any], str] | None]:
    tenant = ctx.tenant

    def fetch(object_id: str) -> tuple[dict[str, Any], str] | None:
        obj = tenant.deleted.get(object_id)
        found_kind = tenant.kinds.get(object_id)
        if obj is None or found_kind is None or (kind is not None and found_kind != kind):
            return None
        return obj, found_kind

    return fetch


async def list_deleted(ctx: Ctx, cast: str | None = None) -> Response:
    _reject_unsupported(ctx, ("$select", "$top", "$filter", "$skiptoken", "$count"))
    if cast is None:
        # "List deletedItems": "The OData cast type is a required part of the URI and calling
        # GET /directory/deleteditems without a type is not supported."
        # (https://learn.microsoft.com/graph/api/directory-deleteditems-list)
        raise bad_request(
            "The OData cast type is required: use /directory/deletedItems/microsoft.graph.user or "
            "/directory/deletedItems/microsoft.graph.group (or another directory object type)."
        )
    kind = _cast_kind(cast)
    flt = _filter(ctx, kind)
    with ctx.tenant.lock:
        select = parse_select(ctx.param("$select"), kind or "directoryObject", ctx.version)
        ids = sorted(ctx.tenant.deleted)
        entity_set = f"directory/deletedItems/{cast}" if cast else "directory/deletedItems"
        return _paged(ctx, ids, _fetch_deleted(ctx, kind), flt, select, entity_set, with_type=True)


async def count_deleted(ctx: Ctx, cast: str) -> Response:
    _reject_unsupported(ctx, ("$filter",))
    _require_eventual_for_count(ctx)
    kind = _cast_kind(cast)
    flt = _filter(ctx, kind)
    with ctx.tenant.lock:
        fetch = _fetch_deleted(ctx, kind)
        found = (f for i in ctx.tenant.deleted if (f := fetch(i)) is not None)
        return count_response(ctx, sum(1 for obj, _ in found if flt is None or flt.predicate(obj)))


async def get_deleted(ctx: Ctx, object_id: str) -> Response:
    ctx.check_id(object_id)
    with ctx.tenant.lock:
        obj = ctx.tenant.get_deleted(object_id)
        kind = ctx.tenant.kinds[object_id]
        body = {
            "@odata.context": context_url(ctx.base, ctx.version, "directory/deletedItems/$entity"),
            "@odata.type": ODATA_TYPES[kind],
        }
        body.update(render(obj, kind, ctx.version, parse_select(ctx.param("$select"), kind, ctx.version)))
        return json_response(ctx, body)


async def restore_deleted(ctx: Ctx, object_id: str) -> Response:
    ctx.check_id(object_id)
    with ctx.tenant.lock:
        obj = ctx.tenant.restore(object_id)
        kind = ctx.tenant.kinds[object_id]
        body = {
            "@odata.context": context_url(ctx.base, ctx.version, "directoryObjects/$entity"),
            "@odata.type": ODATA_TYPES[kind],
        }
        body.update(render(obj, kind, ctx.version, None))
        return json_response(ctx, body)


async def purge_deleted(ctx: Ctx, object_id: str) -> Response:
    ctx.check_id(object_id)
    with ctx.tenant.lock:
        ctx.tenant.get_deleted(object_id)
        ctx.tenant.hard_delete(object_id)
        return json_response(ctx, None, 204)


# ---------------------------------------------------------------------------- group settings


async def list_group_settings(ctx: Ctx) -> Response:
    with ctx.tenant.lock:
        values = [group_settings.render_setting(s) for s in group_settings.settings(ctx.tenant)]
    body = {"@odata.context": f"{ctx.base}/{ctx.version}/$metadata#groupSettings", "value": values}
    return json_response(ctx, body)


async def get_group_setting(ctx: Ctx, setting_id: str) -> Response:
    with ctx.tenant.lock:
        setting = group_settings.render_setting(group_settings.find(ctx.tenant, setting_id))
    body = {"@odata.context": f"{ctx.base}/{ctx.version}/$metadata#groupSettings/$entity", **setting}
    return json_response(ctx, body)


async def create_group_setting(ctx: Ctx) -> Response:
    body = await ctx.json_body()
    with ctx.tenant.lock:
        setting = group_settings.render_setting(group_settings.create(ctx.tenant, body))
    out = {"@odata.context": f"{ctx.base}/{ctx.version}/$metadata#groupSettings/$entity", **setting}
    return json_response(ctx, out, 201)


async def update_group_setting(ctx: Ctx, setting_id: str) -> Response:
    body = await ctx.json_body()
    with ctx.tenant.lock:
        group_settings.update(ctx.tenant, setting_id, body)
    return json_response(ctx, None, 204)


async def delete_group_setting(ctx: Ctx, setting_id: str) -> Response:
    with ctx.tenant.lock:
        group_settings.delete(ctx.tenant, setting_id)
    return json_response(ctx, None, 204)


# ---------------------------------------------------------------------------- dispatch

Handler = Callable[..., Awaitable[Response]]
ID = object()  # pattern placeholder: any segment, passed to the handler
CAST = object()  # pattern placeholder: a 'microsoft.graph.<kind>' type cast segment


def _routes() -> list[tuple[str, tuple[object, ...], Handler]]:
    routes: list[tuple[str, tuple[object, ...], Handler]] = []
    for segment, kind in SEGMENT_KINDS.items():

        def bind(fn: Handler, *args: Any) -> Handler:
            async def handler(ctx: Ctx, *ids: str) -> Response:
                return await fn(ctx, *args, *ids)

            return handler

        routes.append(("GET", (segment,), bind(list_objects, kind)))
        routes.append(("GET", (segment, "$count"), bind(count_objects, kind)))
        routes.append(("GET", (segment, ID), bind(get_object, kind)))
        if kind in ("user", "group"):
            for name in ("delta", "microsoft.graph.delta"):
                routes.insert(0, ("GET", (segment, name), bind(delta, kind)))
            routes.append(("PATCH", (segment, ID), bind(update_object, kind)))
            routes.append(("DELETE", (segment, ID), bind(delete_object, kind)))
    routes += [
        ("POST", ("users",), create_user),
        ("POST", ("groups",), create_group),
        ("GET", ("users", ID, "memberOf"), member_of),
        ("GET", ("users", ID, "manager"), get_manager),
        ("POST", ("groups", ID, "members", "$ref"), add_member_ref),
        ("GET", ("groups", ID, SYNC_BEHAVIOR), lambda ctx, gid: get_sync_behavior(ctx, "group", gid)),
        ("PATCH", ("groups", ID, SYNC_BEHAVIOR), lambda ctx, gid: update_sync_behavior(ctx, "group", gid)),
        ("GET", ("users", ID, SYNC_BEHAVIOR), lambda ctx, uid: get_sync_behavior(ctx, "user", uid)),
        ("PATCH", ("users", ID, SYNC_BEHAVIOR), lambda ctx, uid: update_sync_behavior(ctx, "user", uid)),
        ("DELETE", ("groups", ID, "members", ID, "$ref"), remove_member_ref),
        ("GET", ("groups", ID, "members"), lambda ctx, gid: list_members(ctx, gid, False)),
        ("GET", ("groups", ID, "members", "$ref"), list_member_refs),
        ("GET", ("groups", ID, "members", "$count"), lambda ctx, gid: count_members(ctx, gid, False)),
        (
            "GET",
            ("groups", ID, "members", CAST, "$count"),
            lambda ctx, gid, c: count_members(ctx, gid, False, c),
        ),
        (
            "GET",
            ("groups", ID, "transitiveMembers", "$count"),
            lambda ctx, gid: count_members(ctx, gid, True),
        ),
        (
            "GET",
            ("groups", ID, "transitiveMembers", CAST, "$count"),
            lambda ctx, gid, c: count_members(ctx, gid, True, c),
        ),
        ("GET", ("groups", ID, "members", CAST), lambda ctx, gid, c: list_members(ctx, gid, False, c)),
        ("GET", ("groups", ID, "transitiveMembers"), lambda ctx, gid: list_members(ctx, gid, True)),
        (
            "GET",
            ("groups", ID, "transitiveMembers", CAST),
            lambda ctx, gid, c: list_members(ctx, gid, True, c),
        ),
        ("GET", ("directoryObjects", ID), get_directory_object),
        ("GET", ("directory", "deletedItems"), list_deleted),
        ("GET", ("directory", "deletedItems", CAST), list_deleted),
        ("GET", ("directory", "deletedItems", CAST, "$count"), count_deleted),
        ("GET", ("directory", "deletedItems", ID), get_deleted),
        ("POST", ("directory", "deletedItems", ID, "restore"), restore_deleted),
        ("DELETE", ("directory", "deletedItems", ID), purge_deleted),
        ("GET", ("groupSettings",), list_group_settings),
        ("POST", ("groupSettings",), create_group_setting),
        ("GET", ("groupSettings", ID), get_group_setting),
        ("PATCH", ("groupSettings", ID), update_group_setting),
        ("DELETE", ("groupSettings", ID), delete_group_setting),
    ]
    return routes


ROUTES = _routes()


def _match(pattern: tuple[object, ...], segments: list[str]) -> list[str] | None:
    if len(pattern) != len(segments):
        return None
    captured = []
    for part, segment in zip(pattern, segments, strict=True):
        if part is ID:
            if segment.startswith("microsoft.graph.") or segment.startswith("$"):
                return None
            captured.append(segment)
        elif part is CAST:
            if not segment.startswith("microsoft.graph."):
                return None
            captured.append(segment)
        elif part != segment:
            return None
    return captured


async def dispatch(ctx: Ctx) -> Response:
    method = "GET" if ctx.request.method == "HEAD" else ctx.request.method
    path_known = False
    for route_method, pattern, handler in ROUTES:
        captured = _match(pattern, ctx.segments)
        if captured is None:
            continue
        path_known = True
        if route_method == method:
            return await handler(ctx, *captured)
    if path_known:
        raise GraphApiError(
            405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed on this resource."
        )
    last = ctx.segments[-1] if ctx.segments else ""
    raise bad_request(f"Resource not found for the segment '{last}'.")


def normalize_segment(segment: str) -> str:
    """OData spellings Graph accepts for the same segment: the ``graph.`` namespace alias
    (``/members/graph.user``) and a function called with parentheses (``/groups/delta()``, the form the
    SDKs send: ``microsoft.graph.delta()``)."""
    if segment.startswith("graph."):
        segment = "microsoft." + segment
    if segment in ("delta()", "microsoft.graph.delta()"):
        segment = segment[:-2]
    return segment


async def graph_endpoint(request: Request) -> Response:
    """The one Starlette endpoint behind ``/v1.0/{path}`` and ``/beta/{path}``."""
    state: EmulatorState = request.app.state.emulator
    path: str = request.scope["path"]  # already percent-decoded by the server
    version = path.split("/", 2)[1]
    segments = [normalize_segment(s) for s in path.split("/")[2:] if s]
    profile = state.profile
    if profile.request_ms > 0 and not request.scope.get(batch.BATCH_ITEM):  # a batch pays it once
        await asyncio.sleep(profile.request_ms / 1000.0)
    try:
        claims = state.tokens.verify(request.headers.get("authorization"))
        if segments == ["$batch"] and request.method == "POST":  # JSON batching: each item dispatched here
            return await batch.batch(request, version, graph_endpoint)
        ctx = Ctx(request, state, version, segments)
        ctx.roles = frozenset(str(r) for r in claims.get("roles") or ())
        budget = profile.budget(len(state.tenant.live["user"]))
        spent: dict[str, str] = {}
        if budget is not None:
            cost = request_cost(request.method, segments, ctx.params)
            admitted = state.throttle.admit(
                str(claims.get("appid") or ""), state.tenant.tenant_id, request.method, cost, budget
            )
            if isinstance(admitted, GraphApiError):
                state.stats.outcomes["throttled_budget"] += 1
                raise admitted
            spent = admitted
        response = await dispatch(ctx)
        response.headers.update(spent)
        if profile.per_object_ms > 0 and ctx.objects:
            await asyncio.sleep(profile.per_object_ms * ctx.objects / 1000.0)
        return response
    except GraphApiError as exc:
        if exc.status == 401:
            state.stats.outcomes["unauthorized"] += 1
        return error_response(exc, request)
