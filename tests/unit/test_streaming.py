"""The streamed first apply (issue 27): which groups go early (pure), and the pass that writes them while the
read goes on, with the in-memory fakes and a real SQLite store in memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tests.unit.builders import BASE, DOC
from tests.unit.builders import settings as base_settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_graph_concurrency import ScriptedGroups, client_for
from writeback.adapters.graph.delta import _as_read, _read_streaming
from writeback.adapters.graph.firstread import GroupReader, in_background
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.pause import pause
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.app.service import Service
from writeback.app.streaming import streamable
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, MemberRef
from writeback.core.planning import ChangeKind
from writeback.core.ports import GroupStream, ReplicaStore, SyncReport
from writeback.core.streaming import decidable, nested_groups, ready
from writeback.errors import LeaseLostError, SourceError

# -- which groups go early (pure) ------------------------------------------------------------------------------


def settings(**tables: Any) -> Any:
    """The unit tests' settings with the streamed first apply switched on (it is off by default)."""
    source = {**DOC["source"], "stream_first_apply": True, **tables.pop("source", {})}
    return base_settings(source=source, **tables)


def test_children_go_before_the_parents_that_nest_them() -> None:
    waiting = {"parent": {"child"}, "child": set(), "grand": {"parent"}, "alone": set()}
    assert ready(waiting, in_step=()) == ["alone", "child", "parent", "grand"]


def test_a_parent_waits_for_a_child_not_read_yet_or_not_written() -> None:
    assert ready({"parent": {"child"}}, in_step=()) == []
    assert ready({"parent": {"child", "other"}}, in_step={"child"}) == []
    assert ready({"parent": {"child"}}, in_step={"child"}) == ["parent"]


def test_a_nesting_cycle_never_goes_early() -> None:
    waiting = {"a": {"b"}, "b": {"a"}, "self": {"self"}, "c": {"a"}, "free": set()}
    assert ready(waiting, in_step=()) == ["free"]


def test_groups_in_step_are_not_planned_again() -> None:
    assert ready({"done": set(), "new": {"done"}}, in_step={"done"}) == ["new"]


def test_what_is_decidable_while_the_rest_is_read() -> None:
    assert decidable(CloudGroup("g", display_name="Sales"))
    # From AD once: onPremisesSyncBehavior is read after the round.
    assert not decidable(CloudGroup("g", on_premises_security_identifier="S-1-5-21-1-2-3-4"))
    assert not decidable(CloudGroup("g", on_premises_sync_enabled=True))
    # A Microsoft 365 group that follows the tenant's default (read after the round), and one that says.
    m365 = CloudGroup("g", group_types=("Unified",), mail_enabled=True, security_enabled=False)
    assert not decidable(m365)
    assert decidable(replace(m365, writeback_enabled=True))
    assert not decidable(CloudGroup("g", deleted=True))


def test_nested_groups_are_the_group_members() -> None:
    g = CloudGroup("p", members=frozenset({MemberRef("user", "u1"), MemberRef("group", "c")}))
    assert nested_groups(g) == {"c"}


# -- the pass (fakes) ----------------------------------------------------------------------------------------


def gid(i: int) -> str:
    return f"{i:08d}-0000-0000-0000-{i:012d}"


def users(n: int) -> dict[str, CloudUser]:
    return {
        f"u{i}": CloudUser(
            f"u{i}", on_premises_sync_enabled=True, on_premises_security_identifier=f"S-1-5-21-9-{i}"
        )
        for i in range(n)
    }


def accounts(n: int) -> list[DirectoryAccount]:
    return [
        DirectoryAccount(
            f"CN=user{i},OU=Staff,{BASE}", f"00000000-0000-0000-0000-{i:012d}", f"S-1-5-21-9-{i}"
        )
        for i in range(n)
    ]


def group(i: int, members: Sequence[str], nested: Sequence[int] = (), **kw: Any) -> CloudGroup:
    refs = {MemberRef("user", m) for m in members} | {MemberRef("group", gid(n)) for n in nested}
    return CloudGroup(gid(i), display_name=f"G{i}", members=frozenset(refs), **kw)


