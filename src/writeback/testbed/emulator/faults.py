"""Faults on demand (throttling, 503, latency, dropped connections) and request statistics.

Implemented as plain ASGI middleware in front of the whole app so that a fault happens *before* any
handler runs: a throttled request changes no state and consumes no delta page, exactly what a client
retrying after ``Retry-After`` relies on. Faults hit the Graph namespaces only (``/v1.0``, ``/beta``);
the token endpoint and the admin API are never disturbed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from writeback.testbed.emulator.apierror import bad_request, error_body

log = logging.getLogger("writeback.emulator.faults")

GRAPH_PREFIXES = ("/v1.0/", "/beta/")


@dataclass
class FaultSettings:
    """Ratios are probabilities per Graph request; ``*_next`` counters fault the next N requests for sure."""

    throttle_ratio: float = 0.0
    retry_after: str | None = "1"  # Retry-After header value; fractional seconds allowed ("0.5"); None = omit
    error_503_ratio: float = 0.0
    latency_ms: float = 0.0
    drop_ratio: float = 0.0
    throttle_next: int = 0
    error_503_next: int = 0
    drop_next: int = 0
    path_contains: str | None = None  # only requests whose path contains this are faulted
    seed: int | None = None

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply the known keys of an admin request; wrong types are a 400 naming the key."""
        known = {f.name: f for f in fields(self)}
        for key, value in changes.items():
            if key not in known:
                continue
            if key in ("retry_after", "path_contains"):
                setattr(self, key, None if value is None else str(value))
                continue
            try:
                number: float | int | None
                if key == "seed":
                    number = None if value is None else int(value)
                elif key.endswith("_next"):
                    number = int(value)
                else:
                    number = float(value)
            except (TypeError, ValueError) as exc:
                raise bad_request(f"fault setting {key!r} must be a number") from exc
            if key.endswith("_ratio") and number is not None and not 0.0 <= number <= 1.0:
                raise bad_request(f"fault setting {key!r} must be between 0 and 1")
            setattr(self, key, number)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def classify(method: str, path: str) -> str:
    """The kind of request, for statistics (and for tests that count what a client did)."""
    if path.startswith("/_emulator"):
        return "admin"
    if "/oauth2/" in path:
        return "token"
    if "/.well-known/" in path or "/discovery/" in path:
        return "discovery"
    if not path.startswith(GRAPH_PREFIXES):
        return "other"
    if method not in ("GET", "HEAD"):
        return "write"
    if (
        path.rstrip(")").rstrip("(").endswith(("/delta", "microsoft.graph.delta", "graph.delta"))
    ):  # also delta()
        return "delta"
    if "/transitiveMembers" in path:
        return "transitiveMembers"
    if "/members" in path:
        return "members"
    if "/deletedItems" in path:
        return "deletedItems"
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) > 1 else "other"


class Stats:
    """Request counts by kind and by outcome; exposed at ``/_emulator/stats``."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()

    def reset(self) -> None:
        self.requests.clear()
        self.outcomes.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "outcomes": dict(self.outcomes),
            "total": sum(self.requests.values()),
        }


class FaultMiddleware:
    """Counts every request and injects the configured faults into Graph requests."""

    def __init__(self, app: ASGIApp, faults: FaultSettings, stats: Stats) -> None:
        self.app = app
        self.faults = faults
        self.stats = stats
        self._rng = random.Random()
        self._seed: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        self.stats.requests[classify(scope["method"], path)] += 1
        if path.startswith(GRAPH_PREFIXES) and await self._inject(scope, send):
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status >= 400:
                    self.stats.outcomes[str(status)] += 1
            await send(message)

        await self.app(scope, receive, counting_send)

    def _roll(self, ratio: float) -> bool:
        return ratio > 0 and self._rng.random() < ratio

    async def _inject(self, scope: Scope, send: Send) -> bool:
        """Apply faults; True when the request was answered (or dropped) here."""
        f = self.faults
        if f.seed != self._seed:
            self._seed = f.seed
            self._rng.seed(f.seed)
        if f.path_contains and f.path_contains not in scope["path"]:
            return False
        if f.latency_ms > 0:
            await asyncio.sleep(f.latency_ms / 1000.0)
        if f.drop_next > 0 or self._roll(f.drop_ratio):
            f.drop_next = max(f.drop_next - 1, 0)
            self.stats.outcomes["dropped"] += 1
            _drop_connection(send)
            return True
        if f.error_503_next > 0 or self._roll(f.error_503_ratio):
            f.error_503_next = max(f.error_503_next - 1, 0)
            self.stats.outcomes["unavailable"] += 1
            await _send_error(
                send,
                scope,
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
                f.retry_after,
            )
            return True
        if f.throttle_next > 0 or self._roll(f.throttle_ratio):
            f.throttle_next = max(f.throttle_next - 1, 0)
            self.stats.outcomes["throttled"] += 1
            await _send_error(send, scope, 429, "TooManyRequests", "Please retry again later.", f.retry_after)
            return True
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_error(
    send: Send, scope: Scope, status: int, code: str, message: str, retry_after: str | None
) -> None:
    body = json.dumps(error_body(code, message, _header(scope, b"client-request-id"))).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _drop_connection(send: Send) -> None:
    """Close the client's socket without any response, like a load balancer resetting the connection.

    ASGI has no "abort" message, so this reaches for uvicorn's transport behind its ``send``; uvicorn is
    told the client is gone so it does not try to answer with a 500 instead.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        log.warning("cannot drop the connection: server does not expose its transport")
        return
    cycle.disconnected = True  # type: ignore[union-attr]
    transport.abort()
