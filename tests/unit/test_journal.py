"""The provisioning log's vocabulary (issue 22): one list of actions and results, and the engine writes no other."""

from dataclasses import replace

from tests.unit.builders import settings, synced_people
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.core.journal import CHANGE_ACTIONS, LOG_ACTIONS, LOG_RESULTS
from writeback.core.model import CloudGroup, CloudUser, MemberRef
from writeback.core.planning import Change, ChangeKind, Plan


def test_a_change_kinds_action_is_its_plan_name_and_a_known_log_action():
    assert [k.action for k in ChangeKind] == [
        "create",
        "update",
        "move",
        "add_members",
        "remove_members",
        "delete",
    ]
    saved = Plan((Change(ChangeKind.ADD_MEMBERS, "g", "CN=G"),)).to_dict()
    assert saved["changes"][0]["kind"] == ChangeKind.ADD_MEMBERS.action  # a plan and the log say the same


def test_every_known_action_and_result_is_listed_once():
    assert len(set(LOG_ACTIONS)) == len(LOG_ACTIONS) and len(set(LOG_RESULTS)) == len(LOG_RESULTS)
    assert {"skip", "skip_members", "held", "staged_delete"} <= set(LOG_ACTIONS)
    assert {"allow", "reconcile", "clear_quarantine", "provision"} <= set(LOG_ACTIONS)
    assert set(LOG_RESULTS) == {"success", "error", "skipped", "held", "info", "pending", "interrupted"}


def gid(i: int) -> str:
    return f"{i:08d}-0000-0000-0000-{i:012d}"


def group(i: int, members: list[str], name: str | None = None) -> CloudGroup:
    return CloudGroup(
        gid(i), display_name=name or f"G{i}", members=frozenset(MemberRef("user", m) for m in members)
    )


def test_the_engine_logs_only_known_actions_and_results():
    """Every kind of change, skipped groups and members, and held deletes: each row's action and result is
    one the CLI and console accept."""
    users, accounts = synced_people(4)
    cloud = FakeCloud(users=users | {"cloud": CloudUser("cloud")}, groups={})
    store = SqliteStore(":memory:")
    engine = Engine(settings(members={"max_members": 3}), cloud, FakeDirectory(accounts=accounts), store)

    def cycle() -> None:
        engine.sync()
        engine.apply(engine.plan())

    cloud.groups = {gid(i): group(i, ["u0"]) for i in range(1, 13)}
    cloud.groups[gid(1)] = group(1, ["u0", "cloud"])  # a member not written: skip_members
    cloud.groups[gid(13)] = group(13, ["u0", "u1", "u2", "u3"])  # over members.max_members: skip
    cycle()
    cloud.groups[gid(3)] = group(3, ["u0"], name="Renamed")  # move (and update of displayName)
    cloud.groups[gid(4)] = group(4, ["u1"])  # add_members, remove_members
    cloud.groups[gid(5)] = replace(cloud.groups[gid(5)], description="described")  # update
    del cloud.groups[gid(12)]  # delete
    cycle()
    cloud.groups = {}  # 11 deletes, over safety.delete_threshold: staged_delete, held
    cycle()

    rows = store.read_log(limit=1000)
    assert {r.action for r in rows} >= {*CHANGE_ACTIONS, "skip", "skip_members", "staged_delete"}
    assert {r.action for r in rows} <= set(LOG_ACTIONS)
    assert {r.result for r in rows} <= set(LOG_RESULTS)
