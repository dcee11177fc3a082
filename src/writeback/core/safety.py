"""Thresholds that stop accidental mass changes: deletes, member removals, attribute updates and renames. Pure.

Like octoDNS's ``raise_if_unsafe`` and Cloud Sync's accidental-deletion guard, but a breach *holds* only the
kind of change that crossed its threshold; everything else in the plan is still applied. Held changes are
listed in the plan and the provisioning log, and pass only with an operator's explicit allowance
(``writeback apply --allow-deletes/--allow-removals/--allow-updates N``, or ``writeback allow`` for a running
service). Percentages are of what writeback manages in AD, so a replica emptied by a fault or rebuilt after a
``410 Gone`` cannot look like a small change.

Thresholds count over a sliding window (``safety.window``, an hour by default), not per plan: the service
plans every few seconds, and 12 deletes made one every 2.5 s all went through where the same 12 at once were
held (issue 23). What was applied in the window counts with what a plan would apply now, against what AD held
at the window's start (:class:`Window`). An operator's allowance lets through up to that many of the plan's
own changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

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
    # User accounts writeback writes ([users]): with the groups, the base of the update threshold (a user's
    # update counts as a group's does).
    users: int = 0

    @classmethod
    def of(cls, groups: Sequence[DirectoryGroup], users: int = 0) -> Managed:
        return cls(len(groups), sum(len(g.members) for g in groups), users)

    def after(self, applied: Sequence[Change]) -> Managed:
        """The base once ``applied`` changes are in AD. A delete's change does not carry the group's members:
        they count until the next deep reconcile counts again."""
        created = sum(1 for c in applied if c.kind is ChangeKind.CREATE)
        deleted = sum(1 for c in applied if c.kind is ChangeKind.DELETE)
        return Managed(
            max(self.groups + created - deleted, 0),
            max(self.member_values + member_value_delta(applied), 0),
            self.users,
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


@dataclass(frozen=True)
class Counted:
    """What the thresholds count in some changes: groups deleted, member values removed, groups updated,
    renamed or moved."""

    deletes: int = 0
    removals: int = 0
    updates: int = 0

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Counted:
        changes = list(changes)
        return cls(
            sum(1 for c in changes if c.kind is ChangeKind.DELETE),
            sum(len(c.members) for c in changes if c.kind is ChangeKind.REMOVE_MEMBERS),
            len({c.cloud_id for c in changes if c.kind in (ChangeKind.UPDATE, ChangeKind.MOVE)}),
        )

    def __add__(self, other: Counted) -> Counted:
        return Counted(
            self.deletes + other.deletes, self.removals + other.removals, self.updates + other.updates
        )

    def __bool__(self) -> bool:
        return bool(self.deletes or self.removals or self.updates)


@dataclass(frozen=True)
class Applied:
    """One apply within the window: when, what it counted, and the base its thresholds used."""

    time: float
    counted: Counted
    base: Managed


@dataclass(frozen=True)
class Window:
    """The applies of the last ``span`` seconds (oldest first). Kept in the state between processes."""

    span: float = 3600.0
    entries: tuple[Applied, ...] = field(default_factory=tuple)

    def at(self, now: float) -> Window:
        """The window as of ``now``: only the applies of the last ``span`` seconds."""
        return replace(self, entries=tuple(e for e in self.entries if e.time > now - self.span))

    def counted(self, now: float) -> Counted:
        total = Counted()
        for e in self.at(now).entries:
            total = total + e.counted
        return total

    def base(self, now: float, current: Managed) -> Managed:
        """What AD held at the window's start: the base of its oldest apply, else ``current``."""
        entries = self.at(now).entries
        return entries[0].base if entries else current

    def after(self, now: float, applied: Sequence[Change], base: Managed) -> Window:
        """The window once ``applied`` (planned against ``base``) is in AD at ``now``."""
        counted = Counted.of(applied)
        kept = self.at(now).entries
        return replace(self, entries=(*kept, Applied(now, counted, base)) if counted else kept)

    def to_json(self) -> dict[str, Any]:
        return {"entries": [asdict(e) for e in self.entries]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], span: float) -> Window:
        entries = tuple(
            Applied(float(e["time"]), Counted(**e["counted"]), Managed(**e["base"]))
            for e in data.get("entries", [])
        )
        return cls(span, entries)


def _so_far(n: int, what: str) -> str:
    return f" ({n} {what} already in the last safety.window)" if n else ""


def hold_unsafe(plan: Plan, managed: Managed, t: Thresholds, recent: Counted = Counted()) -> Plan:
    """``plan`` with the changes over a threshold moved to ``plan.held`` (with the reason in ``plan.holds``).

    ``recent``: what was applied in the window (:class:`Window`), counted with the plan's own changes;
    ``managed``: what AD held at the window's start. An allowance lets through a plan with up to that many of
    its own changes of the kind."""
    holds: list[Hold] = []
    held: list[Change] = []
    keep = list(plan.changes)

    deletes = [c for c in keep if c.kind is ChangeKind.DELETE]
    total = len(deletes) + recent.deletes
    if deletes and total > t.delete_threshold and len(deletes) > t.allow_deletes:
        holds.append(
            Hold(
                "deletes",
                total,
                t.delete_threshold,
                f"Delete threshold exceeded: {len(deletes)} AD groups would be deleted"
                f"{_so_far(recent.deletes, 'deleted')}, safety.delete_threshold is {t.delete_threshold}. "
                f"Nothing will be deleted. Review the deletes with 'writeback plan', then run 'writeback apply "
                f"--allow-deletes {len(deletes)}' or raise safety.delete_threshold.",
            )
        )
        held += deletes

    values = managed.member_values
    removals = [c for c in keep if c.kind is ChangeKind.REMOVE_MEMBERS]
    removed = sum(len(c.members) for c in removals)
    total = removed + recent.removals
    limit = int(values * t.member_removal_percent / 100)
    if values >= MIN_MANAGED_MEMBER_VALUES and removed and total > limit and removed > t.allow_removals:
        holds.append(
            Hold(
                "removals",
                total,
                limit,
                f"Member removal threshold exceeded: {removed} of the {values} member values writeback manages "
                f"would be removed{_so_far(recent.removals, 'removed')} ({total * 100 / values:.0f} %, "
                f"safety.member_removal_percent is {t.member_removal_percent:g}). No member is removed. Review "
                f"them with 'writeback plan', then run 'writeback apply --allow-removals {removed}' (or "
                f"'writeback allow --removals {removed}' for a running service).",
            )
        )
        held += removals

    # User accounts count with the groups: a user's update is an update (issue 24).
    groups = managed.groups + managed.users
    what = "AD groups and user accounts" if managed.users else "AD groups"
    updates = [c for c in keep if c.kind in (ChangeKind.UPDATE, ChangeKind.MOVE)]
    updated = len({c.cloud_id for c in updates})
    total = updated + recent.updates
    limit = int(groups * t.update_percent / 100)
    if groups >= MIN_MANAGED_GROUPS and updated and total > limit and updated > t.allow_updates:
        holds.append(
            Hold(
                "updates",
                total,
                limit,
                f"Update threshold exceeded: {updated} of the {groups} {what} writeback manages would have "
                f"attributes changed, be renamed or be moved{_so_far(recent.updates, 'changed')} "
                f"({total * 100 / groups:.0f} %, safety.update_percent is {t.update_percent:g}). None of them "
                f"is changed. Review them with 'writeback plan', then run 'writeback apply --allow-updates "
                f"{updated}' (or 'writeback allow --updates {updated}' for a running service).",
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
