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
occupied-DN check, the member cap, AD's nesting rule (8518), when a nested group may be referenced, and which
managed AD groups are left alone (several carrying one anchor, protected ones: :func:`left_alone`). Every
per-group error is decided here; the planner only diffs. This module reads nothing, writes nothing and looks at
no clock.

Taking over, never duplicating (issue 13):

- A group Microsoft's tools wrote (Connect v1/v2 or Cloud Sync: ``adminDescription = Group_<objectId>``) is
  found by that anchor and adopted in place; the first apply stamps writeback's anchor. With
  ``mapping.keep_adopted_names`` (the default) it keeps its CN, OU and sAMAccountName.
- An SOA-converted group (``onPremisesSyncBehavior.isCloudManaged`` true) is written into its *original* AD
  group, found by the SID Graph kept (``onPremisesSecurityIdentifier``): same object, and by default the same
  DN, CN, sAMAccountName and groupType (scope). Until writeback stamps its anchor the original is not a managed
  group, so the desired state hands the planner the original as the group's current state: the first apply is
  an UPDATE with the anchor, never a CREATE. A missing original is an error (nothing is created) unless
  ``mapping.create_missing_originals``.
- A group whose source of authority is AD (synced, or an SOA conversion rolled back) is never written. If
  writeback manages its AD group under the same cloud id (a rolled-back conversion), writeback *releases* it:
  the planner removes only the anchor writeback stamped (see :func:`writeback.core.planning.compute_plan`).
  Nested in a cloud group, such a group is referenced as its AD original (matched by SID), within 8518.
- Loop guard: a group synced from AD whose SID is that of a group writeback manages under another cloud id is
  the copy Connect or Cloud Sync made of writeback's own output; it is reported and never written.

Users, the second kind of target (issue 24, ``[users] provision = "soa"``), go through the same steps, the
way SOA-converted groups do:

- A synced user whose source of authority moved to the cloud (``CloudUser.soa_converted``) and who is a member
  of an in-scope group becomes a :class:`~writeback.core.model.UserIntent`. Scope is by group, as Cloud Sync's
  provisioning to AD scopes by its scoping filters, and as writeback scopes everything else: turning soa on
  rewrites only the accounts of people in the groups an operator chose, and a user's change in the cloud marks
  the groups holding it, so it rides the same incremental plan as they do.
