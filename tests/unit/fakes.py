"""In-memory fakes of the ports, for unit tests of the engine. They keep assertable state.

Each fake is typed against its port, and mypy checks this file (pyproject's [tool.mypy] files) down to
:func:`_fakes_implement_the_ports`: a port that changes makes its fake fail the type check, not a test later.

:class:`FakeDirectory` refuses what Windows Server AD refuses, where it matters to the engine, so a bug that a
lenient fake would hide fails here: a member value naming no object (AD: noSuchObject / "The name reference
is invalid", LDAP 32), a cn over 64 characters and a sAMAccountName over 256 (schema rangeUpper; LDAP 19
constraintViolation), and a domain-local group put in a universal group (ERROR_DS_UNIVERSAL_CANT_HAVE_LOCAL_MEMBER,
8518; LDAP 53 unwillingToPerform). Sources: MS-ADTS 3.1.1.5.2.2 (constraints), 3.1.1.3.1.2.4 (rangeUpper) and
"Group scope" (learn.microsoft.com/windows-server/identity/ad-ds/manage/understand-security-groups).

Accounts are found as the LDAP adapter finds them: :meth:`FakeDirectory.resolve_accounts` searches the domain
(``domain_dn``) or, with ``global_catalog``, the forest, and never returns foreign security principals (not
accounts of the forest); :meth:`FakeDirectory.read_groups_with_accounts` gives a member's account the way the
extended DN control does (MS-ADTS 3.1.1.3.4.1.5: the objectGUID and objectSid the DC holds for the member),
leaving out what resolve_accounts would not find.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from writeback.adapters.directory.adapter import new_password
from writeback.core.dn import is_within, normalize_dn, parent_dn, rdn_value
from writeback.core.model import (
    ANCHOR_PREFIXES,
    GROUP_TYPE_DOMAIN_LOCAL,
    GROUP_TYPE_UNIVERSAL,
    AttributeValue,
    CloudGroup,
    CloudSnapshot,
    CloudUser,
    DirectoryAccount,
    DirectoryGroup,
    DirectoryUser,
    MemberRef,
)
from writeback.core.ports import (
    CloudSource,
    Directory,
    GroupStamp,
    GroupStream,
    ReplicaStore,
    ResolvedAccounts,
    SyncReport,
    UserChanges,
    UsnWatermark,
)
from writeback.errors import DirectoryWriteError, StateError


@dataclass
class FakeCloud:
    """A CloudSource that loads a fixed set of users and groups as a full round each time.

    With ``incremental`` it reports like a delta round after the first: a full resync only the first time,
    and only the users and groups that changed since the last sync marked (ReplicaTransaction.mark_changed)."""

    users: dict[str, CloudUser] = field(default_factory=dict)
    groups: dict[str, CloudGroup] = field(default_factory=dict)
    incremental: bool = False
    _seen: tuple[dict[str, CloudUser], dict[str, CloudGroup]] | None = None

    def sync(self, replica: ReplicaStore, stream: GroupStream | None = None) -> SyncReport:
        full = not self.incremental or self._seen is None
        old_users, old_groups = self._seen or ({}, {})
        users = {u for u in self.users.keys() | old_users.keys() if self.users.get(u) != old_users.get(u)}
        groups = {
            g for g in self.groups.keys() | old_groups.keys() if self.groups.get(g) != old_groups.get(g)
        }
        with replica.transaction() as tx:
            tx.mark_changed("users", users)  # groups holding them before the round, like a delta round
            tx.reset("users")
            tx.reset("groups")
            for u in self.users.values():
                tx.upsert_user(u)
            for g in self.groups.values():
                tx.upsert_group(g)
                tx.add_members(g.id, g.members)
            tx.mark_changed("groups", groups)
            tx.set_delta_link("users", "u")
            tx.set_delta_link("groups", "g")
        self._seen = (dict(self.users), dict(self.groups))
        return SyncReport(
            full_resync=full, changed_users=frozenset(users), changed_groups=frozenset(groups), requests=2
        )


@dataclass
class FakeDirectory:
    accounts: list[DirectoryAccount] = field(default_factory=list)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # normalized dn -> entry
    ops: list[tuple[str, str]] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)
    # Normalized DNs whose writes AD refuses for the value itself (CONSTRAINT_VIOLATION): permanent refusals.
    refuse_value_on: set[str] = field(default_factory=set)
    schema_msds: bool = True
    # uSNChanged as a DC keeps it: one counter, raised by every write and stamped on the object written.
    usn: int = 1000
    invocation_id: str = "11111111-2222-3333-4444-555555555555"
    account_usns: dict[str, int] = field(default_factory=dict)  # normalized user DN -> uSNChanged
    domain_dn: str = "DC=corp,DC=test"  # the domain naming context (tests.unit.builders.BASE)
    global_catalog: bool = False  # target.gc_urls set: accounts are found forest-wide
    # Naming contexts of the forest below domain_dn (child domains): outside the domain for a subtree search.
    child_domains: tuple[str, ...] = ()
    # The (sids, guids) of every resolve_accounts call, to assert which accounts a plan searched for.
    resolve_calls: list[tuple[frozenset[str], frozenset[str]]] = field(default_factory=list)
    keyed_reads: list[str] = field(default_factory=list)  # DNs read by read_groups_with_accounts
    # Member values per modify, as target.max_values_per_modify (None: one modify per call).
    values_per_modify: int | None = None
    write_check: Callable[[], None] | None = None  # fence_writes: run before every write
    write_deadline: float | None = None
    # Normalized DN -> the attributes the bound account may write on that group, read back as
    # DirectoryGroup.writable (allowedAttributesEffective) and enforced on writes as AD does; a group not
    # listed has writable None (not read) and takes every write.
    write_rights: dict[str, set[str]] = field(default_factory=dict)
    # User accounts ([users] provision = "soa"): normalized DN -> entry ("dn", "guid", "objectSid", optional
    # "objectClass" (default user), "protected", and attributes by name). Modified like groups.
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Passwords create_user set (cloud_members), captured as the LDAP layer sends them, so a test can search
    # every output for them; ``tls`` False: the connection is plain and create_user refuses, as the adapter.
    passwords: list[str] = field(default_factory=list)
    tls: bool = True
    crash_after_create_user: bool = False  # the process dies right after the add (before its log row)

    def _touch(self, entry: dict[str, Any]) -> None:
        self.usn += 1
        entry["uSNChanged"] = self.usn

    def edit_by_hand(self, dn: str, **changes: object) -> None:
        """An administrator's change in AD: ``member`` replaces the member set, other keys set attributes."""
        e = self.groups[normalize_dn(dn)]
        for k, v in changes.items():
            e[k] = set(v) if k == "member" else v  # type: ignore[call-overload]
        self._touch(e)

    def delete_by_hand(self, dn: str) -> None:
        self.usn += 1
        del self.groups[normalize_dn(dn)]

    def read_group_stamps(
        self, anchor_attributes: Sequence[str], prefixes: Sequence[str], dns: Iterable[str] | None = None
    ) -> tuple[UsnWatermark, list[GroupStamp]]:
        self.ops.append(("search", "stamps" if dns is None else "stamps of some"))
        at = None if dns is None else {normalize_dn(d) for d in dns}
        stamps = [
            GroupStamp(g.dn, g.cloud_id, int(e.get("uSNChanged", 0)))
            for key, e in self.groups.items()
            if (at is None or key in at) and (g := self._group(e)).cloud_id is not None
        ]
        return UsnWatermark(self.invocation_id, self.usn), stamps

    def changed_account_keys(self, base_dn: str, since_usn: int) -> list[tuple[str | None, str | None]]:
        return [
            (a.object_sid, a.object_guid)
            for a in self.accounts
            if self.account_usns.get(normalize_dn(a.dn), 0) > since_usn
        ]

    def has_attribute(self, ldap_name: str) -> bool:
        return self.schema_msds or ldap_name != "msDS-ExternalDirectoryObjectId"

    def _findable(self, dn: str) -> bool:
        """Whether the adapter's account searches can find the object at ``dn``: not a foreign security
        principal, and in the domain's naming context (not a child domain's) unless the GC is searched."""
        if normalize_dn(parent_dn(dn)).startswith("cn=foreignsecurityprincipals,"):
            return False
        if self.global_catalog:
            return True
        return is_within(dn, self.domain_dn) and not any(is_within(dn, c) for c in self.child_domains)

    def resolve_accounts(self, sids: Iterable[str], guids: Iterable[str]) -> ResolvedAccounts:
        sid_set, guid_set = frozenset(sids), frozenset(guids)
        self.resolve_calls.append((sid_set, guid_set))
        found = [a for a in self.accounts if self._findable(a.dn)]
        return ResolvedAccounts(
            by_sid={a.object_sid: a for a in found if a.object_sid and a.object_sid in sid_set},
            by_guid={a.object_guid: a for a in found if a.object_guid in guid_set},
        )

    def read_groups_with_accounts(
        self, dns: Iterable[str], anchor_attributes: Sequence[str], mapped: Sequence[str]
    ) -> tuple[list[DirectoryGroup], ResolvedAccounts]:
        read = list(dns)
        self.ops += [("search", d) for d in read]  # a group read like read_groups' (tests count them)
        self.keyed_reads += read
        groups = [self._group(self.groups[normalize_dn(d)]) for d in read if normalize_dn(d) in self.groups]
        # What the DC holds for each member value: an account, or a group (its GUID and SID).
        objects = {normalize_dn(a.dn): a for a in self.accounts}
        objects.update(
            (key, DirectoryAccount(e["dn"], e["guid"], e.get("objectSid"), "group"))
            for key, e in self.groups.items()
        )
        by_sid: dict[str, DirectoryAccount] = {}
        by_guid: dict[str, DirectoryAccount] = {}
        for g in groups:
            for member in g.members:
                held = objects.get(normalize_dn(member))
                if held is None or not self._findable(member):
                    continue
                account = DirectoryAccount(
                    member, held.object_guid.lower(), (held.object_sid or "").upper() or None
                )
                by_guid.setdefault(account.object_guid, account)
                if account.object_sid:
                    by_sid.setdefault(account.object_sid, account)
        return groups, ResolvedAccounts(by_sid=by_sid, by_guid=by_guid)

    def resolve_groups_by_sid(self, sids: Iterable[str]) -> dict[str, DirectoryAccount]:
        wanted = {s.upper() for s in sids}
        return {
            e["objectSid"].upper(): DirectoryAccount(
                e["dn"], e["guid"], e["objectSid"], "group", int(e["groupType"])
            )
            for e in self.groups.values()
            if e.get("objectSid", "").upper() in wanted
        }

    def _group(self, e: dict[str, Any]) -> DirectoryGroup:
        anchor = e.get("msDS-ExternalDirectoryObjectId") or e.get("adminDescription")
        return DirectoryGroup(
            e["dn"],
            e["guid"],
            anchor if anchor and anchor.startswith(ANCHOR_PREFIXES) else None,
            e.get("sAMAccountName"),
            int(e["groupType"]),
            {k: v for k, v in e.items() if k not in ("dn", "guid", "member")},
            frozenset(e["member"]),
            e.get("protected", False),
            e.get("objectSid"),
            None if (rights := self.write_rights.get(normalize_dn(e["dn"]))) is None else frozenset(rights),
        )

    def read_managed_groups(
        self, anchor_attributes: Sequence[str], mapped: Sequence[str], prefixes: Sequence[str]
    ) -> list[DirectoryGroup]:
        self.ops.append(("search", "*"))
        return [g for g in (self._group(e) for e in self.groups.values()) if g.anchor]

    _USER_KEYS = ("dn", "guid", "objectSid", "objectClass", "protected")

    def _user(self, e: dict[str, Any], anchors: Sequence[str], mapped: Sequence[str]) -> DirectoryUser:
        anchor = next((v for a in anchors if isinstance(v := e.get(a), str) and v.startswith("User_")), None)
        rights = self.write_rights.get(normalize_dn(e["dn"]))
        return DirectoryUser(
            e["dn"],
            e["guid"],
            e.get("objectSid"),
            anchor,
            {k: e.get(k) for k in dict.fromkeys([*mapped, *anchors])},
            e.get("objectClass", "user"),
            bool(e.get("protected", False)),
            None if rights is None else frozenset(rights),
        )

    def read_users_by_sid(
        self, sids: Iterable[str], anchor_attributes: Sequence[str], mapped: Sequence[str]
    ) -> dict[str, DirectoryUser]:
        wanted = {s.upper() for s in sids}
        self.ops.append(("search", "users by sid"))
        return {
            e["objectSid"].upper(): self._user(e, anchor_attributes, mapped)
            for e in self.users.values()
            if str(e.get("objectSid", "")).upper() in wanted and is_within(e["dn"], self.domain_dn)
        }

    def read_managed_users(
        self, anchor_attributes: Sequence[str], mapped: Sequence[str], prefixes: Sequence[str]
    ) -> list[DirectoryUser]:
        self.ops.append(("search", "managed users"))
        found = [self._user(e, anchor_attributes, mapped) for e in self.users.values()]
        return [u for u in found if u.anchor and u.object_class == "user"]

    def read_user_changes(self, base_dn: str, since: UsnWatermark | None) -> UserChanges:
        return UserChanges(users=[], watermark=UsnWatermark("dc", 0), full=since is None)

    def read_groups(
        self, dns: Iterable[str], anchor_attributes: Sequence[str], mapped: Sequence[str]
    ) -> list[DirectoryGroup]:
        read = list(dns)
        self.ops += [("search", d) for d in read]
        return [self._group(self.groups[normalize_dn(d)]) for d in read if normalize_dn(d) in self.groups]

    def existing_dns(self, dns: Iterable[str]) -> set[str]:
        return {d for d in dns if normalize_dn(d) in self.groups or normalize_dn(d) in self.users}

    def taken_sam_account_names(self, names: Iterable[str]) -> dict[str, str]:
        wanted = {n.lower() for n in names}
        return {
            e["sAMAccountName"].lower(): e["dn"]
            for e in (*self.groups.values(), *self.users.values())
            if str(e.get("sAMAccountName", "")).lower() in wanted
        }

    def taken_user_principal_names(self, upns: Iterable[str]) -> dict[str, str]:
        wanted = {u.lower() for u in upns}
        self.ops.append(("search", "upns"))
        return {
            str(e["userPrincipalName"]).lower(): e["dn"]
            for e in self.users.values()
            if str(e.get("userPrincipalName", "")).lower() in wanted
        }

    def create_user(self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]]) -> None:
        """As the LDAP adapter: refused without TLS; the password made with the adapter's generator and
        captured here (never returned)."""
        self._check(dn)
        if not self.tls:
            raise DirectoryWriteError(f"{dn}: refusing to create a user account without TLS", permanent=True)
        if normalize_dn(dn) in self.users or normalize_dn(dn) in self.groups:
            raise DirectoryWriteError(f"already exists: {dn}", dn=dn, result="ALREADY_EXISTS")
        sam = str(attributes.get("sAMAccountName", "")).lower()
        if not sam or len(sam) > 20 or sam in self.taken_sam_account_names([sam]):
            raise DirectoryWriteError(f"constraint violation: {dn}", dn=dn, result="CONSTRAINT_VIOLATION")
        self.passwords.append(new_password())
        self.ops.append(("add", dn))
        entry: dict[str, Any] = {k: v for k, v in attributes.items() if k != "objectClass"}
        entry.update(dn=dn, guid=f"guid-user-{len(self.users)}", objectSid=f"S-1-5-21-9-{len(self.users)}")
        entry["pwdLastSet"] = "1"
        self.users[normalize_dn(dn)] = entry
        self._touch(entry)
        if self.crash_after_create_user:
            raise KeyboardInterrupt("the process died after the add")

    def fence_writes(self, check: Callable[[], None] | None, deadline: float | None = None) -> None:
        self.write_check, self.write_deadline = check, deadline

    def _chunks(self, members: Sequence[str]) -> list[Sequence[str]]:
        size = self.values_per_modify or max(1, len(members))
        return [members[i : i + size] for i in range(0, len(members), size)] or [members]

    def _check(self, dn: str) -> None:
        """Before every write, as the LDAP adapter does: the fence, then the refusals a test set."""
        if self.write_check is not None:
            self.write_check()
        if normalize_dn(dn) in self.refuse_value_on:
            raise DirectoryWriteError(
                f"refused: {dn}: CONSTRAINT_VIOLATION", dn=dn, result="CONSTRAINT_VIOLATION", permanent=True
            )
        if normalize_dn(dn) in self.fail_on:
            raise DirectoryWriteError(f"refused: {dn}", dn=dn, result="INSUFFICIENT_ACCESS")

    def _check_rights(self, dn: str, attributes: Iterable[str]) -> None:
        """AD's Write Property check ([MS-ADTS] 3.1.1.5.3.1), with the message AD's refusal becomes."""
        granted = self.write_rights.get(normalize_dn(dn))
        if granted is None:
            return
        allowed = {a.lower() for a in granted}
        if refused := [a for a in attributes if a.lower() not in allowed]:
            raise DirectoryWriteError(
                f"writing {', '.join(refused)} of {dn} failed: INSUFFICIENT_ACCESS (has no write property access)",
                dn=dn,
                result="INSUFFICIENT_ACCESS",
            )

    def _check_members(self, dn: str, group_type: int, members: Iterable[str]) -> None:
        users = {normalize_dn(a.dn) for a in self.accounts} | set(self.users)
        for m in members:
            key = normalize_dn(m)
            if key not in users and key not in self.groups:
                raise DirectoryWriteError(
                    f"no such object {m} (member of {dn})", dn=dn, result="NO_SUCH_OBJECT"
                )
            child = self.groups.get(key)
            if (
                child
                and group_type & GROUP_TYPE_UNIVERSAL
                and int(child["groupType"]) & GROUP_TYPE_DOMAIN_LOCAL
            ):
                raise DirectoryWriteError(
                    f"8518: A universal group cannot have a local group as a member ({m})",
                    dn=dn,
                    result="UNWILLING_TO_PERFORM",
                )

    def create_group(
        self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]], members: Sequence[str]
    ) -> None:
        self._check(dn)
        cn = rdn_value(dn)
        if len(cn) > 64 or len(str(attributes.get("sAMAccountName", ""))) > 256:
            raise DirectoryWriteError(f"constraint violation: {dn}", dn=dn, result="CONSTRAINT_VIOLATION")
        if normalize_dn(dn) in self.groups:
            raise DirectoryWriteError(f"already exists: {dn}", dn=dn, result="ALREADY_EXISTS")
        self._check_members(dn, int(str(attributes["groupType"])), members)
        self.ops.append(("add", dn))
        entry: dict[str, Any] = {k: v for k, v in attributes.items() if k != "objectClass"}
        entry.update(dn=dn, guid=f"guid-{len(self.groups)}", member=set(members))
        self.groups[normalize_dn(dn)] = entry
        self._touch(entry)

    def modify_attributes(self, dn: str, values: Mapping[str, AttributeValue]) -> None:
        self._check(dn)
        self._check_rights(dn, values)
        self.ops.append(("modify", dn))
        e = self.groups.get(normalize_dn(dn)) or self.users[normalize_dn(dn)]
        for k, v in values.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        self._touch(e)

    def move(self, dn: str, new_dn: str) -> None:
        self._check(dn)
        if rdn_value(dn) != rdn_value(new_dn):
            self._check_rights(dn, ("cn", "name"))
        self.ops.append(("modrdn", dn))
        table = self.users if normalize_dn(dn) in self.users else self.groups
        e = table.pop(normalize_dn(dn))
        e["dn"] = new_dn
        table[normalize_dn(new_dn)] = e
        self._touch(e)
        for other in self.groups.values():  # AD rewrites linked values on rename
            if dn in other["member"]:
                other["member"].discard(dn)
                other["member"].add(new_dn)

    def add_members(self, dn: str, members: Sequence[str]) -> None:
        for chunk in self._chunks(members):
            self._check(dn)
            self._check_rights(dn, ("member",))
            self._check_members(dn, int(self.groups[normalize_dn(dn)]["groupType"]), chunk)
            self.ops.append(("modify", dn))
            self.groups[normalize_dn(dn)]["member"].update(chunk)
            self._touch(self.groups[normalize_dn(dn)])

    def remove_members(self, dn: str, members: Sequence[str]) -> None:
        for chunk in self._chunks(members):
            self._check(dn)
            self._check_rights(dn, ("member",))
            self.ops.append(("modify", dn))
            self.groups[normalize_dn(dn)]["member"].difference_update(chunk)
            self._touch(self.groups[normalize_dn(dn)])

    def delete(self, dn: str) -> None:
        self._check(dn)
        self.ops.append(("delete", dn))
        if normalize_dn(dn) in self.users:
            del self.users[normalize_dn(dn)]
            for other in self.groups.values():  # AD drops the deleted account from every group
                other["member"] = {m for m in other["member"] if normalize_dn(m) != normalize_dn(dn)}
        else:
            del self.groups[normalize_dn(dn)]
        self.usn += 1

    def close(self) -> None:
        pass

    def writes(self) -> int:
        return sum(1 for op, _ in self.ops if op != "search")


