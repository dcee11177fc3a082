"""What the command line (and the console) ask of writeback, one call each: plan, apply, allow.

Each builds the engine from settings (:mod:`writeback.app.wiring`), does its one job, and always closes what it
opened; interfaces only parse their input and format the value returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

from writeback.app import reconcile
from writeback.app.engine import NO_ALLOWANCES, Allowances, ApplyResult, Engine, Progress
from writeback.app.wiring import build_engine, build_store, writer_claim
from writeback.config import Settings
from writeback.core.planning import Plan
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
        resync = engine.sync().full_resync if sync else False
        scope = reconcile.begin(engine, now=time.time(), force=_forced(deep, resync))
        return _plan(engine, scope, allow, sync=sync)
    finally:
        engine.close()


def _forced(deep: bool, resync: bool) -> str | None:
    if deep:
        return "asked for with --deep"
    return "Graph full resync of the cloud replica" if resync else None


def _plan(engine: Engine, scope: reconcile.Reconcile, allow: Allowances, *, sync: bool = True) -> Plan:
    users = engine.sync_ad_users(full=scope.deep) if sync else 0
    found = engine.plan(only=scope.only, dynamic=scope.plans_dynamic(users), allow=allow)
    return replace(found, deep=scope.deep, scope=scope.describe())


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
            resync = engine.sync().full_resync
            # A saved plan is checked against a fresh plan of the same depth.
            deep = deep or (saved is not None and bool(saved.get("deep", True)))
            scope = reconcile.begin(engine, now=time.time(), force=_forced(deep, resync))
            current = _plan(engine, scope, allow)
            chosen = current
            if saved is not None:
                try:
                    chosen = Plan.from_dict(saved)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"cannot read the saved plan: {exc}") from exc
                engine.check_saved_plan(chosen, current)
                chosen = chosen.with_redacted_values_from(current)  # values hidden by Redact() are not saved
            if show is not None:
                show(chosen)
            result = engine.apply(chosen, guard=guard)
            reconcile.finish(engine, scope, chosen, result, now=time.time())
            return chosen, result
        finally:
            engine.close()


def allow(settings: Settings, allowances: Allowances) -> None:
    """Record an operator's allowance for a running service (used by its next full reconcile)."""
    if allowances == Allowances():
        raise ConfigError("nothing to allow: give --deletes N, --removals N and/or --updates N")
    store = build_store(settings)
    try:
        store.set_allowances(asdict(allowances))
    finally:
        store.close()