- Its original AD account is found by ``onPremisesSecurityIdentifier`` -> ``objectSid`` only, never by UPN
  or mail (a UPN match is a takeover path: Microsoft's "How matching works" for user SOA, and
  ``blockCloudObjectTakeoverThroughHardMatchEnabled`` for the reverse direction). Its mapped attributes and
  the anchor ``msDS-ExternalDirectoryObjectId = User_<objectId>`` are written there; its DN, names, SID,
  password and userAccountControl never. ``adminDescription`` is not stamped: Connect's inbound rules skip
  an account whose adminDescription starts with ``User_``, so Connect would see the account leave its scope
  and delete what it synced from it, and a rollback could not bring it back (an SOA user needs no such
  guard: Entra no longer takes Connect's changes for it). Without msDS-ExternalDirectoryObjectId in the
  schema, SOA users are reported and not written.
- Reported, never written: no account with that SID in the domain, an object of that SID that is not a user,
  an AdminSDHolder-protected or well-known account (:mod:`writeback.core.protected`), an account anchored
  ``User_`` for another cloud user, and several accounts carrying one user's anchor.
- A rollback (AD masters the user again) releases the account: only the anchor writeback stamps is removed.
- An account writeback created (``provision = "cloud_members"``) whose user is in no in-scope group any more
  follows ``on_leave`` (deleted, behind the delete threshold, when the user was hard-deleted). A full plan sees
  every in-scope group; a partial one (quick reconcile, incremental cycle, one group) names the accounts its
  reconciled AD groups hold whose user no planned group wants (:func:`leaving_users`), and the application
  asks the cloud replica, which holds every group's members, about those users only; the decision is then
  made here from that complete answer (:func:`with_replica_memberships`), never from the planned groups alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from writeback.config import Settings, UserSettings
from writeback.core.dn import domain_dns_name, is_within, join_rdn, normalize_dn, parent_dn, rdn_value
from writeback.core.mapping import (
    ADMIN_DESCRIPTION,
    SCOPE_BITS,
    Mapper,
    UserMapper,
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
    USER_ANCHOR_PREFIX,
    AttributeValue,
    CloudGroup,
    CloudSnapshot,
    CloudUser,
    DesiredGroup,
    DesiredUser,
    DirectoryAccount,
    DirectoryGroup,
    DirectoryUser,
    GroupError,
    Intent,
    MemberRef,
    SkippedMember,
    SkipReason,
    UserIntent,
)
from writeback.core.ports import ResolvedAccounts
from writeback.core.rules import RuleContext, compile_rule
from writeback.core.scope import out_of_scope_reason, source_of_authority_reason


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
    # Cloud groups whose source of authority is AD (synced, or an SOA conversion rolled back or unknown):
    # id -> their AD group's SID (upper-cased). Nested references, releases and the loop guard use it.
    ad_mastered: Mapping[str, str] = field(default_factory=dict)
    # Of those, the ones Graph says AD masters (synced, or isCloudManaged false): their managed AD group, if
    # any, is released. The others (onPremisesSyncBehavior unread) are left exactly as they are.
    released: frozenset[str] = frozenset()
    # Users ([users] provision = "soa"): the SOA users of the in-scope groups planned, by cloud id; the cloud
    # users whose source of authority is AD (synced, or a user SOA rolled back): id -> SID upper-cased, whose
    # account writeback releases if it anchored it; and whether users are written at all.
    users: Mapping[str, UserIntent] = field(default_factory=dict)
    users_released: Mapping[str, str] = field(default_factory=dict)
    users_enabled: bool = False
    # A partial plan: the users whose account writeback created that the whole replica says are in no
    # in-scope group any more (:func:`with_replica_memberships`): their accounts leave as in a deep plan.
    users_left: frozenset[str] = frozenset()

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
    ad_mastered: dict[str, str] = {}
    released: set[str] = set()
    for gid, g in snapshot.groups.items():
        reason = source_of_authority_reason(g) or out_of_scope_reason(
            g, settings.scope, snapshot.unified_writeback_default
        )
        if g.from_ad and not g.soa_converted and not g.deleted and g.on_premises_security_identifier:
            ad_mastered[gid] = g.on_premises_security_identifier.upper()
            if g.on_premises_sync_enabled or g.is_cloud_managed is False:
                released.add(gid)
        if reason is None:
            in_scope.add(gid)
        else:
            out[gid] = reason
    keys = in_scope if only is None else in_scope & set(only)
    groups = {gid: _cloud_intent(mapper, snapshot.groups[gid]) for gid in sorted(keys)}
    wanted = snapshot.groups if only is None else {g: c for g, c in snapshot.groups.items() if g in only}
    # What the cloud says about each group (name, soft delete) without its members: the intents carry those,
    # and a second copy of 1,000,000 memberships would be held to the end of every plan (issue 17).
    cloud = {gid: without_members(g) for gid, g in wanted.items()}
    reconciled = None if only is None else frozenset(k for k in only if not k.startswith(DYNAMIC_KEY_PREFIX))
    users, users_released = _user_intents(snapshot, settings, groups.values())
    return Intents(
        groups,
        snapshot.users,
        cloud,
        frozenset(in_scope),
        out,
        reconciled,
        frozenset({ANCHOR_PREFIX}),
        ad_mastered,
        frozenset(released),
        users,
        users_released,
        settings.users.enabled,
    )


def _user_intents(
    snapshot: CloudSnapshot, settings: Settings, groups: Iterable[Intent]
) -> tuple[dict[str, UserIntent], dict[str, str]]:
    """The users of ``[users] provision = "soa"``: the SOA users among the direct members of ``groups`` (the
    in-scope groups planned), and the cloud users AD masters (id -> SID) whose accounts writeback releases."""
    if settings.users.provision not in ("soa", "cloud_members"):
        return {}, {}
    mapper = UserMapper(settings.users.attributes)
    members = sorted({ref.id for intent in groups for ref in intent.members if ref.kind == "user"})
    users: dict[str, UserIntent] = {}
    for uid in members:
        if (intent := user_intent(snapshot.users.get(uid), settings.users, mapper)) is not None:
            users[uid] = intent
    released = {
        uid: sid.upper()
        for uid, u in snapshot.users.items()
        if (sid := u.on_premises_security_identifier)
        and not u.deleted
        and (u.on_premises_sync_enabled or u.is_cloud_managed is False)
    }
    return users, released


def user_intent(user: CloudUser | None, settings: UserSettings, mapper: UserMapper) -> UserIntent | None:
    """The intent of ``user``, a direct member of an in-scope group, or None when ``[users]`` writes no account
    for it: the one rule of which users are written (an SOA user into its original account; with
    "cloud_members" a cloud-only member, or a guest with ``guests``, into the account writeback creates)."""
    if user is None or user.deleted:  # a soft-deleted user never gets a new account
        return None
    sid = user.on_premises_security_identifier
    if sid and user.soa_converted and not user.is_guest:
        return mapper.intent(user, sid.upper())
    creates = settings.creates_accounts and settings.target_ou
    if creates and not user.is_synced and (settings.guests or not user.is_guest):
        return mapper.member_intent(user, str(settings.target_ou))
    return None


def leaving_users(intents: Intents, facts: DirectoryFacts, pending: Collection[str] = ()) -> frozenset[str]:
    """A partial plan's question to the whole cloud replica: the users whose account writeback created that
    may have left every in-scope group, so their ``on_leave`` (or a hard delete) is decided now rather than
    at the next deep reconcile.

    They are the accounts a reconciled AD group holds now while no in-scope group this plan reconciles
    holds their user any more (a user leaves every group only through a change to a group that held it, and
    that change makes the group pending, so planned), and ``pending``: users such a decision named before
    whose change was held or failed (their account has since left the AD group, where no later partial plan
    would see it). Being in no *planned* group is not enough to leave: the replica, which holds every
    group's members, answers for all of them (:func:`with_replica_memberships`). Empty for a full plan (it
    sees every in-scope group) and when no account writeback created was read."""
    if not intents.partial or not intents.users_enabled or not facts.managed_users:
        return frozenset()
    created = {
        normalize_dn(a.dn): cid
        for a in facts.managed_users
        if (cid := a.cloud_id) and created_by_writeback(a) and cid not in intents.users
    }
    if not created:
        return frozenset()
    reconciled = intents.reconciled or frozenset()
    found = {cid for cid in created.values() if cid in pending}
    # Only member values under an OU holding such an account are normalised (a cheap suffix test first: a big
    # group's synced members, elsewhere, cost no DN parsing).
    ous = tuple({parent_dn(a.dn).lower() for a in facts.managed_users if normalize_dn(a.dn) in created})
    for group in facts.managed:
        if group.cloud_id not in reconciled:
            continue  # a nested child read to be referenced, not compared
        for member in group.members:
            if member.lower().endswith(ous) and (cid := created.get(normalize_dn(member))) is not None:
                found.add(cid)
    return frozenset(found)


def with_replica_memberships(
    intents: Intents,
    settings: UserSettings,
    asked: Collection[str],
    users: Mapping[str, CloudUser],
    holding: Mapping[str, Collection[str]],
) -> Intents:
    """``intents`` told what the whole replica says of the users :func:`leaving_users` asked about: ``users``
    (id -> the cloud user; an id the replica does not hold was hard-deleted) and ``holding`` (id -> every
    group that holds it directly). A user some in-scope group holds, and whom :func:`user_intent` writes,
    keeps its account as it is (the groups holding it are planned when they change); every other one has
    left, and :func:`desired_users` decides its account as a deep plan would: ``on_leave``, or a delete
    (behind the delete threshold) when it was hard-deleted."""
    mapper = UserMapper(settings.attributes)
    left: set[str] = set()
    for uid in asked:
        user = users.get(uid)
        in_scope = any(g in intents.in_scope for g in holding.get(uid, ()))
        if in_scope and user_intent(user, settings, mapper) is not None:
            continue
        left.add(uid)
    return replace(
        intents,
        cloud_users={**intents.cloud_users, **{k: v for k, v in users.items() if k in left}},
        users_left=intents.users_left | left,
    )


def without_members(group: CloudGroup) -> CloudGroup:
    """``group`` with no members (itself when it has none)."""
    return replace(group, members=frozenset()) if group.members else group


def _cloud_intent(mapper: Mapper, group: CloudGroup) -> Intent:
    intent = mapper.intent(group)
    sid = group.on_premises_security_identifier
    return replace(intent, original_sid=sid.upper()) if group.soa_converted and sid else intent


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
            {**out.ad_mastered, **s.ad_mastered},
            out.released | s.released,
            {**out.users, **s.users},
            {**out.users_released, **s.users_released},
            out.users_enabled or s.users_enabled,
            out.users_left | s.users_left,
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
    # Taking over: SIDs of AD groups to find (SOA originals, AD-mastered groups nested in cloud groups), and
    # the domain writeback writes (an original outside it is found through the GC but cannot be written).
    group_sids: frozenset[str] = frozenset()
    base_dn: str = ""
    # Users: the SIDs of the user accounts to read (SOA users' originals, and accounts writeback may release),
    # and whether to read every account anchored User_ (a full plan with users on).
    user_sids: frozenset[str] = frozenset()
    every_managed_user: bool = False
    # Accounts writeback creates (cloud_members): the sAMAccountNames, UPNs and DNs they may get, whose holders
    # matter (a name held by an object writeback did not create is never taken: another one is picked).
    user_names: frozenset[str] = frozenset()
    user_upns: frozenset[str] = frozenset()
    user_dns: frozenset[str] = frozenset()
    # A partial plan with cloud_members: every managed account is read as well when a planned group read from
    # AD holds a member under this OU (users.target_ou): an account writeback created may be leaving it.
    users_ou: str = ""

    def reads_managed_users(self, managed: Iterable[DirectoryGroup]) -> bool:
        """Whether to read every account anchored User_, once the planned groups are read."""
        if self.every_managed_user:
            return True
        if not self.users_ou:
            return False
        suffix = "," + normalize_dn(self.users_ou)
        return any(normalize_dn(m).endswith(suffix) for g in managed for m in g.members)

    def names_to_check(self, managed: Iterable[DirectoryGroup]) -> set[str]:
        """The candidate names whose holder matters, once the managed groups are known: a group that keeps
        the name it has needs none checked."""
        keeps = {g.cloud_id for g in managed if g.cloud_id and g.sam_account_name} - self.sam_mapped
        return {n for k, names in self.sam_candidates.items() if k not in keeps for n in names}

    def dns_to_check(self, managed: Iterable[DirectoryGroup]) -> set[str]:
        """The desired DNs not already held by the group itself: someone else may hold them."""
        at = {g.cloud_id: normalize_dn(g.dn) for g in managed if g.cloud_id}
        return {dn for k, dn in self.dns.items() if at.get(k) != normalize_dn(dn)}


def questions(
    intents: Intents,
    settings: Settings,
    applied_dns: Mapping[str, str],
    written_users: Collection[str] = (),
    leaving: Collection[str] = (),
) -> Questions:
    """What to read from AD for ``intents``. ``applied_dns``: where each group was last written;
    ``written_users``: the cloud users whose account writeback wrote (a partial plan reads those of them AD
    masters again, to release them; a full plan reads every account anchored ``User_``); ``leaving``: users
    whose leave an earlier apply held or could not write (a partial plan reads every managed account to plan
    it again: :func:`leaving_users`)."""
    accounts: set[tuple[str | None, str | None]] = set()
    asked: set[str] = (
        set()
    )  # users whose keys are in ``accounts``: each user's keys computed once, not per group
    groups: dict[str, tuple[str, ...]] = {}
    group_sids: set[str] = set()
    for intent in intents.groups.values():
        if intent.original_sid:
            group_sids.add(intent.original_sid)
        for ref in intent.members:
            if ref.kind != "user" or ref.id in asked:
                user = None
            else:
                asked.add(ref.id)
                user = intents.cloud_users.get(ref.id)
            if user is not None and user.is_synced and not user.deleted:
                accounts.add(account_keys(user))
            if ref.kind == "group" and ref.id in intents.ad_mastered and settings.members.nested_groups:
                group_sids.add(intents.ad_mastered[ref.id])
    if intents.reconciled is not None:
        for key in intents.reconciled:
            wanted = intents.groups.get(key)
            groups[key] = tuple(dict.fromkeys(d for d in (applied_dns.get(key), wanted and wanted.dn) if d))
        # nested children not planned here are referenced where they are
        for intent in intents.groups.values():
            for ref in intent.members:
                if ref.kind == "group" and ref.id not in groups and ref.id in applied_dns:
                    groups[ref.id] = (applied_dns[ref.id],)
    creating = [u for u in intents.users.values() if u.create]
    domain = domain_dns_name(settings.target.base_dn)
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
        group_sids=frozenset(group_sids),
        base_dn=settings.target.base_dn,
        user_sids=frozenset(
            {u.sid for u in intents.users.values() if u.sid}
            | {sid for uid, sid in intents.users_released.items() if intents.partial and uid in written_users}
        ),
        # Accounts writeback created are found by their anchor only: every managed account is read whenever
        # accounts are created, partial plans too (a crash between a create and its log row must never lead
        # to a second account), and when a leave waits to be planned again.
        every_managed_user=intents.users_enabled
        and (not intents.partial or bool(creating) or bool(leaving and settings.users.creates_accounts)),
        user_names=frozenset(n for u in creating for n in u.sam_candidates),
        user_upns=frozenset(
            f"{n}@{domain}" for u in creating for n in (u.upn_prefix, *u.sam_candidates[-1:]) if domain
        ),
        user_dns=frozenset(u.dn for u in creating),
        # ... and when a planned group holds a member where such accounts live (its user may have left).
        users_ou=str(settings.users.target_ou or "")
        if intents.users_enabled and intents.partial and settings.users.creates_accounts
        else "",
    )


