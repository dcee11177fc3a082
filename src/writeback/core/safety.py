"""Thresholds that stop accidental mass changes: deletes, member removals, attribute updates and renames. Pure.

Like octoDNS's ``raise_if_unsafe`` and Cloud Sync's accidental-deletion guard, but a breach *holds* only the
kind of change that crossed its threshold; everything else in the plan is still applied. Held changes are
listed in the plan and the provisioning log, and pass only with an operator's explicit allowance
(``writeback apply --allow-deletes/--allow-removals/--allow-updates N``, or ``writeback allow`` for a running
service). Percentages are of what writeback manages *now* in AD, so a replica emptied by a fault or rebuilt
after a ``410 Gone`` cannot look like a small change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from writeback.core.dn import normalize_dn
from writeback.core.model import DirectoryGroup
from writeback.core.planning import Change, ChangeKind, Hold, Plan

# Below these sizes percentages mean little (3 removals of 5 members is 60 %): thresholds then do not apply.
MIN_MANAGED_MEMBER_VALUES = 50
MIN_MANAGED_GROUPS = 10


@dataclass(frozen=True)
class Managed:
    """How much writeback manages in AD now: the base of the percentages."""

    groups: int = 0
    member_values: int = 0

    @classmethod
    def of(cls, groups: Sequence[DirectoryGroup]) -> Managed:
        return cls(len(groups), sum(len(g.members) for g in groups))

    def after(self, applied: Sequence[Change]) -> Managed:
        """The base once ``applied`` changes are in AD. A delete's change does not carry the group's members:
        they count until the next deep reconcile counts again."""
        created = sum(1 for c in applied if c.kind is ChangeKind.CREATE)
        deleted = sum(1 for c in applied if c.kind is ChangeKind.DELETE)
        return Managed(
            max(self.groups + created - deleted, 0), max(self.member_values + member_value_delta(applied), 0)
        )


def member_value_delta(applied: Iterable[Change]) -> int:
    """Member values these changes add to AD minus those they remove."""
    delta = 0
    for c in applied:
        if c.kind in (ChangeKind.CREATE, ChangeKind.ADD_MEMBERS):
            delta += len(c.members)
        elif c.kind is ChangeKind.REMOVE_MEMBERS:
            delta -= len(c.members)
    return delta


@dataclass(frozen=True)
class Thresholds:
    delete_threshold: int = 10  # AD groups one apply may delete
    member_removal_percent: float = 30.0  # of the member values writeback manages
    update_percent: float = 30.0  # of the groups writeback manages, updated, renamed or moved
    allow_deletes: int = 0  # an operator's allowance: up to this many pass
    allow_removals: int = 0
    allow_updates: int = 0


def hold_unsafe(plan: Plan, managed: Managed, t: Thresholds) -> Plan:
    """``plan`` with the changes over a threshold moved to ``plan.held`` (with the reason in ``plan.holds``)."""
    holds: list[Hold] = []
    held: list[Change] = []
    keep = list(plan.changes)

    deletes = [c for c in keep if c.kind is ChangeKind.DELETE]
    if len(deletes) > max(t.delete_threshold, t.allow_deletes):
        holds.append(
            Hold(
                "deletes",
                len(deletes),
                t.delete_threshold,
                f"Delete threshold exceeded: {len(deletes)} AD groups would be deleted, safety.delete_threshold "
                f"is {t.delete_threshold}. Nothing will be deleted. Review the deletes with `writeback plan`, "
                f"then run `writeback apply --allow-deletes {len(deletes)}` or raise safety.delete_threshold.",
            )
        )
        held += deletes

    values = managed.member_values
    removals = [c for c in keep if c.kind is ChangeKind.REMOVE_MEMBERS]
    removed = sum(len(c.members) for c in removals)
    limit = int(values * t.member_removal_percent / 100)
    if values >= MIN_MANAGED_MEMBER_VALUES and removed > max(limit, t.allow_removals):
        holds.append(
            Hold(
                "removals",
                removed,
                limit,
                f"Member removal threshold exceeded: {removed} of the {values} member values writeback manages "
                f"would be removed ({removed * 100 / values:.0f} %, safety.member_removal_percent is "
                f"{t.member_removal_percent:g}). No member is removed. Review them with `writeback plan`, then "
                f"run `writeback apply --allow-removals {removed}` (or `writeback allow --removals {removed}` "
                "for a running service).",
            )
        )
        held += removals

    groups = managed.groups
    updates = [c for c in keep if c.kind in (ChangeKind.UPDATE, ChangeKind.MOVE)]
    updated = len({c.cloud_id for c in updates})
    limit = int(groups * t.update_percent / 100)
    if groups >= MIN_MANAGED_GROUPS and updated > max(limit, t.allow_updates):
        holds.append(
            Hold(
                "updates",
                updated,
                limit,
                f"Update threshold exceeded: {updated} of the {groups} AD groups writeback manages would have "
                f"attributes changed, be renamed or be moved ({updated * 100 / groups:.0f} %, "
                f"safety.update_percent is {t.update_percent:g}). None of them is changed. Review them with "
                f"`writeback plan`, then run `writeback apply --allow-updates {updated}` (or `writeback allow "
                f"--updates {updated}` for a running service).",
            )
        )
        held += updates

    if not holds:
        return plan
    # A held rename also holds what needs the new DN: the group's other changes (they run at the new DN) and
    # any change that writes the new DN as a member value.
    moved = {c.cloud_id for c in held if c.kind is ChangeKind.MOVE}
    new_dns = {normalize_dn(c.new_dn) for c in held if c.kind is ChangeKind.MOVE and c.new_dn}
    held += [
        c
        for c in keep
        if c not in held and (c.cloud_id in moved or any(normalize_dn(m) in new_dns for m in c.members))
    ]
    held_ids = {id(c) for c in held}
    touched = {c.cloud_id for c in held}
    return replace(
        plan,
        changes=tuple(c for c in keep if id(c) not in held_ids),
        held=tuple(sorted(held, key=Change.sort_key)),
        holds=tuple(holds),
        # A group with held changes has not converged: its desired state must not be recorded as applied.
        fingerprints={k: v for k, v in plan.fingerprints.items() if k not in touched},
    )
