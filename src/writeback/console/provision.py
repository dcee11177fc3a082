"""Provision on demand: one cloud group, now, step by step (Entra's "Provision on demand", for a whole group).

The steps follow Graph's provisioningStepType: import (from Graph), scoping, matching (members to AD
accounts), processing (the action), export (the LDAP writes). Runs on the service's thread (or in
`writeback provision` when no service holds the state): it is the engine's own plan and apply, restricted to
one group, so safety thresholds, holds and the provisioning log behave as in a cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from writeback.app.engine import ApplyResult, Engine
from writeback.core.desired import cloud_intents
from writeback.core.model import CloudGroup
from writeback.core.planning import Plan
from writeback.core.scope import out_of_scope_reason

Step = dict[str, Any]


def _step(kind: str, status: str, description: str, **details: Any) -> Step:
    return {
        "type": kind,
        "status": status,
        "description": description,
        "time": time.time(),
        "details": details,
    }


def find_group(engine: Engine, wanted: str) -> CloudGroup | None:
    """A cloud group of the replica by object id, else by display name (case-insensitive, exactly one)."""
    groups = engine.store.snapshot(member_groups=()).groups
    if wanted in groups:
        return groups[wanted]
    named = [g for g in groups.values() if g.display_name.lower() == wanted.lower() and not g.deleted]
    return named[0] if len(named) == 1 else None


def provision_group(
    engine: Engine,
    wanted: str,
    emit: Callable[[Step], None],
    *,
    run_id: str,
    applied: Callable[[Plan, ApplyResult], None] | None = None,
) -> bool:
    """Sync, plan and apply the one group ``wanted`` (name or id); ``emit`` gets each step. True when every
    step succeeded (a held change or a skipped member is a warning, not a failure)."""
    report = engine.sync()
    emit(_step("import", "success", f"cloud replica up to date ({report.requests} Graph requests)"))
    group = find_group(engine, wanted)
    if group is None:
        emit(_step("import", "failure", f"no single cloud group has the id or name {wanted!r}"))
        return False
    emit(_step("import", "success", f"found {group.display_name} ({group.id})", members=len(group.members)))
    reason = out_of_scope_reason(group, engine.settings.scope)
    if reason is not None:
        emit(_step("scoping", "skipped", f"out of scope: {reason}"))
        return True
    intents = cloud_intents(engine.store.snapshot([group.id]), engine.settings, [group.id])
    emit(_step("scoping", "success", "in scope", in_scope_groups=len(intents.in_scope)))
    plan = engine.plan(only={group.id}, dynamic=False)
    reports = [r for r in plan.reports if r.cloud_id == group.id]
    skipped = [s for r in reports for s in r.skipped]
    errors = [r.error for r in reports if r.error]
    emit(
        _step(
            "matching",
            "failure" if errors else "warning" if skipped else "success",
            "; ".join(errors)
            if errors
            else f"{len(skipped)} members not written to AD"
            if skipped
            else "every member matched to an AD account",
            skipped=[{"member": s.name or s.member_id, "reason": s.reason} for s in skipped],
        )
    )
    if errors:
        return False
    changes = tuple(c for c in plan.changes if c.cloud_id == group.id)
    held = [c for c in plan.held if c.cloud_id == group.id]
    emit(
        _step(
            "processing",
            "warning" if held else "success",
            ", ".join(f"{c.kind.value} {c.display_name or c.dn}" for c in changes) or "nothing to change",
            changes=[c.to_dict() for c in changes],
            held=[h.message for h in plan.holds] if held else [],
        )
    )
    if not changes:
        return True
    fingerprints = {group.id: plan.fingerprints[group.id]} if group.id in plan.fingerprints else {}
    applying = Plan(changes=changes, fingerprints=fingerprints)
    result = engine.apply(applying, run_id=run_id)
    if applied is not None:  # the service's observers: the event webhook sees on-demand changes too
        applied(applying, result)
    failed = result.failed
    emit(
        _step(
            "export",
            "failure" if failed or result.aborted else "success",
            (f"{len(failed)} of {len(changes)} changes failed: {failed[0].error}" if failed else "")
            or result.aborted
            or f"{len(changes)} changes written to AD",
            run_id=result.run_id,
        )
    )
    return result.ok
