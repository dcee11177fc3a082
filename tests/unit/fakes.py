"""In-memory fakes of the ports, for unit tests of the engine. They keep assertable state.

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

from dataclasses import dataclass, field

from writeback.core.dn import is_within, normalize_dn, parent_dn, rdn_value
from writeback.core.model import (
    ANCHOR_PREFIXES,
    GROUP_TYPE_DOMAIN_LOCAL,
    GROUP_TYPE_UNIVERSAL,
    CloudGroup,
    CloudUser,
    DirectoryAccount,
    DirectoryGroup,
)
from writeback.core.ports import GroupStamp, ResolvedAccounts, SyncReport, UserChanges, UsnWatermark
from writeback.errors import DirectoryWriteError


@dataclass
class FakeCloud:
    """A CloudSource that loads a fixed set of users and groups as a full round each time.

    With ``incremental`` it reports like a delta round after the first: a full resync only the first time,
    and only the users and groups that changed since the last sync marked (ReplicaTransaction.mark_changed)."""

    users: dict[str, CloudUser] = field(default_factory=dict)
    groups: dict[str, CloudGroup] = field(default_factory=dict)
    incremental: bool = False
    _seen: tuple[dict[str, CloudUser], dict[str, CloudGroup]] | None = None

    def sync(self, replica):  # type: ignore[no-untyped-def]
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
    groups: dict[str, dict] = field(default_factory=dict)  # normalized dn -> entry
    ops: list[tuple[str, str]] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)
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

    def _touch(self, entry: dict) -> None:  # type: ignore[type-arg]
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

    def read_group_stamps(self, anchor_attributes, prefixes, dns=None):  # type: ignore[no-untyped-def]
        self.ops.append(("search", "stamps" if dns is None else "stamps of some"))
        at = None if dns is None else {normalize_dn(d) for d in dns}
        stamps = [
            GroupStamp(g.dn, g.cloud_id, int(e.get("uSNChanged", 0)))
            for key, e in self.groups.items()
            if (at is None or key in at) and (g := self._group(e)).cloud_id is not None
        ]
        return UsnWatermark(self.invocation_id, self.usn), stamps

    def changed_account_keys(self, base_dn, since_usn):  # type: ignore[no-untyped-def]
        return [
            (a.object_sid, a.object_guid)
            for a in self.accounts
            if self.account_usns.get(normalize_dn(a.dn), 0) > since_usn
        ]

    def has_attribute(self, name):  # type: ignore[no-untyped-def]
        return self.schema_msds or name != "msDS-ExternalDirectoryObjectId"

    def _findable(self, dn: str) -> bool:
        """Whether the adapter's account searches can find the object at ``dn``: not a foreign security
        principal, and in the domain's naming context (not a child domain's) unless the GC is searched."""
        if normalize_dn(parent_dn(dn)).startswith("cn=foreignsecurityprincipals,"):
            return False
        if self.global_catalog:
            return True
        return is_within(dn, self.domain_dn) and not any(is_within(dn, c) for c in self.child_domains)

    def resolve_accounts(self, sids, guids):  # type: ignore[no-untyped-def]
        sids, guids = set(sids), set(guids)
        self.resolve_calls.append((frozenset(sids), frozenset(guids)))
        found = [a for a in self.accounts if self._findable(a.dn)]
        return ResolvedAccounts(
            by_sid={a.object_sid: a for a in found if a.object_sid in sids},
            by_guid={a.object_guid: a for a in found if a.object_guid in guids},
        )

    def read_groups_with_accounts(self, dns, anchor_attributes, mapped):  # type: ignore[no-untyped-def]
        dns = list(dns)
        self.ops += [("search", d) for d in dns]  # a group read like read_groups' (tests count them)
        self.keyed_reads += dns
        groups = [self._group(self.groups[normalize_dn(d)]) for d in dns if normalize_dn(d) in self.groups]
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

    def resolve_groups_by_sid(self, sids):  # type: ignore[no-untyped-def]
        wanted = {s.upper() for s in sids}
        return {
            e["objectSid"].upper(): DirectoryAccount(
                e["dn"], e["guid"], e["objectSid"], "group", int(e["groupType"])
            )
            for e in self.groups.values()
            if e.get("objectSid", "").upper() in wanted
        }

    def _group(self, e: dict) -> DirectoryGroup:
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
        )

    def read_managed_groups(self, anchor_attributes, mapped, prefixes):  # type: ignore[no-untyped-def]
        self.ops.append(("search", "*"))
        return [g for g in (self._group(e) for e in self.groups.values()) if g.anchor]

    def read_user_changes(self, base_dn, since):  # type: ignore[no-untyped-def]
        return UserChanges(users=[], watermark=UsnWatermark("dc", 0), full=since is None)

    def read_groups(self, dns, anchor_attributes, mapped):  # type: ignore[no-untyped-def]
        dns = list(dns)
        self.ops += [("search", d) for d in dns]
        return [self._group(self.groups[normalize_dn(d)]) for d in dns if normalize_dn(d) in self.groups]

    def existing_dns(self, dns):  # type: ignore[no-untyped-def]
        return {d for d in dns if normalize_dn(d) in self.groups}

    def taken_sam_account_names(self, names):  # type: ignore[no-untyped-def]
        wanted = {n.lower() for n in names}
        return {
            e["sAMAccountName"].lower(): e["dn"]
            for e in self.groups.values()
            if e.get("sAMAccountName", "").lower() in wanted
        }

    def _check(self, dn: str) -> None:
        if normalize_dn(dn) in self.fail_on:
            raise DirectoryWriteError(f"refused: {dn}", dn=dn, result="INSUFFICIENT_ACCESS")

    def _check_members(self, dn: str, group_type: int, members) -> None:  # type: ignore[no-untyped-def]
        users = {normalize_dn(a.dn) for a in self.accounts}
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

    def create_group(self, dn, attributes, members):  # type: ignore[no-untyped-def]
        self._check(dn)
        cn = rdn_value(dn)
        if len(cn) > 64 or len(str(attributes.get("sAMAccountName", ""))) > 256:
            raise DirectoryWriteError(f"constraint violation: {dn}", dn=dn, result="CONSTRAINT_VIOLATION")
        if normalize_dn(dn) in self.groups:
            raise DirectoryWriteError(f"already exists: {dn}", dn=dn, result="ALREADY_EXISTS")
        self._check_members(dn, int(attributes["groupType"]), members)
        self.ops.append(("add", dn))
        entry = {k: v for k, v in attributes.items() if k != "objectClass"}
        entry.update(dn=dn, guid=f"guid-{len(self.groups)}", member=set(members))
        self.groups[normalize_dn(dn)] = entry
        self._touch(entry)

    def modify_attributes(self, dn, values):  # type: ignore[no-untyped-def]
        self._check(dn)
        self.ops.append(("modify", dn))
        e = self.groups[normalize_dn(dn)]
        for k, v in values.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        self._touch(e)

    def move(self, dn, new_dn):  # type: ignore[no-untyped-def]
        self._check(dn)
        self.ops.append(("modrdn", dn))
        e = self.groups.pop(normalize_dn(dn))
        e["dn"] = new_dn
        self.groups[normalize_dn(new_dn)] = e
        self._touch(e)
        for other in self.groups.values():  # AD rewrites linked values on rename
            if dn in other["member"]:
                other["member"].discard(dn)
                other["member"].add(new_dn)

    def add_members(self, dn, members):  # type: ignore[no-untyped-def]
        self._check(dn)
        self._check_members(dn, int(self.groups[normalize_dn(dn)]["groupType"]), members)
        self.ops.append(("modify", dn))
        self.groups[normalize_dn(dn)]["member"].update(members)
        self._touch(self.groups[normalize_dn(dn)])

    def remove_members(self, dn, members):  # type: ignore[no-untyped-def]
        self._check(dn)
        self.ops.append(("modify", dn))
        self.groups[normalize_dn(dn)]["member"].difference_update(members)
        self._touch(self.groups[normalize_dn(dn)])

    def delete(self, dn):  # type: ignore[no-untyped-def]
        self._check(dn)
        self.ops.append(("delete", dn))
        del self.groups[normalize_dn(dn)]
        self.usn += 1

    def close(self):  # type: ignore[no-untyped-def]
        pass

    def writes(self) -> int:
        return sum(1 for op, _ in self.ops if op != "search")
