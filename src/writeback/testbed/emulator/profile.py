"""Graph as it answers: response time (a fixed delay per request plus a cost per object) and throttling.

The emulator answers in a few milliseconds; Microsoft Graph takes 100 ms to seconds for a directory read
and throttles every app by a resource-unit budget. A *profile* makes the emulator answer like that, so a
benchmark can measure what a client's reading strategy costs against the real service. It is set through
the admin API (``/_emulator/profile``) or ``scripts/bench --graph-latency-ms N``; the default is off.

Response time: every Graph request waits ``request_ms``, then ``per_object_ms`` for each object in the
answer (entries of ``value`` and the member references of ``members@delta``). The waits are ``asyncio``
sleeps, so requests in flight at once overlap as they do against Graph, while the tenant is touched only in
the handler, between the two waits (see :mod:`.graph_api`).

Throttling: Microsoft Graph service-specific throttling limits, "Identity and access service limits"
(https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits): requests are
costed in resource units and an application+tenant pair may spend, per 10 seconds, 3,500 (S: under 50
users), 5,000 (M: 50 to 500 users) or 8,000 (L: above 500 users); writes also spend a write quota of 3,000
per 2 minutes 30 seconds. Base costs: ``GET users`` 2, ``GET groups/{id}/members`` 3,
``GET groups/{id}/transitiveMembers`` 5, ``me/memberOf`` (and so ``users/{id}/memberOf``) 2, any other
identity path 1; ``$select`` lowers the cost by 1, ``$expand`` raises it by 1, ``$top`` below 20 lowers it by
1, and a cost is never below 1. A request over budget is answered ``429 TooManyRequests`` with
``Retry-After`` (seconds until the window has room for it), ``x-ms-throttle-scope`` and
``x-ms-throttle-information: ResourceUnitLimitExceeded``; a request within budget carries
``x-ms-resource-unit`` (the same page's "Additional headers"). A throttled request spends nothing and changes
no state. The page describes a token bucket per 10 seconds; the emulator keeps the exact sliding window of
the last 10 seconds, which never lets more through in any 10 seconds than the budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from writeback.testbed.emulator.apierror import GraphApiError, bad_request

WINDOW_S = 10.0
WRITE_WINDOW_S = 150.0
WRITE_QUOTA = 3_000
# Resource units per 10 s per application+tenant pair, by tenant size (users): S < 50 <= M <= 500 < L.
BUDGET_SMALL, BUDGET_MEDIUM, BUDGET_LARGE = 3_500, 5_000, 8_000
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# The "Base Resource Unit Cost" of the paths the emulator serves (any other identity path costs 1).
GROUP_LINK_COSTS = {"members": 3, "transitiveMembers": 5}
USER_LINK_COSTS = {"memberOf": 2, "transitiveMemberOf": 2, "ownedObjects": 2, "licenseDetails": 2}


def tenant_budget(users: int) -> int:
    """The resource units per 10 s an app may spend in a tenant of ``users`` users."""
    if users < 50:
        return BUDGET_SMALL
    if users <= 500:
        return BUDGET_MEDIUM
    return BUDGET_LARGE


def request_cost(method: str, segments: Sequence[str], params: Mapping[str, str]) -> int:
    """The resource units one request costs. ``segments``: the path after the version (``["users"]``,
    ``["groups", id, "members"]``); ``params``: its query options, names in lower case."""
    cost = 1
    if method == "GET":
        if list(segments) == ["users"]:
            cost = 2
        elif len(segments) >= 3 and segments[0] == "groups" and segments[2] in GROUP_LINK_COSTS:
            cost = GROUP_LINK_COSTS[segments[2]]
        elif len(segments) >= 3 and segments[0] == "users" and segments[2] in USER_LINK_COSTS:
            cost = USER_LINK_COSTS[segments[2]]
    if "$select" in params:
        cost -= 1
    if "$expand" in params:
        cost += 1
    top = params.get("$top")
    if top is not None and top.strip().isdigit() and int(top) < 20:
        cost -= 1
    return max(cost, 1)


@dataclass
class _Window:
    """Costs spent in the last ``seconds``: admit a cost if the sum stays within ``limit``."""

    seconds: float
    spent: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0

    def _expire(self, now: float) -> None:
        while self.spent and self.spent[0][0] <= now - self.seconds:
            self.total -= self.spent.popleft()[1]

    def wait_for(self, cost: int, limit: int, now: float) -> float:
        """0 when ``cost`` fits now, else the seconds until enough of the window has expired."""
        self._expire(now)
        if self.total + cost <= limit:
            return 0.0
        if cost > limit:
            return self.seconds
        excess = self.total + cost - limit
        for at, spent in self.spent:
            excess -= spent
            if excess <= 0:
                return max(at + self.seconds - now, 0.001)
        return self.seconds

    def spend(self, cost: int, now: float) -> None:
        self.spent.append((now, cost))
        self.total += cost


@dataclass
class GraphProfile:
    """Response time and throttling settings; ``throttle``: "off", "tenant" (the budget by the tenant's
    size) or a number of resource units per 10 s."""

    request_ms: float = 0.0
    per_object_ms: float = 0.0
    throttle: str = "off"
    # One group's member pages slowed (tests of the streamed first apply): group id -> its pages' extra wait
    # and size. Graph may answer fewer objects than $top asks (https://learn.microsoft.com/graph/paging).
    slow_members: dict[str, SlowMembers] = field(default_factory=dict)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply an admin request's keys; a wrong value is a 400 naming the key (nothing changed then)."""
        values: dict[str, Any] = {}
        if "slow_members" in changes:
            values["slow_members"] = _slow_members(changes["slow_members"])
        for key in ("request_ms", "per_object_ms"):
            if key in changes:
                try:
                    number = float(changes[key])
                except (TypeError, ValueError) as exc:
                    raise bad_request(f"profile setting {key!r} must be a number of milliseconds") from exc
                if not 0.0 <= number <= 600_000.0 or math.isnan(number):
                    raise bad_request(f"profile setting {key!r} must be between 0 and 600000 ms")
                values[key] = number
        if "throttle" in changes:
            values["throttle"] = _throttle_value(changes["throttle"])
        for key, value in values.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_ms": self.request_ms,
            "per_object_ms": self.per_object_ms,
            "throttle": self.throttle,
            "slow_members": {gid: s.as_dict() for gid, s in self.slow_members.items()},
        }

    def budget(self, users: int) -> int | None:
        """Resource units per 10 s, or None when throttling is off."""
        if self.throttle == "off":
            return None
        if self.throttle == "tenant":
            return tenant_budget(users)
        return int(self.throttle)


