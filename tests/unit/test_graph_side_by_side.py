"""The full rounds of users and groups read side by side (issue 27): what is in flight at once, the shared
limit, where the replica is written from, and what a failure mid-read leaves. Graph scripted over
httpx.MockTransport, each answer taking a few milliseconds so that requests overlap only when sent together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.unit.fakes import MemoryReplica, MemoryTransaction
from writeback.adapters.graph import GraphClient, GraphSettings
from writeback.adapters.graph.delta import GraphSource
from writeback.adapters.graph.firstread import Pumps
from writeback.errors import SourceError

GRAPH = "https://graph.example.test"
USER_PAGES = 4  # /users pages of 2 users
GROUPS = 6  # one /groups page; each group's members one page


class Tenant:
    """A small tenant: users on ``USER_PAGES`` list pages, ``GROUPS`` groups of 2 users each. Every answer
    waits ``delay`` seconds; what is in flight is recorded by the kind of request."""

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay
        self.delays: dict[str, float] = {}  # by kind of request, instead of ``delay``
        self.lock = threading.Lock()
        self.in_flight: list[str] = []
        self.peak = 0
        self.overlaps: set[frozenset[str]] = set()  # kinds seen in flight together
        self.fail_members: Callable[[str], bool] = lambda _gid: False
        self.catch_up: dict[str, int] = {"users": 0, "groups": 0}

    @staticmethod
    def kind(request: httpx.Request) -> str:
        path = request.url.path
        if path.endswith("/delta"):
            return "delta"
        if path.endswith("/users"):
            return "users"
        if path.endswith("/members"):
            return "members"
        return "other"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        kind = self.kind(request)
        with self.lock:
            self.in_flight.append(kind)
            self.peak = max(self.peak, len(self.in_flight))
            self.overlaps.add(frozenset(self.in_flight))
        try:
            time.sleep(self.delays.get(kind, self.delay))
            return self.answer(request)
        finally:
            with self.lock:
                self.in_flight.remove(kind)

    def answer(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path.endswith("/delta"):
            resource = "users" if "/users/" in path else "groups"
            token = params.get("$deltatoken")
            if token is None:  # a sequential full round (max_in_flight 1): no objects needed here
                return self.delta_link(path, f"{resource}-first")
            if token == "latest":
                return self.delta_link(path, f"{resource}-cursor")
            self.catch_up[resource] += 1
            return self.delta_link(path, f"{resource}-after-{self.catch_up[resource]}")
        if "deletedItems" in path:
            return httpx.Response(200, json={"value": []})
        if path == "/v1.0/users":
            page = int(params.get("$skiptoken", "0"))
            body: dict[str, Any] = {
                "value": [{"id": f"u{page}-{i}", "onPremisesSecurityIdentifier": None} for i in range(2)]
            }
            if page + 1 < USER_PAGES:
                body["@odata.nextLink"] = f"{GRAPH}/v1.0/users?$skiptoken={page + 1}"
            return httpx.Response(200, json=body)
        if path.endswith("/groups"):
            groups = [{"id": f"g{i}", "displayName": f"G{i}", "securityEnabled": True} for i in range(GROUPS)]
            return httpx.Response(200, json={"value": groups})
        if path.endswith("/members"):
            gid = path.split("/")[-2]
            if self.fail_members(gid):
                return httpx.Response(400, json={"error": {"code": "BadRequest", "message": "refused"}})
            n = int(gid[1:])
            refs = [
                {"@odata.type": "#microsoft.graph.user", "id": f"u{n % USER_PAGES}-{i}"} for i in range(2)
            ]
            return httpx.Response(200, json={"value": refs})
        return httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound", "message": path}})

    @staticmethod
    def delta_link(path: str, token: str) -> httpx.Response:
        return httpx.Response(
            200, json={"value": [], "@odata.deltaLink": f"{GRAPH}{path}?$deltatoken={token}"}
        )


class Tokens:
    def token(self, *, force_refresh: bool = False) -> str:
        return "t"


def source_for(tenant: Tenant, max_in_flight: int) -> GraphSource:
    config = GraphSettings(
        tenant_id="t",
        client_id="c",
        client_secret="s",
        graph_url=GRAPH,
        max_in_flight=max_in_flight,
        batch_size=1,  # one member read per request: what is in flight is counted request by request
    )
    client = GraphClient(
        config, transport=httpx.MockTransport(tenant), token_provider=Tokens(), sleep=lambda _: None
    )
    return GraphSource(client)


class ThreadCheckedReplica(MemoryReplica):
    """A replica that records the thread of every transaction and every write made in it."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self.order: list[str] = []  # each delta link set: "<transaction number> <resource>:<link's token>"
        self.transactions = 0
        self.stored: list[str] = []  # "user" or "group", each upsert in the order made

    def transaction(self) -> MemoryTransaction:
        self.threads.add(threading.current_thread().name)
        replica = self
        tx = MemoryTransaction(self)
        set_link = tx.set_delta_link
        self.transactions += 1
        number = self.transactions

        def recorded(resource: str, link: str) -> None:
            replica.threads.add(threading.current_thread().name)
            replica.order.append(f"{number} {resource}:{link.rsplit('=', 1)[-1]}")
            set_link(resource, link)

        tx.set_delta_link = recorded  # type: ignore[method-assign,assignment]
        upsert_user, upsert_group = tx.upsert_user, tx.upsert_group

        def user(u: Any) -> None:
            replica.stored.append("user")
            upsert_user(u)

        def group(g: Any) -> None:
            replica.stored.append("group")
            upsert_group(g)

        tx.upsert_user = user  # type: ignore[method-assign,assignment]
        tx.upsert_group = group  # type: ignore[method-assign,assignment]
        return tx