def single_reader() -> Any:
    """Settings with one request in flight: the sequential full round, which never streams."""
    return settings(source={**DOC["source"], "max_in_flight": 1})


@dataclass
class StreamingCloud(FakeCloud):
    """A first read as GraphSource makes it: the users round stored first, then ``lots`` of complete groups
    handed to the stream before the groups round is stored; notes which groups AD holds at each lot."""

    lots: list[list[str]] = field(default_factory=list)
    directory: FakeDirectory | None = None
    seen: list[set[str]] = field(default_factory=list)
    seen_members: list[dict[str, set[str]]] = field(default_factory=list)
    fail_after: int | None = None  # the read fails after this many lots (a crash mid-read)

    def sync(self, replica: ReplicaStore, stream: GroupStream | None = None) -> SyncReport:
        if stream is not None:
            with replica.transaction() as tx:
                tx.reset("users")
                for u in self.users.values():
                    tx.upsert_user(u)
                tx.set_delta_link("users", "u")
            for n, lot in enumerate(self.lots):
                if self.fail_after is not None and n == self.fail_after:
                    raise RuntimeError("the read died")
                stream([self.groups[g] for g in lot])
                assert self.directory is not None
                self.seen.append(in_ad(self.directory))
                self.seen_members.append(members_in_ad(self.directory))
        return super().sync(replica, stream)


def anchor(entry: dict[str, Any]) -> str:
    return str(entry.get("msDS-ExternalDirectoryObjectId") or entry.get("adminDescription") or "")


def in_ad(directory: FakeDirectory) -> set[str]:
    return set(members_in_ad(directory))


def members_in_ad(directory: FakeDirectory) -> dict[str, set[str]]:
    return {
        anchor(e).removeprefix("Group_"): {m.lower() for m in e.get("member", ())}
        for e in directory.groups.values()
        if anchor(e).startswith("Group_")
    }


@pytest.fixture
def world() -> tuple[StreamingCloud, FakeDirectory, SqliteStore, Engine]:
    directory = FakeDirectory(accounts=accounts(6))
    cloud = StreamingCloud(users=users(6), groups={}, directory=directory)
    store = SqliteStore(":memory:")
    return cloud, directory, store, Engine(settings(), cloud, directory, store)


def test_groups_read_in_full_are_written_while_the_read_goes_on_children_first(world: Any) -> None:
    cloud, directory, store, engine = world
    cloud.groups = {
        gid(1): group(1, ["u0", "u1"]),
        gid(2): group(2, ["u2"], nested=[3]),  # its child arrives in the next lot
        gid(3): group(3, ["u3"]),
        gid(4): group(4, ["u4"]),
    }
    cloud.lots = [[gid(1), gid(2)], [gid(3)], [gid(4)]]
    done = ReconcilePass(engine).run(PassOptions("full"))
    # Group 1 at once; group 2 waits for its child, then goes in the lot after the child's.
    assert cloud.seen == [{gid(1)}, {gid(1), gid(2), gid(3)}, {gid(1), gid(2), gid(3), gid(4)}]
    assert done.applied is not None and done.applied.ok
    assert done.plan.counts()["create"] == 4 and len({r.change.cloud_id for r in done.applied.results}) == 4
    assert len({r.run_id for r in store.read_log() if r.action == "create"}) == 1  # one run, one id
    # The same AD as a pass that does not stream, and nothing left to do.
    streamed = members_in_ad(directory)
    again = ReconcilePass(engine).run(PassOptions("full", deep=True))
    assert again.plan.changes == ()
    reference = FakeDirectory(accounts=accounts(6))
    plain = Engine(
        single_reader(),
        FakeCloud(users=users(6), groups=cloud.groups),
        reference,
        SqliteStore(":memory:"),
    )
    ReconcilePass(plain).run(PassOptions("full"))
    assert members_in_ad(reference) == streamed