# -- the cloud replica ----------------------------------------------------------------------------------------
# MemoryReplica: an in-memory ports.ReplicaStore, the reference behaviour of the cloud replica, used by the
# unit tests of the engine and the Graph adapter (moved here from the product, which never used it). The SQL
# store implements the same semantics:
#
# - ``upsert_*`` stores the object as given (a restored object arrives with ``deleted=False``). A group's
#   ``members`` field is ignored: members change only through ``add_members``, ``remove_members`` and
#   ``clear_members``, and survive an upsert.
# - ``remove_*(hard=False)`` marks a known object soft-deleted and keeps it (and a group's members); an unknown
#   id is ignored, since there is nothing to keep. ``hard=True`` forgets the object (and a group's members).
# - Member changes for a group not (yet) stored are kept and show up once the group is upserted.
# - ``reset(resource)`` forgets every user, or every group with its members; delta links are left to the caller.
# - A transaction applies writes directly and keeps an undo log (the old value of each key on first touch);
#   leaving the ``with`` block by an exception restores them. One transaction at a time.

RESOURCES: Final = ("users", "groups")

_K = TypeVar("_K")
_V = TypeVar("_V")


class _Missing:
    """Marks "the key did not exist" in the undo log."""


_MISSING: Final = _Missing()


class MemoryReplica:
    """Dict-backed replica. ``snapshot()`` returns immutable values (members as frozensets)."""

    def __init__(self) -> None:
        self.users: dict[str, CloudUser] = {}
        self.groups: dict[str, CloudGroup] = {}
        self.members: dict[str, set[MemberRef]] = {}
        self.delta_links: dict[str, str] = {}
        self.unified_writeback_default: bool | None = None
        self.delta_queries: dict[str, str] = {}
        self._lock = threading.Lock()
        self._active: MemoryTransaction | None = None
        self.commits = 0  # for tests: how many transactions committed
        self.pending: set[str] = set()  # groups marked changed by committed rounds (see ReplicaTransaction)

    def transaction(self) -> MemoryTransaction:
        return MemoryTransaction(self)

    def get_delta_link(self, resource: str) -> str | None:
        _check_resource(resource)
        return self.delta_links.get(resource)

    def get_unified_writeback_default(self) -> bool | None:
        return self.unified_writeback_default

    def get_delta_query(self, resource: str) -> str | None:
        _check_resource(resource)
        return self.delta_queries.get(resource)

    def snapshot(self, member_groups: Collection[str] | None = None) -> CloudSnapshot:
        with self._lock:
            wanted = self.groups.keys() if member_groups is None else set(member_groups)
            groups = {
                gid: dataclasses.replace(
                    group, members=frozenset(self.members.get(gid, ())) if gid in wanted else frozenset()
                )
                for gid, group in self.groups.items()
            }
            default = self.unified_writeback_default
            if member_groups is None:
                return CloudSnapshot(users=dict(self.users), groups=groups, unified_writeback_default=default)
            ids = {m.id for gid in wanted for m in self.members.get(gid, ()) if m.kind == "user"}
            users = {u: self.users[u] for u in ids if u in self.users}
            return CloudSnapshot(users=users, groups=groups, unified_writeback_default=default)


