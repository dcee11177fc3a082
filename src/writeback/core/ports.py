"""The small interfaces the engine talks to. Adapters implement them; unit tests use in-memory fakes.

- :class:`ReplicaStore`: the local copy of the in-scope cloud state, fed by Graph delta queries.
- :class:`CloudSource`: brings the replica up to date (Microsoft Graph adapter).
- :class:`Directory`: reads and writes Active Directory (LDAP adapter).

The state store, one per port, so a piece of code is typed against what it uses and a fake implements only that:

- :class:`Replica`: the replica as the engine reads it, and the AD-user cache (:class:`UserCache`).
- :class:`Journal`: the provisioning log: written ahead of each change, finished, and queried.
- :class:`AppliedState`: what was last applied: DNs, fingerprints, the quick reconcile's stamps and pending marks.
- :class:`AllowanceStore`: the operators' allowances and the state's small key-value table.
- :class:`LeaseStore`: the leader lease of `writeback run` on a shared database (its own connection).
- :class:`Store`: the engine's state, all of them but the lease (SQLite or PostgreSQL,
  :mod:`writeback.adapters.state`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from writeback.core.model import (
    AttributeValue,
    CloudGroup,
    CloudSnapshot,
    CloudUser,
    DirectoryAccount,
    DirectoryGroup,
    DirectoryUser,
    MemberRef,
)


class ReplicaStore(Protocol):
    """Local replica of the cloud. All writes of one delta round happen inside ``transaction()`` so a crash
    mid-round leaves the previous consistent replica and delta link in place."""

    def transaction(self) -> ReplicaTransaction: ...

    def get_delta_link(self, resource: str) -> str | None: ...

    def get_unified_writeback_default(self) -> bool | None:
        """The tenant's NewUnifiedGroupWritebackDefault as last synced (None: not set)."""
        ...

    def get_delta_query(self, resource: str) -> str | None:
        """What the stored delta link of ``resource`` was made for (API version and $select), if known."""
        ...

    def snapshot(self, member_groups: Collection[str] | None = None) -> CloudSnapshot:
        """The replica as immutable values.

        With ``member_groups`` (an incremental plan), every group's properties but the members of those
        groups only (the other groups come without members) and only the users among those members:
        reading a whole replica of 100,000 users and 1,000,000 memberships per poll would cost seconds.
        """
        ...


class ReplicaTransaction(Protocol):
    """Context manager; commits on normal exit, rolls back on exception."""

    def __enter__(self) -> ReplicaTransaction: ...

    def __exit__(self, *exc: object) -> None: ...

    def set_delta_link(self, resource: str, link: str | None) -> None: ...

    def set_unified_writeback_default(self, value: bool | None) -> None:
        """Store the tenant's NewUnifiedGroupWritebackDefault (None: not set); snapshots carry it."""

    def set_delta_query(self, resource: str, query: str) -> None:
        """Record what the delta link stored with it was made for (see ReplicaStore.get_delta_query)."""

    def upsert_user(self, user: CloudUser) -> None: ...

    def remove_user(self, user_id: str, *, hard: bool) -> None:
        """hard=False marks the user soft-deleted (keeps it); hard=True forgets it."""

    def upsert_group(self, group: CloudGroup) -> None:
        """Store the group's properties. ``group.members`` is ignored: members change incrementally."""

    def remove_group(self, group_id: str, *, hard: bool) -> None: ...

    def add_members(self, group_id: str, members: Iterable[MemberRef]) -> None: ...

    def remove_members(self, group_id: str, member_ids: Iterable[str]) -> None: ...

    def clear_members(self, group_id: str) -> None: ...

    def reset(self, resource: str) -> None:
        """Forget every object of ``resource`` ('users' or 'groups') before a full resync round."""

    def mark_changed(self, resource: str, ids: Collection[str]) -> None:
        """Record, in this round's transaction, that these users or groups changed: the groups they are (or
        hold) become *pending* until a reconcile brings their AD groups in step (see :class:`PendingGroups`).
        Marked before the round commits, so a crash after the commit never loses a change."""