def account_keys(user: CloudUser) -> tuple[str | None, str | None]:
    """The keys a synced user is found by in AD: (objectSid upper-cased, objectGUID)."""
    sid = user.on_premises_security_identifier
    immutable = user.on_premises_immutable_id
    # sid.upper() makes a new string even when the SID is upper-case already (as Graph returns it).
    sid = (sid if sid.isupper() else sid.upper()) if sid else None
    return (sid, immutable_id_to_guid(immutable) if immutable else None)


# 2. Facts ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DirectoryFacts:
    """What AD said, read once per plan by the gathering step."""

    anchor_attributes: tuple[str, ...]  # where writeback writes its anchor (schema-dependent)
    accounts: ResolvedAccounts = field(default_factory=ResolvedAccounts)
    managed: tuple[DirectoryGroup, ...] = ()  # managed groups read (every one, or those asked for)
    taken_names: Mapping[str, str] = field(default_factory=dict)  # lower-cased sAMAccountName -> holder DN
    existing_dns: frozenset[str] = frozenset()  # normalised DNs (among those asked) that exist
    # Taking over: the groups of ``Questions.group_sids`` found anywhere in the forest (upper-cased SID ->
    # account), and those in the domain read in full (SID -> group, anchored or not).
    groups_by_sid: Mapping[str, DirectoryAccount] = field(default_factory=dict)
    originals: Mapping[str, DirectoryGroup] = field(default_factory=dict)
    # Attributes writeback maps that this forest's schema lacks (Exchange's, without Exchange's schema):
    # left out of every desired group, and said once in the plan.
    missing_attributes: frozenset[str] = frozenset()
    # Users: the accounts of ``Questions.user_sids`` found in the domain (upper-cased SID -> account, whatever
    # its class), every account anchored User_ (a full plan), and where a user anchor is written (() when the
    # schema has no msDS-ExternalDirectoryObjectId: then no user is written).
    users_by_sid: Mapping[str, DirectoryUser] = field(default_factory=dict)
    managed_users: tuple[DirectoryUser, ...] = ()
    user_anchor_attributes: tuple[str, ...] = ()
    # Accounts writeback creates: the holders of ``Questions.user_names`` (lower-cased sAMAccountName -> DN, in
    # the domain), of ``user_upns`` (lower-cased UPN -> DN, in the forest through the GC when configured), and
    # which of ``user_dns`` exist (normalised).
    user_taken_names: Mapping[str, str] = field(default_factory=dict)
    taken_upns: Mapping[str, str] = field(default_factory=dict)
    user_existing_dns: frozenset[str] = frozenset()


