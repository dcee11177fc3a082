"""GraphSource delta logic against MemoryReplica, with Graph pages scripted over httpx.MockTransport."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.unit.fakes import MemoryReplica
from writeback.adapters.graph import GraphClient, GraphSettings, GraphSource
from writeback.adapters.graph.settings import BETA_GROUP_EXTRA, DEFAULT_USER_SELECT, GROUP_SELECT
from writeback.core.model import MemberRef
from writeback.errors import SourceError, SyncStateError
from writeback.testbed.emulator.odata import is_declared

GRAPH = "https://graph.example.test"
USERS = "/v1.0/users/delta"
GROUPS = "/v1.0/groups/delta"
DELETED_USERS = "/v1.0/directory/deletedItems/microsoft.graph.user"
DELETED_GROUPS = "/v1.0/directory/deletedItems/microsoft.graph.group"


def user(uid: str, **props: Any) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.user", "id": uid, "displayName": uid.upper(), **props}


def group(gid: str, *members: str, removed: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": gid, "displayName": gid.upper(), "securityEnabled": True, **props}
    delta: list[dict[str, Any]] = [{"@odata.type": "#microsoft.graph.user", "id": m} for m in members]
    delta += [
        {"@odata.type": "#microsoft.graph.user", "id": m, "@removed": {"reason": "deleted"}} for m in removed
    ]
    if delta:
        body["members@delta"] = delta
    return body


def gone(oid: str, reason: str) -> dict[str, Any]:
    return {"id": oid, "@removed": {"reason": reason}}


class ScriptedGraph:
    """Serves pages by (path, token). ``rounds`` lists the pages of each delta round for a resource; the
    last page of a round carries a deltaLink whose token names the next round."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str | None], list[httpx.Response]] = {}
        self.requests: list[httpx.Request] = []
        self.set(DELETED_USERS, None, {"value": []})
        self.set(DELETED_GROUPS, None, {"value": []})

    def set(self, path: str, token: str | None, *bodies: dict[str, Any] | httpx.Response) -> None:
        self.routes[(path, token)] = [
            b if isinstance(b, httpx.Response) else httpx.Response(200, json=b) for b in bodies
        ]

    def delta_round(
        self, path: str, token: str | None, pages: list[list[dict[str, Any]]], next_round: str
    ) -> None:
        for index, items in enumerate(pages):
            page_token = token if index == 0 else f"{token}-p{index}"
            body: dict[str, Any] = {"value": items}
            if index + 1 < len(pages):
                body["@odata.nextLink"] = f"{GRAPH}{path}?$skiptoken={token}-p{index + 1}"
            else:
                body["@odata.deltaLink"] = f"{GRAPH}{path}?$deltatoken={next_round}"
            self.set(path, page_token, body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        params = request.url.params
        token = params.get("$skiptoken") or params.get("$deltatoken")
        responses = self.routes.get((request.url.path, token))
        if not responses:
            return httpx.Response(
                404, json={"error": {"code": "Request_ResourceNotFound", "message": request.url.path}}
            )
        return responses.pop(0) if len(responses) > 1 else responses[0]


class Tokens:
    def token(self, *, force_refresh: bool = False) -> str:
        return "t"


def source_for(graph: ScriptedGraph, **settings: Any) -> GraphSource:
    config = GraphSettings(tenant_id="t", client_id="c", client_secret="s", graph_url=GRAPH, **settings)
    client = GraphClient(
        config, transport=httpx.MockTransport(graph), token_provider=Tokens(), sleep=lambda _: None
    )
    return GraphSource(client)


def members(replica: MemoryReplica, gid: str) -> set[str]:
    return {m.id for m in replica.snapshot().groups[gid].members}


def test_first_round_then_incremental_changes() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), user("u2")], [], [user("u3")]], "U1")
    graph.delta_round(
        GROUPS,
        None,
        [[group("g1", "u1"), group("g2")], [group("g1", "u2")], [group("g1", "u3"), gone("g9", "changed")]],
        "G1",
    )
    replica = MemoryReplica()
    source = source_for(graph)
    report = source.sync(replica)
    assert report.full_resync
    assert report.changed_users == {"u1", "u2", "u3"}
    assert report.changed_groups == {"g1", "g2", "g9"}
    assert report.requests == len(graph.requests) == 3 + 3 + 2
    assert members(replica, "g1") == {"u1", "u2", "u3"}
    assert replica.get_delta_link("users") == f"{GRAPH}{USERS}?$deltatoken=U1"
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G1"
    assert "g9" not in replica.snapshot().groups
    first = graph.requests[0]
    assert first.url.path == USERS and "onPremisesSecurityIdentifier" in first.url.params["$select"]
    group_request = next(r for r in graph.requests if r.url.path == GROUPS)
    assert group_request.url.params["$select"].split(",")[-1] == "members"

    # Incremental: rename, member add + remove, soft delete, hard delete of a user, new user.
    graph.delta_round(USERS, "U1", [[user("u4"), gone("u3", "deleted")]], "U2")
    graph.delta_round(
        GROUPS,
        "G1",
        [[group("g1", "u4", removed=("u2",), displayName="Sales EU")], [gone("g2", "changed")]],
        "G2",
    )
    report = source.sync(replica)
    assert not report.full_resync
    assert report.changed_users == {"u3", "u4"} and report.changed_groups == {"g1", "g2"}
    snap = replica.snapshot()
    assert snap.groups["g1"].display_name == "Sales EU"
    assert members(replica, "g1") == {"u1", "u3", "u4"}
    assert snap.groups["g2"].deleted
    assert "u3" not in snap.users and "u4" in snap.users
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G2"

    # Restore comes back as new; hard delete forgets.
    graph.delta_round(USERS, "U2", [[]], "U3")
    graph.delta_round(GROUPS, "G2", [[group("g2", "u1")], [gone("g1", "deleted")]], "G3")
    source.sync(replica)
    snap = replica.snapshot()
    assert not snap.groups["g2"].deleted and members(replica, "g2") == {"u1"}
    assert "g1" not in snap.groups


