"""Whether a pass's plan may use the AD read made during the Graph read, and what the pass then records
(writeback.app.readahead): only a deep scope, only the same DC, the groups only while their stamps agree, and
the read ahead's (earlier) watermark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from tests.unit.builders import settings
from tests.unit.fakes import FakeCloud, FakeDirectory, MemoryReplica
from tests.unit.test_engine import accounts, group, users
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.readahead import adopt, reads_in_full
from writeback.app.reconcile import Reconcile
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.core.ports import Directory, GroupStamp, PendingGroups, Store, UsnWatermark
from writeback.core.reconcile import DeepReason

DC = "dc-1"
STAMPS = (GroupStamp("CN=A,OU=W,DC=t", "a", 100), GroupStamp("CN=B,OU=W,DC=t", "b", 120))


class Ahead:
    """A read ahead whose head is given; records what the pass asked of it."""

    def __init__(self, head: tuple[UsnWatermark, tuple[GroupStamp, ...]] | None) -> None:
        self._head = head
        self.dropped = False
        self.directory = cast(Directory, object())

    def head(self) -> tuple[UsnWatermark, tuple[GroupStamp, ...]] | None:
        return self._head

    def drop_groups(self) -> None:
        self.dropped = True

    def reader(self) -> Directory:
        return self.directory

    def close(self) -> None:
        pass


def scope(
    *, deep: bool = True, dc: str = DC, usn: int = 500, before: tuple[GroupStamp, ...] = STAMPS
) -> Reconcile:
    why = DeepReason.FIRST if deep else None
    only = None if deep else frozenset({"a"})
    return Reconcile(deep, why, only, PendingGroups(), UsnWatermark(dc, usn), before)


def test_a_deep_plan_uses_the_read_ahead_and_records_its_earlier_watermark() -> None:
    ahead = Ahead((UsnWatermark(DC, 450), STAMPS))
    reader, adopted = adopt(ahead, scope())
    assert reader is ahead.directory
    assert adopted.watermark == UsnWatermark(DC, 450)  # AD changed after 450 is looked at again next time
    assert not ahead.dropped
    assert adopted.before == STAMPS and adopted.deep


def test_a_managed_group_changed_in_between_drops_the_groups_read_ahead_but_not_the_accounts() -> None:
    for later in (
        (STAMPS[0], GroupStamp(STAMPS[1].dn, "b", 470)),  # changed
        STAMPS[:1],  # deleted
        (*STAMPS, GroupStamp("CN=C,OU=W,DC=t", "c", 480)),  # created
    ):
        ahead = Ahead((UsnWatermark(DC, 450), STAMPS))
        reader, adopted = adopt(ahead, scope(before=later))
        assert ahead.dropped, later
        assert reader is ahead.directory and adopted.watermark.usn == 450


def test_nothing_read_ahead_is_used_by_a_quick_plan_from_another_dc_or_after_a_failure() -> None:
    for ahead, reconcile in (
        (Ahead((UsnWatermark(DC, 450), STAMPS)), scope(deep=False)),
        (Ahead((UsnWatermark("dc-2", 450), STAMPS)), scope()),
        (Ahead(None), scope()),
    ):
        reader, adopted = adopt(ahead, reconcile)
        assert reader is None
        assert adopted is reconcile  # the watermark the pass took itself


def test_a_pass_reads_ahead_only_before_a_full_graph_read() -> None:
    replica: Any = MemoryReplica()
    store = cast(Store, replica)
    assert reads_in_full(store)  # no link yet: the first sync is full
    replica.delta_links["users"] = "https://graph/users/delta?$deltatoken=1"
    assert reads_in_full(store)  # the groups' round is still full
    replica.delta_links["groups"] = "https://graph/groups/delta?$deltatoken=1"
    assert not reads_in_full(store)  # one delta round: nothing to hide an AD read behind, deep or not


# -- the pass: when it reads ahead, and that the plan reads through it ---------------------------------------


class RecordingAhead:
    """A read ahead of the fake directory: its head taken when made; what the pass asks is recorded."""

    def __init__(self, directory: ReadingAheadDirectory, anchors: tuple[str, ...], prefixes: tuple[str, ...]):
        self.directory, self.events = directory, directory.events
        self.events.append("read ahead")
        watermark, stamps = directory.read_group_stamps(anchors, prefixes)
        self._head = (watermark, tuple(stamps))

    def head(self) -> tuple[UsnWatermark, tuple[GroupStamp, ...]] | None:
        return self._head

    def drop_groups(self) -> None:
        self.events.append("dropped")

    def reader(self) -> Directory:
        self.events.append("reader")
        return cast(Directory, self.directory)

    def close(self) -> None:  # idempotent, as the adapter's
        if "closed" not in self.events:
            self.events.append("closed")


@dataclass
class ReadingAheadDirectory(FakeDirectory):
    events: list[str] = field(default_factory=list)

    def read_ahead(
        self, anchor_attributes: tuple[str, ...], mapped: tuple[str, ...], prefixes: tuple[str, ...]
    ) -> RecordingAhead:
        return RecordingAhead(self, anchor_attributes, prefixes)


def pass_with_events() -> tuple[ReconcilePass, list[str]]:
    directory = ReadingAheadDirectory(accounts=accounts(3))
    cloud = FakeCloud(users=users(3), groups={"g1": group(1, ["u0", "u1"])})
    sync = cloud.sync

    def recorded(replica: Any, stream: Any = None) -> Any:
        directory.events.append("sync")
        return sync(replica, stream)

    cloud.sync = recorded  # type: ignore[method-assign]
    engine = Engine(settings(), cloud, cast(Directory, directory), SqliteStore(":memory:"))
    return ReconcilePass(engine), directory.events


def test_a_first_apply_reads_ahead_before_the_sync_and_plans_through_it() -> None:
    passes, events = pass_with_events()
    first = passes.run(PassOptions("full"))
    assert first.applied is not None and first.applied.ok and first.plan.deep
    assert events == ["read ahead", "sync", "reader", "closed"]
    events.clear()
    passes.run(PassOptions("full"))  # links stored, not deep: nothing read ahead
    assert "read ahead" not in events
    events.clear()
    deep = passes.run(PassOptions("full", deep=True))  # one delta round: the plan reads AD after it
    assert deep.plan.deep and "read ahead" not in events


def test_the_service_cycle_reads_ahead_in_sync_to_apply_for_the_pass_that_follows() -> None:
    passes, events = pass_with_events()
    report = passes.sync_to_apply()
    assert events == ["read ahead", "sync"]
    passes.run(PassOptions("full", force=DeepReason.RESYNC), report=report)
    assert events == ["read ahead", "sync", "reader", "closed"]
    # A read ahead no pass takes is closed by the next sync, and an incremental pass never takes one.
    for then in ("sync", "incremental"):
        with passes.engine.store.transaction() as tx:  # what a rebuild does (the service's restart)
            tx.set_delta_link("users", None)
            tx.set_delta_link("groups", None)
        events.clear()
        report = passes.sync_to_apply()
        if then == "sync":
            passes.sync()
        else:
            passes.run(PassOptions("incremental", only=frozenset({"g1"})), report=report)
        assert events[:3] == ["read ahead", "sync", "closed"], then
        assert "reader" not in events
