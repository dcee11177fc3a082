"""The one reconcile pass: every path that plans or writes AD runs through :class:`ReconcilePass`.

The service's cycles (incremental, quick or deep reconcile), ``writeback plan`` / ``apply``, provision on
demand (CLI and console) and the console's plan page are all one pass with different options, so each decides
scope, checks the writer claim, logs and stamps the same way (issue 22: provision on demand took its own
path, decided scope differently from the engine and wrote without the leader lease)::

    sources (Graph delta, AD users) -> scope (full: quick or deep reconcile; incremental; one group)
        -> plan (intents -> gathering -> desired state -> plan -> holds) -> [dry run: stop here]
        -> writer claim checked -> apply (journaled) -> locations, pending marks, stamps recorded

A dry run (``writeback plan``, the console's plan page) reads and plans exactly as an apply would and leaves
every record as it was: where groups were found, stamps, pending marks and the reconcile record are written
only by a pass that applies. (The cloud replica is a cache of Graph and is brought up to date either way.)

The writer claim is the caller's to hold for the pass's whole run — the local writer lock with SQLite state
(held by the process: :func:`writeback.app.wiring.writer_claim` for one-off commands, the service for its
life), the leader lease with PostgreSQL state — and its fence (:class:`writeback.app.lease.Fence`) is checked
before anything is written, before each change (a database round trip), before every LDAP write (each with a
deadline shorter than the lease's margin) and before the records after the apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from writeback.app import leaving, reconcile
from writeback.app.engine import NO_ALLOWANCES, Allowances, ApplyResult, Engine
from writeback.app.lease import Fence
from writeback.app.pause import refuse_if_paused
from writeback.app.readahead import AheadReads, adopt, reads_in_full
from writeback.app.streaming import StreamedApply, streamable, streams
from writeback.core.desired import cloud_intents
from writeback.core.model import DYNAMIC_KEY_PREFIX, TARGET_USER, CloudGroup
from writeback.core.planning import Plan
from writeback.core.ports import Directory, GroupStream, PendingGroups, SyncReport
from writeback.core.reconcile import DeepReason
from writeback.errors import ConfigError

PassKind = Literal["full", "incremental", "group"]
log = logging.getLogger("writeback.pass")


@dataclass(frozen=True)
class PassOptions:
    """What one pass does.

    ``kind``: "full" (a reconcile: quick, or deep when ``deep``, ``force`` or due), "incremental" (the groups
    in ``only``: what a Graph delta round touched) or "group" (``group``, by object id or display name:
    provision on demand). ``dry_run``: plan only. ``sync``: read Graph and AD users first. ``only`` with a
    full pass: groups a quick reconcile compares as well (the service's retries). ``saved``: apply exactly
    this saved plan (``plan --out``) while it matches a fresh one. ``refresh_users``: read every AD user, not
    only the changed ones (a dynamic group is retried)."""

    kind: PassKind = "full"
    deep: bool = False
    force: DeepReason | None = None
    dry_run: bool = False
    sync: bool = True
    only: frozenset[str] = frozenset()
    group: str | None = None
    allow: Allowances = NO_ALLOWANCES
    saved: Mapping[str, Any] | None = None
    refresh_users: bool = False
    run_id: str | None = None


@dataclass(frozen=True)
class GroupTarget:
    """The one cloud group (or user) of a "group" pass, as the engine's own scoping sees it."""

    id: str
    display_name: str
    members: int  # the group's own direct members in the replica (a user: the in-scope groups holding it)
    reason: str | None  # why it is out of scope (None: in scope)
    kind: str = "group"  # "group", or "user" ([users] provision = "soa": its original AD account)
    groups: frozenset[str] = frozenset()  # a user: the in-scope groups holding it (what puts it in scope)
    leaving: bool = (
        False  # a user of an account writeback created, held by no in-scope group (or hard-deleted)
    )

    @property
    def in_scope(self) -> bool:
        return self.reason is None


@dataclass
class PassResult:
    """What one pass planned and did. ``applied`` is None for a dry run or when there was nothing to plan."""

    plan: Plan
    applied: ApplyResult | None
    sync: SyncReport
    full: bool = False
    only: frozenset[str] | None = None  # the groups planned (None: every managed group)
    target: GroupTarget | None = None
    phases: dict[str, float] = field(default_factory=dict)  # "sync", "plan", "apply": seconds
    scope: reconcile.Reconcile | None = None  # a full pass: what its reconcile compared, and why

    @property
    def groups(self) -> int:
        """How many groups were planned (-1: every managed group)."""
        return -1 if self.only is None else len(self.only)

    @property
    def run_id(self) -> str | None:
        return self.applied.run_id if self.applied is not None else None


SKIPPED_SHOWN = 10  # malformed Graph objects named in a plan's warnings; the log names each


def skipped_objects(report: SyncReport) -> tuple[str, ...]:
    """The plan's warnings for the Graph objects this pass's sync skipped as malformed (the rest was synced)."""
    if not report.skipped:
        return ()
    lines = [
        f"Graph {s.resource} object {s.object_id or '(no id)'} skipped: {s.field} is {s.problem}; the rest of "
        "the sync was applied, and its last good copy (if any) is kept"
        for s in report.skipped[:SKIPPED_SHOWN]
    ]
    if len(report.skipped) > SKIPPED_SHOWN:
        lines.append(
            f"... and {len(report.skipped) - SKIPPED_SHOWN} more malformed Graph objects (see the log)"
        )
    return tuple(lines)


def _only_user(plan: Plan, user_id: str) -> Plan:
    """``plan`` restricted to one user's own changes, notes and fingerprint."""
    mine = [c for c in plan.changes if c.target == TARGET_USER and c.cloud_id == user_id]
    held = [c for c in plan.held if c.target == TARGET_USER and c.cloud_id == user_id]
    return replace(
        plan,
        changes=tuple(mine),
        held=tuple(held),
        holds=plan.holds if held else (),
        reports=tuple(r for r in plan.reports if r.target == TARGET_USER and r.cloud_id == user_id),
        fingerprints={k: v for k, v in plan.fingerprints.items() if k == user_id},
    )


class ReconcilePass:
    """Runs passes with one engine. ``fence`` is the writer claim when it can end (the leader lease; None: a
    lock the process holds); ``should_stop`` ends an apply between two changes; ``on_apply`` observers (the event
    webhook, the loop alert) see every apply, whichever path asked for it. ``clock`` (Unix seconds) dates the
    reconcile records (replaceable for tests)."""

    def __init__(
        self,
        engine: Engine,
        *,
        fence: Fence | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_apply: list[Callable[[Plan, ApplyResult], None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.fence, self.should_stop, self.clock = engine, fence, should_stop, clock
        # The caller's list, not a copy: observers added after this pass was made count too.
        self.on_apply = on_apply if on_apply is not None else []
        # The pending-mark counter as the last applied pass read it: an incremental pass plans every group
        # marked after it (0: every pending group).
        self._pending_seen = 0
        # The lots streamed by :meth:`sync_to_apply`, for the pass run next with its report.
        self._streamed: StreamedApply | None = None
        # The AD read started by :meth:`sync_to_apply` before a first read, for the pass run next with its report.
        self._ahead: AheadReads | None = None

    def sync(self, stream: GroupStream | None = None) -> SyncReport:
        """Bring the cloud replica up to date (Graph delta); ``stream``: see :mod:`writeback.app.streaming`."""
        self._drop_ahead()  # an AD read of an earlier sync_to_apply belongs to no pass after this sync
        return self._sync(stream)

    def _sync(self, stream: GroupStream | None = None) -> SyncReport:
        self._streamed = None  # lots of an earlier sync_to_apply belong to no pass after this sync
        with self.engine.timed("graph_read"):
            return self.engine.sync(stream)

    def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.close()

    def _streamed_sync(self, streamer: StreamedApply) -> SyncReport:
        """:meth:`sync` with ``streamer`` taking the lots; the Graph read's timing leaves out the lots' planning
        and LDAP time (their own timings count it), so the timings still add up to the wall time."""
        try:
            return self._sync(streamer.offer)
        finally:
            self.engine.discount("graph_read", streamer.done.seconds)

    def sync_to_apply(self) -> SyncReport:
        """:meth:`sync` for a caller that runs a pass which applies next, with this report (the service's
        cycle): a first read or resync is applied as it arrives (:mod:`writeback.app.streaming`), and the next
        "full" pass finishes it. Lots stop once paused; a caller that then runs no pass leaves the rest to the
        next full pass (a resync's is deep)."""
        self._streamed = None
        self._drop_ahead()
        if not streamable(self.engine.settings):
            # A first read (or a rebuild: the links dropped) is followed by a deep pass: AD is read meanwhile.
            if self.engine.cloud_enabled and reads_in_full(self.engine.store):
                self._ahead = self.engine.read_ahead()
            try:
                return self._sync()
            except BaseException:
                self._drop_ahead()
                raise
        streamer = StreamedApply(self, None, self.clock)
        report = self._streamed_sync(streamer)
        self._streamed = streamer if streamer.done.lots else None
        return report

    def run(
        self,
        options: PassOptions,
        *,
        report: SyncReport | None = None,
        show: Callable[[Plan], None] | None = None,
    ) -> PassResult:
        """One pass. ``report``: the sync already done by the caller (the service decides the kind of pass
        from it); else the pass syncs when ``options.sync``. ``show`` receives the plan before anything is
        written."""
        started = time.perf_counter()
        ahead, self._ahead = self._ahead, None  # started by sync_to_apply for the pass with its report
        try:
            if not options.dry_run:  # paused by an operator: nothing that writes starts (writeback.app.pause)
                refuse_if_paused(self.engine.store)
            if ahead is not None and (report is None or options.kind != "full"):
                ahead.close()  # a pass that plans some groups: it reads only what they need
                ahead = None
            if ahead is None:
                ahead = self._read_ahead(options, report)
            return self._run(options, report, show, started, ahead)
        finally:
            if ahead is not None:
                ahead.close()

    def _read_ahead(self, options: PassOptions, report: SyncReport | None) -> AheadReads | None:
        """The AD reads of a plan of every group, started now to run while Graph is read, when this pass reads
        Graph in full and will plan every group (:mod:`writeback.app.readahead`); never with a streamed first apply (whose
        lots resolve their accounts themselves)."""
        if (
            options.kind != "full"
            or report is not None
            or not options.sync
            or not self.engine.cloud_enabled
            or self._streamed is not None
            or streams(self, options)
        ):
            return None
        if not reads_in_full(self.engine.store):
            return None
        return self.engine.read_ahead()

    def _run(
        self,
        options: PassOptions,
        report: SyncReport | None,
        show: Callable[[Plan], None] | None,
        started: float,
        ahead: AheadReads | None,
    ) -> PassResult:
        streamer, self._streamed = self._streamed, None
        if streamer is not None and (report is None or not streams(self, options)):
            streamer = None  # lots of another sync (sync_to_apply), or a pass that does not apply
        if streamer is not None:
            options = replace(options, run_id=streamer.run_id)
        elif report is None and streams(self, options):
            # A first read (or a resync) is applied as it arrives; a sync that turns out incremental streams
            # nothing. The pass below then plans and applies everything, as without streaming.
            streamer = StreamedApply(self, options.run_id, self.clock)
            options = replace(options, run_id=streamer.run_id)
            report = self._streamed_sync(streamer)
            # Paused while the read went on: the lots stopped, and so does this pass.
            refuse_if_paused(self.engine.store)
        if report is None:
            report = self.sync() if options.sync else SyncReport()
        if options.kind == "group":
            return self._group(options, report, started, show)
        phases: dict[str, float] = {}
        engine = self.engine
        scope: reconcile.Reconcile | None = None
        reader: Directory | None = None  # the directory the plan reads through (None: the engine's)
        pending: PendingGroups | None = None
        only: frozenset[str] | None
        if options.kind == "full":
            force = options.force or (DeepReason.ASKED if options.deep else None)
            if report.full_resync:
                force = force or DeepReason.RESYNC
            # A saved plan is checked against a fresh plan of the same depth.
            if options.saved is not None and bool(options.saved.get("deep", True)):
                force = force or DeepReason.SAVED_PLAN
            scope = reconcile.begin(engine, now=self.clock(), force=force)
            if ahead is not None:
                reader, scope = adopt(ahead, scope)
            only = None if scope.only is None else scope.only | options.only
            users = engine.sync_ad_users(full=scope.deep) if options.sync else 0
            dynamic = scope.plans_dynamic(users)
            locations = scope.locations(engine.store.applied_dns()) if scope.located else None
        else:
            # Every group marked changed since the last pass, whoever read the change from Graph: a sync by the
            # console's plan page, provision on demand or a CLI `plan` next to the service consumed the delta
            # this pass's own sync would have reported (issue 23: such a change waited for the hourly reconcile).
            pending = engine.store.pending_groups(after=self._pending_seen)
            only = options.only | pending.groups
            users = engine.sync_ad_users(full=options.refresh_users) if options.sync else 0
            if not only and not users and not self._leavers():
                self._pending_seen = pending.upto
                return PassResult(Plan(deep=False), None, report, only=frozenset())
            # On-prem dynamic groups are planned when AD users changed, or when one of them is asked for.
            dynamic = users > 0 or any(k.startswith(DYNAMIC_KEY_PREFIX) for k in only)
            locations = None
        planned = time.perf_counter()
        phases["sync"] = planned - started
        if streamer is not None and scope is not None and scope.deep:
            reader = streamer.reader  # after a streamed read: the member accounts as the lots resolved them
        with engine.timed("planning"):
            found, located = engine.plan_and_locate(
                only=only,
                dynamic=dynamic,
                allow=options.allow,
                locations=locations,
                now=self.clock(),
                reader=reader,
            )
        if ahead is not None:
            ahead.close()  # what no plan took (and the index of accounts) goes now, before the writes
        deep = scope is not None and scope.deep
        found = replace(
            found,
            deep=deep,
            scope=scope.describe() if scope else "incremental",
            warnings=(*found.warnings, *skipped_objects(report)),
        )
        chosen = self._chosen(options, found)
        phases["plan"] = time.perf_counter() - planned
        full = scope is not None
        if streamer is not None and streamer.done.lots:
            phases["streamed"] = streamer.done.seconds  # within "sync": planning and writing while reading
        if show is not None:
            # After a streamed read, the lots' changes (already written) come first.
            show(streamer.done.plan(chosen) if streamer is not None else chosen)
        if options.dry_run:
            return PassResult(chosen, None, report, full, only, phases=phases, scope=scope)
        writing = time.perf_counter()
        self._check_claim()
        reconcile.record_locations(engine, {**(scope.located if scope else {}), **located})
        result = self._apply(chosen, options.run_id)
        self._check_claim()
        self._counted(result, options.allow)
        self._leaving(chosen, result)
        if scope is not None:
            reconcile.finish(engine, scope, chosen, result, now=self.clock())
            self._pending_seen = max(self._pending_seen, scope.pending.upto)
        elif pending is not None and only:
            reconcile.settle(engine, only, pending, chosen, result)
            self._pending_seen = max(self._pending_seen, pending.upto)
        phases["apply"] = time.perf_counter() - writing
        self._applied(chosen, result)
        if streamer is not None:
            chosen, result = streamer.done.plan(chosen), streamer.done.result(result)
        return PassResult(chosen, result, report, full, only, phases=phases, scope=scope)

    # -- one group: provision on demand ------------------------------------------------------------------------
    def find_group(self, wanted: str) -> GroupTarget | None:
        """The cloud group ``wanted`` (object id, else a display name held by exactly one live group, any
        case), with its own member count and the engine's scoping verdict (source of authority, the scope
        settings and the tenant's default for Microsoft 365 groups: :func:`cloud_intents`)."""
        store = self.engine.store
        groups = store.snapshot(member_groups=()).groups
        group: CloudGroup | None = groups.get(wanted)
        if group is None:
            named = [g for g in groups.values() if g.display_name.lower() == wanted.lower() and not g.deleted]
            group = named[0] if len(named) == 1 else None
        if group is None:
            return self.find_user(wanted)
        snapshot = store.snapshot([group.id])
        own = snapshot.groups.get(group.id, group)
        if not self.engine.cloud_enabled:
            reason: str | None = "scope.mode is none: no cloud group is written"
        else:
            intents = cloud_intents(snapshot, self.engine.settings, [group.id])
            reason = (
                None if group.id in intents.groups else intents.out_of_scope.get(group.id, "not in scope")
            )
        return GroupTarget(group.id, group.display_name, len(own.members), reason)

    @property
    def users_enabled(self) -> bool:
        return bool(self.engine.settings.users.enabled)

    def find_user(self, wanted: str) -> GroupTarget | None:
        """With ``[users]`` on: the cloud user ``wanted`` (object id, else its userPrincipalName, any case) and
        whether a pass writes it: held by an in-scope group and written by ``[users] provision`` (an SOA user's
        original account, or with "cloud_members" a cloud-only member's own account), by the engine's own rule
        (:func:`cloud_intents`); else why not."""
        engine, settings = self.engine, self.engine.settings
        if not settings.users.enabled:
            return None
        user = engine.store.find_user(wanted)
        if user is None:  # gone from the replica: hard-deleted, if writeback created its account
            if not leaving.may_leave(engine.store, settings.users, None, wanted):
                return None
            return GroupTarget(wanted, wanted, 0, None, kind="user", leaving=True)
        holding = engine.groups_holding([user.id])
        snapshot = engine.store.snapshot(sorted(holding))
        intents = cloud_intents(snapshot, settings, sorted(holding)) if holding else None
        in_scope = frozenset(intents.groups) if intents is not None else frozenset()
        name = user.display_name or user.user_principal_name or user.id
        reason: str | None = None
        if not in_scope and leaving.may_leave(engine.store, settings.users, user, user.id):
            # Its account's on_leave is decided as every pass decides it (:mod:`writeback.app.leaving`).
            return GroupTarget(user.id, name, 0, None, kind="user", leaving=True)
        if not in_scope:
            reason = "not a member of any group in writeback's scope"
        elif intents is not None and user.id in intents.users:
            reason = None  # the engine's own rule: [users] provision writes this user's account
        elif user.deleted:
            reason = "deleted in the cloud"
        elif user.is_guest and not settings.users.guests:
            reason = "a guest: accounts for guests need [users] guests = true"
        elif user.is_synced and not user.soa_converted:
            reason = "synced from AD and not cloud-managed: Entra Connect or Cloud Sync writes its AD account"
        elif not user.is_synced and settings.users.provision != "cloud_members":
            reason = 'cloud-only: [users] provision = "cloud_members" creates accounts for such users'
        else:
            reason = "not written by [users] provision (see the plan's notes)"
        return GroupTarget(user.id, name, len(in_scope), reason, kind="user", groups=in_scope)

    def _group(
        self,
        options: PassOptions,
        report: SyncReport,
        started: float,
        show: Callable[[Plan], None] | None,
    ) -> PassResult:
        engine = self.engine
        target = self.find_group(options.group or "")
        empty = Plan(deep=False, scope="one group")
        if target is None or not target.in_scope:
            return PassResult(empty, None, report, only=frozenset(), target=target)
        pending = engine.store.pending_groups()
        planned = time.perf_counter()
        user = target.kind == "user"
        # A user is planned with the in-scope groups that hold it (they are what puts it in scope); only its
        # own changes are kept, so nothing of those groups is written.
        only = target.groups if user else frozenset({target.id})
        with engine.timed("planning"):
            found = engine.plan(
                only=only,
                dynamic=False,
                allow=options.allow,
                now=self.clock(),
                users_leaving=frozenset({target.id}) if target.leaving else frozenset(),
            )
        if user:
            found = _only_user(found, target.id)
        plan = replace(
            found,
            deep=False,
            scope=f"one {target.kind}: {target.display_name}",
            warnings=(*found.warnings, *skipped_objects(report)),
        )
        phases = {"sync": planned - started, "plan": time.perf_counter() - planned}
        if show is not None:
            show(plan)
        if options.dry_run:
            return PassResult(plan, None, report, only=only, target=target, phases=phases)
        writing = time.perf_counter()
        self._check_claim()
        result = self._apply(plan, options.run_id)
        self._check_claim()
        self._counted(result, options.allow)
        if not user:  # pending marks and stamps are the groups'; a user pass wrote none of them
            reconcile.settle(engine, only, pending, plan, result)
            self._leaving(plan, result)  # a user pass holds one user's changes: it keeps the record as it is
        phases["apply"] = time.perf_counter() - writing
        self._applied(plan, result)
        return PassResult(plan, result, report, only=only, target=target, phases=phases)

    # -- shared steps ------------------------------------------------------------------------------------------
    def _chosen(self, options: PassOptions, current: Plan) -> Plan:
        """The plan to apply: ``current``, or the saved one while it still matches ``current``."""
        if options.saved is None:
            return current
        try:
            saved = Plan.from_dict(options.saved)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the saved plan: {exc}") from exc
        self.engine.check_saved_plan(saved, current)
        return saved.with_redacted_values_from(current)  # values hidden by Redact() are not saved

    def _counted(self, result: ApplyResult, allow: Allowances) -> None:
        """The changes applied count toward the safety thresholds for ``safety.window`` seconds (but for the
        kinds an operator allowed in this pass)."""
        self.engine.remember_applied([r.change for r in result.results if r.ok], self.clock(), allow)

    def _leavers(self) -> frozenset[str]:
        """Users whose account change an earlier apply held or could not write (with cloud_members): an
        incremental pass plans for them even when no group changed."""
        if not self.engine.settings.users.creates_accounts:
            return frozenset()
        return leaving.pending(self.engine.store)

    def _leaving(self, plan: Plan, result: ApplyResult) -> None:
        """Remember the users whose account change this apply held or could not write: every later pass asks
        the replica about them again (:mod:`writeback.app.leaving`)."""
        applied = [r.change for r in result.results if r.ok]
        leaving.record_unsettled(self.engine.store, plan, applied, aborted=result.aborted is not None)

    def apply_checked(self, plan: Plan, run_id: str | None, allow: Allowances) -> ApplyResult:
        """Apply one streamed lot's ``plan`` as the pass applies its own (:mod:`writeback.app.streaming`): the
        claim checked before and after, the apply fenced and journaled, its changes counted into the safety
        window, the observers told."""
        self._check_claim()
        result = self._apply(plan, run_id)
        self._check_claim()
        self._counted(result, allow)
        self._applied(plan, result)
        return result

    def check_claim(self) -> None:
        """Raise :class:`~writeback.errors.LeaseLostError` when the writer claim was lost."""
        self._check_claim()

    def _check_claim(self) -> None:
        """Before anything is written, and before the records after an apply: a pass that lost the lease
        records neither applied state nor stamps."""
        if self.fence is not None:
            self.fence.guard()

    def _apply(self, plan: Plan, run_id: str | None) -> ApplyResult:
        """Apply ``plan`` fenced: the lease asked before each change (a database round trip), and checked before
        each LDAP write, each of which waits at most the fence's write deadline."""
        fence, directory = self.fence, self.engine.directory
        if fence is None:
            return self.engine.apply(plan, run_id=run_id, should_stop=self.should_stop)
        directory.fence_writes(fence.guard_write, fence.write_deadline)
        try:
            return self.engine.apply(plan, run_id=run_id, should_stop=self.should_stop, guard=fence.guard)
        finally:
            directory.fence_writes(None)

    def _applied(self, plan: Plan, result: ApplyResult) -> None:
        for observer in self.on_apply:
            try:
                observer(plan, result)
            except Exception:  # an alert or event must never stop a pass
                log.exception("an apply observer failed", extra={"event": "observer_failed"})
