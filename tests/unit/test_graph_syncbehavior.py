"""onPremisesSyncBehavior (beta) read for groups that came from AD: converted, rolled back, unreadable."""

from __future__ import annotations

import httpx

from tests.unit.fakes import MemoryReplica
from tests.unit.test_graph_delta import GROUPS, USERS, ScriptedGraph, group, source_for, user

SID = "S-1-5-21-1-2-3-1105"


def behavior(gid: str) -> str:
    return f"/beta/groups/{gid}/onPremisesSyncBehavior"


def test_converted_and_rolled_back_groups_get_is_cloud_managed_and_count_as_changed() -> None:
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1")]], "U1")
    graph.delta_round(
        GROUPS,
        None,
        [
            [
                group("soa", onPremisesSecurityIdentifier=SID),
                group("synced", onPremisesSecurityIdentifier="S-1-5-21-1-2-3-7", onPremisesSyncEnabled=True),
                group("cloud"),
            ]
        ],
        "G1",
    )
    graph.set(behavior("soa"), None, {"isCloudManaged": True})
    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)
    groups = replica.snapshot().groups
    assert groups["soa"].on_premises_security_identifier == SID and groups["soa"].soa_converted
    asked = [r.url.path for r in graph.requests if "onPremisesSyncBehavior" in r.url.path]
    assert asked == [behavior("soa")]  # a synced group and a cloud group are not asked

    graph.set(behavior("soa"), None, {"isCloudManaged": False})  # rolled back: delta shows nothing
    source.behavior._last_full = -1e9  # the periodic refresh is due
    report = source.sync(replica)
    assert "soa" in report.changed_groups
    assert replica.snapshot().groups["soa"].is_cloud_managed is False


def test_unreadable_behavior_stays_unknown_so_the_group_is_not_written(caplog) -> None:  # type: ignore[no-untyped-def]
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[user("u1")]], "U1")
    graph.delta_round(GROUPS, None, [[group("soa", onPremisesSecurityIdentifier=SID)]], "G1")
    graph.set(
        behavior("soa"),
        None,
        httpx.Response(403, json={"error": {"code": "Authorization_RequestDenied", "message": "denied"}}),
    )
    replica = MemoryReplica()
    source_for(graph).sync(replica)
    assert replica.snapshot().groups["soa"].is_cloud_managed is None
    assert "Group-OnPremisesSyncBehavior.ReadWrite.All" in caplog.text


def test_a_malformed_is_cloud_managed_keeps_the_last_good_value_and_is_reported() -> None:
    """isCloudManaged is a Boolean (onPremisesSyncBehavior resource, beta): another type keeps what the replica
    knew, and is reported like any malformed Graph object (issue 23, finding 9)."""
    graph = ScriptedGraph()
    graph.delta_round(USERS, None, [[]], "U1")
    graph.delta_round(
        GROUPS,
        None,
        [[group("soa", onPremisesSecurityIdentifier=SID), group("two", onPremisesSecurityIdentifier=SID)]],
        "G1",
    )
    graph.set(behavior("soa"), None, {"isCloudManaged": True})
    graph.set(behavior("two"), None, {"isCloudManaged": True})
    replica = MemoryReplica()
    source = source_for(graph)
    source.sync(replica)
    assert replica.snapshot().groups["soa"].is_cloud_managed is True

    graph.delta_round(USERS, "U1", [[]], "U2")
    graph.delta_round(GROUPS, "G1", [[]], "G2")
    graph.set(behavior("soa"), None, {"isCloudManaged": "false"})
    graph.set(behavior("two"), None, {"isCloudManaged": False})
    source.behavior._last_full = -1e9  # the periodic refresh is due
    report = source.sync(replica)
    groups = replica.snapshot().groups
    assert groups["soa"].is_cloud_managed is True and groups["two"].is_cloud_managed is False
    assert [(s.resource, s.object_id, s.field) for s in report.skipped] == [
        ("groups", "soa", "onPremisesSyncBehavior.isCloudManaged")
    ]