# 3. Desire -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DesiredState:
    """Everything one plan compares: :func:`writeback.core.planning.compute_plan` diffs it against nothing else.

    Every per-group error is decided here, so the planner only diffs: a desired group that cannot be written
    carries ``error``; a managed AD group no desired group speaks for that must be left alone is in ``errors``.
    ``actual`` holds at most one AD group per key, none of them left alone."""

    groups: Mapping[str, DesiredGroup]
    actual: tuple[DirectoryGroup, ...] = ()  # the managed AD groups this plan compares against
    cloud: Mapping[str, CloudGroup] = field(default_factory=dict)
    out_of_scope: Mapping[str, str] = field(default_factory=dict)
    # Managed groups whose cloud group's source of authority went back to AD: writeback lets go of them.
    released: tuple[DirectoryGroup, ...] = ()
    # Managed groups whose cloud group came from AD while Graph did not say who masters it now: untouched.
    untouched: tuple[DirectoryGroup, ...] = ()
    loops: Mapping[str, str] = field(default_factory=dict)  # cloud id of a synced copy -> the loop report
    warnings: tuple[str, ...] = ()  # said once in the plan (e.g. attributes the schema lacks)
    # Where writeback writes its anchor: a released group loses the anchor it holds in these.
    anchor_attributes: tuple[str, ...] = ()
    # Managed AD groups of keys not in ``groups`` that the plan leaves alone (several carry one anchor, or
    # protected): reported, never changed or deleted.
    errors: tuple[GroupError, ...] = ()
    # Users: the desired accounts (each with its error, if any), the AD account each writable one is written
    # into, the accounts released (AD masters their user again), managed accounts kept as they are with the
    # reason, and where the user anchor lives.
    users: Mapping[str, DesiredUser] = field(default_factory=dict)
    user_actual: Mapping[str, DirectoryUser] = field(default_factory=dict)
    users_released: tuple[DirectoryUser, ...] = ()
    users_kept: tuple[tuple[DirectoryUser, str], ...] = ()
    user_anchor_attributes: tuple[str, ...] = ()
    # Accounts writeback created that it deletes (their cloud user was hard-deleted, or left with
    # ``on_leave = "delete"``), with why.
    users_deleted: tuple[tuple[DirectoryUser, str], ...] = ()


def desired_state(intents: Intents, facts: DirectoryFacts, settings: Settings) -> DesiredState:
    """The AD groups writeback wants, each with its members resolved and every omission explained.

    A nested cloud group is referenced only when that child is itself written (no error, not over the cap)
    and its DN is its own managed DN or free; otherwise the parent is still written without it, and the child
    is reported on the parent with the reason.
    """
    managed = {g.cloud_id: g for g in facts.managed if g.cloud_id}
    refused = left_alone(facts.managed)
    adopted = _originals(intents, facts, managed)
    resolver = _Resolver(intents, facts, settings, managed, refused, adopted)
    # Users before groups: a cloud-only member that has (or gets, in this plan) an account is referenced at it.
    who = desired_users(intents, facts, settings.users, frozenset(n.lower() for n in resolver.sam.values()))
    resolver.member_accounts = {
        k: d.dn for k, d in who.users.items() if d.create and d.error is None and d.dn
    }
    groups = {key: resolver.desired(key) for key in sorted(intents.groups)}
    prefixes = tuple(intents.prefixes)
    actual = tuple(g for g in facts.managed if g.anchor and g.anchor.startswith(prefixes))
    if intents.reconciled is not None:
        actual = tuple(g for g in actual if g.cloud_id in intents.reconciled)
    # An SOA original writeback has not stamped yet is the group's current state: the plan updates it.
    actual += tuple(g for key, g in adopted.items() if key not in managed and groups[key].error is None)
    # A group whose source of authority is AD is never deleted, whatever safety.on_out_of_scope says. A
    # protected one is not even released (writeback never modifies it).
    from_ad = tuple(g for g in actual if g.cloud_id in intents.ad_mastered and g.cloud_id not in groups)
    released = tuple(g for g in from_ad if g.cloud_id in intents.released and not g.protected)
    untouched = tuple(g for g in from_ad if g.cloud_id not in intents.released)
    actual = tuple(g for g in actual if g.cloud_id not in intents.ad_mastered or g.cloud_id in groups)
    # Groups left alone leave the comparison: a desired one carries the error, the others are reported here.
    left = {g.cloud_id for g in actual if g.cloud_id and g.cloud_id in refused and g.cloud_id not in groups}
    errors = tuple(replace(refused[k], name=_name_of(k, intents, managed[k])) for k in sorted(left))
    actual = tuple(g for g in actual if g.cloud_id not in refused)
    warnings: list[str] = []
    if resolver.left_out:
        names = ", ".join(sorted(resolver.left_out))
        warnings.append(
            f"this forest's schema has no {names}: {len(resolver.left_out_groups)} mail group(s) are written "
            "with the attributes the schema holds (mail, proxyAddresses, displayName where present) but without "
            "these. Extend the schema with Exchange's (Exchange Server setup /PrepareSchema) to write them"
        )
    return DesiredState(
        groups,
        actual,
        intents.cloud_groups,
        intents.out_of_scope,
        released,
        untouched,
        _loops(intents, facts),
        tuple(warnings),
        facts.anchor_attributes,
        errors,
        who.users,
        who.actual,
        who.released,
        who.kept,
        facts.user_anchor_attributes,
        who.deleted,
    )


