"""Gather, then desire: what AD must be asked, and what AD must hold. Pure.

Two *sources* feed the same steps: cloud groups (from the replica) and on-prem dynamic groups (from the
configuration, evaluated over AD users). Each becomes an :class:`Intent` — everything about a desired group
that needs no directory fact. Then:

1. :func:`questions` lists what AD must tell: the accounts to resolve, the managed groups to read, the names
   and DNs whose owners matter. (The sources' own inputs — the Graph delta replica and the AD users changed
   since the last read — are synced before, like a source's snapshot.)
2. The application's gathering step (:mod:`writeback.app.gathering`) reads exactly that into
   :class:`DirectoryFacts`, an immutable value.
3. :func:`desired_state` turns intents + facts + settings into the desired AD groups, with a reason for every
   member and group left out.

Every rule about *what* to write lives here, once: member match order, sAMAccountName assignment, the
occupied-DN check, the member cap, AD's nesting rule (8518) and when a nested group may be referenced. This
module reads nothing, writes nothing and looks at no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from writeback.config import Settings
from writeback.core.dn import is_within, normalize_dn
from writeback.core.mapping import (
    SCOPE_BITS,
    Mapper,
    assign_sam_account_names,
    dynamic_sam_candidates,
    group_type_change_refused,
    immutable_id_to_guid,
    nesting_allowed,
)
from writeback.core.model import (
    ANCHOR_PREFIX,
    DYNAMIC_ANCHOR_PREFIX,
    DYNAMIC_KEY_PREFIX,
    GROUP_TYPE_SECURITY,
    AttributeValue,
    CloudGroup,
    CloudSnapshot,
    CloudUser,
    DesiredGroup,
    DirectoryGroup,
    Intent,
    MemberRef,
    SkippedMember,
    SkipReason,
)
from writeback.core.ports import ResolvedAccounts
from writeback.core.rules import RuleContext, compile_rule
from writeback.core.scope import out_of_scope_reason


@dataclass(frozen=True)
class Intents:
    """Every source's intents for one plan, and what the cloud says about groups no longer desired."""

    groups: Mapping[str, Intent]  # the groups this plan reconciles
    cloud_users: Mapping[str, CloudUser] = field(default_factory=dict)
    cloud_groups: Mapping[str, CloudGroup] = field(default_factory=dict)  # every group the replica knows
    in_scope: frozenset[str] = frozenset()  # every in-scope cloud group (nested references need it)
    out_of_scope: Mapping[str, str] = field(default_factory=dict)  # key -> why, for groups not desired
    # An incremental plan compares only the AD groups of these keys (None: every managed group).
    reconciled: frozenset[str] | None = None
    # The anchor prefixes of the sources present: a plan compares only the AD groups they own, so a plan
    # without a source can never read that source's groups as undesired (and delete them).
    prefixes: frozenset[str] = frozenset()

    @property
    def partial(self) -> bool:
        return self.reconciled is not None


def cloud_intents(
    snapshot: CloudSnapshot, settings: Settings, only: Collection[str] | None = None
) -> Intents:
    """The cloud source: in-scope cloud groups (all of them, or those of ``only``) as intents."""
    mapper = Mapper(settings.mapping, settings.target.target_ou, settings.target.base_dn)
    in_scope: set[str] = set()
    out: dict[str, str] = {}
    for gid, g in snapshot.groups.items():
        reason = out_of_scope_reason(g, settings.scope, snapshot.unified_writeback_default)
        if reason is None:
            in_scope.add(gid)
        else:
            out[gid] = reason
    keys = in_scope if only is None else in_scope & set(only)
    groups = {gid: mapper.intent(snapshot.groups[gid]) for gid in sorted(keys)}
    cloud = snapshot.groups if only is None else {g: c for g, c in snapshot.groups.items() if g in only}
    reconciled = None if only is None else frozenset(k for k in only if not k.startswith(DYNAMIC_KEY_PREFIX))
    return Intents(
        groups, snapshot.users, cloud, frozenset(in_scope), out, reconciled, frozenset({ANCHOR_PREFIX})
    )