def test_users_and_groups_are_read_at_once_and_stored_from_the_callers_thread() -> None:
    tenant = Tenant()
    replica = ThreadCheckedReplica()
    report = source_for(tenant, max_in_flight=4).sync(replica)

    # The users' list pages were in flight together with the groups' member reads.
    assert any({"users", "members"} <= kinds for kinds in tenant.overlaps), tenant.overlaps
    assert tenant.peak <= 4
    # Every transaction, and every write in one, ran in the caller's thread.
    assert replica.threads == {threading.current_thread().name}
    # Both first reads stored in one transaction with both cursors, then each catch-up round; users first.
    first = replica.order[0].split()[0]
    assert replica.order == [
        f"{first} users:users-cursor",
        f"{first} groups:groups-cursor",
        f"{int(first) + 1} users:users-after-1",
        f"{int(first) + 2} groups:groups-after-1",
    ]
    snapshot = replica.snapshot()
    assert len(snapshot.users) == USER_PAGES * 2
    assert {gid: {m.id for m in g.members} for gid, g in snapshot.groups.items()} == {
        f"g{n}": {f"u{n % USER_PAGES}-0", f"u{n % USER_PAGES}-1"} for n in range(GROUPS)
    }
    assert report.full_resync


def test_what_arrives_is_stored_while_the_rest_is_read() -> None:
    # The users' list is slow (each page 80 ms), the groups' reads quick: the groups are stored as they arrive,
    # between user pages, not after the last one; all of it in the one transaction of the first reads.
    tenant = Tenant(delay=0.005)
    tenant.delays["users"] = 0.08
    replica = ThreadCheckedReplica()
    source_for(tenant, max_in_flight=4).sync(replica)
    stored = "".join("u" if kind == "user" else "g" for kind in replica.stored)
    assert stored.count("g") == GROUPS and stored.count("u") == USER_PAGES * 2
    assert stored.rindex("g") < stored.rindex("u"), stored  # a group was stored before the last users
    assert replica.order[0].split()[0] == replica.order[1].split()[0]  # both cursors: one transaction


def test_one_request_in_flight_reads_one_resource_after_the_other() -> None:
    # The control: with max_in_flight 1 the full rounds are sequential delta rounds, nothing overlaps.
    tenant = Tenant(delay=0.005)
    source_for(tenant, max_in_flight=1).sync(MemoryReplica())
    assert tenant.peak == 1
    assert all(len(kinds) == 1 for kinds in tenant.overlaps)