def test_repeated_group_merges_properties_and_member_only_slices_do_not_blank_it() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    graph.delta_round(
        GROUPS,
        None,
        [
            [{"id": "g1", "members@delta": [{"@odata.type": "#microsoft.graph.group", "id": "g2"}]}],
            [group("g1", "u1", description="big")],
            [{"id": "g1", "members@delta": [{"id": "u2"}]}, group("g1", "u3", description="bigger")],
        ],
        "G1",
    )
    replica = MemoryReplica()
    source_for(graph).sync(replica)
    g1 = replica.snapshot().groups["g1"]
    assert g1.display_name == "G1" and g1.description == "bigger"
    assert g1.members == {
        MemberRef("group", "g2"),
        MemberRef("user", "u1"),
        MemberRef("user", "u2"),
        MemberRef("user", "u3"),
    }

    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.delta_round(
        GROUPS,
        "G1",
        [[{"id": "g1", "members@delta": [{"id": "u1", "@removed": {"reason": "deleted"}}]}]],
        "G2",
    )
    source_for(graph).sync(replica)
    g1 = replica.snapshot().groups["g1"]
    assert g1.display_name == "G1" and g1.description == "bigger"
    assert MemberRef("user", "u1") not in g1.members and len(g1.members) == 3


def test_member_add_and_remove_order_within_one_slice() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    slice_ = [
        {"id": "u1"},
        {"id": "u1", "@removed": {"reason": "deleted"}},
        {"id": "u2", "@removed": {"reason": "deleted"}},
        {"id": "u2"},
    ]
    graph.delta_round(GROUPS, None, [[{**group("g1"), "members@delta": slice_}]], "G1")
    replica = MemoryReplica()
    source_for(graph).sync(replica)
    assert members(replica, "g1") == {"u2"}


