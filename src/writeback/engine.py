"""One reconcile pass: sync the cloud replica, read the managed AD groups, plan, apply.

This module wires the ports together; the product rules live in the pure modules it calls (scope, mapping,
planning). It imports no vendor library: adapters are handed in (see :mod:`writeback.wiring`).

Crash safety comes from the design rather than a journal: every AD object writeback creates carries its
``Group_<objectId>`` anchor from the first LDAP add, every plan is computed from what AD holds *now*, and
member writes are idempotent. An apply killed at any point is finished by the next one, without duplicates.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from writeback.config import Settings
from writeback.dn import normalize_dn
from writeback.errors import DirectoryError, DirectoryUnavailable, PlanError, StalePlanError
from writeback.mapping import (
    ADMIN_DESCRIPTION,
    MSDS_ANCHOR,
    Mapper,
    anchor_attributes,
    assign_sam_account_names,
    immutable_id_to_guid,
)
from writeback.model import CloudGroup, CloudSnapshot, DesiredGroup, DirectoryAccount, DirectoryGroup
from writeback.onprem import DynamicGroups
from writeback.planning import Change, ChangeKind, Plan, Policy, compute_plan, merge_plans
from writeback.ports import CloudSource, Directory, ReplicaStore, ResolvedAccounts, SyncReport
from writeback.scope import out_of_scope_reason

log = logging.getLogger("writeback.engine")


class Store(ReplicaStore, Protocol):
    """What the engine needs from the state store beyond the replica."""

    def has_synced(self) -> bool: ...

    def log(
        self,
        run_id: str,
        action: str,
        result: str,
        *,
        cloud_id: str | None = None,
        group_name: str | None = None,
        dn: str | None = None,
        error: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None: ...

    def record_applied(self, cloud_id: str, dn: str) -> None: ...

    def forget_applied(self, cloud_id: str) -> None: ...

    def applied_dns(self) -> dict[str, str]: ...

    def groups_with_members(self, member_ids: Iterable[str]) -> set[str]: ...

    def record_fingerprints(self, prints: Mapping[str, str]) -> None: ...

    def applied_fingerprints(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class ChangeResult:
    change: Change
    ok: bool
    error: str | None = None


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

_ACTION_NAMES = {
    ChangeKind.CREATE: "create",
    ChangeKind.UPDATE: "update",
    ChangeKind.MOVE: "move",
    ChangeKind.ADD_MEMBERS: "add_members",
    ChangeKind.REMOVE_MEMBERS: "remove_members",
    ChangeKind.DELETE: "delete",
}


class Engine:
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
        self._anchor_attrs: tuple[str, ...] | None = None
        self._read_anchor_attrs: tuple[str, ...] = ()
        self.dynamic = DynamicGroups(settings, directory, store, self.progress)

    # Reading ----------------------------------------------------------------------------------------------
    def sync(self) -> SyncReport:
        self.progress("Reading changes from Microsoft Graph")
        report = self.source.sync(self.store)
        self.progress(
            f"Cloud replica up to date ({report.requests} Graph requests"
            f"{', full resync' if report.full_resync else ''})"
        )
        return report

    def anchors(self) -> tuple[str, ...]:
        if self._anchor_attrs is None:
            has_msds = self.directory.has_attribute(MSDS_ANCHOR)
            self._anchor_attrs = anchor_attributes(self.settings.mapping.anchor, has_msds)
            # Read both anchors when the schema has both, so groups Connect v2 wrote (adminDescription only)
            # are adopted, not duplicated.
            self._read_anchor_attrs = (MSDS_ANCHOR, ADMIN_DESCRIPTION) if has_msds else (ADMIN_DESCRIPTION,)
        return self._anchor_attrs

    def mapper(self) -> Mapper:
        return Mapper(
            self.settings.mapping,
            self.settings.members,
            self.settings.target.target_ou,
            self.settings.target.base_dn,
            self.anchors(),
        )

    def policy(self, allow_deletes: int = 0) -> Policy:
        s = self.settings
        return Policy(
            delete_threshold=s.safety.delete_threshold,
            allow_deletes=allow_deletes,
            delete_soft_deleted=s.safety.on_soft_delete == "delete",
            delete_out_of_scope=s.safety.on_out_of_scope == "delete",
            manage_sam_account_name=s.mapping.sam_account_name is not None,
        )

    def plan_dynamic(self, *, allow_deletes: int = 0, full_user_read: bool = False) -> Plan:
        """Plan the on-prem dynamic groups (reads changed AD users first)."""
        anchors = self.anchors()
        self.dynamic.refresh_users(full=full_user_read)
        return self.dynamic.plan(anchors, self._read_anchor_attrs, self.policy(allow_deletes))

    def plan_dynamic_if_changed(self) -> Plan | None:
        """For the service: read AD users changed since the last read; plan dynamic groups only if any did."""
        if not self.dynamic.enabled or not self.dynamic.refresh_users():
            return None
        return self.dynamic.plan(self.anchors(), self._read_anchor_attrs, self.policy())

    def plan(
        self,
        *,
        allow_deletes: int = 0,
        only: Collection[str] | None = None,
    ) -> Plan:
        """Compute the plan from the replica and the directory. ``only``: reconcile just these cloud groups."""
        if self.settings.scope.mode == "none":  # on-prem dynamic groups only
            if only is not None or not self.dynamic.enabled:
                return Plan()
            return self.plan_dynamic(allow_deletes=allow_deletes, full_user_read=True)
        if not self.store.has_synced():
            raise PlanError(
                "the cloud replica is empty: no successful Graph sync yet; run `writeback plan` "
                "(which syncs first) and check the source settings with `writeback config check`"
            )
        snap = self.store.snapshot(only)
        mapper = self.mapper()
        in_scope: dict[str, CloudGroup] = {}
        out_reasons: dict[str, str] = {}
        for gid, g in snap.groups.items():
            reason = out_of_scope_reason(g, self.settings.scope)
            if reason is None:
                in_scope[gid] = g
            else:
                out_reasons[gid] = reason
        targets = in_scope if only is None else {gid: in_scope[gid] for gid in only if gid in in_scope}
        self.progress(f"{len(in_scope)} cloud groups in scope of {len(snap.groups)}; planning {len(targets)}")

        accounts = self._resolve_members(targets, snap)
        mapped = (*self.anchors(), "description", "displayName", *self.settings.mapping.attributes)
        read_attrs = tuple(dict.fromkeys((*self._read_anchor_attrs, *mapped)))
        if only is None:
            actual = self.directory.read_managed_groups(self._read_anchor_attrs, read_attrs)
            self._remember_locations(actual)
        else:
            actual = self._read_some(set(only), mapper, snap, read_attrs)
        self.progress(f"{len(actual)} managed groups in AD")

        # Nested groups are written by DN: the DN of each in-scope group a planned group holds (not of every
        # group: 10,000 DNs cost ~1 s, per poll when only one group changed).
        nested = {r.id for g in targets.values() for r in g.members if r.kind == "group"}
        child_dns = {gid: mapper.desired_dn(in_scope[gid]) for gid in nested if gid in in_scope}
        current = {a.cloud_id: a for a in actual if a.cloud_id}
        for gid, a in current.items():  # a child not being reconciled keeps the DN it has
            if gid not in targets and gid in child_dns:
                child_dns[gid] = a.dn
        sam = self._sam_names(targets, current, mapper)
        desired: dict[str, DesiredGroup] = {
            gid: mapper.map_group(
                g,
                in_scope=in_scope,
                users=snap.users,
                accounts=accounts,
                sam_account_name=sam[gid],
                child_dns=child_dns,
            )
            for gid, g in targets.items()
        }
        occupied = self._occupied(desired, current, actual)
        cloud_view = (
            snap.groups if only is None else {gid: g for gid, g in snap.groups.items() if gid in only}
        )
        plan = compute_plan(
            desired,
            actual if only is None else [a for a in actual if a.cloud_id in only],
            cloud_view,
            self.policy(allow_deletes),
            out_of_scope=out_reasons,
            occupied_dns=occupied,
            applied=self.store.applied_fingerprints(),
        )
        if only is None and self.dynamic.enabled:
            plan = merge_plans(plan, self.plan_dynamic(allow_deletes=allow_deletes, full_user_read=True))
        return plan

    def _read_some(
        self, only: set[str], mapper: Mapper, snap: CloudSnapshot, attrs: tuple[str, ...]
    ) -> list[DirectoryGroup]:
        """Read just the groups of ``only``: where they were last seen, or where they will be created.

        A group remembered at a DN where it no longer is (moved by hand in AD) could otherwise look missing
        and be created a second time; then every managed group is read instead, as a full pass would.
        """
        applied = self.store.applied_dns()
        dns = [applied[c] for c in only if c in applied]
        dns += [mapper.desired_dn(snap.groups[c]) for c in only if c in snap.groups and c not in applied]
        found = [
            g for g in self.directory.read_groups(dns, self._read_anchor_attrs, attrs) if g.cloud_id in only
        ]
        lost = {c for c in only if c in applied} - {g.cloud_id for g in found}
        if lost:
            log.info("%d managed groups not where last seen; reading every managed group", len(lost))
            every = self.directory.read_managed_groups(self._read_anchor_attrs, attrs)
            self._remember_locations(every)
            found = [g for g in every if g.cloud_id in only]
        return found

    def _remember_locations(self, actual: Iterable[DirectoryGroup]) -> None:
        """Record the DN of every managed group a full read found, so incremental cycles read the right DNs.

        Groups adopted from Connect or an earlier installation, and a group created by a run killed before it
        recorded the create, are otherwise unknown: a rename would then look for them at the new DN only.
        """
        known = {cid: normalize_dn(dn) for cid, dn in self.store.applied_dns().items()}
        for g in actual:
            if g.cloud_id and known.get(g.cloud_id) != normalize_dn(g.dn):
                self.store.record_applied(g.cloud_id, g.dn)

    def _resolve_members(self, groups: Mapping[str, CloudGroup], snap: CloudSnapshot) -> ResolvedAccounts:
        """The AD accounts of the synced users among the members, looked up in ``members.match_order``.

        An identifier is looked up only for the users the ones before it did not find (the mapper uses the
        first match anyway): when every synced user has a SID, that halves the directory searches of a
        full plan, the biggest cost of a no-change apply (docs/benchmarks.md).
        """
        keys: dict[str, tuple[str | None, str | None]] = {}  # user id -> (SID upper-cased, GUID)
        for g in groups.values():
            for ref in g.members:
                if ref.kind != "user" or ref.id in keys:
                    continue
                u = snap.users.get(ref.id)
                if u is None or not u.is_synced:
                    continue
                sid = u.on_premises_security_identifier
                immutable = u.on_premises_immutable_id
                keys[ref.id] = (
                    sid.upper() if sid else None,
                    immutable_id_to_guid(immutable) if immutable else None,
                )
        self.progress(f"Resolving {len(keys)} synced members in AD")
        by_sid: dict[str, DirectoryAccount] = {}
        by_guid: dict[str, DirectoryAccount] = {}
        pending = list(keys.values())
        for how in self.settings.members.match_order:
            if how == "sid" and (sids := {s for s, _ in pending if s}):
                found = self.directory.resolve_accounts(sids, ())
                by_sid.update((k.upper(), v) for k, v in found.by_sid.items())
                pending = [(s, g) for s, g in pending if not (s and s in by_sid)]
            elif how == "immutable_id" and (guids := {g for _, g in pending if g}):
                found = self.directory.resolve_accounts((), guids)
                by_guid.update((k.lower(), v) for k, v in found.by_guid.items())
                pending = [(s, g) for s, g in pending if not (g and g in by_guid)]
        return ResolvedAccounts(by_sid=by_sid, by_guid=by_guid)

    def _sam_names(
        self, targets: Mapping[str, CloudGroup], current: Mapping[str, DirectoryGroup], mapper: Mapper
    ) -> dict[str, str]:
        existing = {
            cid: a.sam_account_name for cid, a in current.items() if cid in targets and a.sam_account_name
        }
        if self.settings.mapping.sam_account_name is not None:
            # Mapped explicitly: the mapping wins over the name the group has (and may rename it).
            existing = {}
        candidates = {gid: mapper.sam_candidates(g) for gid, g in targets.items() if gid not in existing}
        wanted = {c for names in candidates.values() for c in names}
        taken = self.directory.taken_sam_account_names(wanted) if wanted else {}
        own = {normalize_dn(a.dn) for a in current.values()}
        foreign = {name for name, dn in taken.items() if normalize_dn(dn) not in own}
        if self.settings.mapping.sam_account_name is not None:
            # A name held by the group itself is not a collision.
            for gid in candidates:
                a = current.get(gid)
                if a and a.sam_account_name:
                    foreign.discard(a.sam_account_name.lower())
        return assign_sam_account_names(candidates, existing, foreign)

    def _occupied(
        self,
        desired: Mapping[str, DesiredGroup],
        current: Mapping[str, DirectoryGroup],
        actual: Collection[DirectoryGroup],
    ) -> set[str]:
        wanted = [
            d.dn
            for cid, d in desired.items()
            if d.error is None and (cid not in current or normalize_dn(current[cid].dn) != normalize_dn(d.dn))
        ]
        if not wanted:
            return set()
        managed = {normalize_dn(a.dn) for a in actual}
        return {dn for dn in self.directory.existing_dns(wanted) if normalize_dn(dn) not in managed}

    # Writing ----------------------------------------------------------------------------------------------
    def apply(
        self, plan: Plan, *, run_id: str | None = None, should_stop: Callable[[], bool] | None = None
    ) -> ApplyResult:
        """Apply ``plan`` in order. One failing group never blocks the others; an unreachable directory
        stops the run (the next run resumes from what AD then holds)."""
        result = ApplyResult(run_id or uuid.uuid4().hex[:12])
        failed_groups: set[str] = set()
        total = len(plan.changes)
        self._log_reports(result.run_id, plan)
        for i, change in enumerate(plan.changes, start=1):
            if should_stop and should_stop():
                result.aborted = "stop requested"
                break
            if change.cloud_id in failed_groups:
                msg = "not attempted: an earlier change of this group failed"
                result.results.append(ChangeResult(change, False, msg))
                self._log_change(result.run_id, change, "skipped", msg)
                continue
            self.progress(
                f"[{i}/{total}] {_ACTION_NAMES[change.kind]} {change.display_name or change.dn}"
                + (f" ({len(change.members)} members)" if change.members else "")
            )
            try:
                self._execute(change)
            except DirectoryUnavailable as exc:
                self._log_change(result.run_id, change, "error", str(exc))
                result.results.append(ChangeResult(change, False, str(exc)))
                result.aborted = f"directory unavailable: {exc}"
                break
            except DirectoryError as exc:
                failed_groups.add(change.cloud_id)
                self._log_change(result.run_id, change, "error", str(exc))
                result.results.append(ChangeResult(change, False, str(exc)))
                continue
            self._log_change(result.run_id, change, "success", None)
            result.results.append(ChangeResult(change, True))
        if result.aborted is None:
            # Groups now converged: remember their desired state, so a later difference in AD is drift.
            done = {cid: fp for cid, fp in plan.fingerprints.items() if cid not in failed_groups}
            if done:
                self.store.record_fingerprints(done)
        return result

    def _log_reports(self, run_id: str, plan: Plan) -> None:
        """Log what the plan does not change: groups skipped with an error, members not written, staged deletes."""
        for r in plan.reports:
            if not (r.error or r.skipped):
                continue
            reasons = Counter(s.reason for s in r.skipped)
            self.store.log(
                run_id,
                "skip" if r.error else "skip_members",
                "error" if r.error else "info",
                cloud_id=r.cloud_id,
                group_name=r.display_name,
                dn=r.dn,
                error=r.error,
                detail=None if r.error else {"skipped": len(r.skipped), "reasons": dict(reasons)},
            )
        for c in plan.blocked_deletes:
            self.store.log(
                run_id,
                "staged_delete",
                "blocked",
                cloud_id=c.cloud_id,
                group_name=c.display_name,
                dn=c.dn,
                error="delete threshold exceeded",
            )

    def _execute(self, change: Change) -> None:
        d = self.directory
        if change.kind is ChangeKind.CREATE:
            attrs = {k: v for k, v in change.attributes.items() if v is not None}
            d.create_group(change.dn, attrs, change.members)
            self.store.record_applied(change.cloud_id, change.dn)
        elif change.kind is ChangeKind.UPDATE:
            d.modify_attributes(
                change.dn, {k: None if v is None else str(v) for k, v in change.attributes.items()}
            )
        elif change.kind is ChangeKind.MOVE:
            assert change.new_dn is not None
            d.move(change.dn, change.new_dn)
            self.store.record_applied(change.cloud_id, change.new_dn)
        elif change.kind is ChangeKind.ADD_MEMBERS:
            d.add_members(change.dn, change.members)
        elif change.kind is ChangeKind.REMOVE_MEMBERS:
            d.remove_members(change.dn, change.members)
        elif change.kind is ChangeKind.DELETE:
            d.delete(change.dn)
            self.store.forget_applied(change.cloud_id)

    def _log_change(self, run_id: str, change: Change, result: str, error: str | None) -> None:
        detail: dict[str, object] = {"reason": change.reason}
        if change.members:
            detail["members"] = len(change.members)
        if change.attributes:
            detail["attributes"] = sorted(change.attributes)
        if change.new_dn:
            detail["new_dn"] = change.new_dn
        self.store.log(
            run_id,
            _ACTION_NAMES[change.kind],
            result,
            cloud_id=change.cloud_id,
            group_name=change.display_name,
            dn=change.dn,
            error=error,
            detail=detail,
        )

    def check_saved_plan(self, saved: Plan, current: Plan) -> None:
        if saved.digest() != current.digest():
            raise StalePlanError(
                "the saved plan no longer matches the cloud and AD: "
                f"it has {len(saved.changes)} changes, a fresh plan has {len(current.changes)}. "
                "Run `writeback plan --out FILE` again and review it"
            )
