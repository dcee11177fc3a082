"""Graph's error body, and the exception that carries it from deep inside the emulator to the HTTP layer.

Graph answers every failure with ``{"error": {"code", "message", "innerError": {...}}}``; raising
:class:`GraphApiError` anywhere (tenant state, query parsing, handlers) and rendering it once keeps that
shape identical everywhere.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from writeback.errors import SourceError

NOT_FOUND_MESSAGE = (
    "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
)


class GraphApiError(SourceError):
    """A Graph error response: HTTP status, Graph error code and message, optional extra headers.

    It derives from :class:`~writeback.errors.SourceError` because, seen from writeback, the emulator *is*
    the cloud source; inside the emulator it is only ever turned into an HTTP response.
    """

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}: {message}")


def not_found(object_id: str) -> GraphApiError:
    """Graph's 404 for a missing directory object."""
    return GraphApiError(404, "Request_ResourceNotFound", NOT_FOUND_MESSAGE.format(id=object_id))


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphApiError:
    return GraphApiError(400, code, message)


def unsupported_query(message: str) -> GraphApiError:
    return GraphApiError(400, "Request_UnsupportedQuery", message)


def error_body(
    code: str, message: str, client_request_id: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """The JSON body Graph sends with an error, including the ``innerError`` correlation block
    ("Microsoft Graph error responses and resource types": https://learn.microsoft.com/graph/errors)."""
    request_id = request_id or str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }
