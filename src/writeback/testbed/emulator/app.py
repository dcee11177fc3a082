"""Wiring: the ASGI application of one emulator (identity endpoints, Graph, admin API, faults)."""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from writeback.testbed.emulator.admin import admin_routes
from writeback.testbed.emulator.apierror import error_body
from writeback.testbed.emulator.auth import AadError, authenticate_client, openid_configuration, parse_form
from writeback.testbed.emulator.faults import FaultMiddleware
from writeback.testbed.emulator.graph_api import graph_endpoint
from writeback.testbed.emulator.state import EmulatorState

GRAPH_METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _unknown_tenant(tenant: str) -> JSONResponse:
    error = AadError(
        400,
        "invalid_request",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
        "into the correct cloud.",
    )
    return JSONResponse(error.body(), status_code=400)


async def openid_config(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    tenant = request.path_params["tenant"]
    if tenant != state.tenant.tenant_id:
        return _unknown_tenant(tenant)
    return JSONResponse(openid_configuration(_base(request), state.tenant.tenant_id))


async def jwks(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    return JSONResponse(state.tokens.jwks())


async def token(request: Request) -> Response:
    """``POST /{tenant}/oauth2/v2.0/token`` for the client-credentials grant (secret or assertion)."""
    state: EmulatorState = request.app.state.emulator
    tenant = request.path_params["tenant"]
    if tenant != state.tenant.tenant_id:
        return _unknown_tenant(tenant)
    form = parse_form(await request.body())
    token_url = f"{_base(request)}/{tenant}/oauth2/v2.0/token"
    audiences = [
        token_url,
        f"{_base(request)}/{tenant}/v2.0",
        f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        f"https://login.microsoftonline.com/{tenant}/v2.0",
    ]
    try:
        with state.tenant.lock:
            app = authenticate_client(
                form, request.headers.get("authorization"), state.tenant.apps, tenant, audiences
            )
    except AadError as exc:
        state.stats.outcomes["token_refused"] += 1
        return JSONResponse(exc.body(), status_code=exc.status)
    access_token, expires_in = state.tokens.issue(app)
    return JSONResponse(
        {
            # The v2.0 endpoint's fields ("Microsoft identity platform and the OAuth 2.0 client credentials
            # flow", successful response: https://learn.microsoft.com/entra/identity-platform/
            # v2-oauth2-client-creds-grant-flow). expires_on / not_before / resource are v1.0 fields.
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = "Request_ResourceNotFound" if status == 404 else "Request_BadRequest"
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal error"
    return JSONResponse(error_body(code, str(detail)), status_code=status)


class RequestIdMiddleware:
    """``request-id`` and ``client-request-id`` on every response, errors and injected faults included.

    Graph returns both on every response ("Microsoft Graph error responses and resource types":
    https://learn.microsoft.com/graph/errors); ``client-request-id`` echoes the client's header. The id is put
    in the scope's state so the Graph handlers write the same id into an error's ``innerError``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        client_request_id = request_id
        for name, value in scope.get("headers") or ():
            if name.lower() == b"client-request-id":
                client_request_id = value.decode("latin-1")

        ids = [
            (b"request-id", request_id.encode()),
            (b"client-request-id", client_request_id.encode("latin-1")),
        ]
        await self.app(scope, receive, _SendWithIds(send, ids).send)


class _SendWithIds:
    """``send`` that adds headers. A bound method whose ``__self__`` passes ``transport`` and ``disconnected``
    through to the server's own, so the fault middleware can still drop a connection beneath it."""

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._headers = headers

    @property
    def transport(self) -> object:
        return getattr(getattr(self._send, "__self__", None), "transport", None)

    @property
    def disconnected(self) -> bool:
        return bool(getattr(getattr(self._send, "__self__", None), "disconnected", False))

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        cycle = getattr(self._send, "__self__", None)
        if cycle is not None:
            cycle.disconnected = value

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            present = {bytes(name).lower() for name, _ in headers}
            headers += [(name, value) for name, value in self._headers if name not in present]
            message = {**message, "headers": headers}
        await self._send(message)


def build_app(state: EmulatorState, admin_token: str) -> ASGIApp:
    """The complete ASGI app: fault/statistics middleware around Starlette's router. ``admin_token`` is
    the bearer token the ``/_emulator`` routes require (see :mod:`.admin`)."""
    routes = [
        *admin_routes(),
        Route("/v1.0/{path:path}", graph_endpoint, methods=GRAPH_METHODS),
        Route("/beta/{path:path}", graph_endpoint, methods=GRAPH_METHODS),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_config, methods=["GET"]),
        Route("/{tenant}/.well-known/openid-configuration", openid_config, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", jwks, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.emulator = state
    app.state.admin_token = admin_token
    return RequestIdMiddleware(FaultMiddleware(app, state.faults, state.stats))