@dataclass(frozen=True, slots=True)
class SkippedObject:
    """A cloud object a sync left out because a property it reads came with the wrong type (issue 23): the
    rest of the sync was applied, and the object's last good copy, if any, stays in the replica. For a
    malformed ``members@delta`` entry, ``object_id`` is the group's and only that member was left out."""

    resource: str  # 'users' or 'groups'
    object_id: str | None  # None when the id itself is missing or not a string
    field: str  # the property, as a path: 'displayName', 'groupTypes[1]', 'members@delta[3].id'
    problem: str  # what was wrong, e.g. 'a number (int), expected a string or null'


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one delta sync changed in the replica, and the cloud objects it had to skip."""

    full_resync: bool = False
    changed_users: frozenset[str] = frozenset()
    changed_groups: frozenset[str] = frozenset()
    requests: int = 0
    skipped: tuple[SkippedObject, ...] = ()


@dataclass(frozen=True, slots=True)
class UsnWatermark:
    """Where an incremental read of AD users resumes: a USN means something only on the DC that issued it
    (MS-ADTS 3.1.1.1.9), so it is kept with that DC's invocationId (a GUID string)."""

    dc: str
    usn: int


@dataclass(frozen=True, slots=True)
class GroupStamp:
    """A managed AD group as a quick reconcile lists it: where it is, whose it is, and its uSNChanged (which
    every change of the object, member links included, raises on the DC that made it; MS-ADTS 3.1.1.1.9)."""

    dn: str
    key: str  # the cloud id, or 'dynamic:<id>' (DirectoryGroup.cloud_id)
    usn: int


@dataclass(frozen=True, slots=True)
class PendingGroups:
    """Groups whose cloud side changed since their AD group was last in step, and the newest mark's number:
    a reconcile that planned from marks up to ``upto`` clears only those (a group marked again meanwhile
    stays pending)."""

    groups: frozenset[str] = frozenset()
    upto: int = 0


@dataclass(frozen=True, slots=True)
class UserChanges:
    """One read of AD users: the users read (rule-ready dicts), the objectGUIDs of users deleted since the
    last read, the watermark to pass next time, and whether this was a full read (the cache is replaced)."""

    users: list[dict[str, Any]]
    watermark: UsnWatermark
    full: bool
    removed: list[str] = field(default_factory=list)


class UserCache(Protocol):
    """The on-prem source's cache: AD users as read for dynamic groups, and the watermark of the last read."""

    def put_ad_users(
        self,
        users: Iterable[dict[str, Any]],
        *,
        replace: bool,
        usn: int,
        dc: str | None = None,
        removed: Iterable[str] = (),
    ) -> None: ...

    def ad_users(self) -> list[dict[str, Any]]: ...

    def ad_users_watermark(self) -> tuple[str, int] | None: ...


# Called by a full read with each lot of groups whose member list has been read in full, while the rest is still
# being read (the streamed first apply: writeback.app.streaming).
GroupStream = Callable[[Sequence[CloudGroup]], None]


class CloudSource(Protocol):
    def sync(self, replica: ReplicaStore, stream: GroupStream | None = None) -> SyncReport:
        """Bring ``replica`` up to date with the cloud (delta queries; full walk the first time). ``stream``:
        see :data:`GroupStream` (a source may never call it)."""


@dataclass(frozen=True, slots=True)
class ResolvedAccounts:
    by_sid: Mapping[str, DirectoryAccount] = field(default_factory=dict)
    by_guid: Mapping[str, DirectoryAccount] = field(default_factory=dict)


