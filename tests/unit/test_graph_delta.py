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


# -- malformed objects (issue 23, finding 9): skipped and reported, the rest of the round goes on --------------


def skipped(report: Any) -> list[tuple[str, str | None, str]]:
    return [(s.resource, s.object_id, s.field) for s in report.skipped]


MALFORMED_GROUPS = [
    pytest.param({"displayName": 42}, "displayName", id="displayName-number"),
    pytest.param({"displayName": ["Sales"]}, "displayName", id="displayName-list"),
    pytest.param({"displayName": {"en": "Sales"}}, "displayName", id="displayName-object"),
    pytest.param({"description": 1.5}, "description", id="description-number"),
    pytest.param({"mailNickname": True}, "mailNickname", id="mailNickname-bool"),
    pytest.param({"mail": ["a@contoso.com"]}, "mail", id="mail-list"),
    pytest.param({"securityEnabled": "true"}, "securityEnabled", id="securityEnabled-string"),
    pytest.param({"mailEnabled": 1}, "mailEnabled", id="mailEnabled-number"),
    pytest.param({"onPremisesSyncEnabled": "no"}, "onPremisesSyncEnabled", id="onPremisesSyncEnabled-string"),
    pytest.param({"groupTypes": "Unified"}, "groupTypes", id="groupTypes-string"),
    pytest.param({"groupTypes": {"0": "Unified"}}, "groupTypes", id="groupTypes-object"),
    pytest.param({"groupTypes": ["Unified", 7]}, "groupTypes[1]", id="groupTypes-item-number"),
    pytest.param({"proxyAddresses": "SMTP:a@contoso.com"}, "proxyAddresses", id="proxyAddresses-string"),
    pytest.param({"proxyAddresses": [None]}, "proxyAddresses[0]", id="proxyAddresses-item-null"),
    pytest.param({"membershipRule": 5}, "membershipRule", id="membershipRule-number"),
    pytest.param({"visibility": False}, "visibility", id="visibility-bool"),
    pytest.param({"onPremisesSecurityIdentifier": 1105}, "onPremisesSecurityIdentifier", id="sid-number"),
    pytest.param({"createdDateTime": 1700000000}, "createdDateTime", id="createdDateTime-number"),
    pytest.param(
        {"writebackConfiguration": "on"}, "writebackConfiguration", id="writebackConfiguration-string"
    ),
    pytest.param(
        {"writebackConfiguration": {"isEnabled": "true"}},
        "writebackConfiguration.isEnabled",
        id="writebackConfiguration-isEnabled-string",
    ),
    pytest.param({"@removed": "deleted"}, "@removed", id="removed-string"),
    pytest.param({"@removed": {"reason": 3}}, "@removed.reason", id="removed-reason-number"),
]


@pytest.mark.parametrize(("bad", "field_name"), MALFORMED_GROUPS)
def test_a_malformed_group_is_skipped_and_reported_and_the_rest_of_the_round_applies(
    bad: dict[str, Any], field_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), user("u2")]], "U1")
    graph.delta_round(
        GROUPS,
        None,
        [[group("g1", "u1"), {**group("bad", "u1"), **bad}, group("g3", "u2")], [group("g4", "u1", "u2")]],
        "G1",
    )
    replica = MemoryReplica()
    with caplog.at_level(logging.WARNING, logger="writeback.graph"):
        report = source_for(graph).sync(replica)
    groups = replica.snapshot().groups
    assert "bad" not in groups
    assert set(groups) == {"g1", "g3", "g4"}
    assert members(replica, "g1") == {"u1"} and members(replica, "g4") == {"u1", "u2"}
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G1"
    assert skipped(report) == [("groups", "bad", field_name)]
    assert report.changed_groups >= {"g1", "g3", "g4"}
    records = [r for r in caplog.records if getattr(r, "event", None) == "graph_object_skipped"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.WARNING
    assert getattr(record, "object_id", None) == "bad" and getattr(record, "field", None) == field_name
    assert "bad" in record.getMessage() and field_name in record.getMessage()


@pytest.mark.parametrize(
    ("bad_id", "shown"),
    [
        pytest.param(42, None, id="number"),
        pytest.param(["g2"], None, id="list"),
        pytest.param({"id": "g2"}, None, id="object"),
        pytest.param(True, None, id="bool"),
    ],
)
def test_an_object_whose_id_is_not_a_string_is_skipped(bad_id: Any, shown: str | None) -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), {**user("x"), "id": bad_id}, user("u3")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1"), {**group("x", "u1"), "id": bad_id}]], "G1")
    replica = MemoryReplica()
    report = source_for(graph).sync(replica)
    snap = replica.snapshot()
    assert set(snap.users) == {"u1", "u3"} and set(snap.groups) == {"g1"}
    assert members(replica, "g1") == {"u1"}
    assert replica.get_delta_link("users") == f"{GRAPH}{USERS}?$deltatoken=U1"
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G1"
    assert skipped(report) == [("users", shown, "id"), ("groups", shown, "id")]


