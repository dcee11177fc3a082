"""The engine wired to in-memory fakes and a real SQLite store in memory."""

import pytest

from tests.unit.builders import BASE, settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, MemberRef
from writeback.core.planning import ChangeKind
from writeback.errors import PlanError, StalePlanError


def users(n):
    return {
        f"u{i}": CloudUser(
            f"u{i}", on_premises_sync_enabled=True, on_premises_security_identifier=f"S-1-5-21-9-{i}"
        )
        for i in range(n)
    }


def accounts(n):
    return [
        DirectoryAccount(
            f"CN=user{i},OU=Staff,{BASE}", f"00000000-0000-0000-0000-{i:012d}", f"S-1-5-21-9-{i}"
        )
        for i in range(n)
    ]


def gid(i):
    return f"{i:08d}-0000-0000-0000-{i:012d}"


def group(i, members, name=None):
    return CloudGroup(
        gid(i), display_name=name or f"G{i}", members=frozenset(MemberRef("user", m) for m in members)
    )


@pytest.fixture
def world():
    cloud = FakeCloud(users=users(6) | {"cloud": CloudUser("cloud")}, groups={})
    directory = FakeDirectory(accounts=accounts(6))
    store = SqliteStore(":memory:")
    engine = Engine(settings(), cloud, directory, store)
    return cloud, directory, store, engine


def cycle(engine, **kw):
    engine.sync()
    plan = engine.plan(**kw)
    return plan, engine.apply(plan)


def test_plan_refuses_before_first_sync(world):
    _, _, _, engine = world
    with pytest.raises(PlanError, match="no successful Graph sync"):
        engine.plan()


def test_first_apply_then_second_apply_writes_nothing(world):
    cloud, directory, store, engine = world
    cloud.groups = {gid(1): group(1, ["u0", "u1", "cloud"]), gid(2): group(2, ["u2"])}
    plan, result = cycle(engine)
    assert result.ok and plan.counts()["create"] == 2
    assert [o for o, _ in directory.ops].count("add") == 2
    before = directory.writes()
    plan2, _ = cycle(engine)
    assert plan2.changes == () and directory.writes() == before
    assert any(e.action == "skip_members" for e in store.read_log())


def test_groups_skipped_with_an_error_are_logged_with_the_reason(world):
    cloud, directory, store, _ = world
    engine = Engine(settings(members={"max_members": 2}), cloud, directory, store)
    cloud.groups = {gid(1): group(1, ["u0", "u1", "u2"]), gid(2): group(2, ["u3", "cloud"])}
    _, result = cycle(engine)
    assert result.ok
    (skip,) = store.read_log(action="skip")
    assert (skip.result, skip.cloud_id) == ("error", gid(1)) and "max_members" in (skip.error or "")
    (partial,) = store.read_log(action="skip_members")
    assert partial.cloud_id == gid(2) and partial.detail == {
        "of": 2,  # the group's members: u3 written, "cloud" skipped (the log's "1 of 2 members matched")
        "skipped": 1,
        "reasons": {"cloud-only user (not synced from AD)": 1},
        "members": [
            {"id": "cloud", "name": None, "kind": "user", "reason": "cloud-only user (not synced from AD)"}
        ],
    }


def test_a_group_note_is_logged_once_and_again_only_when_it_changes(world):
    cloud, directory, store, _ = world
    engine = Engine(settings(members={"max_members": 2}), cloud, directory, store)
    cloud.groups = {gid(1): group(1, ["u0", "u1", "u2"]), gid(2): group(2, ["u3", "cloud"])}
    for _ in range(3):
        cycle(engine)
    assert len(store.read_log(action="skip")) == 1 and len(store.read_log(action="skip_members")) == 1
    cloud.users["cloud2"] = CloudUser("cloud2", on_premises_sync_enabled=False)
    cloud.groups[gid(2)] = group(2, ["u3", "cloud", "cloud2"])
    cycle(engine)
    cycle(engine)
    rows = store.read_log(action="skip_members")
    assert sorted([m["id"] for m in r.detail["members"]] for r in rows) == [["cloud"], ["cloud", "cloud2"]]
    assert len(store.read_log(action="skip")) == 1  # the error did not change