def test_expired_token_falls_back_to_full_resync_and_keeps_soft_deleted_groups(
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), user("u2")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1"), group("g2", "u1", "u2")]], "G1")
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)
    graph.delta_round(USERS, "U1", [[gone("u2", "changed")]], "U2")
    graph.delta_round(GROUPS, "G1", [[gone("g2", "changed")]], "G2")
    source.sync(replica)
    assert replica.snapshot().groups["g2"].deleted

    # Now both tokens expire. The full rounds see only live objects; deletedItems has the soft-deleted ones.
    graph.set(
        USERS, "U2", httpx.Response(400, json={"error": {"code": "syncStateNotFound", "message": "expired"}})
    )
    graph.set(GROUPS, "G2", httpx.Response(410, json={"error": {"code": "Gone", "message": "resync"}}))
    graph.delta_round(USERS, None, [[user("u1")]], "U3")
    graph.delta_round(GROUPS, None, [[group("g1", "u1")]], "G3")
    graph.set(DELETED_USERS, None, {"value": [user("u2", deletedDateTime="2024-01-01T00:00:00Z")]})
    graph.set(DELETED_GROUPS, None, {"value": [group("g2"), group("g1")]})  # g1 is live: the round wins
    with caplog.at_level(logging.WARNING, logger="writeback.graph"):
        report = source.sync(replica)
    assert report.full_resync
    assert "starting a full resync" in caplog.text
    snap = replica.snapshot()
    assert snap.groups["g2"].deleted and members(replica, "g2") == {"u1", "u2"}
    assert not snap.groups["g1"].deleted and members(replica, "g1") == {"u1"}
    assert (
        snap.users["u2"].deleted and snap.users["u2"].attributes["deletedDateTime"] == "2024-01-01T00:00:00Z"
    )
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G3"
    deleted_request = next(r for r in graph.requests if r.url.path == DELETED_GROUPS)
    assert "members" not in deleted_request.url.params["$select"].split(",")


def test_failure_mid_round_keeps_old_replica_and_link() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1")]], "G1")
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)
    before = replica.snapshot()
    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.set(
        GROUPS,
        "G1",
        {"value": [gone("g1", "deleted")], "@odata.nextLink": f"{GRAPH}{GROUPS}?$skiptoken=broken"},
    )
    graph.set(
        GROUPS,
        "broken",
        httpx.Response(500, json={"error": {"code": "InternalServerError", "message": "boom"}}),
    )
    with pytest.raises(SourceError, match="InternalServerError"):
        source.sync(replica)
    assert replica.snapshot().groups == before.groups
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G1"
    assert replica.get_delta_link("users") == f"{GRAPH}{USERS}?$deltatoken=U2"  # users round had committed


def test_resync_that_keeps_failing_raises_sync_state_error() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    graph.set(GROUPS, None, httpx.Response(410, json={"error": {"code": "Gone", "message": "resync"}}))
    with pytest.raises(SyncStateError, match="3 times"):
        source_for(graph).sync(MemoryReplica())


def test_beta_groups_carry_writeback_configuration() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    beta = "/beta/groups/delta"
    graph.delta_round(
        beta,
        None,
        [[group("g1", writebackConfiguration={"isEnabled": False, "onPremisesGroupType": None})]],
        "G1",
    )
    graph.set("/beta/directory/deletedItems/microsoft.graph.group", None, {"value": []})
    replica = MemoryReplica()
    source_for(graph, use_beta_for_groups=True).sync(replica)
    assert replica.snapshot().groups["g1"].writeback_enabled is False
    request = next(r for r in graph.requests if r.url.path == beta)
    assert "writebackConfiguration" in request.url.params["$select"]


def test_every_property_writeback_selects_is_declared_by_graph() -> None:
    """The client's $select lists against the emulator's copy of Graph's resource pages (v1.0 and beta):
    a misspelt or beta-only name would be Graph's 400 in production."""
    assert [p for p in DEFAULT_USER_SELECT if not is_declared(p, "user", "v1.0")] == []
    assert [p for p in GROUP_SELECT if p != "members" and not is_declared(p, "group", "v1.0")] == []
    assert [p for p in BETA_GROUP_EXTRA if not is_declared(p, "group", "beta")] == []
    assert not is_declared("writebackConfiguration", "group", "v1.0")