def test_a_dry_run_and_a_single_reader_never_stream(world: Any) -> None:
    cloud, directory, _, engine = world
    cloud.groups = {gid(1): group(1, ["u0"])}
    cloud.lots = [[gid(1)]]
    ReconcilePass(engine).run(PassOptions("full", dry_run=True))
    assert cloud.seen == [] and in_ad(directory) == set()
    single = Engine(single_reader(), cloud, directory, SqliteStore(":memory:"))
    ReconcilePass(single).run(PassOptions("full"))
    assert cloud.seen == []


def test_only_creates_and_adds_go_early_and_the_thresholds_weigh_the_rest_with_every_group(
    world: Any,
) -> None:
    cloud, directory, store, _ = world
    many = users(60)
    directory.accounts = accounts(60)
    cloud.users = many
    # AD groups writeback manages already (a resync): the cloud then removed most members of group 1.
    cloud.groups = {gid(1): group(1, list(many)[:50]), gid(2): group(2, ["u50"]), gid(3): group(3, ["u51"])}
    ReconcilePass(Engine(single_reader(), cloud, directory, store)).run(PassOptions("full"))
    cloud.groups = {
        gid(1): group(1, list(many)[:10]),
        gid(2): group(2, ["u50", "u52"]),
        gid(3): replace(group(3, ["u51"]), display_name="G3 renamed"),
    }
    cloud.lots = [[gid(1), gid(2), gid(3)]]
    done = ReconcilePass(Engine(settings(), cloud, directory, store)).run(PassOptions("full"))
    # Group 2's add went early; group 1's removals (80% of what writeback manages) were held by the pass after
    # the read, which weighs them against every group, and group 3's rename was written by it.
    assert cloud.seen == [{gid(1), gid(2), gid(3)}]
    assert [len(cloud.seen_members[0][gid(n)]) for n in (1, 2, 3)] == [50, 2, 1]
    early = [r.change for r in done.applied.results][:1]
    assert [(c.cloud_id, c.kind) for c in early] == [(gid(2), ChangeKind.ADD_MEMBERS)]
    assert len(members_in_ad(directory)[gid(1)]) == 50
    assert {c.cloud_id for c in done.plan.held} == {gid(1)}
    assert not any(r.change.kind is ChangeKind.REMOVE_MEMBERS for r in done.applied.results)
    assert any(r.change.cloud_id == gid(3) and r.ok for r in done.applied.results)


def test_undecidable_groups_and_their_parents_wait_for_the_pass_after_the_read(world: Any) -> None:
    cloud, _, _, engine = world
    m365 = group(1, ["u0"], group_types=("Unified",), mail_enabled=True, security_enabled=False)
    cloud.groups = {gid(1): m365, gid(2): group(2, ["u1"], nested=[1]), gid(3): group(3, ["u2"])}
    cloud.lots = [[gid(1), gid(2), gid(3)]]
    ReconcilePass(engine).run(PassOptions("full"))
    assert cloud.seen == [{gid(3)}]


def test_a_stopped_pass_writes_no_more_lots(world: Any) -> None:
    cloud, directory, _, engine = world
    cloud.groups = {gid(1): group(1, ["u0"]), gid(2): group(2, ["u1"])}
    cloud.lots = [[gid(1)], [gid(2)]]
    # Asked to stop once the first group is written (as the service's stop event would be).
    ReconcilePass(engine, should_stop=lambda: bool(in_ad(directory))).run(PassOptions("full"))
    assert cloud.seen == [{gid(1)}, {gid(1)}]


def test_a_lost_claim_stops_the_stream_before_its_first_write(world: Any) -> None:
    cloud, directory, _, engine = world
    cloud.groups = {gid(1): group(1, ["u0"])}
    cloud.lots = [[gid(1)]]

    class Lost:
        write_deadline = 1.0

        def guard(self) -> None:
            raise LeaseLostError("lease lost")

        def guard_write(self) -> None:
            raise LeaseLostError("lease lost")

    with pytest.raises(LeaseLostError):
        ReconcilePass(engine, fence=Lost()).run(PassOptions("full"))  # type: ignore[arg-type]
    assert in_ad(directory) == set()


