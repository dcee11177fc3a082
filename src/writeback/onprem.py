"""On-prem dynamic groups: AD groups whose members are the AD users matching an Entra membership rule.

What on-prem AD never had without extra tools, with the rule language administrators know from the cloud.
Users are read from AD incrementally (``uSNChanged`` above the last read's ``highestCommittedUSN``, and users
deleted since then from the Deleted Objects container, so they leave their groups at the next poll; a full read
on every full reconcile and whenever the DC's invocationId differs from the one the watermark was taken on), mapped to the rule language's names (:mod:`writeback.directory.users`), evaluated with
:mod:`writeback.rules`, and the groups go through the same planner, safety rules, log and batched writes as
cloud groups. Ownership: ``WritebackDynamic_<id>`` in the anchor attribute; nothing else is ever touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from writeback.config import Settings
from writeback.directory.users import UserChanges, UsnWatermark
from writeback.dn import is_within, join_rdn
from writeback.mapping import SCOPE_BITS, assign_sam_account_names, clean_sam_account_name
from writeback.model import (
    DYNAMIC_ANCHOR_PREFIX,
    DYNAMIC_KEY_PREFIX,
    GROUP_TYPE_SECURITY,
    CloudGroup,
    DesiredGroup,
    DirectoryGroup,
)
from writeback.planning import Plan, Policy, compute_plan
from writeback.rules import RuleContext, compile_rule


class UserDirectory(Protocol):
    def read_user_changes(self, base_dn: str, since: UsnWatermark | None) -> UserChanges: ...

    def read_managed_groups(
        self, anchor_attributes: Sequence[str], mapped: Sequence[str], prefix: str = ...
    ) -> list[DirectoryGroup]: ...

    def taken_sam_account_names(self, names: Any) -> dict[str, str]: ...


class UserCache(Protocol):
    def put_ad_users(
        self,
        users: Any,
        *,
        replace: bool,
        usn: int,
        dc: str | None = None,
        removed: Sequence[str] = (),
    ) -> None: ...

    def ad_users(self) -> list[dict[str, Any]]: ...

    def ad_users_watermark(self) -> tuple[str, int] | None: ...


def desired_dynamic_groups(
    settings: Settings,
    users: Sequence[Mapping[str, Any]],
    anchor_attrs: Sequence[str],
    sam_names: Mapping[str, str],
) -> dict[str, DesiredGroup]:
    """Pure: evaluate every configured rule over ``users`` (rule-ready dicts from AD)."""
    by_dn = {str(u.get("onPremisesDistinguishedName", "")).lower(): u for u in users}
    ids = {dn: u.get("id") for dn, u in by_dn.items()}
    prepared: list[dict[str, Any]] = []
    for u in users:
        d = dict(u)
        manager = str(u.get("managerDn") or "").lower()
        d["manager"] = ids.get(manager) if manager else None
        prepared.append(d)
    context = RuleContext()
    out: dict[str, DesiredGroup] = {}
    for g in settings.dynamic_groups:
        key = DYNAMIC_KEY_PREFIX + g.id
        rule = compile_rule(g.rule)
        scope = [
            u for u in prepared if is_within(str(u.get("onPremisesDistinguishedName", "")), g.users_base)
        ]
        members = frozenset(str(u["onPremisesDistinguishedName"]) for u in rule.filter(scope, context))
        anchor = DYNAMIC_ANCHOR_PREFIX + g.id
        attrs: dict[str, str | None] = {a: anchor for a in anchor_attrs}
        attrs.update(displayName=g.name, description=g.description)
        error = None
        if len(members) > settings.members.max_members:
            error = f"{len(members)} members exceeds members.max_members ({settings.members.max_members})"
        out[key] = DesiredGroup(
            cloud_id=key,
            anchor=anchor,
            cn=g.name,
            parent_dn=g.ou,
            sam_account_name=sam_names[key],
            group_type=SCOPE_BITS[g.group_scope] | GROUP_TYPE_SECURITY,
            attributes=attrs,
            members=members,
            error=error,
        )
    return out


def sam_candidates(group_id: str, name: str) -> list[str]:
    digest = hashlib.sha256(group_id.encode()).hexdigest()
    base = clean_sam_account_name(name, 20) or "dyn"
    return [
        base,
        clean_sam_account_name(name, 15) + "_" + digest[:4],
        clean_sam_account_name(name, 11) + "_" + digest[:8],
        "dyn_" + digest[:16],
    ]


class DynamicGroups:
    """Plans on-prem dynamic groups from the AD user cache."""

    def __init__(
        self, settings: Settings, directory: Any, store: Any, progress: Callable[[str], None]
    ) -> None:
        self.settings, self.directory, self.store, self.progress = settings, directory, store, progress

    @property
    def enabled(self) -> bool:
        return bool(self.settings.dynamic_groups)

    def refresh_users(self, *, full: bool = False) -> int:
        """Read changed and deleted AD users (all when ``full``, on first use or on another DC) into the
        cache; returns how many users were read or removed."""
        stored = None if full else self.store.ad_users_watermark()
        since = UsnWatermark(dc=stored[0], usn=stored[1]) if stored else None
        changes = self.directory.read_user_changes(self.settings.target.base_dn, since)
        self.store.put_ad_users(
            changes.users,
            replace=changes.full,
            usn=changes.watermark.usn,
            dc=changes.watermark.dc,
            removed=changes.removed,
        )
        if changes.users or changes.removed:
            self.progress(
                f"{len(changes.users)} AD users read for dynamic groups"
                + (" (full)" if changes.full else f" (changed), {len(changes.removed)} deleted")
            )
        return len(changes.users) + len(changes.removed)

    def plan(self, anchor_attrs: Sequence[str], read_anchor_attrs: Sequence[str], policy: Policy) -> Plan:
        mapped = (*anchor_attrs, "description", "displayName")
        actual = self.directory.read_managed_groups(
            read_anchor_attrs,
            tuple(dict.fromkeys((*read_anchor_attrs, *mapped))),
            prefix=DYNAMIC_ANCHOR_PREFIX,
        )
        current = {a.cloud_id: a for a in actual if a.cloud_id}
        existing = {k: a.sam_account_name for k, a in current.items() if a.sam_account_name}
        candidates = {
            DYNAMIC_KEY_PREFIX + g.id: sam_candidates(g.id, g.name)
            for g in self.settings.dynamic_groups
            if DYNAMIC_KEY_PREFIX + g.id not in existing
        }
        wanted = {c for names in candidates.values() for c in names}
        taken = set(self.directory.taken_sam_account_names(wanted)) if wanted else set()
        sam = assign_sam_account_names(candidates, existing, taken)
        desired = desired_dynamic_groups(self.settings, self.store.ad_users(), anchor_attrs, sam)
        configured = set(desired)
        known = {k: CloudGroup(k, display_name=k) for k in set(current) | configured}
        removed = {k: "removed from the writeback configuration" for k in current if k not in configured}
        occupied = {join_rdn("CN", d.cn, d.parent_dn) for k, d in desired.items() if k not in current}
        return compute_plan(
            desired,
            actual,
            known,
            policy,
            out_of_scope=removed,
            occupied_dns=self.directory.existing_dns(occupied) if occupied else set(),
            applied=self.store.applied_fingerprints(),
        )
