"""The streamed first apply: groups written while the first read goes on (issue 27).

A first sync, and every full resync (no delta link for groups, or a ``410 Gone``), reads every group and its
members before anything could be planned: at Graph's latency that is minutes before the first LDAP write
(docs/benchmarks.md). With the concurrent first read (:mod:`writeback.adapters.graph.firstread`) each group is
handed on only once its member list has been read to the last page, a consistent snapshot of that group. A
:class:`ReconcilePass` that applies hands those groups to planning and writing at once, lot after lot, while
the rest is still being read::

    users round (stored)  ->  groups read, each lot that arrives:  decidable? children in step?  -> plan
    (only= the lot, from an overlay snapshot) -> thresholds, pause, claim -> apply (journaled)  ...
    -> groups round stored (one transaction) -> catch-up round -> the pass's own deep plan of everything -> apply

It is a mode of the pass, never a second pipeline: each lot is planned by the engine's one planning function
(intents, gathering, desired state, plan, safety holds), checked against the pause and the writer claim (the
lease's fence), applied through the pass's fenced apply with the provisioning journal and counted into the
safety window. After the read the pass runs exactly as without streaming, a deep plan and apply of every group:
it writes what was not streamed (groups that waited, were held, failed) and what the catch-up round changed,
and finds the streamed groups in step (so the end state is the non-streamed apply's).

**Threads.** The state store and the LDAP connection are used from one thread only, the pass's. Graph requests
run in the reader's pool, driven by a thread of its own that only iterates the reader
(:func:`~writeback.adapters.graph.firstread.in_background`); the pass's thread receives each lot of complete
groups between two of its own writes, so what has arrived while a lot was written makes the next lot.

**How planning sees streamed groups.** The first read's groups are stored in the replica in one transaction
with the cursor, once the read is whole (a crash mid-read leaves the replica as it was, and the soft-deleted
groups' members and the last good copies of malformed objects come from the replica as it was before). So a lot
is planned from an in-memory overlay snapshot, not from the replica: the users from the replica (their round is
stored before the groups are read), the lot's groups with their members, and the groups nested in them (read
and written before them, so their scope is known). Committing the read
in pieces (the delta link stored last) was the alternative: it would show other readers of the state (the
console, a plan next to the pass) a half-read replica, and on a resync it would commit the reset first and lose
what the replica held before the round should the process die.

**What is streamed** (:mod:`writeback.core.streaming`): only groups whose plan is decidable now, children before
parents; everything else is left to the pass after the read. Within a lot, only creates and member adds are
written: a group with a change the safety thresholds weigh (a delete, member removals, an update or move: shares
of everything writeback manages, which only the plan of every group counts), a held change, or that could not
be planned, is left whole to that pass (it holds or writes them with the operator's allowances); a group whose
write failed is not in step.

**Crash.** A pass killed mid-stream leaves no replica change (the read is not stored) and the groups written so
far carry their anchors: the rerun reads in full again, finds them where they are (one listing of the managed
groups before the first lot, then the DNs each lot writes) and writes exactly what is missing.

**Memory.** The read is held until its transaction: each member entry repeated across groups is held once
(``delta._shared_members``), so it costs about one pointer per membership beyond the distinct members.

**When.** Only with ``source.stream_first_apply = true`` (off by default: at medium it made no measurable
difference and it holds the read in memory, docs/benchmarks.md), in a pass that applies (never ``plan`` nor the
console's plan page) of kind "full" with a fresh sync
(``writeback apply``; the service's cycle through :meth:`ReconcilePass.sync_to_apply`), no saved plan,
``source.max_in_flight`` above 1 and ``[users]`` off (user accounts' leave decisions ask the whole replica).
Otherwise nothing changes: the incremental path is one delta round, written when complete.

**Known difference.** Two cloud groups whose mapped sAMAccountName candidates collide get their names in id
order within one plan (:func:`writeback.core.mapping.assign_sam_account_names`); streamed, the group written
first keeps the name it was given (a name is never changed once written), so with such a collision the
suffixed name can land on the other group than without streaming. Members are the same either way.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from writeback.app.engine import NO_ALLOWANCES, ApplyResult, ChangeResult, Engine
from writeback.app.pause import paused
from writeback.config import Settings
from writeback.core.desired import account_keys, without_members
from writeback.core.dn import normalize_dn
from writeback.core.model import CloudGroup, CloudSnapshot, CloudUser, DirectoryAccount, DirectoryGroup
from writeback.core.planning import Change, ChangeKind, Plan
from writeback.core.ports import Directory, ResolvedAccounts
from writeback.core.streaming import decidable, nested_groups, ready

if TYPE_CHECKING:
    from writeback.app.reconcile_pass import PassOptions, ReconcilePass

log = logging.getLogger("writeback.pass")


def streamable(settings: Settings) -> bool:
    """Whether these settings let a first read be applied as it arrives (see the module docstring)."""
    return (
        settings.scope.cloud_enabled
        and settings.source is not None
        and settings.source.stream_first_apply
        and settings.source.max_in_flight > 1
        and not settings.users.enabled
    )


def streams(passes: ReconcilePass, options: PassOptions) -> bool:
    """Whether ``options`` make a pass whose first read is applied as it arrives (see the module docstring)."""
    return (
        options.kind == "full"
        and not options.dry_run
        and options.sync
        and options.saved is None
        and streamable(passes.engine.settings)
    )


@dataclass
class Streamed:
    """What the streamed lots planned and did: their plans' changes, their results, the groups in step."""

    changes: list[Change] = field(default_factory=list)
    results: list[ChangeResult] = field(default_factory=list)
    lots: int = 0
    seconds: float = 0.0  # spent planning and writing lots (while the read went on)

    def plan(self, plan: Plan) -> Plan:
        """The pass's ``plan`` with the lots' changes first (what the pass planned in all)."""
        return replace(plan, changes=(*self.changes, *plan.changes)) if self.lots else plan

    def result(self, result: ApplyResult) -> ApplyResult:
        """The pass's ``result`` with the lots' results first (what the pass did in all)."""
        if not self.lots:
            return result
        return ApplyResult(result.run_id, [*self.results, *result.results], result.aborted)


