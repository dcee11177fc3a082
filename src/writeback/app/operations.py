"""What the command line asks of writeback, one call each: plan, apply, provision, allow, pause, resume.

Each builds the engine from settings (:mod:`writeback.app.wiring`), runs one reconcile pass
(:class:`writeback.app.reconcile_pass.ReconcilePass`) or does its one job, and always closes what it opened;
interfaces only parse their input and format the value returned. Every call that writes AD holds the writer
claim for its whole pass (:func:`writeback.app.wiring.writer_claim`).
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from writeback.app import pause as pausing
from writeback.app.engine import NO_ALLOWANCES, Allowances, ApplyResult, Progress
from writeback.app.provision import ProvisionOutcome, Step, provision_group
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.app.wiring import build_engine, build_store, writer_claim
from writeback.config import Settings
from writeback.core.planning import Plan
from writeback.core.ports import LogRecord
from writeback.errors import ConfigError


def plan(
    settings: Settings,
    progress: Progress | None = None,
    *,
    sync: bool = True,
    allow: Allowances = NO_ALLOWANCES,
    deep: bool = False,
) -> Plan:
    """What an apply would do now: a dry-run pass (never writes AD, leaves the state's records as they
    were). ``sync``: read Graph and AD users first; ``deep``: compare every managed group, not only those
    changed since the last reconcile (:mod:`writeback.app.reconcile`)."""
    engine = build_engine(settings, progress)
    try:
        options = PassOptions("full", deep=deep, dry_run=True, sync=sync, allow=allow)
        return ReconcilePass(engine).run(options).plan
    finally:
        engine.close()


def apply(
    settings: Settings,
    progress: Progress | None = None,
    *,
    saved: Mapping[str, Any] | None = None,
    allow: Allowances = NO_ALLOWANCES,
    show: Callable[[Plan], None] | None = None,
    deep: bool = False,
) -> tuple[Plan, ApplyResult]:
    """Plan and apply, holding the state's writer lock (or the leader lease); with ``saved`` (a plan's JSON),
    apply exactly that plan while it still matches. ``show`` receives the plan before anything is written."""
    refuse_if_paused(settings)
    with writer_claim(settings, "apply") as fence:  # the writer lock, or the leader lease on PostgreSQL
        engine = build_engine(settings, progress)
        try:
            options = PassOptions("full", deep=deep, allow=allow, saved=saved)
            done = ReconcilePass(engine, fence=fence).run(options, show=show)
            assert done.applied is not None  # a pass that is not a dry run applies
            return done.plan, done.applied
        finally:
            engine.close()


def provision(settings: Settings, group: str, emit: Callable[[Step], None]) -> ProvisionOutcome:
    """Provision on demand from the command line: one "group" pass holding the writer claim (refused with
    :class:`~writeback.errors.StateLockedError` while a service holds it)."""
    refuse_if_paused(settings)
    with writer_claim(settings, "provision") as fence:
        engine = build_engine(settings)
        run_id = uuid.uuid4().hex[:12]
        try:
            pausing.refuse_if_paused(engine.store)  # before the request is logged: nothing is done
            # The operator's request, in the run's id (the console logs its token's name the same way).
            request: dict[str, object] = {"reason": f"provision on demand of {group!r}", "requested": group}
            engine.store.log_rows(
                [LogRecord(run_id, "provision", "info", group_name=group, detail=request, actor=os_user())]
            )
            return provision_group(ReconcilePass(engine, fence=fence), group, emit, run_id=run_id)
        finally:
            engine.close()


def refuse_if_paused(settings: Settings) -> None:
    """Refuse a command that writes while writeback is paused, before it claims the state: a paused service
    holds the writer lock, and "in use by writeback run" would hide the reason and how to resume. The pass
    checks again under the claim (a pause that lands in between)."""
    store = build_store(settings)
    try:
        pausing.refuse_if_paused(store)
    finally:
        store.close()


def os_user() -> str:
    """Who runs this command, for the log's actor: the login name, else the uid."""
    try:
        return getpass.getuser()
    except OSError:  # no login name in the environment or the password database (a bare container)
        return f"uid {os.getuid()}"


def allow(settings: Settings, allowances: Allowances) -> None:
    """Record an operator's allowance for a running service (used by its next full reconcile), and a log row
    saying who allowed what: the OS user running the command (the console names its token instead)."""
    if allowances == Allowances():
        raise ConfigError("nothing to allow: give --deletes N, --removals N and/or --updates N")
    record = LogRecord(
        uuid.uuid4().hex[:12],
        "allow",
        "info",
        detail={"reason": "allowed once for the next reconcile", **asdict(allowances)},
        actor=os_user(),
    )
    store = build_store(settings)
    try:
        store.set_allowances(asdict(allowances))
        store.log_rows([record])
    finally:
        store.close()


def pause(settings: Settings) -> tuple[pausing.Paused, bool]:
    """Pause writing to AD (:mod:`writeback.app.pause`) as the OS user running the command; the pause in force
    and whether this call started it. A running service sees it at its next pass."""
    store = build_store(settings)
    try:
        return pausing.pause(store, os_user())
    finally:
        store.close()


def resume(settings: Settings) -> pausing.Paused | None:
    """Resume writing to AD; the pause that ended (None: writeback was not paused)."""
    store = build_store(settings)
    try:
        return pausing.resume(store, os_user())
    finally:
        store.close()
