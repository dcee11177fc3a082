"""What user provisioning (issue 24) reads of users from Graph: onPremisesSyncBehavior (beta) of the users that
came from AD, only when asked; userType and accountEnabled; soft- and hard-deleted users."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest

from tests.unit.fakes import MemoryReplica
from tests.unit.test_graph_delta import (
    DELETED_USERS,
    GRAPH,
    GROUPS,
    USERS,
    ScriptedGraph,
    gone,
    source_for,
    user,
)
from writeback.adapters.graph.settings import DEFAULT_USER_SELECT, GraphSettings
from writeback.adapters.graph.validate import Problem, sync_behavior_problem, user_problem
from writeback.adapters.state.sqlite import SqliteStore
from writeback.core.model import CloudUser
from writeback.errors import ConfigError

SID = "S-1-5-21-1-2-3-1105"
FIELD = "onPremisesSyncBehavior.isCloudManaged"


def behavior(uid: str) -> str:
    return f"/beta/users/{uid}/onPremisesSyncBehavior"


def asked(graph: ScriptedGraph) -> list[str]:
    """The onPremisesSyncBehavior reads of users, in order."""
    return [r.url.path for r in graph.requests if r.url.path.startswith("/beta/users/")]


def tenant(graph: ScriptedGraph) -> None:
    """A first round: a converted user (SID, sync no longer enabled), a user synced now, a cloud-only user."""
    graph.delta_round(
        USERS,
        None,
        [
            [
                user("soa", onPremisesSecurityIdentifier=SID),
                user("synced", onPremisesSecurityIdentifier="S-1-5-21-1-2-3-7", onPremisesSyncEnabled=True),
                user("cloud"),
            ]
        ],
        "U1",
    )
    graph.delta_round(GROUPS, None, [[]], "G1")
    graph.set(behavior("soa"), None, {"isCloudManaged": True})


def due(source: Any) -> None:
    source.behavior._last_full = -1e9  # the periodic refresh is due


# -- onPremisesSyncBehavior of users ---------------------------------------------------------------------------


def test_a_converted_synced_user_is_read_as_soa_converted() -> None:
    graph = ScriptedGraph()
    tenant(graph)
    replica = MemoryReplica()
    report = source_for(graph, read_user_sync_behavior=True).sync(replica)
    users = replica.snapshot().users
    assert users["soa"].is_cloud_managed is True and users["soa"].soa_converted
    # A user synced now and a cloud-only user are not asked: only onPremisesSyncBehavior can tell the first's
    # source of authority, and the others' is known.
    assert asked(graph) == [behavior("soa")]
    assert users["synced"].is_cloud_managed is None and not users["synced"].soa_converted
    assert users["cloud"].is_cloud_managed is None
    assert "soa" in report.changed_users and report.skipped == ()


def test_a_source_without_the_flag_never_asks_for_users_behavior() -> None:
    graph = ScriptedGraph()
    tenant(graph)
    replica = MemoryReplica()
    source = source_for(graph)
    report = source.sync(replica)
    # users delta, users deletedItems, groups delta, groups deletedItems: nothing else.
    assert report.requests == len(graph.requests) == 4
    assert asked(graph) == []
    assert replica.snapshot().users["soa"].is_cloud_managed is None
    assert not replica.snapshot().users["soa"].soa_converted

    # Nor when the user changes, nor at the periodic refresh.
    graph.delta_round(USERS, "U1", [[user("soa", onPremisesSecurityIdentifier=SID, displayName="S")]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    due(source)
    report = source.sync(replica)
    assert report.requests == 2 and asked(graph) == []


def test_a_delta_round_that_changes_a_user_reads_its_behavior_again() -> None:
    graph = ScriptedGraph()
    graph.delta_round(
        USERS,
        None,
        [[user("soa", onPremisesSecurityIdentifier=SID), user("other", onPremisesSecurityIdentifier=SID)]],
        "U1",
    )
    graph.delta_round(GROUPS, None, [[]], "G1")
    graph.set(behavior("soa"), None, {"isCloudManaged": True})
    graph.set(behavior("other"), None, {"isCloudManaged": True})
    replica = MemoryReplica()
    source = source_for(graph, read_user_sync_behavior=True)
    source.sync(replica)
    assert sorted(asked(graph)) == [behavior("other"), behavior("soa")]
    graph.requests.clear()

    # Renamed and rolled back between two rounds: the changed user is read again, the other one is not.
    graph.delta_round(USERS, "U1", [[user("soa", onPremisesSecurityIdentifier=SID, displayName="R")]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    graph.set(behavior("soa"), None, {"isCloudManaged": False})
    report = source.sync(replica)
    assert asked(graph) == [behavior("soa")]
    users = replica.snapshot().users
    assert users["soa"].display_name == "R" and users["soa"].is_cloud_managed is False
    assert not users["soa"].soa_converted
    assert users["other"].is_cloud_managed is True  # kept across rounds in the replica
    assert report.changed_users == {"soa"}
    graph.requests.clear()

    # A round that changes nothing asks nothing until the periodic refresh is due; then every user from AD.
    graph.delta_round(USERS, "U2", [[]], "U3")
    graph.delta_round(GROUPS, "G2", [[]], "G3")
    source.sync(replica)
    assert asked(graph) == []
    graph.delta_round(USERS, "U3", [[]], "U4")
    graph.delta_round(GROUPS, "G3", [[]], "G4")
    graph.set(behavior("other"), None, {"isCloudManaged": False})  # a rollback: delta shows nothing
    due(source)
    report = source.sync(replica)
    assert sorted(asked(graph)) == [behavior("other"), behavior("soa")]
    assert report.changed_users == {"other"}
    assert replica.snapshot().users["other"].is_cloud_managed is False


def test_a_conversion_seen_by_delta_is_read_at_once() -> None:
    """A conversion sets onPremisesSyncEnabled from true to null (entra-docs, "Status of attributes after you
    convert SOA"): the delta change makes the user one to ask, without waiting for the periodic refresh."""
    graph = ScriptedGraph()
    graph.delta_round(
        USERS, None, [[user("u1", onPremisesSecurityIdentifier=SID, onPremisesSyncEnabled=True)]], "U1"
    )
    graph.delta_round(GROUPS, None, [[]], "G1")
    replica = MemoryReplica()
    source = source_for(graph, read_user_sync_behavior=True)
    source.sync(replica)
    assert asked(graph) == []
    graph.delta_round(
        USERS, "U1", [[user("u1", onPremisesSecurityIdentifier=SID, onPremisesSyncEnabled=None)]], "U2"
    )
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    graph.set(behavior("u1"), None, {"isCloudManaged": True})
    source.sync(replica)
    assert asked(graph) == [behavior("u1")]
    assert replica.snapshot().users["u1"].soa_converted


def test_a_malformed_is_cloud_managed_of_a_user_is_skipped_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph = ScriptedGraph()
    graph.delta_round(
        USERS,
        None,
        [[user("soa", onPremisesSecurityIdentifier=SID), user("two", onPremisesSecurityIdentifier=SID)]],
        "U1",
    )
    graph.delta_round(GROUPS, None, [[]], "G1")
    graph.set(behavior("soa"), None, {"isCloudManaged": True})
    graph.set(behavior("two"), None, {"isCloudManaged": True})
    replica = MemoryReplica()
    source = source_for(graph, read_user_sync_behavior=True)
    source.sync(replica)

    # At the periodic refresh: the replica's value stays, the other user's answer is applied.
    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    graph.set(behavior("soa"), None, {"isCloudManaged": "false"})
    graph.set(behavior("two"), None, {"isCloudManaged": False})
    due(source)
    with caplog.at_level(logging.WARNING, logger="writeback.graph"):
        report = source.sync(replica)
    users = replica.snapshot().users
    assert users["soa"].is_cloud_managed is True and users["two"].is_cloud_managed is False
    assert [(s.resource, s.object_id, s.field, s.problem) for s in report.skipped] == [
        ("users", "soa", FIELD, "a string, expected true, false or null")
    ]
    skipped = [r for r in caplog.records if getattr(r, "event", None) == "graph_object_skipped"]
    assert [(r.resource, r.object_id) for r in skipped] == [("users", "soa")]  # type: ignore[attr-defined]

    # After a delta change the value is unknown (fail closed) until a good answer comes.
    graph.delta_round(USERS, "U2", [[user("soa", onPremisesSecurityIdentifier=SID, displayName="X")]], "U3")
    graph.delta_round(GROUPS, "G2", [[]], "G3")
    graph.set(behavior("soa"), None, {"isCloudManaged": 1})
    report = source.sync(replica)
    assert replica.snapshot().users["soa"].is_cloud_managed is None
    assert [(s.object_id, s.problem) for s in report.skipped] == [
        ("soa", "a number (int), expected true, false or null")
    ]


def test_an_unreadable_user_behavior_stays_unknown_and_names_the_permission(
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph = ScriptedGraph()
    tenant(graph)
    graph.set(
        behavior("soa"),
        None,
        httpx.Response(403, json={"error": {"code": "Authorization_RequestDenied", "message": "denied"}}),
    )
    replica = MemoryReplica()
    with caplog.at_level(logging.WARNING, logger="writeback.graph"):
        report = source_for(graph, read_user_sync_behavior=True).sync(replica)
    assert replica.snapshot().users["soa"].is_cloud_managed is None
    assert "User-OnPremisesSyncBehavior.ReadWrite.All" in caplog.text
    assert "Group-OnPremisesSyncBehavior" not in caplog.text
    assert report.skipped == ()  # a refusal is not a malformed object


def test_an_answer_wrapped_in_value_as_the_get_page_example_shows_is_read() -> None:
    """https://learn.microsoft.com/graph/api/onpremisessyncbehavior-get?view=graph-rest-beta, Response example:
    ``{"value": {"@odata.type": "#microsoft.graph.onPremisesSyncBehavior", "id": …, "isCloudManaged": true}}``."""
    graph = ScriptedGraph()
    tenant(graph)
    wrapped = {"@odata.type": "#microsoft.graph.onPremisesSyncBehavior", "id": "soa", "isCloudManaged": True}
    graph.set(behavior("soa"), None, {"value": wrapped})
    replica = MemoryReplica()
    source_for(graph, read_user_sync_behavior=True).sync(replica)
    assert replica.snapshot().users["soa"].is_cloud_managed is True


def test_soft_deleted_users_are_not_asked() -> None:
    """A soft-deleted user is in deletedItems, not /users: its behaviour cannot be read, and it keeps what the
    replica knew."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("live", onPremisesSecurityIdentifier=SID)]], "U1")
    graph.delta_round(GROUPS, None, [[]], "G1")
    graph.set(DELETED_USERS, None, {"value": [user("bin", onPremisesSecurityIdentifier=SID)]})
    graph.set(behavior("live"), None, {"isCloudManaged": True})
    replica = MemoryReplica()
    source_for(graph, read_user_sync_behavior=True).sync(replica)
    assert asked(graph) == [behavior("live")]
    assert replica.snapshot().users["bin"].deleted


def test_is_cloud_managed_survives_the_sqlite_replica() -> None:
    """CloudUser's fields are stored whole (replica._user_to_json): a sync into the real store keeps the value,
    a soft delete keeps it, and the next incremental round keeps it without asking Graph again."""
    graph = ScriptedGraph()
    tenant(graph)
    store = SqliteStore(":memory:")
    source = source_for(graph, read_user_sync_behavior=True)
    source.sync(store)
    assert store.snapshot().users["soa"].soa_converted
    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    graph.requests.clear()
    source.sync(store)
    assert asked(graph) == [] and store.snapshot().users["soa"].is_cloud_managed is True

    converted = CloudUser("u9", on_premises_security_identifier=SID, is_cloud_managed=True)
    rolled_back = CloudUser("u8", on_premises_security_identifier=SID, is_cloud_managed=False)
    with store.transaction() as tx:
        tx.upsert_user(converted)
        tx.upsert_user(rolled_back)
    users = store.snapshot().users
    assert users["u9"] == converted and users["u8"] == rolled_back
    with store.transaction() as tx:
        tx.remove_user("u9", hard=False)
    assert store.snapshot().users["u9"] == dataclasses.replace(converted, deleted=True)


# -- userType, accountEnabled ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [MemoryReplica, lambda: SqliteStore(":memory:")])
def test_user_type_and_account_enabled_are_selected_and_stored(make: Any) -> None:
    graph = ScriptedGraph()
    graph.delta_round(
        USERS,
        None,
        [
            [
                user("guest", userType="Guest", accountEnabled=False),
                user("member", userType="Member", accountEnabled=True),
            ]
        ],
        "U1",
    )
    graph.delta_round(GROUPS, None, [[]], "G1")
    replica = make()
    source_for(graph).sync(replica)
    select = next(r for r in graph.requests if r.url.path == USERS).url.params["$select"].split(",")
    assert "userType" in select and "accountEnabled" in select
    users = replica.snapshot().users
    assert users["guest"].is_guest and users["guest"].account_enabled is False
    assert not users["member"].is_guest and users["member"].account_enabled is True


def test_another_user_select_starts_a_full_users_round_and_the_flag_does_not() -> None:
    """A delta link replays changes for the $select it was made with: after adding userType, unchanged users
    must be read again or it would never arrive (DELTA_QUERY_KEY). Reading onPremisesSyncBehavior changes no
    delta query, so turning it on needs no full round."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("g1")]], "U1")  # Graph sends only what was selected
    graph.delta_round(GROUPS, None, [[]], "G1")
    replica = MemoryReplica()
    older = tuple(p for p in DEFAULT_USER_SELECT if p != "userType")
    source_for(graph, user_select=older).sync(replica)
    assert not replica.snapshot().users["g1"].is_guest
    assert "userType" not in next(r for r in graph.requests if r.url.path == USERS).url.params["$select"]

    graph.delta_round(USERS, None, [[user("g1", userType="Guest")]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    graph.requests.clear()
    report = source_for(graph).sync(replica)
    assert report.full_resync and report.changed_users == {"g1"}
    first = graph.requests[0]
    assert first.url.path == USERS and "$deltatoken" not in str(first.url)
    assert "userType" in first.url.params["$select"]
    assert replica.snapshot().users["g1"].is_guest

    graph.delta_round(USERS, "U2", [[]], "U3")
    graph.delta_round(GROUPS, "G2", [[]], "G3")
    assert not source_for(graph, read_user_sync_behavior=True).sync(replica).full_resync


def test_settings_refuse_a_user_select_without_what_provisioning_reads() -> None:
    def settings(**extra: Any) -> GraphSettings:
        return GraphSettings(tenant_id="t", client_id="c", client_secret="s", **extra)

    without = tuple(p for p in DEFAULT_USER_SELECT if p != "userType")
    settings(user_select=without)  # fine while users are not provisioned
    with pytest.raises(ConfigError, match="userType"):
        settings(user_select=without, read_user_sync_behavior=True)
    assert settings(read_user_sync_behavior=True).read_user_sync_behavior


# -- deleted users ---------------------------------------------------------------------------------------------


def test_soft_and_hard_deleted_users() -> None:
    """users: delta: ``@removed`` reason "changed" is a soft delete (restorable from deletedItems), "deleted" a
    permanent one (https://learn.microsoft.com/graph/api/user-delta). The engine tells them apart by
    ``CloudUser.deleted`` and by the user being gone from the replica."""
    graph = ScriptedGraph()
    graph.delta_round(
        USERS,
        None,
        [[user(u, onPremisesSecurityIdentifier=SID) for u in ("soft", "hard", "later", "back")]],
        "U1",
    )
    graph.delta_round(GROUPS, None, [[]], "G1")
    for u in ("soft", "hard", "later", "back"):
        graph.set(behavior(u), None, {"isCloudManaged": True})
    replica = MemoryReplica()
    source = source_for(graph, read_user_sync_behavior=True)
    source.sync(replica)
    graph.requests.clear()

    graph.delta_round(
        USERS,
        "U1",
        [
            [
                gone("soft", "changed"),
                gone("hard", "deleted"),
                gone("later", "changed"),
                gone("back", "changed"),
            ]
        ],
        "U2",
    )
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    report = source.sync(replica)
    users = replica.snapshot().users
    assert users["soft"].deleted and users["soft"].on_premises_security_identifier == SID
    assert users["soft"].is_cloud_managed is True  # the last known state of the soft-deleted user is kept
    assert "hard" not in users
    assert report.changed_users == {"soft", "hard", "later", "back"}
    assert asked(graph) == []  # deleted users are not asked

    # Soft, then hard: gone. Restored: live again, and asked again.
    graph.delta_round(
        USERS, "U2", [[gone("later", "deleted"), user("back", onPremisesSecurityIdentifier=SID)]], "U3"
    )
    graph.delta_round(GROUPS, "G2", [[]], "G3")
    source.sync(replica)
    users = replica.snapshot().users
    assert "later" not in users
    assert not users["back"].deleted and users["back"].is_cloud_managed is True
    assert asked(graph) == [behavior("back")]


def test_a_full_round_reads_soft_deleted_users_from_deleted_items() -> None:
    """A full round sees live users only; deletedItems holds the soft-deleted ones, so they stay soft-deleted
    instead of reading as permanently deleted (which would be a delete in AD)."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("live"), gone("bin", "changed"), gone("purged", "deleted")]], "U1")
    graph.delta_round(GROUPS, None, [[]], "G1")
    graph.set(
        DELETED_USERS,
        None,
        {"value": [user("bin", userType="Guest", deletedDateTime="2026-01-02T03:04:05Z")]},
    )
    replica = MemoryReplica()
    report = source_for(graph).sync(replica)
    users = replica.snapshot().users
    assert report.full_resync
    assert users["bin"].deleted and users["bin"].is_guest
    assert not users["live"].deleted and "purged" not in users
    deleted = next(r for r in graph.requests if r.url.path == DELETED_USERS)
    assert deleted.url.params["$select"] == ",".join(DEFAULT_USER_SELECT)
    assert replica.get_delta_link("users") == f"{GRAPH}{USERS}?$deltatoken=U1"


# -- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [{"isCloudManaged": True}, {"isCloudManaged": False}, {"isCloudManaged": None}, {}]
)
def test_sync_behavior_accepts_a_boolean_or_null(body: dict[str, Any]) -> None:
    assert sync_behavior_problem(body) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("true", "a string, expected true, false or null"),
        (1, "a number (int), expected true, false or null"),
        ({}, "an object, expected true, false or null"),
    ],
)
def test_sync_behavior_refuses_other_types(value: Any, problem: str) -> None:
    assert sync_behavior_problem({"isCloudManaged": value}) == Problem(FIELD, problem)


@pytest.mark.parametrize(("value", "fine"), [("Guest", True), (None, True), (5, False), (["Guest"], False)])
def test_user_type_is_a_string_or_null(value: Any, fine: bool) -> None:
    problem = user_problem({"id": "u1", "userType": value})
    assert (problem is None) is fine
    if not fine:
        assert problem is not None and problem.field == "userType"


def test_a_user_changed_then_removed_in_one_round_is_not_asked_nor_brought_back() -> None:
    """Delta may list an object more than once in a round; the last entry wins. A user renamed and then
    hard-deleted in the same round is gone, and its behaviour is not read (nor written back from the rename)."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("x", onPremisesSecurityIdentifier=SID)]], "U1")
    graph.delta_round(GROUPS, None, [[]], "G1")
    graph.set(behavior("x"), None, {"isCloudManaged": True})
    replica = MemoryReplica()
    source = source_for(graph, read_user_sync_behavior=True)
    source.sync(replica)
    graph.requests.clear()
    renamed = user("x", onPremisesSecurityIdentifier=SID, displayName="Renamed")
    graph.delta_round(USERS, "U1", [[renamed], [gone("x", "deleted")]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    source.sync(replica)
    assert asked(graph) == [] and "x" not in replica.snapshot().users