class StreamedApply:
    """Receives the groups of a first read as they are read in full (:data:`writeback.core.ports.GroupStream`)
    and plans and applies them lot by lot through ``passes`` (see the module docstring)."""

    def __init__(
        self, passes: ReconcilePass, run_id: str | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.passes, self.clock = passes, clock
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.done = Streamed()
        self._groups: dict[str, CloudGroup] = {}  # every group read so far, without members
        self._waiting: dict[str, CloudGroup] = {}  # decidable groups read in full, not planned yet
        self._in_step: set[str] = set()  # written (or found in step) by a lot, where ``_where`` says
        self._where: dict[str, str] | None = None  # cloud id -> DN of every managed group, once listed
        self._stopped: str | None = None
        # The lots' planning: the pass's engine over the directory as the lots see it (LotDirectory).
        engine = passes.engine
        self._directory = LotDirectory(engine.directory, self._managed_dns)
        self._planner = Engine(engine.settings, engine.source, cast(Directory, self._directory), engine.store)

    def offer(self, groups: Sequence[CloudGroup]) -> None:
        """A lot of groups read in full: keep them, then plan and apply every group now ready."""
        for group in groups:
            self._groups[group.id] = without_members(group)
            self._in_step.discard(group.id)  # read again (a full round restarted): planned again
            if decidable(group):
                self._waiting[group.id] = group
        if self._stopped is not None:
            return
        lot = ready({gid: nested_groups(g) for gid, g in self._waiting.items()}, self._in_step)
        if lot:
            started = time.perf_counter()
            try:
                self._apply(lot)
            finally:
                self.done.seconds += time.perf_counter() - started

    def _apply(self, lot: list[str]) -> None:
        passes, engine = self.passes, self.passes.engine
        if passes.should_stop is not None and passes.should_stop():
            self._stop("stop requested")
            return
        if (pause := paused(engine.store)) is not None:
            self._stop(pause.describe())
            return
        passes.check_claim()  # a pass that lost the lease writes nothing more (LeaseLostError)
        if self._where is None:
            # Where every managed group is (one listing, no members): a group written by an earlier run killed
            # before it recorded its DN is found where it is, never created twice.
            _, listed = engine.directory.read_group_stamps(engine.schema().read, engine.prefixes())
            count = Counter(s.key for s in listed)
            self._where = engine.store.applied_dns()
            self._where.update({s.key: s.dn for s in listed if count[s.key] == 1})
            if engine.store.get_delta_link("groups") is None:
                # A first sync: the replica holds the users round and no group, so its snapshot is the users.
                # (A resync's replica holds every group's members too: its lots resolve as they go.)
                everyone = engine.store.snapshot().users.values()
                self._directory.prefetch(everyone, engine.settings.members.match_order)
        planned = {gid: self._waiting.pop(gid) for gid in lot}
        users = engine.store.users_by_id(
            {m.id for g in planned.values() for m in g.members if m.kind == "user"}
        )
        # A member the replica's users lack (created after the users round was read) would be left out of its
        # group as "not found in the cloud replica": such a group is left whole to the pass after the read.
        unknown = {
            gid
            for gid, g in planned.items()
            if any(m.kind == "user" and m.id not in users for m in g.members)
        }
        if unknown:
            lot = [gid for gid in lot if gid not in unknown]
            planned = {gid: g for gid, g in planned.items() if gid not in unknown}
            if not lot:
                return
        # What a lot's plan reads of the cloud: its groups and the groups nested in them (their scope); the
        # other groups read so far play no part in it (scoping them for every lot was most of its planning).
        nested = {child for g in planned.values() for child in nested_groups(g)}
        snapshot = CloudSnapshot(
            users=users,
            groups={**{gid: self._groups[gid] for gid in nested if gid in self._groups}, **planned},
            unified_writeback_default=engine.store.get_unified_writeback_default(),
        )
        with engine.timed("planning"):
            found, _ = self._planner.plan_and_locate(
                only=frozenset(lot),
                dynamic=False,
                allow=NO_ALLOWANCES,
                locations=self._where,
                now=self.clock(),
                snapshot=snapshot,
            )
        plan, clean = _settled_part(found, lot)
        result = passes.apply_checked(plan, self.run_id, NO_ALLOWANCES)
        failed = {r.change.cloud_id for r in result.failed}
        for r in result.results:
            if not r.ok:
                continue
            change = r.change
            if change.kind in (ChangeKind.CREATE, ChangeKind.MOVE):
                self._where[change.cloud_id] = change.new_dn or change.dn
            elif change.kind is ChangeKind.DELETE:
                self._where.pop(change.cloud_id, None)
        self._in_step |= {gid for gid in clean - failed if gid in self._where}
        self.done.changes += plan.changes
        self.done.results += result.results
        self.done.lots += 1
        log.info(
            "streamed lot %d: %d groups planned while the read goes on, %d changes written, %d left to the "
            "pass after the read",
            self.done.lots,
            len(lot),
            sum(1 for r in result.results if r.ok),
            len(lot) - len(clean - failed),
            extra={"event": "streamed_lot", "groups": len(lot), "changes": len(plan.changes)},
        )
        if result.aborted is not None:
            self._stop(result.aborted)

    @property
    def reader(self) -> Directory:
        """The directory as the lots read it (:class:`LotDirectory`), for the pass after the read: each
        member account already resolved is not searched for again (a plan of every group would have read
        them once, after the read; these were read from its start)."""
        return cast(Directory, self._directory)

    def _managed_dns(self) -> set[str]:
        """The DNs of every managed group (the listing before the first lot, then what the lots wrote)."""
        return {normalize_dn(dn) for dn in (self._where or {}).values()}

    def _stop(self, why: str) -> None:
        """No more lots: what is left is written by the pass after the read (if it runs)."""
        self._stopped = why
        log.info("streaming stopped (%s); the rest is planned after the read", why)


# What a lot writes: a group with any other change is left whole to the pass after the read. The safety
# thresholds (deletes, member removals, updates: writeback.core.safety) are shares of everything writeback manages,
# which only a plan of every group counts; a lot's plan counts its own groups, and below the thresholds' minimum
# base it would hold nothing. Creates and member adds are never held.
STREAMED_KINDS = frozenset({ChangeKind.CREATE, ChangeKind.ADD_MEMBERS})


class LotDirectory:
    """The directory as the lots' plans read it (and the deep plan after the read, for its accounts).

    - :meth:`resolve_accounts` asks the directory only for the accounts not asked for before (found or not:
      a plan of every group after the read would have asked once too). The lots share most members, and the
      plan after the read asks for them all again. An account created in AD while the read goes on may then
      be missed as one created after a plan is: it is found by the next pass.
    - :meth:`read_groups_with_accounts` reads only the DNs where a managed group is (``managed_dns``: the
      listing of every managed group before the first lot, then what the lots wrote). A plan reads a new
      group's candidate DN to find it should an earlier run have created it there; the listing already says
      no managed group has its anchor anywhere, and under the writer claim no one else creates one. (An
      object of someone else at that DN is still found by the plan's occupied-DN check, ``existing_dns``.)
      One base search per new group was most of the lots' AD reads.
    """

    def __init__(self, directory: Directory, managed_dns: Callable[[], Collection[str]]) -> None:
        self._directory, self._managed_dns = directory, managed_dns
        self._sids: dict[str, DirectoryAccount | None] = {}
        self._guids: dict[str, DirectoryAccount | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._directory, name)

    def resolve_accounts(self, sids: Iterable[str], guids: Iterable[str]) -> ResolvedAccounts:
        sids, guids = list(dict.fromkeys(sids)), list(dict.fromkeys(guids))
        new_sids = [s for s in sids if s not in self._sids]
        new_guids = [g for g in guids if g not in self._guids]
        if new_sids or new_guids:
            found = self._directory.resolve_accounts(new_sids, new_guids)
            self._sids.update((s, found.by_sid.get(s)) for s in new_sids)
            self._guids.update((g, found.by_guid.get(g)) for g in new_guids)
        return ResolvedAccounts(
            by_sid={s: a for s in sids if (a := self._sids[s]) is not None},
            by_guid={g: a for g in guids if (a := self._guids[g]) is not None},
        )

    def prefetch(self, users: Iterable[CloudUser], match_order: Sequence[str]) -> None:
        """Resolve every synced user the replica holds by the first key of the match order, in one read (as
        the plan of every group does): the lots' members are asked for across many lots, and each lot with
        a thousand new members would read every AD user again."""
        keys = [account_keys(u) for u in users if u.is_synced and not u.deleted]
        if match_order and match_order[0] == "sid":
            self.resolve_accounts([s for s, _ in keys if s], ())
        elif match_order and match_order[0] == "immutable_id":
            self.resolve_accounts((), [g for _, g in keys if g])

    def read_groups_with_accounts(
        self, dns: Iterable[str], anchor_attributes: Sequence[str], mapped: Sequence[str]
    ) -> tuple[list[DirectoryGroup], ResolvedAccounts]:
        managed = self._managed_dns()
        wanted = [dn for dn in dns if normalize_dn(dn) in managed]
        if not wanted:
            return [], ResolvedAccounts()
        return self._directory.read_groups_with_accounts(wanted, anchor_attributes, mapped)


def _settled_part(plan: Plan, lot: Sequence[str]) -> tuple[Plan, set[str]]:
    """``plan`` without the groups it could not settle now, and the groups it settles: a group with a held
    change, a change a threshold could hold (:data:`STREAMED_KINDS`), or reported with an error is left whole to
    the pass after the read (never written in part)."""
    unsettled = {c.cloud_id for c in plan.held} | {r.cloud_id for r in plan.reports if r.error}
    unsettled |= {c.cloud_id for c in plan.changes if c.kind not in STREAMED_KINDS}
    clean = set(lot) - unsettled
    changes = tuple(c for c in plan.changes if c.cloud_id not in unsettled)
    prints = {k: v for k, v in plan.fingerprints.items() if k not in unsettled}
    return replace(plan, changes=changes, held=(), holds=(), fingerprints=prints), clean