@dataclass(frozen=True)
class SlowMembers:
    """A group's member pages: each waits ``page_ms`` more and holds at most ``page_size`` members."""

    page_ms: float
    page_size: int

    def as_dict(self) -> dict[str, Any]:
        return {"page_ms": self.page_ms, "page_size": self.page_size}


def _slow_members(value: Any) -> dict[str, SlowMembers]:
    """``{"<group id>": {"page_ms": 2000, "page_size": 1}, ...}`` (an empty object: none slowed)."""
    if not isinstance(value, Mapping):
        raise bad_request("profile setting 'slow_members' must map group ids to {page_ms, page_size}")
    out: dict[str, SlowMembers] = {}
    for gid, slow in value.items():
        try:
            ms, size = float(slow["page_ms"]), int(slow["page_size"])
        except (TypeError, KeyError, ValueError) as exc:
            raise bad_request(
                f"slow_members[{gid!r}] must be {{page_ms: number, page_size: integer}}"
            ) from exc
        if not 0.0 <= ms <= 600_000.0 or size < 1:
            raise bad_request(f"slow_members[{gid!r}]: page_ms 0..600000 and page_size 1 or more")
        out[str(gid)] = SlowMembers(ms, size)
    return out


def _throttle_value(value: Any) -> str:
    if value is None or value is False or value == "off":
        return "off"
    if value == "tenant":
        return "tenant"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return str(value)
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return value
    raise bad_request(
        "profile setting 'throttle' must be \"off\", \"tenant\" (Graph's budget for the tenant's size) or a "
        "positive number of resource units per 10 seconds"
    )


class Throttle:
    """Graph's identity budgets per application (one tenant per emulator), spent as requests arrive."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._read: dict[str, _Window] = {}
        self._write: dict[str, _Window] = {}

    def reset(self) -> None:
        with self._lock:
            self._read.clear()
            self._write.clear()

    def admit(
        self, app_id: str, tenant_id: str, method: str, cost: int, budget: int
    ) -> dict[str, str] | GraphApiError:
        """The headers of an admitted request, or the 429 to answer with."""
        with self._lock:
            now = self._clock()
            read = self._read.setdefault(app_id, _Window(WINDOW_S))
            write = self._write.setdefault(app_id, _Window(WRITE_WINDOW_S))
            wait = read.wait_for(cost, budget, now)
            limit, info = "ReadWrite", "ResourceUnitLimitExceeded"
            is_write = method in WRITE_METHODS
            if wait == 0.0 and is_write:
                wait = write.wait_for(1, WRITE_QUOTA, now)
                limit, info = "Write", "WriteLimitExceeded"
            if wait > 0.0:
                return GraphApiError(
                    429,
                    "TooManyRequests",
                    "Too many requests. Please retry again later.",
                    headers={
                        "Retry-After": str(max(1, math.ceil(wait))),
                        "x-ms-throttle-scope": f"Tenant_Application/{limit}/{app_id}/{tenant_id}",
                        "x-ms-throttle-information": info,
                    },
                )
            read.spend(cost, now)
            if is_write:
                write.spend(1, now)
            return {"x-ms-resource-unit": str(cost)}


def objects_in(body: Mapping[str, Any] | None) -> int:
    """Objects in a Graph answer: the entries of ``value`` plus their ``members@delta`` references (one for
    a single entity)."""
    if body is None:
        return 0
    values = body.get("value")
    if not isinstance(values, list):
        return 1
    count = len(values)
    for item in values:
        if isinstance(item, dict):
            refs = item.get("members@delta")
            if isinstance(refs, list):
                count += len(refs)
    return count
