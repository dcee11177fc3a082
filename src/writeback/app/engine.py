"""One reconcile pass: sync the cloud replica, read the managed AD groups, plan, apply.

This module wires the ports together; the product rules live in the pure modules it calls (scope, mapping,
planning). It imports no vendor library: adapters are handed in (see :mod:`writeback.app.wiring`).

Crash safety comes from the design rather than a journal: every AD object writeback creates carries its
``Group_<objectId>`` anchor from the first LDAP add, every plan is computed from what AD holds *now*, and
member writes are idempotent. An apply killed at any point is finished by the next one, without duplicates.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

from writeback.app import leaving
from writeback.app.gathering import Schema, gather
from writeback.app.readahead import AheadReads, ReadsAhead
from writeback.app.writer import AHEAD, WriterThread
from writeback.config import Settings
from writeback.core.desired import (
    Intents,
    cloud_intents,
    combine,
    desired_state,
    dynamic_intents,
    managed_accounts,
    questions,
)
from writeback.core.dn import normalize_dn
from writeback.core.model import (
    ANCHOR_PREFIX,
    DYNAMIC_ANCHOR_PREFIX,
    TARGET_GROUP,
    TARGET_USER,
    AttributeValue,
    CloudSnapshot,
    DirectoryGroup,
)
from writeback.core.planning import Change, ChangeKind, GroupReport, Plan, Policy, compute_plan
from writeback.core.ports import (
    CloudSource,
    Directory,
    GroupStream,
    LogRecord,
    Store,
    SyncReport,
    UsnWatermark,
)
from writeback.core.reports import SEEN_KEY, notes_to_log, skipped_detail
from writeback.core.rights import hold_unwritable
from writeback.core.safety import Managed, Thresholds, Window, hold_unsafe
from writeback.core.text import plural
from writeback.errors import (
    DirectoryError,
    DirectoryUnavailable,
    DirectoryWriteError,
    LeaseLostError,
    PlanError,
    StalePlanError,
)

log = logging.getLogger("writeback.engine")


@dataclass(frozen=True)
class ChangeResult:
    change: Change
    ok: bool
    error: str | None = None
    permanent: bool = False  # refused for the value itself: refused again until the change differs


@dataclass
class ApplyResult:
    run_id: str
    results: list[ChangeResult] = field(default_factory=list)
    aborted: str | None = None

    @property
    def failed(self) -> list[ChangeResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and self.aborted is None


Progress = Callable[[str], None]


@dataclass(frozen=True)
class Allowances:
    """An operator's explicit allowances past the safety thresholds (see :mod:`writeback.core.safety`)."""

    deletes: int = 0
    removals: int = 0
    updates: int = 0


LOGGED_MEMBER_VALUES = 20
WINDOW_KEY = "safety_window"  # meta: the applies the thresholds still count (writeback.core.safety.Window)  # member DNs kept in a log row's detail; the count is always there


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _held_reason(change: Change, reasons: Mapping[str, str]) -> str:
    kind = {ChangeKind.DELETE: "deletes", ChangeKind.REMOVE_MEMBERS: "removals"}.get(change.kind, "updates")
    return reasons.get(kind) or next(iter(reasons.values()), "held by a safety threshold")


NO_ALLOWANCES = Allowances()


def _report_detail(report: GroupReport) -> dict[str, object] | None:
    """A skip row's detail: the members not written, and the target type when it is a user account."""
    detail = None if report.error else skipped_detail(report)
    if report.target != TARGET_GROUP:
        return {"target": report.target, **(detail or {})}
    return detail


# Changes per journal transaction: a commit per change was a measurable part of a first apply
# (docs/benchmarks.md, "Measurements behind the code"). A batch is cut short after a change with many member
# values, so a big group's log row is not kept pending for long.
JOURNAL_BATCH = 64
JOURNAL_BATCH_VALUES = 20_000


# Read on the accounts writeback creates ([users] provision = "cloud_members") besides the mapped attributes;
# cn too, so the rights check (allowedAttributesEffective over these names) knows whether a rename may run.
MEMBER_ACCOUNT_ATTRIBUTES = (
    "adminDescription",
    "userAccountControl",
    "sAMAccountName",
    "userPrincipalName",
    "cn",
)


def _modified_values(change: Change) -> dict[str, AttributeValue]:
    """An update's values as the directory writes them: None removes, a tuple is every value, else a string."""
    return {k: v if v is None or isinstance(v, tuple) else str(v) for k, v in change.attributes.items()}