def test_a_read_that_dies_mid_stream_is_finished_by_the_rerun_without_duplicates(world: Any) -> None:
    cloud, directory, store, engine = world
    cloud.groups = {gid(1): group(1, ["u0"]), gid(2): group(2, ["u1"], nested=[1]), gid(3): group(3, ["u2"])}
    cloud.lots = [[gid(1)], [gid(2)], [gid(3)]]
    cloud.fail_after = 2
    with pytest.raises(RuntimeError):
        ReconcilePass(engine).run(PassOptions("full"))
    assert in_ad(directory) == {gid(1), gid(2)} and not store.has_synced()  # the read was never stored
    cloud.fail_after, cloud.seen = None, []
    rerun = Engine(settings(), cloud, directory, store)
    done = ReconcilePass(rerun).run(PassOptions("full"))
    assert done.plan.counts()["create"] == 1  # group 3 alone
    assert len(directory.groups) == 3


def test_a_pause_stops_the_lots(world: Any) -> None:
    cloud, directory, store, engine = world
    cloud.groups = {gid(1): group(1, ["u0"]), gid(2): group(2, ["u1"])}
    cloud.lots = [[gid(1)], [gid(2)]]
    real = cloud.sync

    def pausing(replica: ReplicaStore, stream: GroupStream | None = None) -> SyncReport:
        def paused_after_first(lot: Sequence[CloudGroup]) -> None:
            assert stream is not None
            stream(lot)
            pause(store, "ops")

        return real(replica, paused_after_first if stream is not None else None)

    cloud.sync = pausing  # type: ignore[method-assign]
    with pytest.raises(Exception, match="paused"):
        ReconcilePass(engine).run(PassOptions("full"))
    assert in_ad(directory) == {gid(1)}


# -- the reader's side: complete groups handed on while the read goes on ----------------------------------------


def test_in_background_hands_on_what_arrived_and_raises_the_readers_error() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise SourceError("page 3 failed")

    got: list[int] = []
    with pytest.raises(SourceError, match="page 3"):
        for lot in in_background(items()):
            got += lot
    assert got == [1, 2]


def test_in_background_closes_the_reader_when_the_consumer_stops() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.set()

    for _ in in_background(items()):
        break
    assert closed.wait(5), "the reader's generator was not closed"


def test_the_first_read_hands_each_group_whole_to_the_stream_before_the_slow_one_ends() -> None:
    members = {"a": ["u1", "u2"], "b": [], "slow": [f"s{i}" for i in range(6)], "c": ["u3"]}
    graph = ScriptedGroups(members, slow="slow")
    reader = GroupReader(client_for(graph, page_size=1, batch_size=20), "v1.0", "id,displayName", workers=4)
    lots: list[list[CloudGroup]] = []
    kept = _read_streaming(reader.groups(), lots.append)
    streamed = [g for lot in lots for g in lot]
    assert {g.id: sorted(m.id for m in g.members) for g in streamed} == {
        k: sorted(v) for k, v in members.items()
    }
    assert streamed[-1].id == "slow" and len(lots) > 1, "the others were handed on before the slow one ended"
    assert [g["id"] for g in kept] == [g.id for g in streamed]  # and every group is kept for the transaction


def test_a_group_the_replica_would_store_otherwise_is_kept_from_the_stream() -> None:
    assert _as_read({"id": "g", "displayName": "G", "members@delta": [{"id": 5}]}) is None  # a bad member
    assert _as_read({"id": "g", "displayName": 5}) is None  # a bad property
    assert _as_read({"id": "g"}) is None  # no properties: the replica stores no group
    good = _as_read(
        {
            "id": "g",
            "displayName": "G",
            "members@delta": [{"@odata.type": "#microsoft.graph.group", "id": "c"}],
        }
    )
    assert good is not None and good.members == {MemberRef("group", "c")}