def test_a_page_item_that_is_not_an_object_is_skipped() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), "u2", None]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1")]], "G1")
    replica = MemoryReplica()
    report = source_for(graph).sync(replica)
    assert set(replica.snapshot().users) == {"u1"}
    assert skipped(report) == [("users", None, "value[1]"), ("users", None, "value[2]")]


@pytest.mark.parametrize(
    ("bad_user", "field_name"),
    [
        pytest.param({"displayName": 7}, "displayName", id="displayName-number"),
        pytest.param({"userPrincipalName": ["a@contoso.com"]}, "userPrincipalName", id="upn-list"),
        pytest.param({"accountEnabled": "yes"}, "accountEnabled", id="accountEnabled-string"),
        pytest.param({"onPremisesSecurityIdentifier": 1105}, "onPremisesSecurityIdentifier", id="sid-number"),
        pytest.param({"onPremisesImmutableId": {"b": 1}}, "onPremisesImmutableId", id="immutableId-object"),
        pytest.param({"otherMails": "a@b.c"}, "otherMails", id="otherMails-string"),
        pytest.param(
            {"onPremisesExtensionAttributes": ["x"]},
            "onPremisesExtensionAttributes",
            id="extensionAttributes-list",
        ),
        pytest.param(
            {"onPremisesExtensionAttributes": {"extensionAttribute1": 5}},
            "onPremisesExtensionAttributes.extensionAttribute1",
            id="extensionAttribute1-number",
        ),
    ],
)
def test_a_malformed_user_is_skipped_and_the_other_users_replicate(
    bad_user: dict[str, Any], field_name: str
) -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), {**user("bad"), **bad_user}], [user("u3")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1", "u3")]], "G1")
    replica = MemoryReplica()
    report = source_for(graph).sync(replica)
    assert set(replica.snapshot().users) == {"u1", "u3"}
    assert members(replica, "g1") == {"u1", "u3"}
    assert replica.get_delta_link("users") == f"{GRAPH}{USERS}?$deltatoken=U1"
    assert skipped(report) == [("users", "bad", field_name)]


@pytest.mark.parametrize(
    ("entry", "field_name"),
    [
        pytest.param({"@odata.type": "#microsoft.graph.user"}, "members@delta[1].id", id="no-id"),
        pytest.param(
            {"@odata.type": "#microsoft.graph.user", "id": ""}, "members@delta[1].id", id="empty-id"
        ),
        pytest.param(
            {"@odata.type": "#microsoft.graph.user", "id": 5}, "members@delta[1].id", id="id-number"
        ),
        pytest.param({"@odata.type": 3, "id": "u9"}, "members@delta[1].@odata.type", id="type-number"),
        pytest.param(
            {"@odata.type": "#microsoft.graph.user", "id": "u2", "@removed": "yes"},
            "members@delta[1].@removed",
            id="removed-string",
        ),
        pytest.param("u9", "members@delta[1]", id="a-string"),
        pytest.param(None, "members@delta[1]", id="null"),
    ],
)
def test_a_malformed_member_entry_skips_that_member_not_the_group(entry: Any, field_name: str) -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), user("u2"), user("u3")]], "U1")
    body = group("g1", "u1")
    body["members@delta"] = [
        *body["members@delta"],
        entry,
        {"@odata.type": "#microsoft.graph.user", "id": "u3"},
    ]
    graph.delta_round(GROUPS, None, [[body, group("g2", "u2")]], "G1")
    replica = MemoryReplica()
    report = source_for(graph).sync(replica)
    groups = replica.snapshot().groups
    assert groups["g1"].display_name == "G1"
    assert members(replica, "g1") == {"u1", "u3"} and members(replica, "g2") == {"u2"}
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G1"
    assert skipped(report) == [("groups", "g1", field_name)]


def test_members_delta_that_is_not_a_list_skips_those_members_and_keeps_the_group() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1")]], "U1")
    body = {**group("g1"), "members@delta": {"id": "u1"}}
    graph.delta_round(GROUPS, None, [[body, group("g2", "u1")]], "G1")
    replica = MemoryReplica()
    report = source_for(graph).sync(replica)
    assert replica.snapshot().groups["g1"].display_name == "G1"
    assert members(replica, "g1") == set() and members(replica, "g2") == {"u1"}
    assert skipped(report) == [("groups", "g1", "members@delta")]


