"""The emulator's Graph profile: request costs and budgets from the throttling-limits page, the window."""

from __future__ import annotations

import pytest

from writeback.testbed.emulator.apierror import GraphApiError
from writeback.testbed.emulator.profile import (
    GraphProfile,
    Throttle,
    objects_in,
    request_cost,
    tenant_budget,
)


@pytest.mark.parametrize(
    ("method", "path", "params", "cost"),
    [
        ("GET", "users", {}, 2),
        ("GET", "users", {"$select": "id"}, 1),
        ("GET", "users", {"$select": "id", "$top": "5"}, 1),  # never below 1
        ("GET", "users", {"$top": "999"}, 2),
        ("GET", "users", {"$top": "19"}, 1),
        ("GET", "users/delta", {"$select": "id"}, 1),
        ("GET", "groups", {}, 1),
        ("GET", "groups/g/members", {}, 3),
        ("GET", "groups/g/members", {"$select": "id", "$top": "999"}, 2),
        ("GET", "groups/g/members/microsoft.graph.user", {}, 3),
        ("GET", "groups/g/transitiveMembers", {}, 5),
        ("GET", "groups/g", {"$expand": "members"}, 2),
        ("GET", "users/u/memberOf", {}, 2),
        ("POST", "groups/g/members/$ref", {}, 1),
        ("DELETE", "users/u", {}, 1),
    ],
)
def test_request_costs_follow_the_throttling_page(
    method: str, path: str, params: dict[str, str], cost: int
) -> None:
    assert request_cost(method, path.split("/"), params) == cost


@pytest.mark.parametrize(
    ("users", "budget"), [(0, 3_500), (49, 3_500), (50, 5_000), (500, 5_000), (501, 8_000)]
)
def test_budget_by_tenant_size(users: int, budget: int) -> None:
    assert tenant_budget(users) == budget
    assert GraphProfile(throttle="tenant").budget(users) == budget


def test_profile_budget_off_or_explicit() -> None:
    assert GraphProfile().budget(10_000) is None
    profile = GraphProfile()
    profile.update({"throttle": "120", "request_ms": 150})
    assert profile.budget(1) == 120 and profile.request_ms == 150.0
    with pytest.raises(GraphApiError):
        profile.update({"request_ms": 10, "throttle": "lots"})
    assert profile.request_ms == 150.0  # a refused update changes nothing


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_window_admits_up_to_the_budget_then_says_how_long_to_wait() -> None:
    clock = Clock()
    throttle = Throttle(clock)
    assert throttle.admit("app", "t", "GET", 6, 10) == {"x-ms-resource-unit": "6"}
    clock.now += 4
    assert throttle.admit("app", "t", "GET", 4, 10) == {"x-ms-resource-unit": "4"}
    refused = throttle.admit("app", "t", "GET", 1, 10)
    assert isinstance(refused, GraphApiError) and refused.status == 429
    assert refused.headers["Retry-After"] == "6"  # the first 6 units leave the window at +10 s
    assert throttle.admit("other-app", "t", "GET", 10, 10) == {"x-ms-resource-unit": "10"}  # per app
    clock.now += 6
    assert throttle.admit("app", "t", "GET", 6, 10) == {"x-ms-resource-unit": "6"}
    assert isinstance(throttle.admit("app", "t", "GET", 1, 10), GraphApiError)
    throttle.reset()
    assert throttle.admit("app", "t", "GET", 10, 10) == {"x-ms-resource-unit": "10"}


def test_writes_also_spend_the_write_quota() -> None:
    clock = Clock()
    throttle = Throttle(clock)
    for _ in range(3_000):
        assert not isinstance(throttle.admit("app", "t", "POST", 1, 10**9), GraphApiError)
    refused = throttle.admit("app", "t", "PATCH", 1, 10**9)
    assert isinstance(refused, GraphApiError)
    assert refused.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert refused.headers["Retry-After"] == "150"
    assert not isinstance(throttle.admit("app", "t", "GET", 1, 10**9), GraphApiError)  # reads still pass


def test_objects_in_an_answer() -> None:
    assert objects_in(None) == 0
    assert objects_in({"id": "u1"}) == 1
    assert objects_in({"value": []}) == 0
    page = {"value": [{"id": "g", "members@delta": [{"id": "a"}, {"id": "b"}]}, {"id": "h"}]}
    assert objects_in(page) == 4
