"""The concurrency controller of the Graph client (AIMD on 429, Retry-After honoured) and the concurrent
group reader's hand-over order, with Graph scripted over httpx.MockTransport."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.unit.fakes import MemoryReplica
from writeback.adapters.graph import GraphClient, GraphSettings
from writeback.adapters.graph.concurrency import AdaptiveLimit, map_concurrent
from writeback.adapters.graph.firstread import GroupReader, take_cursor
from writeback.adapters.graph.syncbehavior import SyncBehaviorReader
from writeback.core.model import CloudGroup
from writeback.errors import ConfigError, SourceError, SyncStateError

GRAPH = "https://graph.example.test"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_429_halves_the_limit_once_per_burst() -> None:
    limit = AdaptiveLimit(8, clock=Clock())
    slots = [limit.acquire() for _ in range(8)]
    assert limit.in_flight == 8 and limit.limit == 8
    # Every request of the burst comes back throttled: the limit halves once, not eight times.
    for slot in slots:
        limit.release(slot, throttled=True)
    assert limit.limit == 4 and limit.decreases == 1 and limit.in_flight == 0
    # A request sent after the decrease and throttled again halves it again.
    limit.release(limit.acquire(), throttled=True)
    assert limit.limit == 2 and limit.decreases == 2
    limit.release(limit.acquire(), throttled=True)
    limit.release(limit.acquire(), throttled=True)
    assert limit.limit == 1, "never below one request in flight"


def test_the_limit_grows_by_one_per_window_of_successes_up_to_the_maximum() -> None:
    limit = AdaptiveLimit(4, clock=Clock())
    limit.release(limit.acquire(), throttled=True)
    limit.release(limit.acquire(), throttled=True)
    assert limit.limit == 1
    limit.release(limit.acquire())  # one success at limit 1 -> 2
    assert limit.limit == 2
    limit.release(limit.acquire())
    assert limit.limit == 2, "additive: two successes are needed at limit 2"
    limit.release(limit.acquire())
    assert limit.limit == 3
    for _ in range(3 + 4 + 4 + 4):
        limit.release(limit.acquire())
    assert limit.limit == 4, "never above the configured maximum"


def test_retry_after_pauses_every_new_request() -> None:
    clock = Clock()
    limit = AdaptiveLimit(8, clock=clock)
    limit.release(limit.acquire(), throttled=True, retry_after=2.5)
    assert limit.paused_for() == pytest.approx(2.5)
    clock.now += 1.0
    assert limit.paused_for() == pytest.approx(1.5)
    clock.now += 2.0
    assert limit.paused_for() == 0.0
    assert limit.acquire() is not None  # no longer paused: does not block


def test_retry_after_holds_other_threads_back_in_real_time() -> None:
    limit = AdaptiveLimit(4)
    limit.release(limit.acquire(), throttled=True, retry_after=0.3)
    started = time.monotonic()
    waited: list[float] = []

    def request() -> None:
        slot = limit.acquire()
        waited.append(time.monotonic() - started)
        limit.release(slot)

    threads = [threading.Thread(target=request) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(waited) == 3 and min(waited) >= 0.25


def test_at_most_limit_requests_are_in_flight() -> None:
    limit = AdaptiveLimit(3)
    peak = 0
    lock = threading.Lock()
    active = 0

    def request(_: int) -> int:
        nonlocal peak, active
        slot = limit.acquire()
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        limit.release(slot)
        return _

    assert list(map_concurrent(request, range(20), workers=8)) == list(range(20))
    assert peak == 3 and limit.peak_in_flight == 3


def test_map_concurrent_raises_the_first_failure_and_cancels_the_rest() -> None:
    ran: list[int] = []

    def work(n: int) -> int:
        ran.append(n)
        if n == 2:
            raise SourceError("boom")
        time.sleep(0.01)
        return n

    with pytest.raises(SourceError, match="boom"):
        list(map_concurrent(work, range(200), workers=2))
    assert len(ran) < 200


def settings(**overrides: Any) -> GraphSettings:
    values: dict[str, Any] = {
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
        "graph_url": GRAPH,
        "max_backoff": 5.0,
        "max_in_flight": 8,
    }
    values.update(overrides)
    return GraphSettings(**values)


class FixedToken:
    def token(self, *, force_refresh: bool = False) -> str:
        return "token"


def client_for(handler: Any, sleeps: list[float] | None = None, **overrides: Any) -> GraphClient:
    return GraphClient(
        settings(**overrides),
        transport=httpx.MockTransport(handler),
        token_provider=FixedToken(),
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )


def test_the_client_halves_its_limit_on_429_and_waits_what_retry_after_says() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "1.5"}, json={"error": {"code": "TooManyRequests"}}),
        httpx.Response(200, json={"value": []}),
    ]
    sleeps: list[float] = []
    client = client_for(lambda _r: answers.pop(0), sleeps)
    assert client.limit.limit == 8
    assert client.get("/v1.0/groups") == {"value": []}
    assert sleeps == [1.5]
    assert client.limit.limit == 4 and client.limit.decreases == 1
    assert client.stats["throttled"] == 1


def test_a_503_without_retry_after_does_not_lower_the_limit() -> None:
    answers = [
        httpx.Response(503, json={"error": {"code": "ServiceUnavailable"}}),
        httpx.Response(200, json={}),
    ]
    client = client_for(lambda _r: answers.pop(0), [])
    client.get("/v1.0/groups")
    assert client.limit.limit == 8 and client.limit.decreases == 0


def test_max_in_flight_is_checked() -> None:
    with pytest.raises(ConfigError, match="max_in_flight"):
        settings(max_in_flight=0)
    with pytest.raises(ConfigError, match="max_in_flight"):
        settings(max_in_flight=65)


def test_the_cursor_is_taken_with_deltatoken_latest_and_the_same_select() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"@odata.deltaLink": f"{GRAPH}/v1.0/groups/delta?$deltatoken=abc"})

    client = client_for(handler)
    link = take_cursor(client, "/v1.0/groups/delta", {"$select": "id,displayName,members"})
    assert link.endswith("$deltatoken=abc")
    assert seen[0].url.params["$deltatoken"] == "latest"
    assert seen[0].url.params["$select"] == "id,displayName,members"


def test_a_cursor_without_a_delta_link_fails() -> None:
    client = client_for(lambda _r: httpx.Response(200, json={"value": []}))
    with pytest.raises(SyncStateError, match="deltaLink"):
        take_cursor(client, "/v1.0/users/delta", {"$select": "id"})


def answer_batch(handler: Any, request: httpx.Request) -> httpx.Response:
    """A JSON batch answered item by item through ``handler``, as Graph does (in reverse order: any order)."""
    items = json.loads(request.content)["requests"]
    assert 1 <= len(items) <= 20 and len({i["id"] for i in items}) == len(items)
    responses = []
    for item in reversed(items):
        assert item["method"] == "GET" and item["url"].startswith("/") and not item["url"].startswith("/v1.0")
        answer = handler(httpx.Request("GET", f"{GRAPH}/v1.0{item['url']}"))
        responses.append(
            {
                "id": item["id"],
                "status": answer.status_code,
                "headers": dict(answer.headers),
                "body": answer.json(),
            }
        )
    return httpx.Response(200, json={"responses": responses})


class ScriptedGroups:
    """/groups in pages of two; each group's members in pages of one, the group 'slow' answering slowly; the
    group 'gone' answers 404 (deleted after it was listed)."""

    def __init__(self, members: dict[str, list[str]], slow: str | None = None) -> None:
        self.members, self.slow = members, slow
        self.served: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/$batch":
            return answer_batch(self, request)
        path, params = request.url.path, request.url.params
        with self.lock:
            self.served.append(f"{path}?{params.get('$skiptoken', '')}")
        if path == "/v1.0/groups":
            ids = sorted(self.members)
            start = int(params.get("$skiptoken", "0"))
            body: dict[str, Any] = {
                "value": [{"id": g, "displayName": g.upper()} for g in ids[start : start + 2]]
            }
            if start + 2 < len(ids):
                body["@odata.nextLink"] = f"{GRAPH}/v1.0/groups?$skiptoken={start + 2}"
            return httpx.Response(200, json=body)
        gid = path.split("/")[3]
        if gid == "gone":
            return httpx.Response(
                404, json={"error": {"code": "Request_ResourceNotFound", "message": "gone"}}
            )
        if gid == self.slow:
            time.sleep(0.05)
        index = int(params.get("$skiptoken", "0"))
        refs = self.members[gid]
        body = {"value": [{"@odata.type": "#microsoft.graph.user", "id": m} for m in refs[index : index + 1]]}
        if index + 1 < len(refs):
            body["@odata.nextLink"] = f"{GRAPH}/v1.0/groups/{gid}/members?$skiptoken={index + 1}"
        return httpx.Response(200, json=body)


@pytest.mark.parametrize("batch", [1, 20])
def test_each_group_is_handed_on_whole_and_a_slow_one_does_not_hold_back_others(batch: int) -> None:
    members = {
        "a": ["u1", "u2"],
        "b": [],
        "c": ["u3"],
        "slow": [f"s{i}" for i in range(6)],
        "e": ["u1", "u4", "u5"],
    }
    graph = ScriptedGroups(members, slow="slow")
    reader = GroupReader(
        client_for(graph, page_size=1, batch_size=batch), "v1.0", "id,displayName", workers=4
    )
    handed = list(reader.groups())
    got = {g["id"]: [m["id"] for m in g["members@delta"]] for g in handed}
    assert got == members, "every group whole: all its member pages, in order"
    assert [g["id"] for g in handed][-1] == "slow"
    assert handed[0]["displayName"] == handed[0]["id"].upper()


@pytest.mark.parametrize("batch", [1, 20])
def test_a_group_gone_before_its_members_are_read_is_left_out(batch: int) -> None:
    graph = ScriptedGroups({"a": ["u1"], "gone": ["u2"]})
    reader = GroupReader(client_for(graph, batch_size=batch), "v1.0", "id", workers=2)
    assert [g["id"] for g in reader.groups()] == ["a"]
    assert reader.vanished == ["gone"]


def test_a_big_groups_next_member_page_goes_ahead_of_the_first_pages_still_queued() -> None:
    """One list page of six groups, one batch in flight, two requests a batch: the big group "a" (three member
    pages) has its next page sent in the very next batch, ahead of the small groups listed before it was
    known, so its chain of round trips runs beside theirs instead of after them all (GroupReader.groups)."""
    members = {"a": ["m1", "m2", "m3"], **{g: [f"{g}1"] for g in "bcdef"}}
    batches: list[list[str]] = []

    def item(request: httpx.Request) -> httpx.Response:
        gid, page = request.url.path.split("/")[3], int(request.url.params.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": [{"@odata.type": "#microsoft.graph.user", "id": members[gid][page]}]}
        if page + 1 < len(members[gid]):
            body["@odata.nextLink"] = f"{GRAPH}/v1.0/groups/{gid}/members?$skiptoken={page + 1}"
        return httpx.Response(200, json=body)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/groups":
            return httpx.Response(200, json={"value": [{"id": g} for g in members]})
        if request.url.path != "/v1.0/$batch":  # a chunk of one goes alone
            sent = [request.url]
        else:
            sent = [httpx.URL(f"{GRAPH}{i['url']}") for i in json.loads(request.content)["requests"]]
        batches.append([f"{u.path.split('/')[-2]}{u.params.get('$skiptoken', '0')}" for u in sent])
        return answer_batch(item, request) if len(sent) > 1 else item(request)

    reader = GroupReader(client_for(handler, batch_size=2), "v1.0", "id", workers=1)
    handed = {g["id"]: [m["id"] for m in g["members@delta"]] for g in reader.groups()}
    assert batches == [["a0", "b0"], ["a1", "c0"], ["a2", "d0"], ["e0", "f0"]]
    assert list(handed) == ["b", "c", "a", "d", "e", "f"], "the big group whole before those listed after it"
    assert handed == members


def test_a_failing_member_read_fails_the_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/groups":
            return httpx.Response(200, json={"value": [{"id": "a"}, {"id": "b"}]})
        return httpx.Response(403, json={"error": {"code": "Authorization_RequestDenied", "message": "no"}})

    reader = GroupReader(client_for(handler), "v1.0", "id", workers=2)
    with pytest.raises(SourceError, match="403"):
        list(reader.groups())


def test_a_throttled_batch_item_is_sent_again_after_its_retry_after_and_lowers_the_limit() -> None:
    throttled_once: set[str] = set()

    def item(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/b") and path not in throttled_once:
            throttled_once.add(path)
            return httpx.Response(
                429,
                headers={"Retry-After": "0.7"},
                json={"error": {"code": "TooManyRequests", "message": "x"}},
            )
        if path.endswith("/gone"):
            return httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound", "message": "x"}})
        return httpx.Response(200, json={"id": path.rsplit("/", 1)[1]})

    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1.0/$batch"
        sent.append(len(json.loads(request.content)["requests"]))
        return answer_batch(item, request)

    sleeps: list[float] = []
    client = client_for(handler, sleeps)
    answers = client.batch_get("v1.0", ["/groups/a", f"{GRAPH}/v1.0/groups/b", "/v1.0/groups/gone"])
    assert answers == [{"id": "a"}, {"id": "b"}, None]
    assert sent == [3, 1], "only the throttled item is sent again"
    assert sleeps == [0.7]
    assert client.limit.limit == 4 and client.stats["throttled"] == 1


def test_a_batch_item_refused_for_good_fails_the_read() -> None:
    def item(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": {"code": "Authorization_RequestDenied", "message": "no"}})

    client = client_for(lambda r: answer_batch(item, r))
    with pytest.raises(SourceError, match="403 Authorization_RequestDenied"):
        client.batch_get("v1.0", ["/groups/a", "/groups/b"])


def test_a_batch_never_carries_a_link_to_another_host() -> None:
    client = client_for(lambda r: answer_batch(lambda _i: httpx.Response(200, json={}), r))
    with pytest.raises(SourceError, match="refusing to follow"):
        client.batch_get("v1.0", ["https://evil.example/v1.0/groups/a"])


def test_sync_behavior_reads_go_several_at_once_and_keep_each_answer_with_its_object() -> None:
    """onPremisesSyncBehavior of 12 groups from AD: read with 4 in flight, each answer stored on its group, an
    unreadable one (403) left unknown."""

    replica = MemoryReplica()
    ids = [f"g{i:02d}" for i in range(12)]
    with replica.transaction() as tx:
        for i, gid in enumerate(ids):
            tx.upsert_group(
                CloudGroup(
                    id=gid, display_name=gid, on_premises_security_identifier=f"S-1-5-21-1-2-3-{1000 + i}"
                )
            )
    active = peak = 0
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        gid = request.url.path.split("/")[3]
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        if gid == "g05":
            return httpx.Response(
                403, json={"error": {"code": "Authorization_RequestDenied", "message": "no"}}
            )
        return httpx.Response(200, json={"isCloudManaged": int(gid[1:]) % 2 == 0})

    reader = SyncBehaviorReader(client_for(handler, max_in_flight=4))
    changed = reader.refresh(replica, ids)
    groups = replica.snapshot(member_groups=()).groups
    assert peak == 4
    assert {gid: groups[gid].is_cloud_managed for gid in ids} == {
        gid: (None if gid == "g05" else int(gid[1:]) % 2 == 0) for gid in ids
    }
    assert changed.groups == set(ids) - {"g05"}


def test_a_thread_that_waited_its_retry_after_is_not_held_again_but_the_others_are() -> None:
    clock = Clock()
    limit = AdaptiveLimit(4, clock=clock)
    limit.release(limit.acquire(), throttled=True, retry_after=30.0)
    assert limit.acquire(waited=True) is not None  # the throttled request's own retry, after its own wait
    assert limit.paused_for() == pytest.approx(30.0)  # everyone else still waits


def test_a_huge_retry_after_pauses_the_other_requests_only_up_to_the_cap() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": {"code": "TooManyRequests"}}),
        httpx.Response(200, json={}),
    ]
    sleeps: list[float] = []
    client = client_for(lambda _r: answers.pop(0), sleeps, max_backoff=2.0)
    client.get("/v1.0/groups")
    assert sleeps == [2.0]
    assert 0 < client.limit.paused_for() <= 2.0