@dataclass(frozen=True)
class DesiredUsers:
    """What :func:`desired_users` decides (see the user fields of :class:`DesiredState`)."""

    users: Mapping[str, DesiredUser] = field(default_factory=dict)
    actual: Mapping[str, DirectoryUser] = field(default_factory=dict)
    released: tuple[DirectoryUser, ...] = ()
    kept: tuple[tuple[DirectoryUser, str], ...] = ()
    deleted: tuple[tuple[DirectoryUser, str], ...] = ()


def desired_users(
    intents: Intents,
    facts: DirectoryFacts,
    settings: UserSettings | None = None,
    group_names: Collection[str] = (),
) -> DesiredUsers:
    """The desired user accounts, the account each writable one goes into, the accounts to release, the
    managed accounts kept as they are (with why) and the created accounts to delete. The one place every rule
    about users is decided. ``group_names``: the (lower-cased) sAMAccountNames this plan gives groups, which
    share the domain's namespace with users."""
    if not intents.users_enabled:
        return DesiredUsers()
    settings = settings or UserSettings()
    accounts: dict[str, DirectoryUser] = {}
    for a in (*facts.managed_users, *facts.users_by_sid.values()):
        accounts.setdefault(normalize_dn(a.dn), a)
    by_anchor: dict[str, list[DirectoryUser]] = {}
    for a in accounts.values():
        if a.cloud_id:
            by_anchor.setdefault(a.cloud_id, []).append(a)
    anchors = facts.user_anchor_attributes
    users: dict[str, DesiredUser] = {}
    actual: dict[str, DirectoryUser] = {}
    deleted: list[tuple[DirectoryUser, str]] = []
    members = _MemberAccounts(intents, facts, settings, by_anchor, group_names)
    for key in sorted(intents.users):
        intent = intents.users[key]
        if intent.create:
            members.desire(intent, users, actual, deleted)
            continue
        account = facts.users_by_sid.get(intent.sid)
        error = _user_error(intent, account, by_anchor.get(key, []), anchors)
        attrs: dict[str, AttributeValue] = {a: intent.anchor for a in anchors}
        attrs.update(intent.attributes)
        users[key] = DesiredUser(
            key, intent.anchor, account.dn if account else "", intent.name, attrs, error, intent.redacted
        )
        if error is None and account is not None:
            actual[key] = account
    released: list[DirectoryUser] = []
    kept: list[tuple[DirectoryUser, str]] = []
    # An SOA user's original that carries another user's anchor is reported with that user (its error).
    originals = {normalize_dn(d.dn) for d in users.values() if d.dn}
    for cid in sorted(by_anchor.keys() - users.keys() - intents.users.keys()):
        found = [a for a in by_anchor[cid] if normalize_dn(a.dn) not in originals]
        if not found:
            continue
        if intents.partial and cid not in intents.users_left:
            # A partial plan reads every managed account to match creates by anchor and to find the accounts
            # whose user left: the others, of users it does not plan, are neither released nor left.
            if cid in intents.users_released:
                released.extend(a for a in found[:1] if len(found) == 1 and not a.protected)
            continue
        if len(found) == 1 and created_by_writeback(found[0]) and not found[0].protected:
            members.leave(found[0], users, actual, deleted, kept)
            continue
        if intents.partial:
            continue  # left is only ever said of an account writeback created; anything else waits for a deep plan
        note = _kept_user_note(cid, found, intents)
        if note is None:
            released.append(found[0])
        else:
            kept.extend((a, note) for a in found)
    return DesiredUsers(users, actual, tuple(released), tuple(kept), tuple(deleted))


def managed_accounts(state: DesiredState) -> dict[str, int]:
    """The user accounts writeback manages as a full plan found them in AD, for the metrics: "created" (the
    accounts of cloud-only members, :func:`created_by_writeback`), "soa" (SOA users' original accounts it
    writes, anchored or taken over by this plan) and "created_disabled" (of the created ones, those with
    ACCOUNTDISABLE now). Accounts kept as they are or about to be deleted still count; released ones do not."""
    found = {
        normalize_dn(a.dn): a
        for a in (
            *state.user_actual.values(),
            *(a for a, _ in state.users_kept),
            *(a for a, _ in state.users_deleted),
        )
    }
    created = [a for a in found.values() if created_by_writeback(a)]
    disabled = 0
    for a in created:
        uac = a.attributes.get("userAccountControl")
        if isinstance(uac, str | int) and str(uac).isdigit() and int(uac) & UF_ACCOUNTDISABLE:
            disabled += 1
    return {"created": len(created), "soa": len(found) - len(created), "created_disabled": disabled}


def created_by_writeback(account: DirectoryUser) -> bool:
    """An account writeback created (cloud_members): its adminDescription is its anchor. An SOA user's
    original never gets one (see the module docstring)."""
    return account.anchor is not None and account.attributes.get(ADMIN_DESCRIPTION) == account.anchor


UF_ACCOUNTDISABLE = 0x2
UF_NORMAL_ACCOUNT = 0x200
UF_SMARTCARD_REQUIRED = 0x40000


