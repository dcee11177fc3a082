"""The concurrent first read (issue 27) against the Graph emulator over real HTTPS.

The reference is the sequential read it replaces: one full delta round (``max_in_flight = 1``). A concurrent
first read must leave exactly the same replica, under throttling too, and catch up with changes made while it
reads, by delta from the cursor it took first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.test_graph_emulator import (
    admin_call,
    assert_replica_matches,
    settings_for,
    tenant,
    uid,
)
from tests.unit.fakes import MemoryReplica

from writeback.adapters.graph import GraphClient, GraphSource
from writeback.adapters.graph.firstread import GroupReader
from writeback.core.model import CloudSnapshot
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator

pytestmark = pytest.mark.emulator


def rich_tenant() -> dict[str, Any]:
    """The adapter tests' tenant, plus a group bigger than several member pages, a nested group, a soft-deleted
    user and a soft-deleted group (both come from deletedItems, not from the lists)."""
    t = tenant()
    t["users"] += [
        {"id": uid(1000 + i), "displayName": f"Bulk {i}", "accountEnabled": True} for i in range(40)
    ]
    t["groups"].append(
        {"id": uid(200), "displayName": "Big", "securityEnabled": True, "mailEnabled": False,
         "mailNickname": "big", "groupTypes": [], "members": [uid(1000 + i) for i in range(40)] + [uid(101)]}
    )  # fmt: skip
    return t


def soft_delete_some(handle: EmulatorHandle) -> None:
    admin_call(handle, "DELETE", f"/v1.0/users/{uid(8)}")
    admin_call(handle, "DELETE", f"/v1.0/groups/{uid(105)}")


def comparable(snapshot: CloudSnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    return dict(snapshot.users), dict(snapshot.groups)


def read(handle: EmulatorHandle, **settings: Any) -> tuple[MemoryReplica, GraphClient, Any]:
    replica = MemoryReplica()
    client = GraphClient(settings_for(handle, **settings))
    with client:
        report = GraphSource(client).sync(replica)
    return replica, client, report


@pytest.mark.parametrize("batch_size", [20, 1])
def test_concurrent_first_read_equals_the_sequential_delta_round(tmp_path: Path, batch_size: int) -> None:
    with run_emulator(rich_tenant(), tmp_path / "emulator") as handle:
        soft_delete_some(handle)
        sequential, seq_client, seq_report = read(handle, max_in_flight=1)
        concurrent, con_client, con_report = read(handle, max_in_flight=8, page_size=3, batch_size=batch_size)
        assert comparable(concurrent.snapshot()) == comparable(sequential.snapshot())
        assert con_report.full_resync and seq_report.full_resync
        assert con_report.changed_groups == seq_report.changed_groups
        assert con_report.changed_users == seq_report.changed_users
        assert concurrent.get_delta_link("groups") and concurrent.get_delta_link("users")
        # The concurrent read listed and read members (pages of 3: the big group took 14 member pages) ...
        stats = con_client.stats
        member_pages = stats.get("requests:groups/{id}/members", 0) + stats.get(
            "batched:groups/{id}/members", 0
        )
        assert member_pages == 14 + 4  # the big group's pages, and one for each of the 4 other live groups
        assert (stats.get("requests:$batch", 0) > 0) == (batch_size > 1)
        assert stats["requests:groups"] >= 2 and stats["requests:users"] >= 2
        assert "requests:groups/{id}/members" not in seq_client.stats
        # ... and both replicas go on with incremental rounds alike.
        admin_call(handle, "PATCH", f"/v1.0/groups/{uid(101)}", {"displayName": "Group 1 renamed"})
        admin_call(handle, "DELETE", f"/v1.0/groups/{uid(200)}/members/{uid(1003)}/$ref")
        for replica, settings in ((sequential, {"max_in_flight": 1}), (concurrent, {"max_in_flight": 8})):
            with GraphClient(settings_for(handle, **settings)) as client:
                report = GraphSource(client).sync(replica)
            assert not report.full_resync and {uid(101), uid(200)} <= report.changed_groups
        assert comparable(concurrent.snapshot()) == comparable(sequential.snapshot())
        assert_replica_matches(handle, concurrent)


def test_a_429_storm_converges_and_lowers_the_concurrency(tmp_path: Path) -> None:
    with run_emulator(rich_tenant(), tmp_path / "emulator") as handle:
        sequential, _, _ = read(handle, max_in_flight=1)
        handle.set_faults(throttle_ratio=0.4, retry_after="0.02", error_503_ratio=0.05, seed=11)
        throttled, client, report = read(
            handle, max_in_flight=8, page_size=3, max_retries=40, max_backoff=0.05
        )
        handle.set_faults(reset=True)
        assert report.full_resync
        assert client.stats["throttled"] > 10
        assert client.limit.decreases > 0
        assert comparable(throttled.snapshot()) == comparable(sequential.snapshot())


class ChangeOnce:
    """Runs ``change`` (the cloud administrator's edits) once, just before the first request whose path
    contains ``when``, then lets the request go: a change made while the first read is under way."""

    def __init__(self, client: GraphClient, when: str, change: Callable[[], None]) -> None:
        self.done = False
        self._lock = threading.Lock()
        for name in ("get", "get_if_found"):
            original = getattr(client, name)

            def wrapped(path: str, params: Any = None, _original: Any = original) -> Any:
                with self._lock:
                    if not self.done and when in path and "delta" not in path:
                        self.done = True
                        change()
                return _original(path, params)

            setattr(client, name, wrapped)


def cloud_edits(handle: EmulatorHandle) -> Callable[[], None]:
    def change() -> None:
        created = admin_call(
            handle,
            "POST",
            "/v1.0/groups",
            {
                "displayName": "Made meanwhile",
                "mailEnabled": False,
                "mailNickname": "meanwhile",
                "securityEnabled": True,
            },
            expect=201,
        )
        ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid(1001)}"}
        admin_call(handle, "POST", f"/v1.0/groups/{created['id']}/members/$ref", ref)
        admin_call(handle, "POST", f"/v1.0/groups/{uid(101)}/members/$ref", ref)
        admin_call(handle, "DELETE", f"/v1.0/groups/{uid(200)}/members/{uid(1000)}/$ref")
        # Removed and added back: the member's state now is what counts.
        admin_call(handle, "DELETE", f"/v1.0/groups/{uid(200)}/members/{uid(1002)}/$ref")
        back = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid(1002)}"}
        admin_call(handle, "POST", f"/v1.0/groups/{uid(200)}/members/$ref", back)
        admin_call(handle, "PATCH", f"/v1.0/groups/{uid(102)}", {"description": "changed meanwhile"})
        admin_call(handle, "DELETE", f"/v1.0/groups/{uid(103)}")
        admin_call(handle, "DELETE", f"/v1.0/directory/deletedItems/{uid(103)}")
        admin_call(handle, "PATCH", f"/v1.0/users/{uid(7)}", {"displayName": "User seven meanwhile"})

    return change


@pytest.mark.parametrize(
    "when",
    [
        "/users",  # before the user list: both lists see every edit, and the catch-ups replay them all
        # Before the group list, and during the member reads (some groups read before the edits, some after).
        # The users' list is read alongside (the full rounds side by side): the user edit is caught up by the
        # users' catch-up round when made before it, else by the next sync.
        "/groups",
        "/members",
    ],
)
def test_changes_made_during_the_first_read_are_caught_up_and_replays_are_harmless(
    tmp_path: Path, when: str
) -> None:
    with run_emulator(rich_tenant(), tmp_path / "emulator") as handle:
        replica = MemoryReplica()
        with GraphClient(settings_for(handle, max_in_flight=4, page_size=3)) as client:
            hook = ChangeOnce(client, when, cloud_edits(handle))
            source = GraphSource(client)
            report = source.sync(replica)
            assert hook.done and report.full_resync
            snapshot = replica.snapshot()
            assert uid(103) not in snapshot.groups
            assert snapshot.groups[uid(102)].description == "changed meanwhile"
            assert {g.display_name for g in snapshot.groups.values()} >= {"Made meanwhile"}
            # The delta links stored are the catch-ups': the next round has nothing left to replay but the
            # user edit made after the users' round was over.
            again = source.sync(replica)
            assert not again.full_resync and not again.changed_groups
            if when == "/users":
                assert again.changed_users == frozenset()
            else:
                assert again.changed_users <= {uid(7)}
            assert replica.snapshot().users[uid(7)].display_name == "User seven meanwhile"
            assert_replica_matches(handle, replica)
        # And the replica equals a sequential full read of the cloud as it is now.
        sequential, _, _ = read(handle, max_in_flight=1)
        assert comparable(replica.snapshot()) == comparable(sequential.snapshot())


def test_a_slow_group_is_handed_on_whole_after_the_quick_ones(tmp_path: Path) -> None:
    """Member pages of one group answer slowly (the emulator's latency fault on that group's path only): every
    other group is handed on first, and the slow one only with its whole member list, never a part of it."""
    with run_emulator(rich_tenant(), tmp_path / "emulator") as handle:
        slow = uid(200)
        handle.set_faults(latency_ms=150, path_contains=f"/groups/{slow}/members")
        try:
            with GraphClient(settings_for(handle, max_in_flight=4, page_size=5)) as client:
                reader = GroupReader(client, "v1.0", "id,displayName", workers=4)
                handed: list[tuple[str, int, float]] = []
                started = time.perf_counter()
                for group in reader.groups():
                    handed.append((group["id"], len(group["members@delta"]), time.perf_counter() - started))
        finally:
            handle.set_faults(reset=True)
        order = [gid for gid, _, _ in handed]
        assert sorted(order) == sorted(g["id"] for g in rich_tenant()["groups"])
        assert order[-1] == slow, "the slow group came before quicker ones"
        slow_members, slow_at = handed[-1][1], handed[-1][2]
        assert slow_members == 41  # 9 pages of 5: all of them
        assert slow_at >= 9 * 0.15  # handed on only after its last (slow) page
        quick_done = max(at for gid, _, at in handed if gid != slow)
        assert quick_done < slow_at - 0.5, "the quick groups waited for the slow one"


@pytest.mark.parametrize("batch_size", [20, 1])
def test_a_group_deleted_between_list_and_member_read_is_left_to_the_catch_up(
    tmp_path: Path, batch_size: int
) -> None:
    with run_emulator(rich_tenant(), tmp_path / "emulator") as handle:
        replica = MemoryReplica()
        doomed = uid(104)

        def delete_doomed(urls: list[str]) -> None:
            if any(doomed in u for u in urls) and doomed not in handle.tenant.deleted:
                admin_call(handle, "DELETE", f"/v1.0/groups/{doomed}")

        settings = settings_for(handle, max_in_flight=2, page_size=50, batch_size=batch_size)
        with GraphClient(settings) as client:
            single, batched = client.get_if_found, client.batch_get

            def get_if_found(path: str, params: Any = None) -> Any:
                delete_doomed([path])
                return single(path, params)

            def batch_get(version: str, urls: list[str]) -> Any:
                delete_doomed(urls)
                return batched(version, urls)

            client.get_if_found = get_if_found  # type: ignore[method-assign]
            client.batch_get = batch_get  # type: ignore[method-assign]
            GraphSource(client).sync(replica)
        group = replica.snapshot().groups[doomed]
        assert group.deleted  # soft-deleted meanwhile: from deletedItems, as a sequential read would find it
        assert_replica_matches(handle, replica)


def test_the_emulator_answers_json_batches_item_by_item(tmp_path: Path) -> None:
    with run_emulator(rich_tenant(), tmp_path / "emulator") as handle:
        requests = [
            {"id": "1", "method": "GET", "url": f"/groups/{uid(101)}/members?$select=id"},
            {"id": "2", "method": "GET", "url": f"/groups/{uid(999)}/members"},
            {"id": "3", "method": "GET", "url": "/groups?$select=nosuchproperty"},
            {"id": "4", "method": "DELETE", "url": f"/groups/{uid(101)}"},
        ]
        response = handle.graph("POST", "/v1.0/$batch", {"requests": requests})
        assert response.status_code == 200, response.text
        answers = {r["id"]: r for r in response.json()["responses"]}
        assert answers["1"]["status"] == 200
        assert {m["id"] for m in answers["1"]["body"]["value"]} == set(tenant()["groups"][0]["members"])
        assert answers["2"]["status"] == 404
        assert answers["2"]["body"]["error"]["code"] == "Request_ResourceNotFound"
        assert answers["3"]["status"] == 400
        assert answers["4"]["status"] == 400 and uid(101) in handle.tenant.live["group"]
        # Malformed batches are refused whole.
        too_many = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]
        assert handle.graph("POST", "/v1.0/$batch", {"requests": too_many}).status_code == 400
        twice = [{"id": "a", "method": "GET", "url": "/users"}] * 2
        assert handle.graph("POST", "/v1.0/$batch", {"requests": twice}).status_code == 400
        absolute = [{"id": "a", "method": "GET", "url": f"{handle.graph_url}/v1.0/users"}]
        assert handle.graph("POST", "/v1.0/$batch", {"requests": absolute}).status_code == 400
        # Each item is authorised like a request: a batch without a token gets nothing.
        anonymous = httpx.post(
            f"{handle.graph_url}/v1.0/$batch", json={"requests": requests[:1]}, verify=handle.ssl_context()
        )
        assert anonymous.status_code == 401
