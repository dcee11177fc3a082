"""Graph as it answers, through the real HTTPS emulator: response time, page sizes, throttling by resource-unit
budget (429 + Retry-After), and "sync from now" (``$deltatoken=latest``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

pytestmark = pytest.mark.emulator

USERS = 250


def _tenant() -> dict[str, Any]:
    tenant = small_tenant(users=USERS, groups=3)
    tenant["groups"][0]["members"] = [f"u{i:02d}" for i in range(150)]  # more than a default page
    return tenant


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(_tenant(), tmp_path) as handle:
        handle.token()
        yield handle


def _timed(emu: EmulatorHandle, path: str, **kwargs: Any) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = emu.graph("GET", path, **kwargs)
    return time.perf_counter() - started, response


def test_profile_is_off_by_default_and_rejects_bad_settings(emu: EmulatorHandle) -> None:
    assert emu.admin("profile") == {
        "request_ms": 0.0,
        "per_object_ms": 0.0,
        "throttle": "off",
        "budget_per_10s": None,
        "slow_members": {},
    }
    for bad in ({"request_ms": "slow"}, {"per_object_ms": -1}, {"throttle": 0}, {"latency": 5}):
        with pytest.raises(httpx.HTTPStatusError) as info:
            emu.admin("profile", bad)
        assert info.value.response.status_code == 400
    assert emu.admin("profile")["request_ms"] == 0.0  # nothing half-applied


def test_response_time_is_a_fixed_delay_plus_a_cost_per_object(emu: EmulatorHandle) -> None:
    emu.admin("profile", {"request_ms": 200, "per_object_ms": 4})
    one, response = _timed(emu, "users", params={"$top": "1"})
    assert response.status_code == 200 and len(response.json()["value"]) == 1
    hundred, response = _timed(emu, "users", params={"$top": "100"})
    assert len(response.json()["value"]) == 100
    assert one >= 0.2 + 0.004
    assert hundred >= 0.2 + 0.4
    assert hundred - one >= 0.99 * 0.4 - 0.05  # 99 more objects at 4 ms
    # A group's members in a delta page count as objects too (members@delta references).
    emu.admin("profile", {"request_ms": 0, "per_object_ms": 2})
    took, response = _timed(emu, "groups/delta", params={"$select": "displayName,members"})
    page = response.json()
    objects = len(page["value"]) + sum(len(g.get("members@delta", [])) for g in page["value"])
    assert objects > 150 and took >= objects * 0.002
    emu.admin("profile", {"per_object_ms": 0})
    quick, _ = _timed(emu, "users", params={"$top": "100"})
    assert quick < 0.2


def test_requests_in_flight_at_once_overlap(emu: EmulatorHandle) -> None:
    emu.admin("profile", {"request_ms": 300})

    async def main() -> float:
        headers = {"Authorization": f"Bearer {emu.token()}"}
        async with httpx.AsyncClient(verify=emu.ssl_context(), base_url=emu.graph_url) as client:
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(client.get(f"/v1.0/users/u{i:02d}", headers=headers) for i in range(8))
            )
            took = time.perf_counter() - started
        assert [a.status_code for a in answers] == [200] * 8
        return took

    took = asyncio.run(main())
    assert 0.3 <= took < 8 * 0.3 / 2  # sequential would be 2.4 s


def test_list_pages_are_graphs_default_100_and_top_up_to_999(emu: EmulatorHandle) -> None:
    users = emu.graph("GET", "users").json()
    assert len(users["value"]) == 100 and "$skiptoken" in users["@odata.nextLink"]
    assert len(emu.graph("GET", "users", params={"$top": "999"}).json()["value"]) == USERS
    assert emu.graph("GET", "users", params={"$top": "1000"}).status_code == 400
    members = emu.graph("GET", "groups/g0/members", params={"$select": "id"}).json()
    assert len(members["value"]) == 100 and "@odata.nextLink" in members
    rest = emu.graph("GET", members["@odata.nextLink"]).json()
    assert len(rest["value"]) == 50 and "@odata.nextLink" not in rest
    # Lists are sized by $top; Graph documents odata.maxpagesize for delta functions, not for lists.
    listed = emu.graph("GET", "users", headers={"Prefer": "odata.maxpagesize=5"})
    assert len(listed.json()["value"]) == 100 and "Preference-Applied" not in listed.headers


def _walk(emu: EmulatorHandle, first: httpx.Response, prefer: str | None) -> list[int]:
    sizes, page = [], first
    while True:
        assert page.status_code == 200
        body = page.json()
        sizes.append(len(body["value"]))
        if "@odata.deltaLink" in body:
            return sizes
        headers = {"Prefer": prefer} if prefer else None
        page = emu.graph("GET", body["@odata.nextLink"], headers=headers)


def test_delta_honours_prefer_maxpagesize_and_says_so(emu: EmulatorHandle) -> None:
    plain = emu.graph("GET", "users/delta", params={"$select": "id"})
    assert "Preference-Applied" not in plain.headers
    assert _walk(emu, plain, None) == [200, USERS - 200]

    prefer = "odata.maxpagesize=60"
    small = emu.graph("GET", "users/delta", params={"$select": "id"}, headers={"Prefer": prefer})
    assert small.headers["Preference-Applied"] == "odata.maxpagesize=60"
    assert _walk(emu, small, prefer) == [60, 60, 60, 60, 10]

    # A bigger page than the service's is capped, and the header says which size was used.
    big = emu.graph(
        "GET", "users/delta", params={"$select": "id"}, headers={"Prefer": "odata.maxpagesize=5000"}
    )
    assert big.headers["Preference-Applied"] == "odata.maxpagesize=200"
    assert len(big.json()["value"]) == 200
    both = emu.graph(
        "GET",
        "users/delta",
        params={"$select": "id"},
        headers={"Prefer": "return=minimal, odata.maxpagesize=7"},
    )
    assert both.headers["Preference-Applied"] == "return=minimal, odata.maxpagesize=7"
    assert len(both.json()["value"]) == 7


def test_budget_exhaustion_answers_429_with_retry_after_and_throttle_headers(emu: EmulatorHandle) -> None:
    # GET users costs 2 resource units, 1 with $select; 10 units per 10 s here.
    assert emu.admin("profile", {"throttle": 10})["budget_per_10s"] == 10
    spent = [emu.graph("GET", "users") for _ in range(4)]
    assert [r.headers["x-ms-resource-unit"] for r in spent] == ["2"] * 4
    selected = emu.graph("GET", "users", params={"$select": "id"})
    assert selected.status_code == 200 and selected.headers["x-ms-resource-unit"] == "1"
    members = emu.graph("GET", "groups/g0/members")
    assert members.status_code == 429  # 3 more units do not fit in the 1 left
    assert 1 <= int(members.headers["Retry-After"]) <= 10
    assert members.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert members.headers["x-ms-throttle-scope"] == (
        f"Tenant_Application/ReadWrite/{emu.client_id}/{emu.tenant_id}"
    )
    error = members.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert emu.graph("GET", "groups/g0", params={"$select": "id"}).status_code == 200  # 1 unit still fits
    assert emu.graph("GET", "groups/g0").status_code == 429
    assert emu.stats()["outcomes"]["throttled_budget"] == 2
    emu.admin("profile", {"reset_budget": True})
    assert emu.graph("GET", "groups/g0/members").status_code == 200


def test_waiting_retry_after_is_enough(emu: EmulatorHandle) -> None:
    emu.admin("profile", {"throttle": 2})
    assert emu.graph("GET", "users").status_code == 200
    throttled = emu.graph("GET", "users")
    assert throttled.status_code == 429
    wait = int(throttled.headers["Retry-After"])
    assert 8 <= wait <= 10  # the 2 units were spent just now; the window is 10 s
    time.sleep(wait)
    assert emu.graph("GET", "users").status_code == 200


def test_tenant_budget_follows_the_tenants_size(emu: EmulatorHandle, tmp_path: Path) -> None:
    assert emu.admin("profile", {"throttle": "tenant"})["budget_per_10s"] == 5_000  # 250 users: M
    with run_emulator(small_tenant(users=10), tmp_path / "s") as small:
        assert small.admin("profile", {"throttle": "tenant"})["budget_per_10s"] == 3_500


def test_deltatoken_latest_syncs_from_now_on_users_and_groups(emu: EmulatorHandle) -> None:
    for collection, select in (("users", "displayName"), ("groups", "displayName,members")):
        # Graph spells it $deltaToken=latest in "Use delta query to track changes"; names are case-insensitive.
        latest = emu.graph("GET", f"{collection}/delta", params={"$deltaToken": "latest", "$select": select})
        assert latest.status_code == 200
        body = latest.json()
        assert body["value"] == [] and "@odata.nextLink" not in body
        assert "$deltatoken=" in body["@odata.deltaLink"]
        nothing = emu.graph("GET", body["@odata.deltaLink"]).json()
        assert nothing["value"] == []
    emu.graph("PATCH", "users/u01", json={"displayName": "Renamed"})
    emu.graph(
        "POST", "groups/g2/members/$ref", json={"@odata.id": f"{emu.graph_url}/v1.0/directoryObjects/u03"}
    )
    users = emu.graph("GET", "users/delta", params={"$deltatoken": "latest", "$select": "displayName"})
    assert users.json()["value"] == []
    groups = emu.graph(
        "GET", "groups/delta", params={"$deltatoken": "latest", "$select": "displayName,members"}
    )
    emu.graph(
        "POST", "groups/g2/members/$ref", json={"@odata.id": f"{emu.graph_url}/v1.0/directoryObjects/u04"}
    )
    changed = emu.graph("GET", groups.json()["@odata.deltaLink"]).json()["value"]
    assert [(g["id"], [m["id"] for m in g["members@delta"]]) for g in changed] == [("g2", ["u04"])]


def test_a_batch_costs_each_item_and_runs_them_side_by_side(emu: EmulatorHandle) -> None:
    """JSON batching: "each request in the batch is evaluated against throttling limits" (json-batching,
    "Throttling and batching"); the items run in any order, so the batch takes about as long as one item, not
    the sum of all (the profile's fixed delay is paid once by the batch)."""
    items = [{"id": str(i), "method": "GET", "url": "/groups/g0/members?$top=50"} for i in range(5)]
    emu.admin("profile", {"throttle": 10})  # members cost 3 units: three fit in 10, two do not
    answer = emu.graph("POST", "$batch", json={"requests": items})
    assert answer.status_code == 200
    statuses = sorted(r["status"] for r in answer.json()["responses"])
    assert statuses == [200, 200, 200, 429, 429]
    throttled = [r for r in answer.json()["responses"] if r["status"] == 429]
    assert all(
        1 <= int({k.lower(): v for k, v in r["headers"].items()}["retry-after"]) <= 10 for r in throttled
    )
    assert emu.stats()["outcomes"]["throttled_budget"] == 2

    emu.admin("profile", {"throttle": "off", "request_ms": 400})
    ten = [{"id": str(i), "method": "GET", "url": "/users?$top=1"} for i in range(10)]
    took, answer = time.perf_counter(), emu.graph("POST", "$batch", json={"requests": ten})
    took = time.perf_counter() - took
    assert [r["status"] for r in answer.json()["responses"]] == [200] * 10
    assert 0.4 <= took < 3 * 0.4  # one fixed delay and the items side by side (one after the other: 4.4 s)


def without_request_ids(body: Any) -> Any:
    """An answer without what differs between two requests (an error's innerError: request id and date)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return {**body, "error": {k: v for k, v in body["error"].items() if k != "innerError"}}
    return body


def test_a_batch_answers_each_item_as_the_request_alone_is_answered(emu: EmulatorHandle) -> None:
    """Each response of a batch carries the body, status and headers the same request alone gets (the
    emulator splices the items' JSON into the batch's answer), a 404 and a refused method included."""
    gone = "00000000-0000-0000-0000-0000000000ff"
    urls = ["/groups/g0/members?$select=id&$top=2", "/users?$top=3", f"/groups/{gone}/members"]
    items = [{"id": f"i{n}", "method": "GET", "url": url} for n, url in enumerate(urls)]
    items.append({"id": "w", "method": "DELETE", "url": "/groups/g0"})
    answer = emu.graph("POST", "$batch", json={"requests": items})
    assert answer.status_code == 200
    responses = {r["id"]: r for r in answer.json()["responses"]}
    for n, url in enumerate(urls):
        path, _, query = url.partition("?")
        alone = emu.graph(
            "GET", path.lstrip("/"), params=dict(q.split("=", 1) for q in query.split("&") if q)
        )
        item = responses[f"i{n}"]
        assert item["status"] == alone.status_code
        assert without_request_ids(item["body"]) == without_request_ids(alone.json())
        assert item["headers"]["content-type"].startswith("application/json")
    assert responses["i2"]["status"] == 404
    assert responses["w"]["status"] == 400 and responses["w"]["body"]["error"]["code"] == "BadRequest"
    assert emu.graph("GET", "groups/g0").status_code == 200  # the refused DELETE did nothing