class _MemberAccounts:
    """The accounts of cloud-only members ([users] provision = "cloud_members"): matched by anchor, then
    created with unique names; their lifecycle when their user is disabled, leaves or is deleted."""

    def __init__(
        self,
        intents: Intents,
        facts: DirectoryFacts,
        settings: UserSettings,
        by_anchor: Mapping[str, list[DirectoryUser]],
        group_names: Collection[str],
    ) -> None:
        self.intents, self.facts, self.settings, self.by_anchor = intents, facts, settings, by_anchor
        self.anchors = facts.user_anchor_attributes
        self.domain = domain_dns_name(settings.target_ou or "")
        own = {normalize_dn(a.dn) for found in by_anchor.values() for a in found}
        foreign = {n for n, dn in facts.user_taken_names.items() if normalize_dn(dn) not in own}
        held = {
            k: str(found[0].attributes.get("sAMAccountName") or "")
            for k, found in by_anchor.items()
            if len(found) == 1
        }
        new = {
            k: list(i.sam_candidates)
            for k, i in intents.users.items()
            if i.create and i.enabled and k not in by_anchor
        }
        existing = {k: v for k, v in held.items() if v}
        self.sam = assign_sam_account_names(new, existing, foreign | set(group_names))
        self.foreign_upns = {n for n, dn in facts.taken_upns.items() if normalize_dn(dn) not in own}
        # Who holds each sAMAccountName ("" another object): an account's name@domain is its implicit UPN, "always
        # associated with the user's account, even if an explicit UPN is not defined" (learn.microsoft.com,
        # windows/win32/secauthn/user-name-formats), and the DC refuses a userPrincipalName that is another
        # account's implicit one (Samba: "userPrincipalName ... is already in use (implied by sAMAccountName)").
        # A UPN prefix cut to 15 characters for the sAMAccountName can be another user's whole prefix
        # (avandenheuvel470 -> avandenheuvel47).
        self.sam_holder = {n.lower(): "" for n in foreign}
        self.sam_holder.update((v.lower(), k) for k, v in self.sam.items() if v)

    def desire(
        self,
        intent: UserIntent,
        users: dict[str, DesiredUser],
        actual: dict[str, DirectoryUser],
        deleted: list[tuple[DirectoryUser, str]],
    ) -> None:
        key = intent.key
        found = self.by_anchor.get(key, [])
        error = self._error(intent, found)
        if error is not None:
            users[key] = DesiredUser(key, intent.anchor, "", intent.name, {}, error, intent.redacted, True)
            return
        attrs: dict[str, AttributeValue] = {a: intent.anchor for a in self.anchors}
        attrs[ADMIN_DESCRIPTION] = intent.anchor
        attrs.update(intent.attributes)
        if (
            found
        ):  # matched by its anchor: updated (renamed within its OU when its CN changes), never re-created
            account = found[0]
            if not intent.enabled:
                self._leave(account, "its cloud account is disabled", users, actual, deleted, attrs)
                return
            dn = join_rdn("CN", intent.cn, parent_dn(account.dn))
            if (
                normalize_dn(dn) != normalize_dn(account.dn)
                and normalize_dn(dn) in self.facts.user_existing_dns
            ):
                dn = account.dn  # the new CN is taken by another object: keep the name it has
            enabled = None if self.settings.create_disabled else True
            users[key] = DesiredUser(
                key,
                intent.anchor,
                dn,
                intent.name,
                attrs,
                None,
                intent.redacted,
                True,
                str(account.attributes.get("sAMAccountName") or ""),
                str(account.attributes.get("userPrincipalName") or ""),
                enabled,
            )
            actual[key] = account
            return
        if not intent.enabled:
            return  # no account for a disabled cloud user: nothing is created
        sam = self.sam.get(key, "")
        upn = next(
            (
                u
                for n in (intent.upn_prefix, *intent.sam_candidates[-1:])
                if n
                and (u := f"{n}@{self.domain}").lower() not in self.foreign_upns
                and self.sam_holder.get(n.lower(), key) == key
            ),
            None,
        )
        if normalize_dn(intent.dn) in self.facts.user_existing_dns:
            error = (
                f"{intent.dn} already exists and does not carry anchor {intent.anchor}; writeback never takes "
                "over an account it did not create. Rename or move that object"
            )
        elif upn is None or not self.domain:
            error = (
                f"no free userPrincipalName: {intent.upn_prefix}@{self.domain} and its fallback are held by other "
                "objects in the forest (or are another account's sAMAccountName@domain); no account is created"
            )
        users[key] = DesiredUser(
            key,
            intent.anchor,
            intent.dn,
            intent.name,
            attrs,
            error,
            intent.redacted,
            True,
            sam,
            upn or "",
            not self.settings.create_disabled,
            self.settings.smart_card_required,
        )

    def _error(self, intent: UserIntent, found: Sequence[DirectoryUser]) -> str | None:
        if not self.anchors:
            return (
                "this forest's schema has no msDS-ExternalDirectoryObjectId (Windows Server 2016 schema), where "
                "writeback anchors users; no account is created. Extend the schema to create them"
            )
        if len(found) > 1:
            dns = ", ".join(sorted(a.dn for a in found))
            return f"several AD accounts carry anchor {intent.anchor}: {dns}; writeback touches none of them"
        if found and not found[0].is_user_account:
            return f"{found[0].dn} carries anchor {intent.anchor} but is a {found[0].object_class} object"
        if found and found[0].protected:
            return (
                f"its AD account {found[0].dn} is protected (AdminSDHolder adminCount, or a critical or "
                "well-known account); writeback never modifies it"
            )
        return None

    def leave(
        self,
        account: DirectoryUser,
        users: dict[str, DesiredUser],
        actual: dict[str, DirectoryUser],
        deleted: list[tuple[DirectoryUser, str]],
        kept: list[tuple[DirectoryUser, str]],
    ) -> None:
        """An account writeback created whose user is no longer a member of any in-scope group: in a full plan,
        of none it plans; in a partial one, of none in the whole replica (``Intents.users_left``)."""
        cid = account.cloud_id or ""
        user = self.intents.cloud_users.get(cid)
        if user is None:
            deleted.append((account, "hard-deleted in the cloud"))
            return
        why = "soft-deleted in the cloud" if user.deleted else "no longer a member of an in-scope group"
        if self.settings.on_leave == "keep":
            kept.append((account, f'kept: {why} (users.on_leave = "keep")'))
            return
        self._leave(account, why, users, actual, deleted, {})

    def _leave(
        self,
        account: DirectoryUser,
        why: str,
        users: dict[str, DesiredUser],
        actual: dict[str, DirectoryUser],
        deleted: list[tuple[DirectoryUser, str]],
        attrs: Mapping[str, AttributeValue],
    ) -> None:
        cid = account.cloud_id or ""
        if self.settings.on_leave == "delete":
            deleted.append((account, f'{why} (users.on_leave = "delete")'))
            return
        name = str(account.attributes.get("displayName") or account.dn)
        enabled = False if self.settings.on_leave == "disable" else None
        users[cid] = DesiredUser(
            cid, account.anchor or "", account.dn, name, attrs, None, frozenset(), True, "", "", enabled
        )
        actual[cid] = account