class Directory(Protocol):
    """Active Directory as the engine needs it. Write methods batch internally."""

    def has_attribute(self, ldap_name: str) -> bool:
        """True when the schema defines the attribute (e.g. msDS-ExternalDirectoryObjectId)."""

    def resolve_accounts(self, sids: Iterable[str], guids: Iterable[str]) -> ResolvedAccounts:
        """Find users by objectSid and objectGUID (through the Global Catalog when configured)."""

    def resolve_groups_by_sid(self, sids: Iterable[str]) -> dict[str, DirectoryAccount]:
        """Groups by objectSid (through the Global Catalog when configured), keyed by the upper-cased SID.

        Taking over: the original AD group of an SOA-converted cloud group, and AD groups synced to the cloud
        and nested in cloud groups, are found by the SID Graph keeps (onPremisesSecurityIdentifier)."""

    def read_managed_groups(
        self, anchor_attributes: Sequence[str], mapped: Sequence[str], prefixes: Sequence[str]
    ) -> list[DirectoryGroup]:
        """Every group in the domain whose anchor attribute starts with one of ``prefixes`` ('Group_',
        'WritebackDynamic_'), in any OU (paged, ranged member)."""

    def read_groups(
        self, dns: Iterable[str], anchor_attributes: Sequence[str], mapped: Sequence[str]
    ) -> list[DirectoryGroup]:
        """The listed groups only (missing DNs are left out)."""

    def read_groups_with_accounts(
        self, dns: Iterable[str], anchor_attributes: Sequence[str], mapped: Sequence[str]
    ) -> tuple[list[DirectoryGroup], ResolvedAccounts]:
        """:meth:`read_groups`, and the AD accounts of the members read, as AD gives them with the member
        values (LDAP_SERVER_EXTENDED_DN_OID, MS-ADTS 3.1.1.3.4.1.5): ``by_sid`` upper-cased objectSid and
        ``by_guid`` lower-cased objectGUID -> the member's :class:`DirectoryAccount`.

        A partial plan consults these before searching AD: a group of 130,000 members with one added needs
        one account looked up, not every user of the domain. Only accounts :meth:`resolve_accounts` would
        find are given (no foreign security principals; without a Global Catalog, only members in the
        domain naming context), so a plan decides the same whichever way an account was found. Members the
        DC gave no GUID for (it ignored the control) are simply not given."""

    def existing_dns(self, dns: Iterable[str]) -> set[str]:
        """Which of ``dns`` exist (any object class), returned as given."""

    def read_users_by_sid(
        self, sids: Iterable[str], anchor_attributes: Sequence[str], mapped: Sequence[str]
    ) -> dict[str, DirectoryUser]:
        """The objects of these SIDs in the domain (under base_dn), whatever their class, keyed by the
        upper-cased SID, with ``mapped`` and the anchor attributes: the original AD accounts of SOA users
        (``[users] provision = "soa"``), found by onPremisesSecurityIdentifier only."""

    def read_managed_users(
        self, anchor_attributes: Sequence[str], mapped: Sequence[str], prefixes: Sequence[str]
    ) -> list[DirectoryUser]:
        """Every user account in the domain whose anchor attribute starts with one of ``prefixes``
        ('User_'), in any OU (paged)."""

    def taken_sam_account_names(self, names: Iterable[str]) -> dict[str, str]:
        """Lower-cased sAMAccountName -> DN for the names already used in the domain."""

    def taken_user_principal_names(self, upns: Iterable[str]) -> dict[str, str]:
        """Lower-cased userPrincipalName -> DN for the UPNs already used in the forest (through the Global
        Catalog when one is configured, else in the domain)."""

    def read_user_changes(self, base_dn: str, since: UsnWatermark | None) -> UserChanges:
        """AD users under ``base_dn`` as rule-ready dicts: all of them (``since`` None, or taken on another
        DC), or those changed and deleted since the watermark."""

    def read_group_stamps(
        self, anchor_attributes: Sequence[str], prefixes: Sequence[str], dns: Iterable[str] | None = None
    ) -> tuple[UsnWatermark, list[GroupStamp]]:
        """The DC's watermark (read first), then every managed group's DN, key and uSNChanged — no members;
        with ``dns``, only the managed groups at those DNs (the ones not found are left out)."""

    def changed_account_keys(self, base_dn: str, since_usn: int) -> list[tuple[str | None, str | None]]:
        """(objectSid, objectGUID) of the users under ``base_dn`` changed after ``since_usn`` on this DC."""

    def create_group(
        self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]], members: Sequence[str]
    ) -> None: ...

    def create_user(self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]]) -> None:
        """Add a user account with ``attributes`` and a random password generated here and set as unicodePwd
        in the add itself, only over a TLS-protected connection (refused otherwise). The password is never
        returned, stored or logged: nobody knows it."""

    def modify_attributes(self, dn: str, values: Mapping[str, AttributeValue]) -> None:
        """Replace each attribute (a tuple: several values); None removes it."""

    def move(self, dn: str, new_dn: str) -> None:
        """Rename and/or move (modRDN) keeping the objectGUID."""

    def add_members(self, dn: str, members: Sequence[str]) -> None: ...

    def remove_members(self, dn: str, members: Sequence[str]) -> None: ...

    def delete(self, dn: str) -> None: ...

    def fence_writes(self, check: Callable[[], None] | None, deadline: float | None = None) -> None:
        """Run ``check`` before every LDAP write from now on (it raises to refuse the write: the leader lease's
        :meth:`~writeback.app.lease.LeaderLease.guard_write`), and give each write at most ``deadline``
        seconds; ``None`` ends both."""

    def close(self) -> None: ...