def dynamic_intents(settings: Settings, ad_users: Sequence[Mapping[str, Any]]) -> Intents:
    """The on-prem source: every configured dynamic group, its members the AD users (rule-ready dicts, see
    :mod:`writeback.adapters.directory.users`) under its ``users_base`` that match its rule."""
    prepared = _rule_ready(ad_users)
    context = RuleContext()
    groups: dict[str, Intent] = {}
    for g in settings.dynamic_groups:
        rule = compile_rule(g.rule)
        scope = [
            u for u in prepared if is_within(str(u.get("onPremisesDistinguishedName", "")), g.users_base)
        ]
        key = DYNAMIC_KEY_PREFIX + g.id
        groups[key] = Intent(
            key=key,
            anchor=DYNAMIC_ANCHOR_PREFIX + g.id,
            name=g.name,
            cn=g.name,
            parent_dn=g.ou,
            group_type=SCOPE_BITS[g.group_scope] | GROUP_TYPE_SECURITY,
            attributes={"displayName": g.name, "description": g.description},
            sam_candidates=tuple(dynamic_sam_candidates(g.id, g.name)),
            sam_mapped=False,
            member_dns=frozenset(str(u["onPremisesDistinguishedName"]) for u in rule.filter(scope, context)),
        )
    return Intents(groups, prefixes=frozenset({DYNAMIC_ANCHOR_PREFIX}))


def combine(*sources: Intents) -> Intents:
    """One set of intents from several sources (their keys never collide: 'dynamic:' prefixes on-prem ones)."""
    out = Intents({})
    for s in sources:
        reconciled = None
        if out.partial or s.partial:  # a full source within an incremental plan reconciles its own groups
            reconciled = (out.reconciled or frozenset(out.groups)) | (s.reconciled or frozenset(s.groups))
        out = Intents(
            {**out.groups, **s.groups},
            {**out.cloud_users, **s.cloud_users},
            {**out.cloud_groups, **s.cloud_groups},
            out.in_scope | s.in_scope,
            {**out.out_of_scope, **s.out_of_scope},
            reconciled,
            out.prefixes | s.prefixes,
        )
    return out


# 1. Questions --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Questions:
    """What AD must tell for one plan. Built by :func:`questions`; answered by the gathering step."""

    accounts: frozenset[tuple[str | None, str | None]]  # synced members' (objectSid, objectGUID)
    match_order: tuple[str, ...]  # resolve by the first, then by the next for those not yet found
    every_managed_group: bool  # read every managed group (a full plan)
    prefixes: tuple[str, ...]  # anchor prefixes of the managed groups to read
    groups: Mapping[str, tuple[str, ...]]  # key -> DNs where it may be (incremental plans)
    remembered: frozenset[str]  # keys of ``groups`` with a DN where they were last written
    sam_candidates: Mapping[str, tuple[str, ...]]  # key -> names that may be assigned
    sam_mapped: frozenset[str]  # keys whose sAMAccountName is mapped (the mapping wins over the name held)
    dns: Mapping[str, str]  # key -> the DN it should have

    def names_to_check(self, managed: Iterable[DirectoryGroup]) -> set[str]:
        """The candidate names whose holder matters, once the managed groups are known: a group that keeps
        the name it has needs none checked."""
        keeps = {g.cloud_id for g in managed if g.cloud_id and g.sam_account_name} - self.sam_mapped
        return {n for k, names in self.sam_candidates.items() if k not in keeps for n in names}

    def dns_to_check(self, managed: Iterable[DirectoryGroup]) -> set[str]:
        """The desired DNs not already held by the group itself: someone else may hold them."""
        at = {g.cloud_id: normalize_dn(g.dn) for g in managed if g.cloud_id}
        return {dn for k, dn in self.dns.items() if at.get(k) != normalize_dn(dn)}


