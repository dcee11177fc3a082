"""JSON batching: ``POST /{version}/$batch`` with up to 20 requests, answered one by one.

As https://learn.microsoft.com/graph/json-batching describes it: the body is ``{"requests": [{"id", "method",
"url", "headers"?, "body"?, "dependsOn"?}]}``; ``url`` is relative to the version (``/groups/{id}/members``);
ids are unique; at most 20 requests ("Batch size limitations"); the answer is ``{"responses": [{"id", "status",
"headers", "body"}]}`` in any order, each request evaluated on its own (a 404 or a 429 fails that item only;
"Throttling and batching": each request counts against the limits). A malformed batch is a 400 as a whole.

This emulator answers GET items only (the reads writeback batches); any other method in a batch is refused
per item with 400, stricter than Graph rather than more lenient. Each item goes through the same dispatcher
as a plain request, with the batch's own Authorization header, so every check a request gets, an item gets.
The fault middleware sees the batch as one request; throttling by item is left to the budget emulation.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from writeback.testbed.emulator.apierror import bad_request

BATCH_ITEM = "writeback.emulator.batch_item"  # an ASGI scope key: this request is an item of a $batch
MAX_BATCH = 20  # "JSON batch requests are currently limited to 20 individual requests"

Endpoint = Callable[[Request], Awaitable[Response]]


def _check(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise bad_request("Invalid batch payload: 'requests' must be a non-empty array.", code="BadRequest")
    if len(requests) > MAX_BATCH:
        raise bad_request(
            f"Invalid batch payload format: the batch has {len(requests)} requests, the limit is {MAX_BATCH}.",
            code="BadRequest",
        )
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, Mapping):
            raise bad_request("Invalid batch payload: each request must be an object.", code="BadRequest")
        item_id, method, url = item.get("id"), item.get("method"), item.get("url")
        if (
            not isinstance(item_id, str)
            or not item_id
            or not isinstance(method, str)
            or not isinstance(url, str)
        ):
            raise bad_request(
                "Invalid batch payload: each request needs id, method and url.", code="BadRequest"
            )
        if item_id in seen:
            raise bad_request(f"Invalid batch payload: the id '{item_id}' is used twice.", code="BadRequest")
        seen.add(item_id)
        if "://" in url or not url.startswith("/") or url.startswith(("/v1.0/", "/beta/")):
            raise bad_request(
                f"Invalid batch payload: url '{url}' must be relative to the version, like '/users'.",
                code="BadRequest",
            )
    return requests


async def batch(request: Request, version: str, endpoint: Endpoint) -> Response:
    """Answer a ``$batch`` POST through ``endpoint`` (the Graph dispatcher), one item after the other."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise bad_request("Unable to read JSON request payload.", code="BadRequest") from exc
    if not isinstance(body, Mapping):
        raise bad_request("The request body must be a JSON object.", code="BadRequest")
    return await _answer(request, version, endpoint, _check(body))


async def _answer(
    request: Request, version: str, endpoint: Endpoint, items: list[Mapping[str, Any]]
) -> Response:
    """Every item at once (``asyncio.gather``): "by default, individual requests can be executed in any order"
    (json-batching, "Sequencing requests with the dependsOn property"), and Graph runs them side by side, so a
    batch takes about as long as its slowest item, not the sum. The items skip the profile's fixed per-request
    delay (the batch paid it once: ``BATCH_ITEM`` in the scope); their per-object cost and throttling cost are
    their own."""
    answers = await asyncio.gather(*(_one(request, version, endpoint, item) for item in items))
    data = b'{"responses":[' + b",".join(answers) + b"]}"
    return Response(data, media_type="application/json")


def _encoded(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _item(item_id: Any, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """One response of the batch, its ``body`` already JSON (spliced in as it is: an item's answer is the
    dispatcher's JSON, and decoding it only to encode it again was most of the emulator's time on a batch of
    member pages, the concurrent first read's path; issue 27, "The concurrent first read")."""
    head = _encoded({"id": item_id, "status": status, "headers": dict(headers)})
    return head[:-1] + b',"body":' + body + b"}"


async def _one(request: Request, version: str, endpoint: Endpoint, item: Mapping[str, Any]) -> bytes:
    if str(item["method"]).upper() != "GET":
        error = {"error": {"code": "BadRequest", "message": "The emulator batches GET requests only."}}
        return _item(item["id"], 400, {"Content-Type": "application/json"}, _encoded(error))
    path, _, query = str(item["url"]).partition("?")
    scope = dict(request.scope)
    scope["method"] = "GET"
    scope["path"] = f"/{version}{urllib.parse.unquote(path)}"
    scope["raw_path"] = f"/{version}{path}".encode()
    scope["query_string"] = query.encode("latin-1")
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() in (b"authorization", b"host")]
    extra = item.get("headers")
    if isinstance(extra, Mapping):
        headers += [(str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in extra.items()]
    scope["headers"] = headers
    scope[BATCH_ITEM] = True
    answer = await endpoint(Request(scope))
    raw = bytes(answer.body)
    kept = {k: v for k, v in answer.headers.items() if k.lower() in ("retry-after", "content-type")}
    if not raw:
        body = b"null"
    elif answer.headers.get("content-type", "").startswith("application/json"):
        body = raw
    else:  # not the dispatcher's JSON: decoded and encoded as before (fails where it is not JSON at all)
        body = _encoded(json.loads(raw))
    return _item(item["id"], answer.status_code, kept, body)