def test_a_replicated_group_arriving_malformed_keeps_its_last_good_copy() -> None:
    """An incremental round: the malformed copy is not stored (the last good one stays), its well-formed member
    changes are (they cannot be read again once the delta link moves on), the rest of the page applies."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), user("u2")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1", description="good"), group("g2", "u1")]], "G1")
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)

    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.delta_round(
        GROUPS,
        "G1",
        [[group("g1", "u2", displayName=["x"], description="new"), group("g2", displayName="G2 renamed")]],
        "G2",
    )
    report = source.sync(replica)
    groups = replica.snapshot().groups
    assert groups["g1"].display_name == "G1" and groups["g1"].description == "good"
    assert members(replica, "g1") == {"u1", "u2"}
    assert groups["g2"].display_name == "G2 renamed"
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G2"
    assert skipped(report) == [("groups", "g1", "displayName")]

    # Fixed in the cloud: the next round stores it again.
    graph.delta_round(USERS, "U2", [[]], "U3")
    graph.delta_round(GROUPS, "G2", [[group("g1", displayName="Sales", description="new")]], "G3")
    report = source.sync(replica)
    assert replica.snapshot().groups["g1"].display_name == "Sales" and report.skipped == ()


def test_a_full_resync_keeps_the_last_good_copy_of_a_malformed_object() -> None:
    """A full round starts from an empty replica: a malformed object that was replicated before is restored
    from its last good copy, instead of vanishing (which would read as a deleted group or user)."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1"), user("u2")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1", "u2", description="good"), group("g2", "u1")]], "G1")
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)

    expired = httpx.Response(410, json={"error": {"code": "Gone", "message": "resync"}})
    graph.set(USERS, "U1", expired)
    graph.set(GROUPS, "G1", expired)
    graph.delta_round(USERS, None, [[{**user("u1"), "accountEnabled": "yes"}, user("u2")]], "U2")
    graph.delta_round(
        GROUPS, None, [[group("g1", "u1", securityEnabled="yes"), group("g2", "u1", "u2")]], "G2"
    )
    report = source.sync(replica)
    assert report.full_resync
    snap = replica.snapshot()
    assert set(snap.users) == {"u1", "u2"} and snap.users["u1"].display_name == "U1"
    assert snap.groups["g1"].description == "good" and snap.groups["g1"].security_enabled is True
    # The full round's member list is the current truth, read from well-formed entries.
    assert members(replica, "g1") == {"u1"} and members(replica, "g2") == {"u1", "u2"}
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G2"
    assert skipped(report) == [("users", "u1", "accountEnabled"), ("groups", "g1", "securityEnabled")]


def test_a_malformed_soft_deleted_group_in_deleted_items_is_skipped() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1")]], "G1")
    graph.set(DELETED_GROUPS, None, {"value": [group("g8"), group("g9", displayName=9)]})
    replica = MemoryReplica()
    report = source_for(graph).sync(replica)
    groups = replica.snapshot().groups
    assert groups["g8"].deleted and "g9" not in groups
    assert skipped(report) == [("groups", "g9", "displayName")]


def test_a_page_whose_value_is_not_a_list_fails_the_round_and_keeps_the_link() -> None:
    """Not one object but the page is broken: which changes it held is unknown, so nothing of the round is
    stored and the next sync repeats it from the same link."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1")]], "G1")
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)
    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.set(GROUPS, "G1", {"value": {"id": "g2"}, "@odata.deltaLink": f"{GRAPH}{GROUPS}?$deltatoken=G2"})
    with pytest.raises(SourceError, match="'value' is an object, expected a list"):
        source.sync(replica)
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G1"
    assert set(replica.snapshot().groups) == {"g1"}


def test_a_stored_link_on_another_endpoint_is_not_followed_and_a_full_round_reads_from_the_configured_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After graph_url changed (the sandbox's emulator on a new port, another cloud), the stored delta links
    point elsewhere. Following them would send the token there; refusing every cycle quarantined the service
    for good. A full round from the configured endpoint replaces them."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1")]], "U1")
    graph.delta_round(GROUPS, None, [[group("g1", "u1")]], "G1")
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)
    old = "https://127.0.0.1:39149"
    with replica.transaction() as tx:
        for resource, path, token in (("users", USERS, "U1"), ("groups", GROUPS, "G1")):
            tx.set_delta_link(resource, f"{old}{path}?$deltatoken={token}")
    graph.requests.clear()
    with caplog.at_level(logging.WARNING):
        report = source.sync(replica)
    assert report.full_resync
    assert all(r.url.host == "graph.example.test" for r in graph.requests)
    assert all("$deltatoken" not in r.url.params for r in graph.requests if r.url.path in (USERS, GROUPS))
    assert replica.get_delta_link("groups") == f"{GRAPH}{GROUPS}?$deltatoken=G1"
    assert members(replica, "g1") == {"u1"}
    assert "not on the configured Graph endpoint" in caplog.text
