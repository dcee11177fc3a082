"""The admin API under ``/_emulator``: faults, Graph's response time and throttling (``profile``), forced
resync, token lifetime, statistics, saving, raw edits.

Every admin call needs ``Authorization: Bearer <admin token>``: a random token the server makes at start
and keeps only in files of mode 0600 (``DATA_DIR/admin-token``, ``DATA_DIR/emulator.json`` and, for the
sandbox, ``sandbox.json``). Raw edits bypass Graph's policy and ``save`` writes files, so loopback alone is
not enough: any local user could otherwise reach them. Graph access tokens are no use here, and the admin
token is no use on the Graph routes. Files are written only inside the emulator's data directory.

Raw object edits go straight to the tenant, bypassing Graph's policy (read-only group kinds, synced
objects), so a test can stage states Graph would not let a client create, such as changes "synced from AD".
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from writeback.testbed.emulator.apierror import GraphApiError, bad_request, error_body
from writeback.testbed.emulator.faults import FaultSettings
from writeback.testbed.emulator.state import EmulatorState
from writeback.testbed.emulator.tenant import KIND_BY_COLLECTION


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise bad_request("admin request body must be JSON") from exc
    if not isinstance(body, dict):
        raise bad_request("admin request body must be a JSON object")
    return body


ADMIN_TOKEN_FILE = "admin-token"


def _unauthorized(message: str) -> Response:
    return JSONResponse(
        error_body("InvalidAuthenticationToken", message),
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="writeback-emulator-admin"'},
    )


def _check_admin_token(request: Request) -> Response | None:
    """None when the request carries the admin token, else the 401 to send (the token is never echoed)."""
    expected: str = request.app.state.admin_token
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return _unauthorized(
            "the emulator's admin API needs 'Authorization: Bearer <admin token>'; the token is "
            f"admin_token in DATA_DIR/emulator.json (or DATA_DIR/{ADMIN_TOKEN_FILE}, or the sandbox's "
            "sandbox.json)"
        )
    # Constant-time comparison: the token is a secret, and a timing oracle would leak it byte by byte.
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        return _unauthorized("the admin token is not valid for this emulator (it changes at every start)")
    return None


def _wrap(fn: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        refused = _check_admin_token(request)
        if refused is not None:
            return refused
        try:
            result = await fn(request)
        except GraphApiError as exc:
            return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)
        return JSONResponse(result)

    return endpoint


async def health(request: Request) -> dict[str, Any]:
    state = _state(request)
    return {"status": "ok", "tenant_id": state.tenant.tenant_id}


async def faults(request: Request) -> dict[str, Any]:
    """GET the fault settings; POST changes them. Extra one-shot switches: ``force_410``, ``token_lifetime``
    (seconds for newly issued tokens, null = 3599), ``revoke_tokens``, ``reset`` (all faults off)."""
    state = _state(request)
    if request.method == "POST":
        body = await _json(request)
        if body.get("reset"):
            defaults = FaultSettings()
            state.faults.update(defaults.as_dict())
        state.faults.update(body)
        if body.get("force_410"):
            state.delta.force_resync()
        if "token_lifetime" in body:
            lifetime = body["token_lifetime"]
            if lifetime is not None and (not isinstance(lifetime, int) or lifetime < 1):
                raise bad_request("token_lifetime must be a positive number of seconds or null")
            state.tokens.lifetime = 3599 if lifetime is None else lifetime
        if body.get("revoke_tokens"):
            state.tokens.revoke_all()
    return {
        **state.faults.as_dict(),
        "token_lifetime": state.tokens.lifetime,
        "generation": state.delta.generation,
    }


async def profile(request: Request) -> dict[str, Any]:
    """GET the Graph profile (response time, throttling; see :mod:`.profile`); POST changes it:
    ``{"request_ms": 150, "per_object_ms": 0.05, "throttle": "tenant"}``; ``slow_members`` slows one group's
    member pages: ``{"<group id>": {"page_ms": 2000, "page_size": 1}}``. ``reset_budget`` empties every
    app's spent resource units. The answer also gives the budget in force (null when throttling is off)."""
    state = _state(request)
    if request.method == "POST":
        body = await _json(request)
        unknown = sorted(
            set(body) - {"request_ms", "per_object_ms", "throttle", "reset_budget", "slow_members"}
        )
        if unknown:
            raise bad_request(
                f"unknown profile setting(s) {unknown}: use request_ms, per_object_ms, throttle, slow_members"
            )
        state.profile.update(body)
        if body.get("reset_budget"):
            state.throttle.reset()
    with state.tenant.lock:
        users = len(state.tenant.live["user"])
    return {**state.profile.as_dict(), "budget_per_10s": state.profile.budget(users)}


async def resync(request: Request) -> dict[str, Any]:
    """Every outstanding delta token answers 410 Gone from now on."""
    state = _state(request)
    state.delta.force_resync()
    return {"generation": state.delta.generation}


