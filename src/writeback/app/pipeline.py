"""``writeback apply`` as one pipeline: sync the sources, plan, then write — each phase timed.

The command line (:func:`writeback.app.operations.apply`) and the benchmark's engine child
(``benchmarks/bench/engine_child.py``) both run :func:`run_apply`, so the figures the benchmark reports are
those of the command an operator runs.

What may overlap, and what may not (issue 17): safety is exact. Changes the thresholds may hold (updates,
moves and renames, member removals, deletes: :mod:`writeback.core.safety`) are never written before the whole
plan is known and its holds computed. Creates (with the member adds of groups created in the same plan) are
never held, so they could stream while the rest is planned. ``Engine.plan`` computes the plan in one step
(sources -> intents -> one gathering step -> desired state -> plan -> holds) and yields nothing before its end,
so today the phases run one after the other; the writes themselves are journaled in batches
(:func:`writeback.app.engine.journal_batches`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from writeback.app import reconcile
from writeback.app.engine import NO_ALLOWANCES, Allowances, ApplyResult, Engine
from writeback.core.planning import Plan
from writeback.core.ports import SyncReport
from writeback.errors import ConfigError


@dataclass
class ApplyRun:
    """What one apply planned and did, and the wall time of its phases ("sync", "plan", "apply", seconds)."""

    plan: Plan
    result: ApplyResult
    sync: SyncReport
    phases: dict[str, float] = field(default_factory=dict)


def run_apply(
    engine: Engine,
    *,
    saved: Mapping[str, Any] | None = None,
    allow: Allowances = NO_ALLOWANCES,
    show: Callable[[Plan], None] | None = None,
    guard: Callable[[], None] | None = None,
    deep: bool = False,
) -> ApplyRun:
    """Sync, plan (a quick or deep reconcile) and apply with ``engine`` (the caller holds the writer lock or
    lease and closes the engine), then record what is in step for the next quick reconcile.

    With ``saved`` (a plan's JSON) apply exactly that plan while it still matches a fresh one. ``show``
    receives the plan before anything is written; ``guard`` runs before each change (see Engine.apply)."""
    phases: dict[str, float] = {}
    # A saved plan is checked against a fresh plan of the same depth.
    deep = deep or (saved is not None and bool(saved.get("deep", True)))
    scope, current, report = plan_now(engine, allow=allow, deep=deep, phases=phases)
    planned = time.perf_counter()
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
    writing = time.perf_counter()
    phases["plan"] += writing - planned
    result = engine.apply(chosen, guard=guard)
    reconcile.finish(engine, scope, chosen, result, now=time.time())
    phases["apply"] = time.perf_counter() - writing
    return ApplyRun(chosen, result, report, phases)


def plan_now(
    engine: Engine,
    *,
    sync: bool = True,
    allow: Allowances = NO_ALLOWANCES,
    deep: bool = False,
    phases: dict[str, float] | None = None,
) -> tuple[reconcile.Reconcile, Plan, SyncReport]:
    """Sync the sources (unless ``sync`` is False) and plan a reconcile: quick, or deep when asked for, after a
    Graph full resync, or when due (:mod:`writeback.app.reconcile`). ``phases`` receives "sync" and "plan"."""
    times = phases if phases is not None else {}
    started = time.perf_counter()
    report = SyncReport()
    if sync:
        with engine.timed("graph_read"):
            report = engine.sync()
    force = "asked for with --deep" if deep else None
    if report.full_resync:
        force = force or "Graph full resync of the cloud replica"
    scope = reconcile.begin(engine, now=time.time(), force=force)
    users = engine.sync_ad_users(full=scope.deep) if sync else 0
    planned = time.perf_counter()
    times["sync"] = planned - started
    with engine.timed("planning"):
        found = engine.plan(only=scope.only, dynamic=scope.plans_dynamic(users), allow=allow)
    times["plan"] = time.perf_counter() - planned
    return scope, replace(found, deep=scope.deep, scope=scope.describe()), report