@pytest.mark.parametrize("limit", [2, 3])
def test_the_limit_counts_both_reads_together(limit: int) -> None:
    tenant = Tenant()
    source_for(tenant, max_in_flight=limit).sync(MemoryReplica())
    assert tenant.peak == limit  # reached (the reads overlap) and never passed


def test_a_failed_groups_read_leaves_both_resources_as_they_were_and_the_rerun_converges() -> None:
    tenant = Tenant()
    tenant.fail_members = lambda gid: gid == "g3"
    replica = ThreadCheckedReplica()
    source = source_for(tenant, max_in_flight=4)
    with pytest.raises(SourceError, match="refused"):
        source.sync(replica)
    # Both resources are stored in one transaction: nothing of the failed read is kept, and no link.
    assert replica.get_delta_link("users") is None
    assert replica.get_delta_link("groups") is None
    assert replica.snapshot().groups == {}
    assert replica.snapshot().users == {}
    # No thread of the failed read is left running.
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name.startswith(("graph-users", "graph-groups"))]

    tenant.fail_members = lambda _gid: False
    source.sync(replica)
    assert set(replica.snapshot().groups) == {f"g{n}" for n in range(GROUPS)}
    assert [entry.split()[1] for entry in replica.order[-4:]] == [
        "users:users-cursor",
        "groups:groups-cursor",
        "users:users-after-1",
        "groups:groups-after-1",
    ]


def test_a_bounded_pumps_reader_waits_for_the_consumer_and_stops_when_closed() -> None:
    pulled: list[int] = []

    def reader() -> Iterator[int]:
        for n in range(1000):
            pulled.append(n)
            yield n

    with Pumps({"r": (reader(), None)}, bound=3) as pumps:
        lots = pumps.lots()
        first = next(lots)
        time.sleep(0.3)  # the reader runs ahead by the bound at most (one more waits to be put)
        assert len(pulled) <= len(first[1]) + 3 + 1, pulled
    # Closed while the reader waited for room: its thread ended, nothing more was pulled.
    stopped_at = len(pulled)
    time.sleep(0.3)
    assert len(pulled) == stopped_at < 1000
    assert not [t for t in threading.enumerate() if t.name == "r"]


def test_pumps_hand_on_every_readers_items_in_arrival_order_and_raise_a_readers_error() -> None:
    def failing() -> Iterator[str]:
        yield "a"
        raise SourceError("broken page")

    got: list[tuple[str, list[Any]]] = []
    with (
        Pumps({"ok": (iter(["x", "y"]), None), "bad": (failing(), None)}) as pumps,
        pytest.raises(SourceError, match="broken page"),
    ):
        for lot in pumps.lots():
            got.append(lot)
    items = {name: [i for n, lot in got if n == name for i in lot] for name in ("ok", "bad")}
    assert items["bad"] == ["a"]  # what arrived before the error is handed on first
    assert items["ok"] == ["x", "y"][: len(items["ok"])]  # in order, whatever arrived before the error


def test_a_resync_of_both_resources_takes_one_snapshot_of_what_the_replica_held() -> None:
    # Both delta queries changed (an upgrade that reads new properties): both full rounds side by side again,
    # over a replica that holds both resources. What it held is read once, not once per resource.
    tenant = Tenant()
    replica = ThreadCheckedReplica()
    source = source_for(tenant, max_in_flight=4)
    source.sync(replica)
    with replica.transaction() as tx:
        for resource in ("users", "groups"):
            tx.set_delta_query(resource, "an older query")
    snapshots = 0
    take = replica.snapshot

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal snapshots
        if not args and not kwargs:  # a whole snapshot (the sync-behaviour read takes one without members)
            snapshots += 1
        return take(*args, **kwargs)

    replica.snapshot = counted  # type: ignore[method-assign]
    report = source.sync(replica)
    assert snapshots == 1
    assert report.full_resync
    assert len(take().users) == USER_PAGES * 2
    assert len(take().groups) == GROUPS