def write_order(changes: Sequence[Change]) -> tuple[list[Change], dict[int, int]]:
    """The order to write ``changes`` in, and the member adds that can ride with a create.

    A plan creates every group without the nested groups it creates in the same run and adds those afterwards
    (``ADD_MEMBERS``, "nested groups created or renamed in this plan"). Such a modify costs the DC time in
    proportion to the group's size, and at large these modifies were a good part of the write phase's excess
    over the directory's limit, which creates children first and writes each group in its add
    (docs/benchmarks.md, "Measurements behind the code"). Here too: the creates are reordered children first (a stable post-order over nesting, plan
    order otherwise) and a parent's add carries those nested members. Returns the reordered changes and, by
    position in them, create -> the member add it carries (which then writes nothing). Only adds whose every
    value is a group created in this plan are carried, never through a nesting cycle; everything after the
    creates keeps the plan's order (holds, updates, renames, removals, deletes are untouched)."""
    creates = {normalize_dn(c.dn): i for i, c in enumerate(changes) if c.kind is ChangeKind.CREATE}
    carried: dict[int, int] = {}  # create index -> add index (in ``changes``)
    for i, c in enumerate(changes):
        if c.kind is not ChangeKind.ADD_MEMBERS or not c.members:
            continue
        parent = creates.get(normalize_dn(c.dn))
        if (
            parent is not None
            and parent not in carried
            and all(normalize_dn(m) in creates for m in c.members)
        ):
            carried[parent] = i
    if not carried:
        return list(changes), {}
    order: list[int] = []
    state: dict[int, int] = {}  # 1: being visited, 2: done
    for start in creates.values():
        stack: list[tuple[int, bool]] = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                state[node] = 2
                order.append(node)
                continue
            if state.get(node):
                continue
            state[node] = 1
            stack.append((node, True))
            add = carried.get(node)
            children = [creates[normalize_dn(m)] for m in changes[add].members] if add is not None else []
            if any(state.get(child) == 1 for child in children):
                del carried[node]  # a nesting cycle: this group's nested members are added afterwards
                continue
            stack.extend((child, False) for child in reversed(children) if not state.get(child))
    rest = [i for i in range(len(changes)) if i not in state]
    sequence = order + rest
    position = {index: pos for pos, index in enumerate(sequence)}
    return [changes[i] for i in sequence], {position[c]: position[a] for c, a in carried.items()}


def journal_batches(changes: Sequence[Change]) -> Iterator[tuple[int, Sequence[Change]]]:
    """``changes`` in consecutive batches: (index of the batch's first change, the batch). A batch ends after
    :data:`JOURNAL_BATCH` changes or once it carries :data:`JOURNAL_BATCH_VALUES` member values."""
    start = 0
    while start < len(changes):
        end, values = start, 0
        while end < len(changes) and end - start < JOURNAL_BATCH and values < JOURNAL_BATCH_VALUES:
            values += len(changes[end].members)
            end += 1
        yield start, changes[start:end]
        start = end


@dataclass
class _Writing:
    """One apply's progress through its ordered changes (see write_order)."""

    changes: list[Change]
    carried: dict[int, int]  # position of a create -> position of the member add it carries
    failed_groups: set[str]
    created: set[str] = field(default_factory=set)  # normalized DNs of the groups this apply created
    written: set[int] = field(default_factory=set)  # positions of member adds written with their create
    last_written: str | None = None  # the group of the last change written
    # Groups a lost lease stopped in the middle of a change: marked for a whole compare (Engine._mark_interrupted)
    # by the engine's thread once the writer has stopped.
    interrupted: set[str] = field(default_factory=set)

    def carried_add(self, position: int) -> Change | None:
        """The member add the create at ``position`` carries, when every nested group in it was created."""
        add = self.carried.get(position)
        if add is None:
            return None
        change = self.changes[add]
        return change if all(normalize_dn(m) in self.created for m in change.members) else None

    def done(self, position: int, change: Change, carried: Change | None) -> None:
        if change.kind is ChangeKind.CREATE:
            self.created.add(normalize_dn(change.dn))
            if carried is not None:
                self.written.add(self.carried[position])


@dataclass
class _Batch:
    """One journal batch on its way through the writer thread: its changes (from position ``first`` in the
    ordered changes), their pending rows, and what writing them gave, finished in one store transaction."""

    first: int
    changes: Sequence[Change]
    rows: Sequence[int]
    # (row, result, error, when): each row keeps the time its change was written, not the batch's end.
    outcomes: list[tuple[int, str, str | None, float]] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)  # groups created or moved: cloud id -> DN
    forgotten: list[str] = field(default_factory=list)  # groups deleted

    def dropped(self) -> list[int]:
        """The rows of changes never attempted (stop, abort, a lost lease): removed, as if never logged."""
        finished = {o[0] for o in self.outcomes}
        return [r for r in self.rows if r not in finished]


def located_groups(known: Mapping[str, str], found: Iterable[DirectoryGroup]) -> dict[str, str]:
    """The managed groups a full read found somewhere else than ``known`` says (cloud id -> DN).

    Groups adopted from Connect or an earlier installation, and a group created by a run killed before it
    recorded the create, are otherwise unknown: a rename would then look for them at the new DN only."""
    where = {cid: normalize_dn(dn) for cid, dn in known.items()}
    return {g.cloud_id: g.dn for g in found if g.cloud_id and where.get(g.cloud_id) != normalize_dn(g.dn)}