def test_one_member_change_is_one_modify(world):
    cloud, directory, _, engine = world
    cloud.groups = {gid(1): group(1, ["u0", "u1"])}
    cycle(engine)
    before = directory.writes()
    cloud.groups = {gid(1): group(1, ["u0", "u1", "u2"])}
    plan, result = cycle(engine)
    assert result.ok and directory.writes() - before == 1
    assert plan.changes[0].kind is ChangeKind.ADD_MEMBERS


def test_failing_group_does_not_block_others_and_is_logged(world):
    cloud, directory, store, engine = world
    cloud.groups = {gid(1): group(1, ["u0"]), gid(2): group(2, ["u1"])}
    cycle(engine)
    cloud.groups = {gid(1): group(1, ["u0", "u3"]), gid(2): group(2, ["u1", "u4"])}
    first_dn = next(e["dn"] for e in directory.groups.values() if "G1" in e["dn"])
    from writeback.core.dn import normalize_dn

    directory.fail_on.add(normalize_dn(first_dn))
    _, result = cycle(engine)
    assert len(result.failed) == 1 and len(result.results) == 2
    errors = store.read_log(result="error")
    assert errors and "refused" in errors[-1].error


def test_saved_plan_must_still_match(world):
    cloud, _, _, engine = world
    cloud.groups = {gid(1): group(1, ["u0"])}
    engine.sync()
    saved = engine.plan()
    cloud.groups = {gid(1): group(1, ["u0", "u1"])}
    engine.sync()
    with pytest.raises(StalePlanError):
        engine.check_saved_plan(saved, engine.plan())


def test_sam_account_name_collision_with_foreign_object(world):
    cloud, directory, _, engine = world
    cloud.groups = {gid(1): group(1, ["u0"], name="Sales")}
    directory.groups["cn=x,dc=corp,dc=test"] = {
        "dn": "CN=x,DC=corp,DC=test",
        "guid": "g",
        "groupType": 2,
        "member": set(),
        "sAMAccountName": "Sales_000000000001",
    }
    plan, _ = cycle(engine)
    assert plan.changes[0].attributes["sAMAccountName"] != "Sales_000000000001"


def test_members_resolved_by_guid_only_when_sid_lookup_missed(world):
    import base64
    import uuid as uuidlib

    cloud, directory, _, engine = world
    guid = "00000000-0000-0000-0000-000000000005"
    no_sid = CloudUser(
        "g5",
        on_premises_sync_enabled=True,
        on_premises_immutable_id=base64.b64encode(uuidlib.UUID(guid).bytes_le).decode(),
    )
    cloud.users = {**users(3), "g5": no_sid}
    cloud.groups = {gid(1): group(1, ["u0", "u1", "u2", "g5"])}
    calls = []
    real = directory.resolve_accounts

    def spy(sids, guids):
        sids, guids = set(sids), set(guids)
        calls.append((len(sids), len(guids)))
        return real(sids, guids)

    directory.resolve_accounts = spy
    plan, result = cycle(engine)
    assert result.ok and len(plan.changes[0].members) == 4
    assert calls == [(3, 0), (0, 1)]  # GUIDs only for the user the SID lookup did not find


def test_the_log_records_old_and_new_values_and_the_member_values(world):
    cloud, _, store, engine = world
    cloud.groups = {gid(1): group(1, ["u0"], name="Old name")}
    cycle(engine)
    cloud.groups = {gid(1): group(1, ["u0", "u1"], name="Old name")}
    cloud.groups[gid(1)] = CloudGroup(
        gid(1), display_name="Old name", description="now described", members=cloud.groups[gid(1)].members
    )
    cycle(engine)
    (update,) = store.read_log(action="update")
    assert {"name": "description", "old": None, "new": "now described"} in update.detail["modified"]
    (added,) = store.read_log(action="add_members")
    assert added.detail["members"] == 1 and added.detail["member_values"] == [f"CN=user1,OU=Staff,{BASE}"]