async def delta_settings(request: Request) -> dict[str, Any]:
    state = _state(request)
    settings = state.delta.settings
    if request.method == "POST":
        body = await _json(request)
        for key in ("page_size", "member_slice", "page_members"):
            if key in body:
                value = body[key]
                if not isinstance(value, int) or value < 1:
                    raise bad_request(f"{key} must be a positive integer")
                setattr(settings, key, value)
        for key in ("token_ttl", "round_ttl"):
            if key in body:
                setattr(settings, key, float(body[key]))
    return {
        "page_size": settings.page_size,
        "member_slice": settings.member_slice,
        "page_members": settings.page_members,
        "token_ttl": settings.token_ttl,
        "round_ttl": settings.round_ttl,
    }


async def stats(request: Request) -> dict[str, Any]:
    state = _state(request)
    if request.method == "POST":
        body = await _json(request)
        if body.get("reset"):
            state.stats.reset()
    return {**state.stats.as_dict(), "tenant": state.tenant.counts(), "sequence": state.tenant.sequence}


def confined_path(data_dir: Path, requested: Path) -> Path:
    """``requested`` (relative paths are taken from ``data_dir``) if it lies inside ``data_dir``.

    The emulator writes tenant files only inside its data directory, so a caller of the admin API cannot
    make it overwrite any other file the emulator's user may write. Symbolic links are resolved first.
    """
    root = data_dir.resolve()
    target = (root / requested).resolve()
    if not target.is_relative_to(root) or target == root:
        raise bad_request(
            f"the emulator writes tenant files only inside its data directory {root}; {requested} is "
            "outside it: give a file name (relative to the data directory) or a path inside it"
        )
    return target


async def save(request: Request) -> dict[str, Any]:
    """Write the tenant (with soft-deleted items) to ``path`` (inside the data directory) or to its save
    path (the tenant file when that is in the data directory, else a file of that name in it)."""
    state = _state(request)
    body = await _json(request)
    requested = Path(str(body["path"])) if body.get("path") else state.save_path
    if requested is None:
        raise bad_request("no path given and the tenant was not loaded from a file")
    target = confined_path(state.data_dir, requested)
    state.tenant.save(target)
    return {"path": str(target), "sequence": state.tenant.sequence}


async def tenant_dump(request: Request) -> dict[str, Any]:
    return _state(request).tenant.to_dict()


async def put_object(request: Request) -> dict[str, Any]:
    """Create or update an object verbatim; for groups a ``members`` list replaces the membership."""
    state = _state(request)
    collection = request.path_params["collection"]
    kind = KIND_BY_COLLECTION.get(collection)
    if kind is None:
        raise bad_request(f"unknown collection {collection!r}")
    body = await _json(request)
    tenant = state.tenant
    with tenant.lock:
        members = body.pop("members", None)
        object_id = str(body.get("id") or "")
        if object_id and tenant.is_live(object_id):
            obj = tenant.update_object(object_id, body)
        else:
            obj = tenant.add_object(kind, body)
        if kind == "group" and members is not None:
            wanted = [str(m) for m in members]
            current = set(tenant.members.get(obj["id"], {}))
            for member in current - set(wanted):
                tenant.remove_member(obj["id"], member)
            for member in wanted:
                if member not in current:
                    tenant.add_member(obj["id"], member)
        return {k: v for k, v in obj.items()}


async def delete_object(request: Request) -> dict[str, Any]:
    state = _state(request)
    object_id = request.path_params["object_id"]
    hard = request.query_params.get("hard", "").lower() in ("1", "true", "yes")
    with state.tenant.lock:
        if hard:
            state.tenant.hard_delete(object_id)
        else:
            state.tenant.soft_delete(object_id)
    return {"id": object_id, "hard": hard}


async def members(request: Request) -> dict[str, Any]:
    """``{"group": id, "add": [ids], "remove": [ids]}`` without Graph's policy checks."""
    state = _state(request)
    body = await _json(request)
    group_id = str(body.get("group") or "")
    with state.tenant.lock:
        for member in body.get("add") or []:
            state.tenant.add_member(group_id, str(member))
        for member in body.get("remove") or []:
            state.tenant.remove_member(group_id, str(member))
        return {"group": group_id, "members": state.tenant.visible_members(group_id)}


def admin_routes() -> list[Route]:
    return [
        Route("/_emulator/health", _wrap(health), methods=["GET"]),
        Route("/_emulator/faults", _wrap(faults), methods=["GET", "POST"]),
        Route("/_emulator/profile", _wrap(profile), methods=["GET", "POST"]),
        Route("/_emulator/resync", _wrap(resync), methods=["POST"]),
        Route("/_emulator/delta-settings", _wrap(delta_settings), methods=["GET", "POST"]),
        Route("/_emulator/stats", _wrap(stats), methods=["GET", "POST"]),
        Route("/_emulator/save", _wrap(save), methods=["POST"]),
        Route("/_emulator/tenant", _wrap(tenant_dump), methods=["GET"]),
        Route("/_emulator/objects/{collection}", _wrap(put_object), methods=["POST"]),
        Route("/_emulator/objects/{collection}/{object_id}", _wrap(delete_object), methods=["DELETE"]),
        Route("/_emulator/members", _wrap(members), methods=["POST"]),
    ]