class Engine:
    """Sync the sources, plan, apply. Every plan goes the same way (see :mod:`writeback.core.desired`): sources ->
    intents -> questions -> one gathering step -> desired state -> plan -> safety holds."""

    def __init__(
        self,
        settings: Settings,
        source: CloudSource,
        directory: Directory,
        store: Store,
        progress: Progress | None = None,
    ) -> None:
        self.settings, self.source, self.directory, self.store = settings, source, directory, store
        self.progress = progress or (lambda _msg: None)
        self._schema: Schema | None = None
        # The base of the safety percentages: counted by every full plan, kept for incremental ones.
        self._managed: Managed | None = None
        self._accounts: dict[str, int] | None = None  # user accounts by kind (the last full plan's count)
        self._timings: dict[str, float] = {"graph_read": 0.0, "planning": 0.0}
        self._journal_checked = False

    @property
    def cloud_enabled(self) -> bool:
        return self.settings.scope.cloud_enabled

    @property
    def dynamic_enabled(self) -> bool:
        return bool(self.settings.dynamic_groups)

    # What the service and the CLI need ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the directory connections and the state store."""
        try:
            self.directory.close()
        finally:
            self.store.close()

    def ldap_stats(self) -> dict[str, int]:
        """LDAP operations by kind since start (when the directory adapter counts them)."""
        stats = getattr(self.directory, "stats", None)
        return dict(stats) if isinstance(stats, dict) else {}

    def graph_stats(self) -> dict[str, int]:
        """Graph requests, throttling and retries since start (when the source adapter counts them)."""
        stats = getattr(getattr(self.source, "client", None), "stats", None)
        return dict(stats) if isinstance(stats, dict) else {}

    def managed_base(self) -> Managed | None:
        """The safety percentages' base as the last full plan counted it (None before one)."""
        return self._managed

    def adopt_managed_base(self, managed: Managed) -> None:
        """Use a base a deep reconcile recorded (a quick reconcile in a new process reads no full plan)."""
        if self._managed is None:
            self._managed = managed

    def advance_managed_base(self, applied: Sequence[Change]) -> Managed | None:
        """Count ``applied`` changes into the base (so a quick reconcile hours later holds with what AD holds)."""
        if self._managed is not None and applied:
            self._managed = self._managed.after(applied)
        return self._managed

    def prefixes(self) -> tuple[str, ...]:
        """The anchor prefixes of the sources configured: the AD groups plans may compare."""
        return (
            *((ANCHOR_PREFIX,) if self.cloud_enabled else ()),
            *((DYNAMIC_ANCHOR_PREFIX,) if self.dynamic_enabled else ()),
        )

    def managed_member_values(self) -> int | None:
        """Member values in the managed AD groups as the last full plan read them (None before one)."""
        return self._managed.member_values if self._managed is not None else None

    def managed_accounts(self) -> dict[str, int] | None:
        """The user accounts writeback manages, by kind, as the last full plan read them (None before one, or
        with ``[users]`` off): :func:`writeback.core.desired.managed_accounts`."""
        return dict(self._accounts) if self._accounts is not None else None

    def groups_holding(self, member_ids: Iterable[str]) -> set[str]:
        """The cloud groups that hold any of ``member_ids`` (users or groups) in the replica."""
        return self.store.groups_with_members(member_ids)

    def allowances(self) -> Allowances:
        """Allowances an operator recorded for a running service (`writeback allow`)."""
        return Allowances(**self.store.allowances())

    def allow(self, allowances: Allowances) -> None:
        self.store.set_allowances(asdict(allowances))

    def clear_allowances(self) -> None:
        self.store.set_allowances({})

    # Sources ----------------------------------------------------------------------------------------------
    def sync(self, stream: GroupStream | None = None) -> SyncReport:
        """Bring the cloud replica up to date (Graph delta). ``stream``: see :data:`GroupStream` (the
        streamed first apply, :mod:`writeback.app.streaming`)."""
        if not self.cloud_enabled:
            return SyncReport()
        self.progress("Reading changes from Microsoft Graph")
        report = self.source.sync(self.store) if stream is None else self.source.sync(self.store, stream)
        self.progress(
            f"Cloud replica up to date ({report.requests} Graph requests"
            f"{', full resync' if report.full_resync else ''})"
        )
        return report

    def sync_ad_users(self, *, full: bool = False) -> int:
        """The on-prem source: read the AD users changed and deleted since the last read into the cache dynamic
        groups are evaluated over — all of them when ``full``, on first use, or when the watermark was taken
        on another DC (USNs are per DC). Returns how many users were read or removed."""
        if not self.dynamic_enabled:
            return 0
        stored = None if full else self.store.ad_users_watermark()
        since = UsnWatermark(dc=stored[0], usn=stored[1]) if stored else None
        changes = self.directory.read_user_changes(self.settings.target.base_dn, since)
        self.store.put_ad_users(
            changes.users,
            replace=changes.full,
            usn=changes.watermark.usn,
            dc=changes.watermark.dc,
            removed=changes.removed,
        )
        if changes.users or changes.removed:
            self.progress(
                f"{len(changes.users)} AD users read for dynamic groups"
                + (" (full)" if changes.full else f" (changed), {len(changes.removed)} deleted")
            )
        return len(changes.users) + len(changes.removed)

    def read_ahead(self) -> AheadReads | None:
        """Start the AD reads of a plan of every group while the caller reads Graph, when the directory can
        (:mod:`writeback.app.readahead`): the managed groups as the gathering step asks for them, and every
        user account. None when it cannot."""
        if not isinstance(self.directory, ReadsAhead):
            return None
        schema = self.schema()
        attrs = tuple(dict.fromkeys((*schema.read, *self.mapped_attributes())))
        return self.directory.read_ahead(schema.read, attrs, self.prefixes())

    def schema(self) -> Schema:
        if self._schema is None:
            self._schema = Schema.of(self.directory, self.settings.mapping.anchor)
        return self._schema

    # Planning ---------------------------------------------------------------------------------------------
    def plan(
        self,
        *,
        only: Collection[str] | None = None,
        dynamic: bool = True,
        allow: Allowances = NO_ALLOWANCES,
        locations: Mapping[str, str] | None = None,
        now: float | None = None,
        users_leaving: Collection[str] = (),
    ) -> Plan:
        """Plan from the synced sources and what AD holds now. Writes nothing, to AD or to the state.

        ``only``: an incremental plan of just these cloud groups (every managed group otherwise);
        ``dynamic``: include the on-prem dynamic groups; ``locations``: where each managed group is (default:
        where it was last written, the state's applied DNs); ``users_leaving``: users of accounts writeback
        created to decide as a leave is decided (provision on demand of one: :mod:`writeback.app.leaving`). The
        reconcile pass
        (:class:`writeback.app.reconcile_pass.ReconcilePass`) is the one caller that records anything.
        """
        return self.plan_and_locate(
            only=only, dynamic=dynamic, allow=allow, locations=locations, now=now, users_leaving=users_leaving
        )[0]

    def plan_and_locate(
        self,
        *,
        only: Collection[str] | None = None,
        dynamic: bool = True,
        allow: Allowances = NO_ALLOWANCES,
        locations: Mapping[str, str] | None = None,
        now: float | None = None,
        users_leaving: Collection[str] = (),
        snapshot: CloudSnapshot | None = None,
        reader: Directory | None = None,
    ) -> tuple[Plan, dict[str, str]]:
        """:meth:`plan`, and where a full plan found every managed group (cloud id -> DN; empty for a
        partial plan), for the pass to record once it applies. ``now`` (Unix seconds): where the safety
        window ends (the clock by default). ``snapshot``: the cloud to plan ``only`` from instead of the
        replica's (the groups a first read has read in full before it is stored: :mod:`writeback.app.streaming`);
        ``reader``: the directory the gathering step reads AD through (the streamed lots': the same accounts)."""
        sources: list[Intents] = []
        # Accounts whose leave was held or refused are decided again by every plan, with no group planned too.
        leavers = (
            leaving.pending(self.store) | frozenset(users_leaving)
            if self.settings.users.creates_accounts
            else frozenset()
        )
        if self.cloud_enabled and (only is None or only or leavers):
            if snapshot is None and not self.store.has_synced():
                raise PlanError(
                    "the cloud replica is empty: no successful Graph sync yet; run 'writeback plan' "
                    "(which syncs first) and check the source settings with 'writeback config check'"
                )
            cloud = cloud_intents(
                snapshot if snapshot is not None else self.store.snapshot(only), self.settings, only
            )
            self.progress(
                f"{len(cloud.in_scope)} of {len(cloud.cloud_groups)} cloud groups in scope"
                if only is None
                else f"planning {len(cloud.groups)} of the {len(cloud.in_scope)} cloud groups in scope"
            )
            sources.append(cloud)
            del cloud  # held by sources, and dropped with them (see below)
        elif self.cloud_enabled:
            sources.append(Intents({}, reconciled=frozenset()))
        if dynamic and self.dynamic_enabled:
            sources.append(dynamic_intents(self.settings, self.store.ad_users()))
        if not sources:
            return Plan(), {}
        intents = combine(*sources)
        if intents.reconciled is not None and not intents.reconciled and not leavers:
            return Plan(), {}  # an incremental cycle with nothing to reconcile
        where = self.store.applied_dns() if locations is None else locations
        prints = self.store.applied_fingerprints()
        # The users whose account writeback wrote are those with a recorded fingerprint (keys never collide:
        # a cloud user's id is no group's).
        q = questions(
            intents,
            self.settings,
            where,
            written_users=prints.keys() if intents.users_enabled else (),
            leaving=leavers,
        )
        facts = gather(
            q,
            self.directory if reader is None else reader,
            self.schema(),
            self.mapped_attributes(),
            self.progress,
            user_mapped=self.user_mapped_attributes() if intents.users_enabled else (),
        )
        located = {} if intents.partial else located_groups(where, facts.managed)
        # A partial plan asks the whole replica whether the users of accounts it may see leave are in no group.
        intents = leaving.ask_replica(intents, facts, self.store, self.settings, also=users_leaving)
        state = desired_state(intents, facts, self.settings)
        partial, users_enabled = intents.partial, intents.users_enabled
        # The cloud replica's users, the questions and AD's answers are in the desired state now: let them go
        # before the plan is made (a 250,000-member group's first apply peaked there, issue 27).
        del sources, intents, q, facts
        plan = compute_plan(state, self.policy(), prints)
        for message in state.loops.values():
            log.warning("%s", message)
        if state.warnings:
            plan = replace(plan, warnings=(*plan.warnings, *state.warnings))
        if not partial or self._managed is None:
            self._managed = Managed.of(state.actual, len(state.user_actual) + len(state.users_released))
        if not partial and users_enabled:
            self._accounts = managed_accounts(state)
        at = time.time() if now is None else now
        window = self.safety_window()
        base = window.base(at, self._managed)
        plan = hold_unsafe(plan, base, self.thresholds(allow), window.counted(at))
        # After the thresholds (which replace plan.held): changes AD would refuse for want of a right.
        return hold_unwritable(plan, state), located

    def mapped_attributes(self) -> tuple[str, ...]:
        """The AD attributes writeback writes besides members: read back to compare."""
        schema = self.schema()
        return tuple(
            dict.fromkeys(
                (*schema.write, "description", "displayName", *schema.mail, *self.settings.mapping.attributes)
            )
        )

    def policy(self) -> Policy:
        s = self.settings
        return Policy(
            delete_soft_deleted=s.safety.on_soft_delete == "delete",
            delete_out_of_scope=s.safety.on_out_of_scope == "delete",
            manage_sam_account_name=s.mapping.sam_account_name is not None,
        )

    def safety_window(self) -> Window:
        """The applies the thresholds count with the next plan (:class:`writeback.core.safety.Window`)."""
        raw = self.store.get_meta(WINDOW_KEY)
        span = self.settings.safety.window
        return Window.from_json(json.loads(raw), span) if raw else Window(span)

    def remember_applied(
        self, applied: Sequence[Change], now: float, allow: Allowances = NO_ALLOWANCES
    ) -> None:
        """Count ``applied`` into the safety window (before the managed base advances past them). Changes of a
        kind an operator allowed in this pass were reviewed: they do not count, so the next small change is
        not held for an hour behind a mass change the operator let through."""
        reviewed = {
            ChangeKind.DELETE: allow.deletes > 0,
            ChangeKind.REMOVE_MEMBERS: allow.removals > 0,
            ChangeKind.UPDATE: allow.updates > 0,
            ChangeKind.MOVE: allow.updates > 0,
        }
        applied = [c for c in applied if not reviewed.get(c.kind, False)]
        window = self.safety_window()
        after = window.after(now, applied, self._managed or Managed())
        if after != window:
            self.store.write_meta({WINDOW_KEY: json.dumps(after.to_json())})

    def thresholds(self, allow: Allowances) -> Thresholds:
        s = self.settings.safety
        return Thresholds(
            delete_threshold=s.delete_threshold,
            member_removal_percent=s.member_removal_percent,
            update_percent=s.update_percent,
            allow_deletes=allow.deletes,
            allow_removals=allow.removals,
            allow_updates=allow.updates,
        )

    # Timings ----------------------------------------------------------------------------------------------
    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent in this process: "graph_read" (the Graph sync), "ad_read" (every AD read: the
        gathering step and any other, a plan's wait for a read ahead included), "planning" (planning without
        its AD reads) and "ad_write" (inside directory write calls); with a read ahead (:meth:`read_ahead`),
        "ad_read_ahead": its LDAP time, which ran during the Graph read and is in no other figure. The AD
        figures come from the directory adapter when it measures them."""
        measured = getattr(self.directory, "timings", None)
        ad = measured if isinstance(measured, dict) else {}
        return {
            "graph_read": self._timings["graph_read"],
            "ad_read": float(ad.get("ad_read", 0.0)),
            "planning": self._timings["planning"],
            "ad_write": float(ad.get("ad_write", 0.0)),
            # AD read while Graph was read (writeback.app.readahead): overlapped, not on the way to a write.
            **({"ad_read_ahead": float(ad["ad_read_ahead"])} if "ad_read_ahead" in ad else {}),
        }

    def discount(self, key: str, seconds: float) -> None:
        """Take ``seconds`` out of ``timings[key]``: time inside a :meth:`timed` block that other timings
        measured (the streamed lots planned and written during the Graph read: :mod:`writeback.app.streaming`)."""
        self._timings[key] = max(0.0, self._timings[key] - seconds)

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Add the wall time of the block to ``timings[key]`` ("graph_read" or "planning"); for "planning" the
        AD reads made meanwhile are left out (they count as "ad_read")."""
        if key not in self._timings:
            raise ValueError(f"unknown timing {key!r}")
        before = self.timings["ad_read"]
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            if key == "planning":
                elapsed -= self.timings["ad_read"] - before
            self._timings[key] += max(0.0, elapsed)

    # Writing ----------------------------------------------------------------------------------------------
    def apply(
        self,
        plan: Plan,
        *,
        run_id: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        guard: Callable[[], None] | None = None,
    ) -> ApplyResult:
        """Apply ``plan`` in order. One failing group never blocks the others; an unreachable directory
        stops the run (the next run resumes from what AD then holds).

        ``guard`` runs before each batch of changes is handed to the writer and raises to stop the run (the
        service passes its leader lease's fencing check, :meth:`writeback.app.lease.LeaderLease.guard`; the
        lease's fence on the directory, ``fence_writes``, also runs before every LDAP write: an instance that
        lost the lease writes nothing more). Its exception propagates; the changes made before it are logged.
        ``should_stop`` is asked before each change, from the writer thread (:mod:`writeback.app.writer`), as
        is ``progress``.

        The provisioning log is a write-ahead journal kept in batches (:data:`JOURNAL_BATCH` changes per
        store transaction instead of a commit per change, :func:`journal_batches`): a batch's rows are written
        as ``pending`` before its first LDAP write and get their results in one transaction after its last.
        The writer thread writes one batch while this thread journals the next and finishes the one before
        (:meth:`_write_all`). A run killed in between leaves ``pending`` rows, which the next apply marks
        ``interrupted``; the groups created or moved in those batches are recorded again by the next full pass
        (``located_groups``)."""
        result = ApplyResult(run_id or uuid.uuid4().hex[:12])
        failed_groups: set[str] = set()
        # Rows left pending are a killed process's: looked for once per engine (the log has no index on result).
        interrupted = 0 if self._journal_checked else self.store.close_pending_log(result.run_id)
        self._journal_checked = True
        if interrupted:
            log.warning(
                "%d changes of an earlier run were being written when it stopped; marked interrupted in the "
                "provisioning log (this plan was computed from what AD holds now)",
                interrupted,
            )
        self._log_reports(result.run_id, plan)
        changes, carried = write_order(plan.changes)
        run = _Writing(changes, carried, failed_groups)
        if changes:
            self._write_all(result, run, should_stop, guard)
        if result.aborted is None:
            # Groups now converged: remember their desired state, so a later difference in AD is drift.
            done = {cid: fp for cid, fp in plan.fingerprints.items() if cid not in failed_groups}
            if done:
                self.store.record_fingerprints(done)
        return result

    def _write_all(
        self,
        result: ApplyResult,
        run: _Writing,
        should_stop: Callable[[], bool] | None,
        guard: Callable[[], None] | None,
    ) -> None:
        """Journal the batches in this thread while the writer thread writes them (:mod:`writeback.app.writer`):
        batch N+1's pending rows are committed, and batch N-1 finished, while batch N is being written.

        The lease's database check (``guard``) runs here before each batch is journaled; the directory's
        fence (``fence_writes``: the lease as last confirmed) runs before every LDAP write in the writer thread.
        A lost lease, a stop, an unreachable directory or an error halts the writer between two changes; every
        batch handed over is then finished here (the rows of changes never attempted dropped) before the error
        is raised."""
        # ``writer`` is bound before the first batch is handed over, so the thread may read it.
        writer: WriterThread[_Batch] = WriterThread(
            lambda batch: self._write_batch(result, run, batch, should_stop, lambda: writer.halted)
        )
        failure: BaseException | None = None
        try:
            for first, batch in journal_batches(run.changes):
                if writer.halted:
                    break
                if guard is not None:
                    guard()
                rows = self.store.log_rows([self._record(result.run_id, c) for c in batch])
                writer.submit(_Batch(first, batch, rows))
                while writer.in_hand > AHEAD:
                    self._finish_batch(writer.done())
        except BaseException as exc:  # a lost lease, a journal that failed, an interrupt: stop writing
            failure = exc
            writer.halt()
        finally:
            for rest in writer.close():
                self._finish_batch(rest)
        error = failure or writer.error
        if isinstance(error, LeaseLostError):
            # The last change written may have been the last write before the pause (issue 23).
            run.interrupted.update(g for g in (run.last_written,) if g)
        self._mark_interrupted(run.interrupted)
        if error is not None:
            raise error

    def _finish_batch(self, batch: _Batch) -> None:
        """Record a batch's outcomes, the DNs it created or moved and the groups it deleted in one transaction;
        the rows of its changes never attempted are removed, as if never logged."""
        self.store.finish_log(
            batch.outcomes, dropped=batch.dropped(), applied=batch.applied, forgotten=batch.forgotten
        )

    def _write_batch(
        self,
        result: ApplyResult,
        run: _Writing,
        batch: _Batch,
        should_stop: Callable[[], bool] | None,
        halted: Callable[[], bool],
    ) -> bool:
        """Write ``batch``'s changes in order (in the writer thread: no store call here, see
        :mod:`writeback.app.writer`), their outcomes kept in the batch. False: stop."""
        failed_groups, total = run.failed_groups, len(run.changes)
        outcomes, applied, forgotten = batch.outcomes, batch.applied, batch.forgotten
        for i, (change, row) in enumerate(zip(batch.changes, batch.rows, strict=True), start=batch.first + 1):
            if halted():
                return False
            if should_stop and should_stop():
                result.aborted = "stop requested"
                return False
            if i - 1 in run.written:
                # A nested-group member add its group's create already wrote (write_order).
                self.progress(
                    f"[{i}/{total}] {change.kind.action} {change.display_name or change.dn}"
                    " (written with the group's create)"
                )
                outcomes.append((row, "success", None, time.time()))
                result.results.append(ChangeResult(change, True))
                continue
            if change.cloud_id in failed_groups:
                msg = "not attempted: an earlier change of this group failed"
                result.results.append(ChangeResult(change, False, msg))
                outcomes.append((row, "skipped", msg, time.time()))
                continue
            self.progress(
                f"[{i}/{total}] {change.kind.action} {change.display_name or change.dn}"
                + (f" ({plural(len(change.members), 'member')})" if change.members else "")
            )
            carried = run.carried_add(i - 1)
            sent = self._writes_sent()
            try:
                try:
                    self._execute(change, applied, forgotten, carried)
                except DirectoryUnavailable:
                    raise
                except DirectoryError as exc:
                    if carried is None:
                        raise
                    # The nested groups ride first in the add, which the DC refuses whole (an LDAP add is
                    # atomic): create the group without them; their own member add then runs as planned.
                    log.info("create of %s with its nested groups refused (%s); without them", change.dn, exc)
                    carried = None
                    self._execute(change, applied, forgotten)
            except DirectoryUnavailable as exc:
                outcomes.append((row, "error", str(exc), time.time()))
                result.results.append(ChangeResult(change, False, str(exc)))
                result.aborted = f"directory unavailable: {exc}"
                return False
            except DirectoryError as exc:
                failed_groups.add(change.cloud_id)
                outcomes.append((row, "error", str(exc), time.time()))
                permanent = isinstance(exc, DirectoryWriteError) and exc.permanent
                result.results.append(ChangeResult(change, False, str(exc), permanent))
                continue
            except LeaseLostError as exc:
                if sent is not None and self._writes_sent() == sent:
                    # Refused before its first write: never attempted (its row is dropped). The write before
                    # may have been the last one before the pause (issue 23).
                    run.interrupted.update(g for g in (run.last_written,) if g)
                    raise
                # Refused before one of this change's writes: it may be half written, and the one write in
                # flight when the instance was paused may have landed after another instance's. Whoever
                # holds the lease next compares both groups whole (issue 23).
                outcomes.append((row, "error", f"stopped: {exc}", time.time()))
                run.interrupted.update(g for g in (change.cloud_id, run.last_written) if g)
                raise
            except BaseException as exc:
                # Not a directory answer (a bug, an interrupt): the change may be half written; say so.
                outcomes.append((row, "error", f"stopped by {type(exc).__name__}: {exc}", time.time()))
                raise
            outcomes.append((row, "success", None, time.time()))
            result.results.append(ChangeResult(change, True))
            run.done(i - 1, change, carried)
            run.last_written = change.cloud_id
        return True

    def _writes_sent(self) -> int | None:
        """LDAP writes sent so far (the directory counts an operation once its fence let it through), or None
        when the directory does not count them: then a change the fence stopped counts as begun."""
        stats = self.ldap_stats()
        return sum(stats.get(k, 0) for k in ("add", "modify", "modrdn", "delete")) if stats else None

    def _mark_interrupted(self, groups: set[str]) -> None:
        """Mark ``groups`` for a whole compare by the next pass, whichever instance runs it: pending (every
        incremental pass plans the groups marked since its last one) and without a stamp (a quick reconcile
        compares them). Written after the lease was lost, on purpose: it can only make the next leader compare
        more, never write less."""
        if groups:
            self.store.mark_pending(groups)
            self.store.forget_stamps(groups)
            log.warning(
                "lost the leader lease in the middle of writing; %d groups marked to be compared whole by the "
                "active instance",
                len(groups),
                extra={"event": "fenced_mid_change", "groups": sorted(groups)},
            )

    def _log_reports(self, run_id: str, plan: Plan) -> None:
        """Log what the plan does not change: groups skipped with an error and members not written (each note
        once, when it changes: :mod:`writeback.core.reports`), held changes and staged deletes."""
        records: list[LogRecord] = []
        raw = self.store.get_meta(SEEN_KEY)
        notes = notes_to_log(plan.reports, json.loads(raw) if raw else {}, complete=plan.deep)
        for r in notes.reports:
            records.append(
                LogRecord(
                    run_id,
                    "skip" if r.error else "skip_members",
                    "error" if r.error else "info",
                    cloud_id=r.cloud_id,
                    group_name=r.display_name,
                    dn=r.dn,
                    error=r.error,
                    detail=_report_detail(r),
                )
            )
        if raw != (seen := json.dumps(notes.seen, sort_keys=True)):
            self.store.write_meta({SEEN_KEY: seen})
        why = {h.kind: h.message for h in plan.holds}
        for c in plan.held:
            records.append(
                LogRecord(
                    run_id,
                    "staged_delete" if c.kind is ChangeKind.DELETE else "held",
                    "held",
                    cloud_id=c.cloud_id,
                    group_name=c.display_name,
                    dn=c.dn,
                    error=next((h.message for h in plan.holds if c.cloud_id in h.groups), None)
                    or _held_reason(c, why),
                    detail={"change": c.kind.action, "members": len(c.members)} if c.members else None,
                )
            )
        self.store.log_rows(records)

    def user_mapped_attributes(self) -> tuple[str, ...]:
        """What is read of a user account: the mapped attributes, and with cloud_members what writeback
        manages on the accounts it creates (names, adminDescription, userAccountControl)."""
        mapped = tuple(self.settings.users.attributes)
        if self.settings.users.creates_accounts:
            mapped += MEMBER_ACCOUNT_ATTRIBUTES
        return tuple(dict.fromkeys(mapped))

    def _execute(
        self, change: Change, applied: dict[str, str], forgotten: list[str], carried: Change | None = None
    ) -> None:
        """Write one change (a create with the nested-group member add it ``carried``, see write_order). The
        DNs of groups created or moved go to ``applied``, deleted groups to ``forgotten`` (recorded with the
        batch's log rows, in the same transaction)."""
        d = self.directory
        if change.target == TARGET_USER:
            self._execute_user(change, forgotten)
        elif change.kind is ChangeKind.CREATE:
            attrs = {k: v for k, v in change.attributes.items() if v is not None}
            # Nested groups first: they are in the add itself (never in a later chunk), so a refusal of them
            # refuses the add whole and the group can be created again without them.
            members = (*carried.members, *change.members) if carried is not None else change.members
            d.create_group(change.dn, attrs, members)
            applied[change.cloud_id] = change.dn
        elif change.kind is ChangeKind.UPDATE:
            d.modify_attributes(change.dn, _modified_values(change))
        elif change.kind is ChangeKind.MOVE:
            assert change.new_dn is not None
            d.move(change.dn, change.new_dn)
            applied[change.cloud_id] = change.new_dn
        elif change.kind is ChangeKind.ADD_MEMBERS:
            d.add_members(change.dn, change.members)
        elif change.kind is ChangeKind.REMOVE_MEMBERS:
            d.remove_members(change.dn, change.members)
        elif change.kind is ChangeKind.DELETE:
            d.delete(change.dn)
            applied.pop(change.cloud_id, None)
            forgotten.append(change.cloud_id)

    def _execute_user(self, change: Change, forgotten: list[str]) -> None:
        """Write one change to a user account. Its DN is not recorded among the groups' (applied DNs); a
        created account is found again by its anchor, never by where it was written."""
        d = self.directory
        if change.kind is ChangeKind.CREATE:
            d.create_user(change.dn, {k: v for k, v in change.attributes.items() if v is not None})
        elif change.kind is ChangeKind.UPDATE:
            d.modify_attributes(change.dn, _modified_values(change))
        elif change.kind is ChangeKind.MOVE:
            assert change.new_dn is not None
            d.move(change.dn, change.new_dn)
        elif change.kind is ChangeKind.DELETE:
            d.delete(change.dn)
            forgotten.append(change.cloud_id)
        else:
            raise ValueError(f"a user account has no {change.kind.value} change")

    def _record(self, run_id: str, change: Change) -> LogRecord:
        """The log row of ``change`` (written as pending before the change is sent)."""
        detail: dict[str, object] = {"reason": change.reason}
        if change.members:
            detail["members"] = len(change.members)
            # The first values, for the log's "modified properties" (all of them are in the saved plan, and in
            # the log's member index: member_values below).
            detail["member_values"] = list(change.members[:LOGGED_MEMBER_VALUES])
        if change.attributes:
            detail["attributes"] = sorted(change.attributes)
            new, old = change.shown_attributes(), change.shown_previous()
            detail["modified"] = [
                {"name": k, "old": _jsonable(old.get(k)), "new": _jsonable(new[k])} for k in sorted(new)
            ]
        if change.new_dn:
            detail["new_dn"] = change.new_dn
        if change.target != TARGET_GROUP:
            detail = {"target": change.target, **detail}  # users are their own target type in the log
        return LogRecord(
            run_id,
            change.kind.action,
            cloud_id=change.cloud_id,
            group_name=change.display_name,
            dn=change.dn,
            detail=detail,
            member_values=change.members,
        )

    def check_saved_plan(self, saved: Plan, current: Plan) -> None:
        if saved.digest() != current.digest():
            raise StalePlanError(
                "the saved plan no longer matches the cloud and AD: "
                f"it has {len(saved.changes)} changes, a fresh plan has {len(current.changes)}. "
                "Run 'writeback plan --out FILE' again and review it"
            )