# The result of a log row written before its change is sent to AD (see Journal.log_rows), and what it becomes
# when that run never finished it (Journal.close_pending_log).
PENDING = "pending"
INTERRUPTED = "interrupted"
# Every result a provisioning-log row can have (the console's filters and chart).
LOG_RESULTS = ("success", "error", "held", "info", "skipped", PENDING, INTERRUPTED)


@dataclass(frozen=True)
class LogRecord:
    """One provisioning-log row to write (see :meth:`Journal.log_rows`)."""

    run_id: str
    action: str
    result: str = PENDING
    cloud_id: str | None = None
    group_name: str | None = None
    dn: str | None = None
    error: str | None = None
    detail: dict[str, object] | None = None
    actor: str | None = None  # an operator's action: the console token's name or the OS user; else None
    # Every member value the change carries (all of them, where the detail shows the first few): indexed with
    # the row, so a member's history (LogQuery.member) finds it whatever its place in the change.
    member_values: Sequence[str] = ()


@dataclass(frozen=True)
class LogEntry:
    """One provisioning-log row as read back (:meth:`Journal.read_log`, :meth:`Journal.query_log`)."""

    id: int
    time: float
    run_id: str
    cloud_id: str | None
    group_name: str | None
    dn: str | None
    action: str
    result: str
    error: str | None
    detail: dict[str, Any] | None
    actor: str | None = None  # who asked for it (an operator's action); None for the engine's own rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogQuery:
    """The provisioning log filters of the console and `/api/log` (all optional, combined with AND)."""

    since: float | None = None
    until: float | None = None
    result: str | None = None
    action: str | None = None
    text: str | None = None  # group/identity: cloud id exactly, or part of the group name or DN
    run_id: str | None = None
    limit: int = 100
    offset: int = 0
    # Keyset paging (the console's next links): only rows with an id below this one. Stable while rows arrive.
    before: int | None = None
    # One member's rows: the row's cloud id is one of these, its change carries one as a member value (any
    # case, LogRecord.member_values), or its detail names one (a skipped member's id), matched as the JSON text
    # holds them.
    member: tuple[str, ...] = ()


class Replica(ReplicaStore, UserCache, Protocol):
    """The replica as the engine reads it: what the Graph adapter writes (:class:`ReplicaStore`), the AD-user
    cache, and the lookups a partial plan makes instead of reading the whole replica."""

    def find_user(self, wanted: str) -> CloudUser | None:
        """The replica's user with object id ``wanted``, else the one whose userPrincipalName is ``wanted`` (any
        case): provision on demand of one user. A scan of the users for a UPN, once per request."""

    def search_users(self, text: str, limit: int = 50) -> list[CloudUser]:
        """Live users whose display name or userPrincipalName contains ``text`` (any case), or whose id it is;
        exact matches first: the console's user search."""
        ...

    def has_synced(self) -> bool:
        """True once both resources (users and groups) hold a delta link: the replica is complete."""
        ...

    def groups_with_members(self, member_ids: Iterable[str]) -> set[str]: ...

    def users_by_id(self, user_ids: Iterable[str]) -> dict[str, CloudUser]:
        """The replica's users of these ids, soft-deleted ones included (an id it does not hold: none)."""
        ...

    def groups_of_members(self, member_ids: Iterable[str]) -> dict[str, set[str]]:
        """Member id -> every group holding it directly, for these members only."""
        ...

    def cloud_users_with_keys(self, sids: Collection[str], guids: Collection[str]) -> set[str]:
        """Ids of replica users whose onPremisesSecurityIdentifier or onPremisesImmutableId (as an
        objectGUID) is among these (upper-cased SIDs, lower-cased GUIDs)."""
        ...