def test_the_services_first_cycle_writes_groups_while_it_reads_and_its_pass_finishes(
    world: Any, tmp_path: Any
) -> None:
    cloud, directory, store, _ = world
    cloud.groups = {gid(1): group(1, ["u0"]), gid(2): group(2, ["u1"], nested=[1]), gid(3): group(3, ["u2"])}
    cloud.lots = [[gid(1)], [gid(2), gid(3)]]
    s = settings(service={"poll_interval": 1.0, "health_file": str(tmp_path / "health.json")})
    service = Service(s, Engine(s, cloud, directory, store))
    first = service.cycle()
    assert cloud.seen == [{gid(1)}, {gid(1), gid(2), gid(3)}]
    assert first.full and first.applied == 3
    creates = [e for e in store.read_log() if e.action == "create"]
    assert len(creates) == 3 and len({e.run_id for e in creates}) == 1
    # An incremental cycle streams nothing: the sync is a delta round.
    cloud.incremental, cloud.seen = True, []
    service.cycle()
    assert cloud.seen == [] or all(s == cloud.seen[0] for s in cloud.seen)


def test_a_group_with_a_member_the_users_round_did_not_see_is_left_to_the_pass_after_the_read(
    world: Any,
) -> None:
    cloud, directory, store, engine = world
    cloud.groups = {gid(1): group(1, ["u0", "new"]), gid(2): group(2, ["u1"])}
    cloud.lots = [[gid(1), gid(2)]]
    ReconcilePass(engine).run(PassOptions("full"))
    assert cloud.seen == [{gid(2)}]
    # The pass after the read writes it as a pass that does not stream would (the member still unknown).
    assert members_in_ad(directory)[gid(1)] == {f"cn=user0,ou=staff,{BASE}".lower()}
    assert any(e.action == "skip_members" and e.cloud_id == gid(1) for e in store.read_log())


def test_a_stream_that_fails_stops_the_read_without_waiting_for_a_long_group() -> None:
    # The slow group has 200 member pages of 50 ms (10 s); the stream fails on the first lot.
    graph = ScriptedGroups({"a": ["u1"], "slow": [f"s{i}" for i in range(200)]}, slow="slow")
    reader = GroupReader(client_for(graph, page_size=1, batch_size=1), "v1.0", "id,displayName", workers=2)

    def failing(_lot: Sequence[CloudGroup]) -> None:
        raise LeaseLostError("lease lost")

    stop = threading.Event()
    started = time.monotonic()
    with pytest.raises(LeaseLostError):
        _read_streaming(reader.groups(stop), failing, stop)
    assert time.monotonic() - started < 3, "the read went on after the stream failed"
    served = len(graph.served)
    time.sleep(0.3)
    assert len(graph.served) == served, "requests were still sent after the read ended"


def test_the_lots_resolve_each_member_account_once_and_read_no_new_groups_dn(world: Any) -> None:
    cloud, directory, _, engine = world
    cloud.groups = {gid(i): group(i, ["u0", "u1", f"u{i}"]) for i in range(2, 6)}
    cloud.lots = [[gid(2), gid(3)], [gid(4)], [gid(5)]]
    ReconcilePass(engine).run(PassOptions("full"))
    assert cloud.seen[-1] == {gid(i) for i in range(2, 6)}
    # A first sync: every synced user of the replica resolved once before the first lot, and neither the lots
    # nor the deep plan after the read search for them again.
    assert [len(sids) for sids, _ in directory.resolve_calls] == [6]
    assert directory.keyed_reads == [], "no candidate DN read: the listing says no managed group is there"


def test_lots_of_a_sync_no_pass_followed_are_not_taken_by_a_later_pass(world: Any) -> None:
    cloud, _, _, engine = world
    cloud.groups = {gid(1): group(1, ["u0"])}
    cloud.lots = [[gid(1)]]
    passes = ReconcilePass(engine)
    passes.sync_to_apply()  # a service cycle paused right after its sync runs no pass
    assert cloud.seen == [{gid(1)}]
    report = passes.sync()  # a later cycle's plain sync (paused then), then a pass after the resume
    done = passes.run(PassOptions("full"), report=report)
    assert done.applied is not None
    assert [r.change.cloud_id for r in done.applied.results] == [], "the earlier lot's create counted again"


def test_the_streamed_first_apply_is_off_unless_configured() -> None:
    """Off by default (no measured gain at medium, the read held in memory: docs/benchmarks.md); on with
    source.stream_first_apply = true and more than one request in flight."""
    assert not streamable(base_settings())
    assert streamable(settings())
    assert not streamable(settings(source={"max_in_flight": 1}))