def _user_error(
    intent: UserIntent,
    account: DirectoryUser | None,
    anchored: Sequence[DirectoryUser],
    anchors: Sequence[str],
) -> str | None:
    """Why an SOA user cannot be written into its original AD account, or None."""
    sid = intent.sid
    if not anchors:
        return (
            "this forest's schema has no msDS-ExternalDirectoryObjectId (Windows Server 2016 schema), where "
            "writeback anchors users; SOA users are not written (adminDescription would make Entra Connect "
            "skip the account). Extend the schema to write them"
        )
    if account is None:
        return (
            f"SOA user: no AD account in target.base_dn has its SID {sid}; nothing is created. Restore the "
            "account from the AD Recycle Bin to keep its SID (Restore-ADObject)"
        )
    if not account.is_user_account:
        return (
            f"{account.dn} has the user's SID {sid} but is a {account.object_class} object, not a user account; "
            "writeback does not write it"
        )
    if account.protected:
        return (
            f"its AD account {account.dn} is protected (AdminSDHolder adminCount, or a critical or well-known "
            "account: writeback.core.protected); writeback never modifies it"
        )
    if account.anchor is not None and account.anchor != intent.anchor:
        return (
            f"its AD account {account.dn} carries the anchor of another cloud user ({account.anchor}); "
            "writeback will not take it over"
        )
    others = sorted(a.dn for a in anchored if normalize_dn(a.dn) != normalize_dn(account.dn))
    if others:
        return (
            f"{', '.join(others)} carries anchor {intent.anchor} but the user's original AD account is "
            f"{account.dn}; remove the anchor from one of them"
        )
    return None


def _kept_user_note(cid: str, found: Sequence[DirectoryUser], intents: Intents) -> str | None:
    """Why a managed user account no desired user speaks for is kept as it is, or None to release it."""
    if len(found) > 1:
        dns = ", ".join(sorted(a.dn for a in found))
        return f"several AD accounts carry anchor {USER_ANCHOR_PREFIX}{cid}: {dns}; writeback touches none of them"
    if found[0].protected:
        return "an AD protected account (AdminSDHolder, critical or well-known); writeback never modifies it"
    if cid in intents.users_released:
        return None
    user = intents.cloud_users.get(cid)
    if user is None:
        return "kept: its cloud user no longer exists; writeback never deletes an SOA user's account"
    if user.deleted:
        return "kept: its cloud user is soft-deleted; writeback never deletes an SOA user's account"
    if user.is_cloud_managed is None and user.on_premises_security_identifier:
        return (
            "kept unchanged: Graph did not say whether its cloud user's source of authority is the cloud "
            "(onPremisesSyncBehavior unread)"
        )
    return "kept: its cloud user is not a member of an in-scope group; no longer updated"


def left_alone(managed: Iterable[DirectoryGroup]) -> dict[str, GroupError]:
    """The managed AD groups no plan may touch, by key, and why: several AD groups carrying one anchor, or an
    AD protected or privileged group (:mod:`writeback.core.protected`).

    The one place these are found. The message names the anchor the AD groups really carry (``Group_<id>``
    or ``WritebackDynamic_<id>``), never one rebuilt from the key."""
    by_key: dict[str, list[DirectoryGroup]] = {}
    for g in managed:
        if g.cloud_id:
            by_key.setdefault(g.cloud_id, []).append(g)
    out: dict[str, GroupError] = {}
    for key, found in by_key.items():
        if len(found) > 1:
            anchors = " and ".join(sorted({str(g.anchor) for g in found}))
            dns = ", ".join(sorted(g.dn for g in found))
            out[key] = GroupError(
                key,
                None,
                f"several AD groups carry anchor {anchors}: {dns}; writeback will not touch them until one "
                "remains",
            )
        elif found[0].protected:
            out[key] = GroupError(
                key,
                found[0].dn,
                f"{found[0].dn} is an AD protected group (AdminSDHolder, built-in, well-known or default "
                "privileged: writeback.core.protected); writeback never modifies it",
            )
    return out


def _name_of(key: str, intents: Intents, group: DirectoryGroup) -> str:
    """A left-alone group's name for reports: the cloud's, else the one AD holds."""
    cloud = intents.cloud_groups.get(key)
    if cloud is not None and cloud.display_name:
        return cloud.display_name
    return str(group.attributes.get("displayName") or "")


def _originals(
    intents: Intents, facts: DirectoryFacts, managed: Mapping[str, DirectoryGroup]
) -> dict[str, DirectoryGroup]:
    """SOA-converted groups' original AD groups that writeback may take: not yet anchored, or anchored with
    the group's own anchor (the others are reported by :meth:`_Resolver._original_error`)."""
    out: dict[str, DirectoryGroup] = {}
    for key, intent in intents.groups.items():
        original = facts.originals.get(intent.original_sid or "")
        if original is None or original.protected:
            continue
        current = managed.get(key)
        if current is not None and normalize_dn(current.dn) != normalize_dn(original.dn):
            continue  # another AD group carries this anchor: reported, not taken
        if original.anchor is None:
            out[key] = replace(original, anchor=intent.anchor)
        elif original.anchor == intent.anchor:
            out[key] = original
    return out


def _loops(intents: Intents, facts: DirectoryFacts) -> dict[str, str]:
    """Synced-from-AD cloud groups that are copies of groups writeback writes (Connect or Cloud Sync picked up
    writeback's target OU): cloud id -> the report. They are never written back."""
    by_sid = {g.object_sid.upper(): g for g in facts.managed if g.object_sid and g.cloud_id}
    for g in facts.originals.values():
        if g.object_sid and g.cloud_id:
            by_sid.setdefault(g.object_sid.upper(), g)
    out: dict[str, str] = {}
    for cid, sid in sorted(intents.ad_mastered.items()):
        ad = by_sid.get(sid)
        if ad is None or ad.cloud_id == cid:
            continue
        cloud = intents.cloud_groups.get(cid)
        name = cloud.display_name if cloud else cid
        out[cid] = (
            f"loop: cloud group {name!r} ({cid}) is synced from AD group {ad.dn}, which writeback writes from "
            f"cloud group {ad.cloud_id}; it is never written back. Exclude writeback's target OU from the "
            "sync scope of Entra Connect / Cloud Sync (OU filtering) and delete the synced copy"
        )
    return out


