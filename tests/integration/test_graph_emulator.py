"""The Graph adapter against the Graph emulator over real HTTPS (test CA), with MSAL unchanged.

The strongest check: after any sequence of cloud changes, the incrementally synced replica equals the truth
read from the emulator, and equals a replica built from scratch by a full round.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.fakes import MemoryReplica

from writeback.adapters.graph import GraphClient, GraphSettings, GraphSource
from writeback.core.model import CloudSnapshot, MemberRef
from writeback.errors import AuthenticationError
from writeback.testbed.emulator.delta import DeltaSettings
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator
from writeback.testbed.tlsutil import self_signed_client_cert

pytestmark = pytest.mark.emulator

TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "emulator-secret-do-not-print"
CERT_PEM, KEY_PEM, _THUMB = self_signed_client_cert("writeback-graph-tests")


def uid(n: int) -> str:
    return str(uuid.UUID(int=n))


USERS = [
    {
        "id": uid(i),
        "userPrincipalName": f"user{i}@contoso.com",
        "displayName": f"User {i}",
        "accountEnabled": True,
        "department": "Sales" if i % 2 else "IT",
        "onPremisesSyncEnabled": i <= 6,
        "onPremisesSecurityIdentifier": f"S-1-5-21-1-2-3-{1100 + i}" if i <= 6 else None,
    }
    for i in range(1, 9)
]
GROUPS = [
    {
        "id": uid(100 + g),
        "displayName": f"Group {g}",
        "description": f"group number {g}",
        "mailNickname": f"group{g}",
        "mailEnabled": False,
        "securityEnabled": True,
        "groupTypes": [],
        "writebackConfiguration": {"isEnabled": g % 2 == 1, "onPremisesGroupType": "universalSecurityGroup"},
        "members": [uid(i) for i in range(1, 9) if i % (g + 1) == 0] + ([uid(101)] if g == 3 else []),
    }
    for g in range(1, 6)
]


def tenant() -> dict[str, Any]:
    return {
        "tenant_id": TENANT_ID,
        "apps": [
            {"client_id": CLIENT_ID, "client_secret": SECRET, "certificates": [CERT_PEM.decode()]},
        ],
        "users": [dict(u) for u in USERS],
        "groups": [dict(g) for g in GROUPS],
    }


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(tenant(), tmp_path / "emulator") as handle:
        yield handle


def settings_for(handle: EmulatorHandle, **overrides: Any) -> GraphSettings:
    values: dict[str, Any] = {
        "tenant_id": handle.tenant_id,
        "client_id": handle.client_id,
        "client_secret": handle.client_secret,
        "authority": handle.authority,
        "graph_url": handle.graph_url,
        "ca_file": handle.ca_file,
        "max_backoff": 0.2,
    }
    values.update(overrides)
    return GraphSettings(**values)


def truth(
    handle: EmulatorHandle,
) -> tuple[dict[str, str | None], dict[str, tuple[str, frozenset[MemberRef]]]]:
    """Live users (id → displayName) and groups (id → (displayName, members)) read from the emulator."""
    users = {u["id"]: u.get("displayName") for u in _all(handle, "/v1.0/users?$select=id,displayName")}
    groups = {}
    for g in _all(handle, "/v1.0/groups?$select=id,displayName"):
        refs = frozenset(
            MemberRef(m["@odata.type"].rsplit(".", 1)[-1], m["id"])
            for m in _all(handle, f"/v1.0/groups/{g['id']}/members?$select=id")
        )
        groups[g["id"]] = (g["displayName"], refs)
    return users, groups


def _all(handle: EmulatorHandle, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    url: str | None = path
    while url:
        response = handle.graph("GET", url)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        url = body.get("@odata.nextLink")
    return items


def live_view(
    snapshot: CloudSnapshot,
) -> tuple[dict[str, str | None], dict[str, tuple[str, frozenset[MemberRef]]]]:
    """The replica as Graph's list endpoints show it. Delta keeps soft-deleted users as members (they come
    back on restore; removal is only reported on a permanent delete) while /members hides them."""
    users = {u.id: u.display_name for u in snapshot.users.values() if not u.deleted}
    hidden = {u.id for u in snapshot.users.values() if u.deleted}
    groups = {
        g.id: (g.display_name, frozenset(m for m in g.members if m.id not in hidden))
        for g in snapshot.groups.values()
        if not g.deleted
    }
    return users, groups


def assert_replica_matches(handle: EmulatorHandle, replica: MemoryReplica) -> None:
    assert live_view(replica.snapshot()) == truth(handle)


def admin_call(handle: EmulatorHandle, method: str, path: str, json: Any = None, expect: int = 204) -> Any:
    response = handle.graph(method, path, json)
    assert response.status_code == expect, response.text
    return response.json() if response.content else None


def test_token_by_secret(emulator: EmulatorHandle) -> None:
    with GraphClient(settings_for(emulator)) as client:
        client.check()
        assert client.stats["requests"] == 2


def test_token_by_certificate(emulator: EmulatorHandle) -> None:
    cert_settings = settings_for(
        emulator, client_secret=None, certificate_pem=CERT_PEM, private_key_pem=KEY_PEM
    )
    with GraphClient(cert_settings) as client:
        client.check()
        assert client.get("/v1.0/groups", {"$select": "id"})["value"]


def test_wrong_secret_is_refused_without_showing_it(emulator: EmulatorHandle) -> None:
    client = GraphClient(settings_for(emulator, client_secret="not-the-secret-123"))
    with client, pytest.raises(AuthenticationError) as info:
        client.check()
    message = str(info.value)
    assert "AADSTS7000215" in message
    assert "not-the-secret-123" not in message and SECRET not in message


def test_untrusted_certificate_is_refused(emulator: EmulatorHandle) -> None:
    with GraphClient(settings_for(emulator, ca_file=None)) as client, pytest.raises(AuthenticationError):
        client.check()


def test_full_then_incremental_sync_through_every_kind_of_change(emulator: EmulatorHandle) -> None:
    replica = MemoryReplica()
    with GraphClient(settings_for(emulator)) as client:
        source = GraphSource(client)
        report = source.sync(replica)
        assert report.full_resync and report.requests >= 4
        assert report.changed_groups == {g["id"] for g in GROUPS}
        assert_replica_matches(emulator, replica)
        snapshot = replica.snapshot()
        assert snapshot.users[uid(1)].on_premises_security_identifier == "S-1-5-21-1-2-3-1101"
        assert snapshot.users[uid(1)].attributes["department"] == "Sales"
        assert MemberRef("group", uid(101)) in snapshot.groups[uid(103)].members

        # Nothing changed: an incremental round with nothing in it.
        report = source.sync(replica)
        assert not report.full_resync and not report.changed_groups and not report.changed_users

        # Create, rename, member add/remove.
        created = admin_call(
            emulator,
            "POST",
            "/v1.0/groups",
            {"displayName": "New", "mailEnabled": False, "mailNickname": "new", "securityEnabled": True},
            expect=201,
        )
        new_id = created["id"]
        admin_call(emulator, "PATCH", f"/v1.0/groups/{uid(101)}", {"displayName": "Group 1 renamed"})
        ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid(7)}"}
        admin_call(emulator, "POST", f"/v1.0/groups/{new_id}/members/$ref", ref)
        admin_call(emulator, "POST", f"/v1.0/groups/{uid(101)}/members/$ref", ref)
        admin_call(emulator, "DELETE", f"/v1.0/groups/{uid(102)}/members/{uid(3)}/$ref")
        admin_call(emulator, "PATCH", f"/v1.0/users/{uid(7)}", {"displayName": "User seven"})
        report = source.sync(replica)
        assert not report.full_resync
        assert {new_id, uid(101), uid(102)} <= report.changed_groups
        assert uid(7) in report.changed_users
        assert_replica_matches(emulator, replica)
        assert replica.snapshot().groups[uid(101)].display_name == "Group 1 renamed"

        # Soft delete, then hard delete of another group, and a soft-deleted user.
        admin_call(emulator, "DELETE", f"/v1.0/groups/{uid(104)}")
        admin_call(emulator, "DELETE", f"/v1.0/groups/{uid(105)}")
        admin_call(emulator, "DELETE", f"/v1.0/directory/deletedItems/{uid(105)}")
        admin_call(emulator, "DELETE", f"/v1.0/users/{uid(8)}")
        report = source.sync(replica)
        assert {uid(104), uid(105)} <= report.changed_groups
        snapshot = replica.snapshot()
        assert snapshot.groups[uid(104)].deleted
        assert uid(105) not in snapshot.groups
        assert snapshot.users[uid(8)].deleted
        assert MemberRef("user", uid(8)) in snapshot.groups[uid(101)].members  # kept until a hard delete
        assert_replica_matches(emulator, replica)

        # Restore comes back as new.
        admin_call(emulator, "POST", f"/v1.0/directory/deletedItems/{uid(104)}/restore", expect=200)
        source.sync(replica)
        assert not replica.snapshot().groups[uid(104)].deleted
        assert_replica_matches(emulator, replica)

        # A fresh full round sees the same cloud as the incremental one.
        fresh = MemoryReplica()
        GraphSource(client).sync(fresh)
        assert live_view(fresh.snapshot()) == live_view(replica.snapshot())


def test_forced_410_resyncs_without_losing_soft_deleted_groups(
    emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    replica = MemoryReplica()
    with GraphClient(settings_for(emulator)) as client:
        source = GraphSource(client)
        source.sync(replica)
        members_before = replica.snapshot().groups[uid(101)].members
        admin_call(emulator, "DELETE", f"/v1.0/groups/{uid(101)}")
        source.sync(replica)
        assert replica.snapshot().groups[uid(101)].deleted

        emulator.force_resync()
        with caplog.at_level(logging.WARNING, logger="writeback.graph"):
            report = source.sync(replica)
        assert report.full_resync
        assert "full resync" in caplog.text
        snapshot = replica.snapshot()
        assert snapshot.groups[uid(101)].deleted, (
            "a soft-deleted group must not look hard-deleted after resync"
        )
        assert snapshot.groups[uid(101)].members == members_before
        assert_replica_matches(emulator, replica)

        # And incremental rounds work again from the new link.
        admin_call(emulator, "PATCH", f"/v1.0/groups/{uid(102)}", {"description": "after resync"})
        report = source.sync(replica)
        assert not report.full_resync and uid(102) in report.changed_groups
        assert replica.snapshot().groups[uid(102)].description == "after resync"


def test_beta_groups_bring_writeback_configuration(emulator: EmulatorHandle) -> None:
    replica = MemoryReplica()
    with GraphClient(settings_for(emulator, use_beta_for_groups=True)) as client:
        GraphSource(client).sync(replica)
    groups = replica.snapshot().groups
    assert groups[uid(101)].writeback_enabled is True
    assert groups[uid(102)].writeback_enabled is False
    assert groups[uid(101)].writeback_group_type == "universalSecurityGroup"


def test_429_storm_and_flaky_network_converge(tmp_path: Path) -> None:
    """Small pages put faults in the middle of rounds: retries must resume them, not restart or skip."""
    pages = DeltaSettings(page_size=2, member_slice=2, page_members=3)
    with run_emulator(tenant(), tmp_path / "emulator", delta_settings=pages) as handle:
        handle.set_faults(throttle_ratio=0.4, retry_after="0.01", error_503_ratio=0.1, drop_ratio=0.1, seed=7)
        replica = MemoryReplica()
        with GraphClient(settings_for(handle, max_retries=30, max_backoff=0.05)) as client:
            report = GraphSource(client).sync(replica)
            stats = client.stats
        handle.set_faults(reset=True)
        assert report.full_resync
        assert stats["throttled"] > 0 and stats["unavailable"] > 0 and stats["network_errors"] > 0
        assert stats["retries"] == stats["throttled"] + stats["unavailable"] + stats["network_errors"]
        assert stats["requests:groups/delta"] > 5
        assert_replica_matches(handle, replica)


def test_expired_token_is_refreshed(emulator: EmulatorHandle) -> None:
    with GraphClient(settings_for(emulator)) as client:
        client.check()
        emulator.admin("faults", {"revoke_tokens": True})
        time.sleep(1.2)  # the emulator refuses tokens issued up to one second after the revocation
        client.check()
        assert client.stats.get("token_refreshes") == 1


def test_big_groups_split_over_many_small_pages(tmp_path: Path) -> None:
    big = tenant()
    big["users"] += [
        {"id": uid(1000 + i), "displayName": f"Bulk {i}", "accountEnabled": True} for i in range(120)
    ]
    big["groups"].append(
        {"id": uid(200), "displayName": "Big", "securityEnabled": True, "mailEnabled": False,
         "mailNickname": "big", "groupTypes": [], "members": [uid(1000 + i) for i in range(120)]}
    )  # fmt: skip
    settings = DeltaSettings(page_size=3, member_slice=7, page_members=10)
    with run_emulator(big, tmp_path / "emulator", delta_settings=settings) as handle:
        replica = MemoryReplica()
        with GraphClient(settings_for(handle)) as client:
            source = GraphSource(client)
            report = source.sync(replica)
            assert report.requests > 20
            assert len(replica.snapshot().groups[uid(200)].members) == 120
            assert replica.snapshot().groups[uid(200)].display_name == "Big"
            for i in range(0, 120, 3):
                admin_call(handle, "DELETE", f"/v1.0/groups/{uid(200)}/members/{uid(1000 + i)}/$ref")
            admin_call(handle, "PATCH", f"/v1.0/groups/{uid(200)}", {"description": "smaller"})
            source.sync(replica)
            assert len(replica.snapshot().groups[uid(200)].members) == 80
            assert replica.snapshot().groups[uid(200)].description == "smaller"
            assert_replica_matches(handle, replica)
