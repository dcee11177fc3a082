"""What the command line (and the console) ask of writeback, one call each: plan, apply, allow.

Each builds the engine from settings (:mod:`writeback.app.wiring`), does its one job, and always closes what it
opened; interfaces only parse their input and format the value returned.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from writeback.app.engine import NO_ALLOWANCES, Allowances, ApplyResult, Progress
from writeback.app.pipeline import plan_now, run_apply
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
    """What an apply would do now (never writes AD). ``sync``: read Graph and AD users first; ``deep``: compare
    every managed group, not only those changed since the last reconcile (:mod:`writeback.app.reconcile`)."""
    engine = build_engine(settings, progress)
    try:
        return plan_now(engine, sync=sync, allow=allow, deep=deep)[1]
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
    """Plan and apply, holding the state's writer lock (or the leader lease); with ``saved`` (a plan's JSON), apply exactly that plan
    while it still matches. ``show`` receives the plan before anything is written."""
    with writer_claim(settings, "apply") as guard:  # the writer lock, or the leader lease on PostgreSQL
        engine = build_engine(settings, progress)
        try:
            run = run_apply(engine, saved=saved, allow=allow, show=show, guard=guard, deep=deep)
            return run.plan, run.result
        finally:
            engine.close()


def allow(settings: Settings, allowances: Allowances) -> None:
    """Record an operator's allowance for a running service (used by its next full reconcile), and a log row
    saying who allowed what: the OS user running the command (the console names its token instead)."""
    if allowances == Allowances():
        raise ConfigError("nothing to allow: give --deletes N, --removals N and/or --updates N")
    try:
        user = getpass.getuser()
    except OSError:  # no login name in the environment or the password database (a bare container)
        user = f"uid {os.getuid()}"
    record = LogRecord(
        uuid.uuid4().hex[:12],
        "allow",
        "info",
        detail={"reason": "allowed once for the next reconcile", **asdict(allowances)},
        actor=user,
    )
    store = build_store(settings)
    try:
        store.set_allowances(asdict(allowances))
        store.log_rows([record])
    finally:
        store.close()
