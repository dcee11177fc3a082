"""`writeback run`: the long-running service.

Every ``service.poll_interval`` seconds it asks Graph for changes (two delta requests when idle), plans only the
groups those changes touch, reads just those groups (and the new members) in AD, and applies. Every
``service.reconcile_interval`` seconds, after a Graph full resync, at start and after any failed cycle it
reconciles every managed group against AD instead, which also reverts drift made by hand in AD.

Failures are of two kinds, handled differently so one bad group never slows the others:

- a cycle fails (Graph keeps throttling, AD unreachable, the state store broken): the service backs off
  exponentially (``poll_interval * 2**n``, capped at ``max_backoff``, with jitter); after
  :data:`QUARANTINE_AFTER` failed cycles in a row it says it is *quarantined* (Cloud Sync's word) and keeps
  retrying at the longest interval; the next good cycle is a full reconcile, so nothing changed meanwhile is
  missed;
- a change of one group is refused by AD: that group alone is retried on later cycles with its own backoff.

Crash safety needs nothing here: the engine plans from what AD holds now and every create carries its anchor
(see :mod:`writeback.app.engine`), so a service killed at any point converges after restart. SIGTERM/SIGINT stop
it between two LDAP changes; a second signal interrupts at once.

The health file (``service.health_file``) is rewritten atomically after every cycle, when a cycle enters a
new phase, and while writing at most every :data:`HEALTH_PROGRESS_INTERVAL` seconds; monitoring reads ``status``: starting, ok, held (changes over a safety threshold wait for `writeback
allow`), degraded (the last cycle or some groups failed), quarantined, paused (an operator paused writing:
:mod:`writeback.app.pause`), standby, stopped. ``phase`` says what the running cycle does now (idle, reading
Microsoft Graph, reading AD and planning, writing to AD) with ``progress_done`` of ``progress_total`` changes
while writing.

Pause (an operator, through the console or `writeback pause`): each cycle still takes its Graph delta round,
so the replica stays current, but runs no pass; the first cycle after the resume is a reconcile. Restart
provisioning (the console): the next cycle drops the replica's delta links, so Graph is read again in full,
and a deep reconcile follows.

High availability (state in PostgreSQL, docs/ha.md): every instance competes for the leader lease
(:mod:`writeback.app.lease`); ``role`` in the health file and the logs says whether this one is active or stands
by. Only the active one runs cycles, and the lease's fencing check runs before each change's LDAP writes. An
instance that becomes active starts with a full reconcile (what the previous one saw but did not apply).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any

from writeback.adapters.state.files import write_private
from writeback.adapters.state.lock import WriterLock
from writeback.app.engine import Allowances, ApplyResult, Engine
from writeback.app.lease import LeaderLease
from writeback.app.pause import Paused, paused
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.config import Settings
from writeback.core.model import DYNAMIC_KEY_PREFIX
from writeback.core.planning import Plan
from writeback.core.ports import SyncReport
from writeback.core.reconcile import DeepReason, describe_deep
from writeback.errors import DirectoryUnavailable, LeaseLostError, WritebackError

log = logging.getLogger("writeback.service")
QUARANTINE_AFTER = 5  # consecutive failed cycles
# While writing to AD the health file shows the progress at most this often (seconds): a file written per change
# would cost more than the LDAP write of a small change; the console reads the progress in memory, always current.
HEALTH_PROGRESS_INTERVAL = 5.0
RESTART_KEY = (
    "restart_pending"  # state meta: an operator's Restart provisioning that no cycle has started yet
)


@dataclass
class Health:
    """What the health file says (JSON). Times are Unix seconds."""

    status: str = "starting"  # starting, ok, held, degraded, quarantined, standby, stopped
    message: str = "starting"
    role: str = "active"  # active, standby (the leader lease; always active with a SQLite state)
    lease_token: int | None = None  # the fencing token while active (PostgreSQL state)
    # This instance (host:pid, or the lease's host:pid:random), and the instance holding the leader lease with
    # the lease's end (PostgreSQL state: the other instance's while standing by). With a SQLite state the holder
    # is this instance (its writer lock has no end) and lease_expires stays None.
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    lease_holder: str | None = None
    lease_expires: float | None = None
    started: float = field(default_factory=time.time)
    last_cycle: float | None = None
    last_success: float | None = None
    last_full_reconcile: float | None = None
    next_cycle: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    failing_groups: int = 0
    cycles: int = 0
    changes_applied: int = 0
    changes_failed: int = 0
    graph_requests: int = 0
    ldap_operations: dict[str, int] = field(default_factory=dict)  # by kind, since start (LDAP adapter only)
    held: list[dict[str, Any]] = field(default_factory=list)  # safety holds waiting for `writeback allow`
    pid: int = field(default_factory=os.getpid)
    cycles_failed: int = 0
    last_cycle_seconds: float | None = None
    last_change: float | None = None  # the last cycle that wrote something to AD
    # For the console's status and metrics:
    last_sync: float | None = None  # the cloud replica's last successful Graph sync (replica lag = now - it)
    graph_stats: dict[str, int] = field(default_factory=dict)  # requests, throttled, throttle_wait_ms, ...
    managed_memberships: int | None = None  # member values in managed AD groups (full read + applied since)
    skipped_members: dict[str, int] = field(default_factory=dict)  # cloud members not written, by reason
    users: dict[str, int] = field(default_factory=dict)  # [users] accounts and account changes (app.metrics)
    managed_users: int | None = None  # user accounts writeback writes ([users]), as the last full plan read
    # The running cycle, for the console: what it does now (PHASES), since when, and while writing to AD how far
    # it is (the change being written of the plan's total).
    phase: str = "idle"
    phase_started: float | None = None
    cycle_kind: str | None = None  # "incremental", "reconcile", "restart": the running or last cycle's kind
    progress_done: int = 0
    progress_total: int | None = None
    next_group_retry: float | None = None  # the earliest retry of a group AD refused a change of (timed ones)
    paused_by: str | None = None  # an operator paused writing to AD (writeback.app.pause): who and since when
    paused_since: float | None = None
    restart_pending: bool = False  # an operator asked to restart provisioning; the next cycle does it


PHASES = {
    "idle": "waiting for the next cycle",
    "graph": "reading changes from Microsoft Graph",
    "rebuild": "reading the cloud replica again in full from Microsoft Graph (restart)",
    "plan": "reading AD and planning",
    "apply": "writing to AD",
}


@dataclass(frozen=True)
class CycleOutcome:
    full: bool
    planned: int
    applied: int
    failed: int
    groups: int  # groups planned incrementally; -1 for a full reconcile


@dataclass
class _GroupRetry:
    failures: int
    not_before: float  # inf: refused for the value itself, not retried on a timer
    error: str


class Service:
    """The poll loop. ``clock`` (monotonic seconds) and ``rng`` are replaceable for tests."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        lease: LeaderLease | None = None,
    ) -> None:
        self.settings, self.engine, self.clock, self.lease = settings, engine, clock, lease
        self.rng = rng or random.Random()
        self.stop_event = threading.Event()
        self.health = Health()
        self._next_full = 0.0  # the first cycle is a full reconcile
        self._retry: dict[str, _GroupRetry] = {}
        self._health_warned = False
        self._health_written = -math.inf  # when write_health last ran (self.clock)
        # -- the console's hooks (see writeback.console): jobs run on this loop's thread, between cycles,
        # so the loop stays the engine's only user and AD's only writer.
        self.interactive = False  # True when a console may submit jobs or wake the loop
        self._jobs: queue.SimpleQueue[tuple[Callable[[Engine], Any], Future[Any]]] = queue.SimpleQueue()
        self._reconcile_requested = False
        self.on_cycle: list[Callable[[Health, bool], None]] = []  # metrics, alerts: called after each cycle
        self.on_apply: list[Callable[[Plan, ApplyResult], None]] = []  # event webhook, loop alert
        # Every pass of this service (cycles, provision on demand, the console's plan) runs through this one,
        # with the lease's fencing check as its writer claim's guard.
        self.passes = ReconcilePass(
            engine,
            fence=lease,
            should_stop=self._between_changes,
            on_apply=self.on_apply,
        )
        self._skipped: dict[str, tuple[str, ...]] = {}  # cloud id -> reasons of its skipped members
        self.on_apply.append(self._count_users)
        self._restart_requested = False
        # A reason to go deep that waits for the end of a pause (a Graph full resync read while paused).
        self._force_later: DeepReason | None = None
        self._paused: Paused | None = None  # the pause the last cycle saw

    # -- the running cycle's phase (health) --------------------------------------------------------------------

    def _phase(self, phase: str, total: int | None = None) -> None:
        """Enter ``phase`` (a key of :data:`PHASES`) and say so in the health file."""
        h = self.health
        h.phase, h.phase_started = phase, time.time()
        h.progress_done, h.progress_total = 0, total
        self.write_health()

    def _between_changes(self) -> bool:
        """The pass asks before each change whether to stop: count the change as started (progress), and show it
        in the health file when the file is :data:`HEALTH_PROGRESS_INTERVAL` seconds old."""
        if self.health.phase == "apply":
            self.health.progress_done += 1
            if self.clock() - self._health_written >= HEALTH_PROGRESS_INTERVAL:
                self.write_health()
        return self.stop_event.is_set()

    def _planned(self, plan: Plan) -> None:
        """The pass shows its plan before writing: the writing phase and its total."""
        self._phase("apply", total=len(plan.changes))

    # -- one cycle -------------------------------------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        log.info("stop requested; finishing the current change", extra={"event": "stopping"})
        self.stop_event.set()

    def cycle(self) -> CycleOutcome:
        """One poll: sync the replica, then one pass (:class:`ReconcilePass`): incremental over the groups the
        changes touch, or a full reconcile when one is due. While paused, the sync alone."""
        try:
            return self._cycle()
        finally:
            self._phase("idle")

    def _cycle(self) -> CycleOutcome:
        # Asked here or, before a kill or on another instance, recorded in the shared state (request_restart).
        restart = self._restart_requested or self.engine.store.get_meta(RESTART_KEY) is not None
        if restart:
            self._drop_delta_links()
        self.health.cycle_kind = "restart" if restart else "incremental"
        self._phase("rebuild" if restart else "graph")
        # A first read or resync is written as it arrives (writeback.app.streaming), unless paused already.
        report = self.passes.sync_to_apply() if paused(self.engine.store) is None else self.passes.sync()
        self.health.graph_requests += report.requests
        self.health.last_sync = time.time()
        self._paused = paused(self.engine.store)
        if self._paused is not None:
            # Keep reading, write nothing: the cycle after the resume is a reconcile (deep after a resync).
            # An operator's Reconcile now waits too (else it would wake the loop again at once).
            self._next_full = 0.0
            if report.full_resync:
                self._force_later = DeepReason.RESYNC
            elif self._reconcile_requested:
                self._force_later = self._force_later or DeepReason.ASKED
            self._reconcile_requested = False
            return CycleOutcome(False, 0, 0, 0, 0)
        now = self.clock()
        full = report.full_resync or now >= self._next_full
        force: DeepReason | None = self._force_later
        if report.full_resync:
            force = DeepReason.RESYNC
            log.info("%s follows", describe_deep(force).capitalize(), extra={"event": "resync"})
        if force is not None:
            full = True
        allow = self.engine.allowances()
        if allow != Allowances():
            # An operator allowed held changes: compare every group so they are applied now.
            full, force = True, DeepReason.ALLOWED
        if self._reconcile_requested:
            full, force, self._reconcile_requested = True, force or DeepReason.ASKED, False
        due = frozenset(self._due_retries(now))
        if full:
            # A reconcile: quick (the groups changed in the cloud or in AD since the last one) unless a deep
            # one is due (writeback.app.reconcile); groups due for a retry are compared as well.
            options = PassOptions("full", force=force, only=due, allow=allow)
        else:
            # On-prem dynamic groups: an incremental read of changed AD users each poll, a full one with a deep
            # reconcile. A dynamic group AD refused (e.g. a cached user deleted in AD that the Deleted Objects
            # read could not see) is retried from a full read of AD users, not from a cache that keeps failing
            # the same way.
            refresh = any(k.startswith(DYNAMIC_KEY_PREFIX) for k in due)
            options = PassOptions(
                "incremental",
                only=frozenset(self._affected(report)) | due,
                allow=allow,
                refresh_users=refresh,
            )
        self.health.cycle_kind = "restart" if restart else "reconcile" if full else "incremental"
        self._phase("plan")
        done = self.passes.run(options, report=report, show=self._planned)
        self._force_later = None  # the deep reconcile it asked for has run
        plan, result = done.plan, done.applied
        if result is None:  # an incremental cycle with nothing to plan
            return CycleOutcome(False, 0, 0, 0, 0)
        self._note_holds(plan, allow, full)
        self._track_group_failures(result, done.only, now)
        self._note_outcome(plan, result, plan.deep)
        if full:
            self._next_full = now + self.settings.service.reconcile_interval
            self.health.last_full_reconcile = time.time()
        applied = sum(1 for r in result.results if r.ok)
        if applied:
            self.health.last_change = time.time()
        self.health.changes_applied += applied
        self.health.changes_failed += len(result.failed)
        outcome = CycleOutcome(full, len(plan.changes), applied, len(result.failed), done.groups)
        if plan.changes or result.failed:
            log.info(
                "%s: applied %d of %d changes%s",
                "full reconcile" if full else "incremental cycle",
                applied,
                len(plan.changes),
                f", {len(result.failed)} failed" if result.failed else "",
                extra={"event": "cycle", **asdict(outcome), "run_id": result.run_id, "role": "active"},
            )
        if result.aborted and not self.stop_event.is_set():
            # The only other reason apply stops early: the directory went away mid-apply.
            raise DirectoryUnavailable(f"apply stopped after {len(result.results)} changes: {result.aborted}")
        return outcome

    def _note_holds(self, plan: Plan, allow: Allowances, full: bool) -> None:
        """Held changes wait for an operator (`writeback allow`); an allowance is used by one full plan.

        Only a full plan sees every held change, so only a full plan clears the hold in the health status: an
        incremental cycle about other groups must not make a held mass removal look resolved."""
        if allow != Allowances():
            self.engine.clear_allowances()
            log.info("operator allowance applied: %s", asdict(allow), extra={"event": "allowance_used"})
        if full or plan.holds:
            self.health.held = [h.to_dict() for h in plan.holds]
        if plan.holds:
            log.warning(
                "changes held (a safety threshold, or rights missing in AD): %s",
                " ".join(h.message for h in plan.holds),
                extra={"event": "held", "held": len(plan.held), "kinds": [h.kind for h in plan.holds]},
            )

    def _count_users(self, plan: Plan, result: ApplyResult) -> None:
        """[users]: every apply's user account changes, for the metrics (writeback.app.metrics.tally_users)."""
        from writeback.app.metrics import tally_users

        if self.settings.users.enabled:
            tally_users(self.health.users, plan.held, result.results)

    def _note_outcome(self, plan: Plan, result: ApplyResult, full: bool) -> None:
        """Skipped members and managed memberships for the metrics (after a full pass, the engine's count of
        them already includes what the pass applied)."""
        from writeback.app.metrics import membership_delta, set_accounts, skip_reason_label

        if full:
            self._skipped = {}
            self.health.managed_memberships = self.engine.managed_member_values()
            if (accounts := self.engine.managed_accounts()) is not None:
                set_accounts(self.health.users, accounts, result.results)
            base = self.engine.managed_base()
            self.health.managed_users = base.users if base is not None else None
        for r in plan.reports:
            self._skipped[r.cloud_id] = tuple(skip_reason_label(s.reason) for s in r.skipped)
        counts: dict[str, int] = {}
        for reasons in self._skipped.values():
            for reason in reasons:
                counts[reason] = counts.get(reason, 0) + 1
        self.health.skipped_members = counts
        if not full and self.health.managed_memberships is not None:
            self.health.managed_memberships += membership_delta(result.results)

    def _affected(self, report: SyncReport) -> set[str]:
        """Cloud groups whose AD group may need a change: the changed groups, the groups holding a changed
        user, and the parents of a changed group (a nested group renamed, deleted or out of scope)."""
        only = set(report.changed_groups)
        members_of = self.engine.groups_holding
        if report.changed_users:
            only |= members_of(report.changed_users)
        if report.changed_groups:
            only |= members_of(report.changed_groups)
        return only

    def _due_retries(self, now: float) -> set[str]:
        return {cid for cid, r in self._retry.items() if r.not_before <= now}

    def _track_group_failures(self, result: ApplyResult, only: Collection[str] | None, now: float) -> None:
        """Schedule each group with a refused change for a retry with its own backoff; forget groups that
        went through (a full reconcile covers every group)."""
        failed: dict[str, str] = {}
        permanent: set[str] = set()
        for r in result.failed:
            failed.setdefault(r.change.cloud_id, r.error or "failed")
            if r.permanent:
                permanent.add(r.change.cloud_id)
        if result.aborted is None:
            attempted = set(self._retry) if only is None else set(only)
            for cid in attempted - failed.keys():
                if self._retry.pop(cid, None) is not None:
                    log.info("group %s: changes applied after earlier failures", cid, extra={"cloud_id": cid})
        for cid, error in failed.items():
            n = self._retry[cid].failures + 1 if cid in self._retry else 1
            if cid in permanent:
                # AD refuses the value itself: the same write would be refused at every retry. Said once; the
                # group is tried again when it changes in the cloud, or at the next reconcile.
                known = self._retry.get(cid)
                self._retry[cid] = _GroupRetry(n, math.inf, error)
                if known is None or known.error != error:
                    log.error(
                        "group %s: AD refuses what writeback writes, and would at every retry: %s. Not retried "
                        "until the group changes in the cloud or the next reconcile; fix the value (the cloud "
                        "group's name or the mapping) or the DC's constraint",
                        cid,
                        error,
                        extra={"event": "group_refused", "cloud_id": cid},
                    )
                continue
            delay = self._backoff(n)
            self._retry[cid] = _GroupRetry(n, now + delay, error)
            log.warning(
                "group %s: change failed (%d in a row); retrying in %.1f s: %s",
                cid,
                n,
                delay,
                error,
                extra={"event": "group_failed", "cloud_id": cid, "failures": n},
            )
        self.health.failing_groups = len(self._retry)
        timed = [r.not_before for r in self._retry.values() if r.not_before != math.inf]
        self.health.next_group_retry = time.time() + max(0.0, min(timed) - now) if timed else None

    def _backoff(self, failures: int) -> float:
        """poll_interval * 2**failures, capped at max_backoff, with +-20 % jitter."""
        s = self.settings.service
        base = min(s.max_backoff, s.poll_interval * (2 ** min(failures, 30)))
        return float(base * self.rng.uniform(0.8, 1.2))

    def delay_after_failure(self) -> float:
        return self._backoff(self.health.consecutive_failures)

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Poll until stopped. Returns 0 when stopped on request (or ``once`` succeeded), 1 otherwise."""
        s = self.settings.service
        log.info(
            "writeback service started",
            extra={
                "event": "start",
                "poll_interval": s.poll_interval,
                "reconcile_interval": s.reconcile_interval,
            },
        )
        ok = True
        while not self.stop_event.is_set():
            if not self._lead():
                self.write_health()
                if once:
                    break
                # The lease thread ticks every lease_renew_interval; look at its verdict every second.
                self.stop_event.wait(min(1.0, s.lease_renew_interval))
                continue
            self.health.cycles += 1
            self.health.last_cycle = time.time()
            ok = self._run_cycle()
            self.health.last_cycle_seconds = time.time() - self.health.last_cycle
            self.health.cycles_failed += 0 if ok else 1
            delay = s.poll_interval if ok else self.delay_after_failure()
            self.health.ldap_operations = self.engine.ldap_stats()
            self.health.graph_stats = self.engine.graph_stats()
            self.health.next_cycle = time.time() + delay
            self.write_health()
            for observer in self.on_cycle:
                try:
                    observer(self.health, ok)
                except Exception:  # an alert or metric must never stop the service
                    log.exception("a cycle observer failed", extra={"event": "observer_failed"})
            if once:
                break
            self._pause(delay)
        self.health.status, self.health.message, self.health.next_cycle = "stopped", "stopped", None
        self.write_health()
        log.info("writeback service stopped", extra={"event": "stop"})
        return 0 if ok or not once else 1

    # -- the console's hooks ------------------------------------------------------------------------------------

    def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds for the next cycle, running console jobs meanwhile; a reconcile request or a
        stop ends the wait early."""
        if not self.interactive:
            self.stop_event.wait(delay)
            return
        deadline = time.monotonic() + delay
        while not self.stop_event.is_set():
            self.run_jobs()
            remaining = deadline - time.monotonic()
            if self._reconcile_requested or remaining <= 0:
                return
            self.stop_event.wait(min(remaining, 0.1))

    def submit(self, job: Callable[[Engine], Any]) -> Future[Any]:
        """Run ``job(engine)`` on the service's thread between cycles (provision on demand, plan)."""
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future

    def run_jobs(self) -> None:
        while True:
            try:
                job, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job(self.engine))
            except BaseException as exc:  # handed to the console, which shows it
                future.set_exception(exc)

    def request_reconcile(self) -> None:
        """Reconcile now: the next cycle (started at once) is a full reconcile."""
        self._reconcile_requested = True

    def request_restart(self) -> None:
        """Restart provisioning: the next cycle (started at once) drops the cloud replica's delta links, so
        Graph is read again in full, and reconciles deeply (as after a full resync)."""
        from writeback.app.wiring import build_store

        # Recorded in the shared state as well, so a kill before a cycle starts it (one may be running for a
        # while) does not lose it. On the caller's thread (the console's): a connection of its own.
        store = build_store(self.settings)
        try:
            store.write_meta({RESTART_KEY: "1"})
        finally:
            store.close()
        self._restart_requested = self.health.restart_pending = True
        self._reconcile_requested = True  # wakes the loop now
        log.info("restart of provisioning requested", extra={"event": "restart_requested"})

    def _drop_delta_links(self) -> None:
        """The restart's first step, on the service's thread between passes (a delta round of its own cannot
        store a link over the dropped one). Without a cloud source there is no replica: a deep reconcile only."""
        self._restart_requested = self.health.restart_pending = False
        self._force_later = DeepReason.ASKED
        if self.engine.cloud_enabled:
            with self.engine.store.transaction() as tx:
                for resource in ("users", "groups"):
                    tx.set_delta_link(resource, None)
        # After the links are dropped: a kill in between repeats the drop at the next start, harmlessly.
        self.engine.store.write_meta({RESTART_KEY: None})
        if not self.engine.cloud_enabled:
            return
        log.info(
            "restart: the cloud replica's delta links were dropped; Graph is read again in full, then a deep "
            "reconcile follows",
            extra={"event": "restart"},
        )

    def note_pause(self, pause: Paused | None) -> None:
        """An operator paused (or, with None, resumed) through this process: say so in the health now, not at
        the next cycle; a resume also starts that cycle at once (a reconcile of what changed meanwhile)."""
        h, self._paused = self.health, pause
        h.paused_by, h.paused_since = (pause.by, pause.since) if pause is not None else (None, None)
        if pause is not None:
            if h.status not in ("standby", "stopped", "quarantined"):  # those say more than "paused"
                h.status, h.message = (
                    "paused",
                    f"{pause.describe()}: reading the cloud, writing nothing to AD",
                )
            self.write_health()
            return
        if h.status == "paused":
            h.status, h.message = "starting", "resumed by an operator; reconciling what changed while paused"
        self.request_reconcile()
        self.write_health()

    def clear_quarantine(self) -> None:
        """Forget the failed cycles and try a full reconcile at once (Graph's restart with resetScope)."""
        self.health.consecutive_failures = 0
        if self.health.status == "quarantined":
            self.health.status, self.health.message = (
                "starting",
                "quarantine cleared by an operator; retrying",
            )
        log.info("quarantine cleared by an operator", extra={"event": "quarantine_cleared"})
        self.request_reconcile()

    def _lead(self) -> bool:
        """Whether this instance is the active one now (always, without a lease); keeps ``role`` up to date."""
        h = self.health
        if self.lease is None:
            h.lease_holder = h.instance  # the writer lock's holder: this process
            return True
        seen = self.lease.current
        h.instance = self.lease.holder
        h.lease_holder, h.lease_expires = (seen.holder, seen.expires) if seen else (None, None)
        if not self.lease.active:
            if h.role != "standby" or h.status != "standby":
                h.role, h.lease_token, h.status = "standby", None, "standby"
                self._next_full = 0.0  # when active again: a full reconcile first
            h.message = self.lease.reason or "standing by"
            return False
        if h.role != "active" or h.lease_token != self.lease.token:
            h.role, h.lease_token = "active", self.lease.token
            h.status, h.message = "starting", f"active (fencing token {self.lease.token}); reconciling"
            self._next_full = 0.0  # take over with a full reconcile: the previous leader may have left work
            self.write_health()  # say so now, not after the (full, maybe long) first cycle
        return True

    def _run_cycle(self) -> bool:
        try:
            self.cycle()
        except LeaseLostError as exc:
            # Not a failure of this cycle's work: the lease ended (another instance is active, or the database
            # is gone). Nothing more was written; stand by until the lease is ours again.
            log.warning("stopped writing to AD: %s", exc, extra={"event": "fenced", "role": "standby"})
            h = self.health
            h.role, h.lease_token, h.status, h.message = "standby", None, "standby", f"stopped writing: {exc}"
            self._next_full = 0.0
            return True
        except WritebackError as exc:
            self._cycle_failed(str(exc), exc)
            return False
        except Exception as exc:  # a bug must not end the service; say so loudly and retry with backoff
            log.exception("unexpected error in a cycle (a bug: please report it)", extra={"event": "bug"})
            self._cycle_failed(f"unexpected error: {type(exc).__name__}: {exc}", exc)
            return False
        h = self.health
        if h.consecutive_failures:
            log.info(
                "recovered after %d failed cycles",
                h.consecutive_failures,
                extra={"event": "recovered", "failures": h.consecutive_failures},
            )
        h.consecutive_failures = 0
        h.last_success = time.time()
        p = self._paused
        h.paused_by, h.paused_since = (p.by, p.since) if p is not None else (None, None)
        if p is not None:
            h.status = "paused"
            h.message = f"{p.describe()}: reading the cloud, writing nothing to AD"
        elif h.held:
            h.status = "held"
            h.message = " ".join(x["message"] for x in h.held)
        elif self._retry:
            h.status = "degraded"
            worst = max(self._retry.values(), key=lambda r: r.failures)
            h.message = f"{len(self._retry)} groups have changes AD refused; retrying. Latest: {worst.error}"
            h.last_error = worst.error
        else:
            h.status, h.message = "ok", "ok"
        return True

    def _cycle_failed(self, error: str, exc: BaseException) -> None:
        h = self.health
        h.consecutive_failures += 1
        h.last_error = error
        self._next_full = 0.0  # converge fully once the fault clears: changes seen meanwhile were not applied
        delay = self.delay_after_failure()
        extra = {"event": "cycle_failed", "failures": h.consecutive_failures, "retry_in": round(delay, 1)}
        extra["error_type"] = type(exc).__name__
        if h.consecutive_failures >= QUARANTINE_AFTER:
            h.status = "quarantined"
            h.message = (
                f"quarantined: {h.consecutive_failures} cycles in a row failed; retrying every "
                f"{self.settings.service.max_backoff:.0f} s at most. Last error: {error}"
            )
            log.error(
                "quarantined: %d cycles in a row failed; retrying in %.0f s. Last error: %s",
                h.consecutive_failures,
                delay,
                error,
                extra=extra,
            )
        else:
            h.status = "degraded"
            h.message = f"cycle failed ({h.consecutive_failures} in a row): {error}"
            log.warning(
                "cycle failed (%d in a row); retrying in %.1f s: %s",
                h.consecutive_failures,
                delay,
                error,
                extra=extra,
            )

    def write_health(self) -> None:
        """Replace the health file atomically (write a temporary file, rename it over the old one)."""
        path = self.settings.service.health_file
        if not path:
            return
        self._health_written = self.clock()
        try:
            write_private(path, json.dumps(asdict(self.health), indent=1))  # 0600, its folder 0700 when new
        except OSError as exc:
            if not self._health_warned:  # once: a broken health file must not flood the log
                log.warning("cannot write the health file %s: %s", path, exc.strerror)
                self._health_warned = True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message and any structured extras."""

    _std = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in self._std})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(*, json_logs: bool = True, verbose: bool = False) -> None:
    """JSON lines on stderr (journald and log shippers read them as they are). The Graph adapter's per-round
    lines would say "0 objects changed" twice per poll, so they show only with ``verbose``."""
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("writeback.graph").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("httpx", "httpcore", "msal"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


# Started with the service, given it, returns the function that stops it (the console's web server).
Attachment = Callable[[Service], Callable[[], None]]


def run_service(
    settings: Settings,
    *,
    once: bool = False,
    json_logs: bool = True,
    verbose: bool = False,
    attach: Collection[Attachment] = (),
) -> int:
    """Build the engine from ``settings`` and run the service until SIGTERM/SIGINT (or one cycle)."""

    configure_logging(json_logs=json_logs, verbose=verbose)
    from writeback.app.wiring import PROCESS_INSTANCE, build_store, shared_state

    if shared_state(settings):
        # Several servers share a PostgreSQL state: they compete for the leader lease instead of a local lock.
        s = settings.service
        lease = LeaderLease(
            build_store(settings),
            ttl=s.lease_ttl,
            renew_interval=s.lease_renew_interval,
            holder=PROCESS_INSTANCE,
        )
        try:
            lease.start()
            return _run_locked(settings, once=once, attach=attach, lease=lease)
        finally:
            lease.stop(release=True)
            lease.store.close()
    with WriterLock(settings.state.path, "run"):  # one writer per state; refused at once when held
        return _run_locked(settings, once=once, attach=attach)


def _run_locked(
    settings: Settings, *, once: bool, attach: Collection[Attachment] = (), lease: LeaderLease | None = None
) -> int:
    from writeback.app.alerts import Alerter
    from writeback.app.wiring import build_engine

    engine = build_engine(settings)
    service = Service(settings, engine, lease=lease)
    alerter = Alerter(settings.alerts)
    service.on_cycle.append(alerter.observe)
    service.on_apply.append(alerter.observe_apply)
    stoppers = [start(service) for start in attach]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if service.stop_event.is_set():
            # Second signal: stop now. Safe at any point, like a crash: the next start converges.
            raise KeyboardInterrupt
        service.request_stop(signum, frame)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return service.run(once=once)
    finally:
        for stop in stoppers:
            stop()
        if service.health.status != "stopped":  # interrupted by a second signal
            service.health.status = service.health.message = "stopped"
            service.write_health()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.close()