class _Resolver:
    """Resolves intents into desired groups, children before the parents that reference them."""

    def __init__(
        self,
        intents: Intents,
        facts: DirectoryFacts,
        settings: Settings,
        managed: Mapping[str, DirectoryGroup],
        refused: Mapping[str, GroupError],
        adopted: Mapping[str, DirectoryGroup],
    ) -> None:
        self.intents, self.facts, self.settings = intents, facts, settings
        self.managed, self.refused = managed, refused
        self.adopted = adopted
        self.keep_names = settings.mapping.keep_adopted_names
        self.sam = self._sam_names()
        self.managed_dns = {normalize_dn(g.dn) for g in (*facts.managed, *adopted.values())}
        self.done: dict[str, DesiredGroup] = {}
        self.visiting: set[str] = set()
        self.left_out: set[str] = set()  # wanted attributes the schema lacks
        self.left_out_groups: set[str] = set()
        # Each user's DN (or why it is skipped) does not depend on the group: worked out once per user, not once
        # per membership (1,000,000 memberships of 100,000 users at the benchmark's large size).
        self.user_dns: dict[str, str | _Skip] = {}
        # Cloud-only members with an account writeback created or creates in this plan: id -> its DN.
        self.member_accounts: Mapping[str, str] = {}

    def current(self, key: str) -> DirectoryGroup | None:
        """The AD group ``key`` is written into: its managed group, or the SOA original it takes over."""
        return self.managed.get(key) or self.adopted.get(key)

    def keeps_name(self, key: str) -> bool:
        """True when the group keeps the CN, OU and sAMAccountName it has in AD: a taken-over group (an SOA
        original, or a group Connect or Cloud Sync wrote, recognised by ``adminDescription = Group_<id>``
        while writeback writes its anchor elsewhere) under ``mapping.keep_adopted_names``."""
        current = self.current(key)
        if not self.keep_names or current is None or current.anchor is None:
            return False
        if key in self.adopted:
            return True
        return (
            ADMIN_DESCRIPTION not in self.facts.anchor_attributes
            and current.attributes.get(ADMIN_DESCRIPTION) == current.anchor
        )

    def _sam_names(self) -> dict[str, str]:
        existing: dict[str, str] = {}
        candidates: dict[str, list[str]] = {}
        for key, intent in self.intents.groups.items():
            current = self.current(key)
            keep = not intent.sam_mapped or self.keeps_name(key)
            if current and current.sam_account_name and keep:
                existing[key] = current.sam_account_name
            else:
                candidates[key] = list(intent.sam_candidates)
        own = {normalize_dn(g.dn) for g in (*self.managed.values(), *self.adopted.values())}
        foreign = {name for name, dn in self.facts.taken_names.items() if normalize_dn(dn) not in own}
        for key in candidates:  # a name held by the group itself is not a collision
            current = self.current(key)
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
        left = self.refused.get(intent.key)
        error = (left.message if left else None) or intent.error or self._original_error(intent)
        current = self.current(intent.key)
        if current is not None and self.keeps_name(intent.key):
            keep_type = intent.original_sid is not None  # an SOA original keeps its scope too
            intent = replace(
                intent,
                cn=rdn_value(current.dn),
                parent_dn=parent_dn(current.dn),
                group_type=current.group_type if keep_type else intent.group_type,
            )
        dn = intent.dn
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

    def _original_error(self, intent: Intent) -> str | None:
        """Why an SOA-converted group cannot be written into its original AD group, or None."""
        sid = intent.original_sid
        if sid is None:
            return None
        original = self.facts.originals.get(sid)
        if original is None:
            elsewhere = self.facts.groups_by_sid.get(sid)
            if elsewhere is not None:
                return (
                    f"its original AD group {elsewhere.dn} (objectSid {sid}) is outside target.base_dn; "
                    "writeback writes one domain: run a writeback for that domain"
                )
            if self.settings.mapping.create_missing_originals:
                return None
            return (
                f"SOA-converted group: its original AD group (objectSid {sid}) no longer exists; nothing is "
                "created. Restore it from the AD Recycle Bin to keep its SID (Restore-ADObject), or set "
                "mapping.create_missing_originals = true to create a new group (with a new SID)"
            )
        if original.protected:
            return (
                f"its original AD group {original.dn} is an AD protected group (AdminSDHolder, built-in, "
                "well-known or default privileged); writeback never modifies it"
            )
        if original.anchor is not None and original.anchor != intent.anchor:
            return (
                f"its original AD group {original.dn} carries another writeback anchor ({original.anchor}); "
                "writeback will not take it over"
            )
        current = self.managed.get(intent.key)
        if current is not None and normalize_dn(current.dn) != normalize_dn(original.dn):
            return (
                f"{current.dn} carries anchor {intent.anchor} but the group's original AD group is "
                f"{original.dn}; remove the anchor from one of them"
            )
        return None

    def _cloud_members(self, intent: Intent) -> tuple[set[str], list[SkippedMember]]:
        members: set[str] = set()
        skipped: list[SkippedMember] = []
        for ref in intent.members:
            if ref.kind == "user":
                found = self.user_dns.get(ref.id)
                if found is None:
                    found = self.user_dns[ref.id] = self._user(self.intents.cloud_users.get(ref.id))
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
        if not user.is_synced and user.id in self.member_accounts:
            return self.member_accounts[user.id]  # the account writeback created (or creates) for it
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
        if self.settings.members.nested_groups and child_id in self.intents.ad_mastered:
            return self._ad_child(self.intents.ad_mastered[child_id], parent_type)
        if not self.settings.members.nested_groups or child_id not in self.intents.in_scope:
            return _Skip(SkipReason.GROUP_OUT_OF_SCOPE.value)
        if child_id in self.visiting:
            return _Skip("nested group is part of a nesting cycle")
        if child_id in self.intents.groups:
            child = self.desired(child_id)
            if child.error is not None:
                return _Skip(f"nested group is not written: {child.error}")
            child_type, child_dn = child.group_type, child.dn
        elif (refused := self.refused.get(child_id)) is not None:
            return _Skip(f"nested group is not written: {refused.message}")
        elif (current := self.managed.get(child_id)) is not None:
            # Not reconciled in this (incremental) plan: referenced where AD holds it now.
            child_type, child_dn = current.group_type, current.dn
        else:
            return _Skip("nested group is not written to AD yet")
        if not nesting_allowed(parent_type, child_type):
            return _Skip(SkipReason.LOCAL_IN_UNIVERSAL.value)
        return child_dn

    def _ad_child(self, sid: str, parent_type: int) -> str | _Skip:
        """A group synced from AD nested in a cloud group: a reference to its original AD group (by SID).
        Cloud Sync skips these; writeback writes them within AD's nesting rules."""
        found = self.facts.groups_by_sid.get(sid)
        if found is None:
            return _Skip(f"group synced from AD: no AD group has its SID {sid}")
        if not nesting_allowed(parent_type, found.group_type or 0):
            return _Skip(SkipReason.LOCAL_IN_UNIVERSAL.value)
        return found.dn

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