def questions(intents: Intents, settings: Settings, applied_dns: Mapping[str, str]) -> Questions:
    """What to read from AD for ``intents``. ``applied_dns``: where each group was last written."""
    accounts: set[tuple[str | None, str | None]] = set()
    groups: dict[str, tuple[str, ...]] = {}
    for intent in intents.groups.values():
        for ref in intent.members:
            user = intents.cloud_users.get(ref.id) if ref.kind == "user" else None
            if user is not None and user.is_synced and not user.deleted:
                accounts.add(account_keys(user))
    if intents.reconciled is not None:
        for key in intents.reconciled:
            wanted = intents.groups.get(key)
            groups[key] = tuple(dict.fromkeys(d for d in (applied_dns.get(key), wanted and wanted.dn) if d))
        # nested children not planned here are referenced where they are
        for intent in intents.groups.values():
            for ref in intent.members:
                if ref.kind == "group" and ref.id not in groups and ref.id in applied_dns:
                    groups[ref.id] = (applied_dns[ref.id],)
    return Questions(
        accounts=frozenset(accounts),
        match_order=settings.members.match_order,
        every_managed_group=not intents.partial,
        prefixes=tuple(sorted(intents.prefixes)),
        groups=groups,
        remembered=frozenset(k for k in groups if k in applied_dns),
        sam_candidates={k: i.sam_candidates for k, i in intents.groups.items()},
        sam_mapped=frozenset(k for k, i in intents.groups.items() if i.sam_mapped),
        dns={k: i.dn for k, i in intents.groups.items() if i.error is None},
    )


def account_keys(user: CloudUser) -> tuple[str | None, str | None]:
    """The keys a synced user is found by in AD: (objectSid upper-cased, objectGUID)."""
    sid = user.on_premises_security_identifier
    immutable = user.on_premises_immutable_id
    return (sid.upper() if sid else None, immutable_id_to_guid(immutable) if immutable else None)


# 2. Facts ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DirectoryFacts:
    """What AD said, read once per plan by the gathering step."""

    anchor_attributes: tuple[str, ...]  # where writeback writes its anchor (schema-dependent)
    accounts: ResolvedAccounts = field(default_factory=ResolvedAccounts)
    managed: tuple[DirectoryGroup, ...] = ()  # managed groups read (every one, or those asked for)
    taken_names: Mapping[str, str] = field(default_factory=dict)  # lower-cased sAMAccountName -> holder DN
    existing_dns: frozenset[str] = frozenset()  # normalised DNs (among those asked) that exist
    # Attributes writeback maps that this forest's schema lacks (Exchange's, without Exchange's schema):
    # left out of every desired group, and said once in the plan.
    missing_attributes: frozenset[str] = frozenset()


# 3. Desire -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DesiredState:
    groups: Mapping[str, DesiredGroup]
    actual: tuple[DirectoryGroup, ...]  # the managed AD groups this plan compares against
    cloud: Mapping[str, CloudGroup]
    out_of_scope: Mapping[str, str]
    warnings: tuple[str, ...] = ()  # said once in the plan (e.g. attributes the schema lacks)


def desired_state(intents: Intents, facts: DirectoryFacts, settings: Settings) -> DesiredState:
    """The AD groups writeback wants, each with its members resolved and every omission explained.

    A nested cloud group is referenced only when that child is itself written (no error, not over the cap)
    and its DN is its own managed DN or free; otherwise the parent is still written without it, and the child
    is reported on the parent with the reason.
    """
    managed: dict[str, DirectoryGroup] = {}
    duplicates: set[str] = set()
    for g in facts.managed:
        if g.cloud_id:
            if g.cloud_id in managed:
                duplicates.add(g.cloud_id)
            managed[g.cloud_id] = g
    resolver = _Resolver(intents, facts, settings, managed, duplicates)
    groups = {key: resolver.desired(key) for key in sorted(intents.groups)}
    prefixes = tuple(intents.prefixes)
    actual = tuple(g for g in facts.managed if g.anchor and g.anchor.startswith(prefixes))
    if intents.reconciled is not None:
        actual = tuple(g for g in actual if g.cloud_id in intents.reconciled)
    warnings: list[str] = []
    if resolver.left_out:
        names = ", ".join(sorted(resolver.left_out))
        warnings.append(
            f"this forest's schema has no {names}: {len(resolver.left_out_groups)} mail group(s) are written "
            "with the attributes the schema holds (mail, proxyAddresses, displayName where present) but without "
            "these. Extend the schema with Exchange's (Exchange Server setup /PrepareSchema) to write them"
        )
    return DesiredState(groups, actual, intents.cloud_groups, intents.out_of_scope, tuple(warnings))