def _check_resource(resource: str) -> None:
    if resource not in RESOURCES:
        raise StateError(f"unknown replica resource {resource!r}; expected one of {', '.join(RESOURCES)}")


class MemoryTransaction:
    """One atomic round of replica writes; commits on normal exit, rolls back on exception."""

    def __init__(self, replica: MemoryReplica) -> None:
        self._replica = replica
        self._open = False
        self._undo_users: dict[str, CloudUser | _Missing] = {}
        self._undo_groups: dict[str, CloudGroup | _Missing] = {}
        self._undo_members: dict[str, set[MemberRef] | _Missing] = {}
        self._undo_links: dict[str, str | _Missing] = {}
        self._undo_default: tuple[bool | None] | None = None  # (old value,) once touched
        self._undo_queries: dict[str, str | _Missing] = {}
        self._marks: set[str] = set()

    def __enter__(self) -> MemoryTransaction:
        replica = self._replica
        with replica._lock:
            if replica._active is not None:
                raise StateError("a replica transaction is already open; nesting is not supported")
            replica._active = self
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        replica = self._replica
        with replica._lock:
            try:
                if exc and exc[0] is not None:
                    _restore(replica.users, self._undo_users)
                    _restore(replica.groups, self._undo_groups)
                    _restore(replica.members, self._undo_members)
                    _restore(replica.delta_links, self._undo_links)
                    _restore(replica.delta_queries, self._undo_queries)
                    if self._undo_default is not None:
                        replica.unified_writeback_default = self._undo_default[0]
                else:
                    replica.commits += 1
                    replica.pending |= self._marks
            finally:
                replica._active = None
                self._open = False

    # -- writes ---------------------------------------------------------------------------------------------

    def set_delta_link(self, resource: str, link: str | None) -> None:
        _check_resource(resource)
        self._save(self._replica.delta_links, self._undo_links, resource)
        if link is None:
            self._replica.delta_links.pop(resource, None)
        else:
            self._replica.delta_links[resource] = link

    def set_delta_query(self, resource: str, query: str) -> None:
        _check_resource(resource)
        self._save(self._replica.delta_queries, self._undo_queries, resource)
        self._replica.delta_queries[resource] = query

    def set_unified_writeback_default(self, value: bool | None) -> None:
        self._require_open()
        if self._undo_default is None:
            self._undo_default = (self._replica.unified_writeback_default,)
        self._replica.unified_writeback_default = value

    def upsert_user(self, user: CloudUser) -> None:
        self._save(self._replica.users, self._undo_users, user.id)
        self._replica.users[user.id] = user

    def remove_user(self, user_id: str, *, hard: bool) -> None:
        self._require_open()
        users = self._replica.users
        if user_id not in users:
            return
        self._save(users, self._undo_users, user_id)
        if hard:
            del users[user_id]
        else:
            users[user_id] = dataclasses.replace(users[user_id], deleted=True)

    def upsert_group(self, group: CloudGroup) -> None:
        self._save(self._replica.groups, self._undo_groups, group.id)
        self._replica.groups[group.id] = dataclasses.replace(group, members=frozenset())

    def remove_group(self, group_id: str, *, hard: bool) -> None:
        self._require_open()
        groups = self._replica.groups
        if hard:
            self._save(groups, self._undo_groups, group_id)
            self._save_members(group_id)
            groups.pop(group_id, None)
            self._replica.members.pop(group_id, None)
        elif group_id in groups:
            self._save(groups, self._undo_groups, group_id)
            groups[group_id] = dataclasses.replace(groups[group_id], deleted=True)

    def add_members(self, group_id: str, members: Iterable[MemberRef]) -> None:
        self._save_members(group_id)
        self._replica.members.setdefault(group_id, set()).update(members)

    def remove_members(self, group_id: str, member_ids: Iterable[str]) -> None:
        self._require_open()
        current = self._replica.members.get(group_id)
        if not current:
            return
        gone = set(member_ids)
        self._save_members(group_id)
        current.difference_update({ref for ref in current if ref.id in gone})

    def clear_members(self, group_id: str) -> None:
        self._save_members(group_id)
        self._replica.members.pop(group_id, None)

    def mark_changed(self, resource: str, ids: Collection[str]) -> None:
        self._require_open()
        _check_resource(resource)
        wanted = set(ids)
        self._marks |= wanted if resource == "groups" else set()
        members = self._replica.members
        self._marks |= {gid for gid, refs in members.items() if any(m.id in wanted for m in refs)}

    def reset(self, resource: str) -> None:
        _check_resource(resource)
        replica = self._replica
        if resource == "users":
            for user_id in list(replica.users):
                self._save(replica.users, self._undo_users, user_id)
            replica.users.clear()
        else:
            for group_id in list(replica.groups):
                self._save(replica.groups, self._undo_groups, group_id)
            for group_id in list(replica.members):
                self._save_members(group_id)
            replica.groups.clear()
            replica.members.clear()

    # -- undo log -------------------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._open:
            raise StateError(
                "replica writes need an open transaction: use 'with replica.transaction() as tx'"
            )

    def _save(self, data: dict[_K, _V], undo: dict[_K, _V | _Missing], key: _K) -> None:
        self._require_open()
        if key not in undo:
            undo[key] = data.get(key, _MISSING)

    def _save_members(self, group_id: str) -> None:
        self._require_open()
        if group_id not in self._undo_members:
            current = self._replica.members.get(group_id)
            self._undo_members[group_id] = _MISSING if current is None else set(current)


def _restore(data: dict[_K, _V], undo: dict[_K, _V | _Missing]) -> None:
    for key, old in undo.items():
        if isinstance(old, _Missing):
            data.pop(key, None)
        else:
            data[key] = old


def _fakes_implement_the_ports(
    directory: FakeDirectory, cloud: FakeCloud, replica: MemoryReplica
) -> tuple[Directory, CloudSource, ReplicaStore]:
    """Never called: mypy checks here that each fake implements its port (Protocols match by shape, so a
    method missing or typed apart would otherwise surface only as a failing test, or not at all)."""
    return directory, cloud, replica