class Journal(Protocol):
    """The provisioning log: what every run did to AD, written ahead of each change (a write-ahead journal),
    and read back by the CLI and the console."""

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
        actor: str | None = None,
    ) -> None: ...

    def log_rows(self, records: Sequence[LogRecord]) -> list[int]:
        """Write ``records`` in one transaction; their ids. An apply journals each change as a ``pending`` row
        before sending it to AD, so a run killed after the write still leaves a row saying so. Every record's
        ``member_values`` are indexed with its row, in the same transaction (:attr:`LogQuery.member`)."""
        ...

    def finish_log(
        self,
        outcomes: Sequence[tuple[int, str, str | None, float]],
        *,
        dropped: Collection[int] = (),
        applied: Mapping[str, str] | None = None,
        forgotten: Collection[str] = (),
    ) -> None:
        """In one transaction: the results of journaled rows, rows never attempted removed, created/moved
        groups' DNs recorded and deleted groups forgotten (the applied state changes with its log rows)."""
        ...

    def close_pending_log(self, run_id: str) -> int:
        """Mark rows left ``pending`` by other (killed) runs ``interrupted``; how many."""
        ...

    def read_log(
        self,
        *,
        cloud_id: str | None = None,
        group: str | None = None,
        action: str | None = None,
        result: str | None = None,
        run_id: str | None = None,
        since: float | None = None,
        limit: int = 200,
    ) -> list[LogEntry]:
        """The newest ``limit`` rows matching, oldest first (`writeback log`)."""
        ...

    def query_log(self, query: LogQuery) -> list[LogEntry]:
        """One page of the log, newest first (the console and /api/log)."""
        ...

    def log_entry(self, entry_id: int) -> LogEntry | None: ...

    def log_actions_per_day(self, since: float) -> list[tuple[str, str, int]]:
        """(UTC day as YYYY-MM-DD, result, count) of the rows since ``since``."""
        ...

    def prune_log(self, before: float) -> int:
        """Delete rows older than ``before``; how many."""
        ...


class AppliedState(Protocol):
    """What writeback last applied to AD: each group's DN and fingerprint, and what the quick reconcile
    (writeback.app.reconcile) keeps: the managed groups' stamps and the groups pending since."""

    def record_applied(self, cloud_id: str, dn: str) -> None: ...

    def forget_applied(self, cloud_id: str) -> None: ...

    def applied_dns(self) -> dict[str, str]: ...

    def record_fingerprints(self, prints: Mapping[str, str]) -> None: ...

    def applied_fingerprints(self) -> dict[str, str]: ...

    def pending_groups(self, after: int = 0) -> PendingGroups:
        """The groups marked pending and not settled (marked after the counter value ``after``, when given),
        and the counter's value now (``upto``)."""

    def settle_pending(self, groups: Collection[str], upto: int) -> None:
        """Clear the marks of ``groups`` made up to ``upto`` (their AD groups are in step)."""

    def mark_pending(self, groups: Collection[str]) -> None:
        """Mark ``groups`` pending outside a replica round (a reconcile found them out of step)."""

    def group_stamps(self) -> dict[str, tuple[str, int]]:
        """key -> (DN, uSNChanged) of each managed AD group as last seen in step."""

    def record_stamps(self, stamps: Mapping[str, tuple[str, int]], *, replace: bool = False) -> None:
        """Remember these groups as in step at these USNs (``replace``: forget every other)."""

    def forget_stamps(self, keys: Collection[str]) -> None: ...


class AllowanceStore(Protocol):
    """The operators' allowances past the safety thresholds (`writeback allow`, read by the running service),
    and the state's small key-value table they and the engine's bookkeeping live in."""

    def allowances(self) -> dict[str, int]: ...

    def set_allowances(self, allowances: Mapping[str, int]) -> None: ...

    def get_meta(self, key: str) -> str | None: ...

    def write_meta(self, values: Mapping[str, str | None]) -> None:
        """Set these keys of the state's small key-value table, in one transaction."""


@dataclass(frozen=True)
class LeaseGrant:
    """A lease held: its fencing token and how long it still runs, in seconds, by the database's clock."""

    token: int
    remaining: float


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease (``remaining`` <= 0: it has run out and is free to take)."""

    holder: str
    token: int
    remaining: float


class LeaseStore(Protocol):
    """What the leader lease (writeback.app.lease) needs of a state store. Not part of :class:`Store`: the
    lease takes a connection of its own, so a long write transaction of the engine never delays a renewal."""

    def acquire_lease(self, name: str, holder: str, ttl: float) -> LeaseGrant | None: ...

    def check_lease(self, name: str, holder: str, token: int) -> float | None: ...

    def release_lease(self, name: str, holder: str, token: int) -> None: ...

    def lease_holder(self, name: str) -> LeaseHolder | None: ...

    def end_sessions(self, instance: str) -> int: ...

    def close(self) -> None: ...


class Store(Replica, Journal, AppliedState, AllowanceStore, Protocol):
    """The engine's state store: the replica and AD-user cache, the provisioning log, the last-applied state
    and the operators' allowances over one connection (SQLite or PostgreSQL, :mod:`writeback.adapters.state`).
    Code that needs one of them is typed against that port."""

    def close(self) -> None: ...