class _Resolver:
    """Resolves intents into desired groups, children before the parents that reference them."""

    def __init__(
        self,
        intents: Intents,
        facts: DirectoryFacts,
        settings: Settings,
        managed: Mapping[str, DirectoryGroup],
        duplicates: Collection[str],
    ) -> None:
        self.intents, self.facts, self.settings = intents, facts, settings
        self.managed, self.duplicates = managed, duplicates
        self.sam = self._sam_names()
        self.managed_dns = {normalize_dn(g.dn) for g in facts.managed}
        self.done: dict[str, DesiredGroup] = {}
        self.visiting: set[str] = set()
        self.left_out: set[str] = set()  # wanted attributes the schema lacks
        self.left_out_groups: set[str] = set()

    def _sam_names(self) -> dict[str, str]:
        existing: dict[str, str] = {}
        candidates: dict[str, list[str]] = {}
        for key, intent in self.intents.groups.items():
            current = self.managed.get(key)
            if current and current.sam_account_name and not intent.sam_mapped:
                existing[key] = current.sam_account_name
            else:
                candidates[key] = list(intent.sam_candidates)
        own = {normalize_dn(g.dn) for g in self.managed.values()}
        foreign = {name for name, dn in self.facts.taken_names.items() if normalize_dn(dn) not in own}
        for key in candidates:  # a name held by the group itself is not a collision
            current = self.managed.get(key)
            if current and current.sam_account_name:
                foreign.discard(current.sam_account_name.lower())
        return assign_sam_account_names(candidates, existing, foreign)

    def desired(self, key: str) -> DesiredGroup:
        if key not in self.done:
            self.visiting.add(key)
            self.done[key] = self._desire(self.intents.groups[key])
            self.visiting.discard(key)
        return self.done[key]

    def _desire(self, intent: Intent) -> DesiredGroup:
        error = intent.error
        current = self.managed.get(intent.key)
        dn = intent.dn
        if error is None and intent.key in self.duplicates:
            error = f"several AD groups carry anchor {intent.anchor}; writeback will not touch them until one remains"
        if error is None and current is not None and current.group_type != intent.group_type:
            refused = group_type_change_refused(current.group_type, intent.group_type)
            if refused:
                error = f"{current.dn}: {refused}"
        if error is None and _occupied(dn, current, self.facts.existing_dns, self.managed_dns):
            error = (
                f"{dn} already exists and is not managed by writeback (it has no {intent.anchor} anchor); "
                "writeback will not modify it. Rename or move that object, or change mapping.cn / "
                "mapping.target_ou"
            )
        members, skipped = self._cloud_members(intent)
        members |= intent.member_dns
        cap = self.settings.members.max_members
        if error is None and len(members) > cap:
            error = (
                f"{len(members)} members exceeds members.max_members ({cap}); "
                "the group is skipped (raise members.max_members to write it)"
            )
        attrs: dict[str, AttributeValue] = {a: intent.anchor for a in self.facts.anchor_attributes}
        missing = self.facts.missing_attributes
        attrs.update((k, v) for k, v in intent.attributes.items() if k not in missing)
        if dropped := {k for k, v in intent.attributes.items() if k in missing and v is not None}:
            self.left_out |= dropped
            self.left_out_groups.add(intent.key)
        return DesiredGroup(
            cloud_id=intent.key,
            anchor=intent.anchor,
            cn=intent.cn,
            parent_dn=intent.parent_dn,
            sam_account_name=self.sam[intent.key],
            group_type=intent.group_type,
            attributes=attrs,
            members=frozenset(members),
            skipped=tuple(sorted(skipped)),
            error=error,
            redacted=intent.redacted,
        )

    def _cloud_members(self, intent: Intent) -> tuple[set[str], list[SkippedMember]]:
        members: set[str] = set()
        skipped: list[SkippedMember] = []
        for ref in intent.members:
            if ref.kind == "user":
                found = self._user(self.intents.cloud_users.get(ref.id))
            elif ref.kind == "group":
                found = self._child(ref.id, intent.group_type)
            else:
                found = _Skip(SkipReason.UNSUPPORTED_KIND.value)
            if isinstance(found, _Skip):
                skipped.append(SkippedMember(ref.id, ref.kind, found.reason, self._member_name(ref)))
            else:
                members.add(found)
        return members, skipped

    def _user(self, user: CloudUser | None) -> str | _Skip:
        """A cloud user's AD DN, found by the keys of ``members.match_order`` in that order."""
        if user is None:
            return _Skip(SkipReason.UNKNOWN_OBJECT.value)
        if user.deleted:
            return _Skip(SkipReason.SOFT_DELETED.value)
        if not user.is_synced:
            # A guest (B2B) user has its own reason: it can never have an AD account, a cloud member can get one.
            return _Skip((SkipReason.GUEST if user.is_guest else SkipReason.CLOUD_ONLY).value)
        sid, guid = account_keys(user)
        for how in self.settings.members.match_order:
            acct = None
            if how == "sid" and sid:
                acct = self.facts.accounts.by_sid.get(sid)
            elif how == "immutable_id" and guid:
                acct = self.facts.accounts.by_guid.get(guid)
            if acct:
                return acct.dn
        return _Skip(SkipReason.NOT_FOUND_IN_AD.value)

    def _child(self, child_id: str, parent_type: int) -> str | _Skip:
        """The DN to reference a nested cloud group at, or why it is not referenced."""
        if not self.settings.members.nested_groups or child_id not in self.intents.in_scope:
            return _Skip(SkipReason.GROUP_OUT_OF_SCOPE.value)
        if child_id in self.visiting:
            return _Skip("nested group is part of a nesting cycle")
        if child_id in self.intents.groups:
            child = self.desired(child_id)
            if child.error is not None:
                return _Skip(f"nested group is not written: {child.error}")
            child_type, child_dn = child.group_type, child.dn
        elif (current := self.managed.get(child_id)) is not None and child_id not in self.duplicates:
            # Not reconciled in this (incremental) plan: referenced where AD holds it now.
            child_type, child_dn = current.group_type, current.dn
        else:
            return _Skip("nested group is not written to AD yet")
        if not nesting_allowed(parent_type, child_type):
            return _Skip(SkipReason.LOCAL_IN_UNIVERSAL.value)
        return child_dn

    def _member_name(self, ref: MemberRef) -> str:
        if ref.kind == "user" and (u := self.intents.cloud_users.get(ref.id)):
            return u.user_principal_name or u.display_name or ""
        if ref.kind == "group" and (g := self.intents.cloud_groups.get(ref.id)):
            return g.display_name
        return ""


@dataclass(frozen=True, slots=True)
class _Skip:
    reason: str


def _occupied(
    dn: str, current: DirectoryGroup | None, existing: Collection[str], managed_dns: Collection[str]
) -> bool:
    """True when ``dn`` is wanted but held by an object writeback does not own."""
    key = normalize_dn(dn)
    if current is not None and normalize_dn(current.dn) == key:
        return False
    return key in existing and key not in managed_dns


def _rule_ready(users: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """AD users with ``manager`` turned from a DN into the manager's id, as the rule language expects."""
    ids = {str(u.get("onPremisesDistinguishedName", "")).lower(): u.get("id") for u in users}
    out: list[dict[str, Any]] = []
    for u in users:
        d = dict(u)
        manager = str(u.get("managerDn") or "").lower()
        d["manager"] = ids.get(manager) if manager else None
        out.append(d)
    return out
