"""Provision on demand: one cloud group, now, step by step (Entra's "Provision on demand", for a whole group).

The steps follow Graph's provisioningStepType: import (from Graph), scoping, matching (members to AD
accounts), processing (the action), export (the LDAP writes). It is one "group" pass of the reconcile pass
(:class:`writeback.app.reconcile_pass.ReconcilePass`), so scope is decided by the engine's own rules (source
of authority, scope settings, the tenant's default), the writer claim is checked before each write, and
safety thresholds, holds, the provisioning log and the stamps behave exactly as in a cycle. It runs on the
service's thread (the console, and `writeback provision` while a service runs) or in `writeback provision`
holding the writer claim itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.core.planning import Plan
from writeback.core.text import plural

Step = dict[str, Any]


def _step(kind: str, status: str, description: str, **details: Any) -> Step:
    return {
        "type": kind,
        "status": status,
        "description": description,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "details": details,
    }


@dataclass(frozen=True)
class ProvisionOutcome:
    """How a provision on demand ended. ``result``: "success", "skipped" (out of scope), "held" (over a safety
    threshold), "failure".
    ``summary`` is the line an operator reads last; ``run_id`` names its provisioning-log entries."""

    result: str
    summary: str
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.result != "failure"

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "summary": self.summary, "run_id": self.run_id, "ok": self.ok}


def provision_group(
    passes: ReconcilePass, wanted: str, emit: Callable[[Step], None], *, run_id: str
) -> ProvisionOutcome:
    """Sync, plan and apply the one group ``wanted`` (name or id) — or, with ``[users]`` on, the one user (id or
    userPrincipalName) into its original AD account; ``emit`` gets each step as it happens."""
    report = passes.sync()
    emit(_step("import", "success", f"cloud replica up to date ({plural(report.requests, 'Graph request')})"))
    target = passes.find_group(wanted)
    if target is None:
        what = (
            "cloud group or user ([users] on: id or userPrincipalName)"
            if passes.users_enabled
            else "cloud group"
        )
        emit(_step("import", "failure", f"no single {what} has the id or name {wanted!r}"))
        return ProvisionOutcome("failure", f"failed: no single {what} has the id or name {wanted!r}")
    if target.leaving:
        gone = target.display_name == target.id
        found = (
            f"user {target.id} is not in the cloud replica (hard-deleted)"
            if gone
            else f"found user {target.display_name} ({target.id}), held by no in-scope group"
        )
        emit(_step("import", "success", found, id=target.id, target="user", groups=[]))
    elif target.kind == "user":
        found = (
            f"found user {target.display_name} ({target.id}), held by "
            f"{plural(target.members, 'in-scope group')}"
        )
        emit(_step("import", "success", found, id=target.id, target="user", groups=sorted(target.groups)))
    else:
        emit(
            _step(
                "import",
                "success",
                f"found {target.display_name} ({target.id}) with {plural(target.members, 'member')}",
                id=target.id,
                members=target.members,
            )
        )
    if not target.in_scope:
        emit(
            _step(
                "scoping", "skipped", f"out of scope: {target.reason}", in_scope=False, reason=target.reason
            )
        )
        return ProvisionOutcome("skipped", f"skipped: out of scope ({target.reason})")
    if target.leaving:
        on_leave = passes.engine.settings.users.on_leave
        emit(
            _step(
                "scoping",
                "success",
                "its account was created by writeback: "
                + (
                    "a hard delete deletes it"
                    if target.display_name == target.id
                    else f'on_leave = "{on_leave}"'
                )
                + ", as every pass decides",
                in_scope=True,
                leaving=True,
            )
        )
    else:
        emit(_step("scoping", "success", "in scope", in_scope=True))

    def show(plan: Plan) -> None:
        _emit_planned(plan, target.id, emit, leaving=target.leaving)

    done = passes.run(PassOptions("group", group=target.id, run_id=run_id), report=report, show=show)
    plan = done.plan
    if any(r.error for r in plan.reports if r.cloud_id == target.id):
        error = next(r.error for r in plan.reports if r.cloud_id == target.id and r.error)
        return ProvisionOutcome("failure", f"failed: {error}", done.run_id)
    result = done.applied
    held = [c for c in plan.held if c.cloud_id == target.id]
    if not plan.changes:
        if result is not None and held:
            return ProvisionOutcome(
                "held",
                f"held: {plural(len(held), 'change')} over a safety threshold ('writeback allow')",
                result.run_id,
            )
        return ProvisionOutcome(
            "success", "succeeded: AD already matches the cloud", result.run_id if result else None
        )
    assert result is not None
    failed = result.failed
    emit(
        _step(
            "export",
            "failure" if failed or result.aborted else "success",
            (f"{len(failed)} of {len(plan.changes)} changes failed: {failed[0].error}" if failed else "")
            or result.aborted
            or f"{plural(len(plan.changes), 'change')} written to AD",
            run_id=result.run_id,
            log=f"/log?run={result.run_id}",
        )
    )
    if not result.ok:
        return ProvisionOutcome("failure", "failed: see the export step", result.run_id)
    if held:
        return ProvisionOutcome(
            "held", f"partly held: {plural(len(held), 'change')} over a safety threshold", result.run_id
        )
    return ProvisionOutcome("success", "succeeded: every step succeeded", result.run_id)


def _emit_planned(plan: Plan, group_id: str, emit: Callable[[Step], None], *, leaving: bool = False) -> None:
    """The matching and processing steps, from the plan (before anything is written)."""
    reports = [r for r in plan.reports if r.cloud_id == group_id]
    skipped = [s for r in reports for s in r.skipped]
    errors = [r.error for r in reports if r.error]
    emit(
        _step(
            "matching",
            "failure" if errors else "warning" if skipped else "success",
            "; ".join(e for e in errors if e)
            if errors
            else f"{plural(len(skipped), 'member')} not written to AD"
            if skipped
            else "its account found by its anchor User_<id>"
            if leaving and any(c.cloud_id == group_id for c in (*plan.changes, *plan.held))
            else "its account (if any) already as the leave leaves it"
            if leaving
            else "its original AD account found by SID"
            if any(c.target == "user" for c in (*plan.changes, *plan.held))
            or any(r.target == "user" for r in reports)
            else "every member matched to an AD account",
            skipped=[{"id": s.member_id, "name": s.name or None, "reason": s.reason} for s in skipped],
        )
    )
    if errors:
        return
    changes = [c for c in plan.changes if c.cloud_id == group_id]
    held = [c for c in plan.held if c.cloud_id == group_id]
    emit(
        _step(
            "processing",
            "warning" if held else "success",
            ", ".join(f"{c.kind.value} {c.display_name or c.dn}" for c in changes)
            or ("held (see the warnings)" if held else "nothing to change"),
            changes=[c.to_dict() for c in changes],
            held=[h.message for h in plan.holds] if held else [],
        )
    )
