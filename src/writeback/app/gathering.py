"""The one gathering step: read from AD exactly what :func:`writeback.core.desired.questions` asked, once per plan.

Every directory read of a plan happens here, in a fixed order, so the pure steps before and after it never
read: resolve member accounts (in ``members.match_order``, each key only for the users the ones before it did
not find) and read the managed groups (all, or where the planned ones may be — then first, since their
member values bring their accounts' keys and only the other members are searched for), then — knowing which groups already
hold their names and DNs — look up who holds the remaining candidate sAMAccountNames and DNs. Groups asked for
by SID (SOA originals, AD groups nested in cloud groups) are found through the Global Catalog when configured
and those in the domain read in full.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from writeback.core.desired import DirectoryFacts, Questions
from writeback.core.dn import is_within, normalize_dn
from writeback.core.mapping import (
    EXCHANGE_ATTRIBUTES,
    MAIL_ATTRIBUTES,
    MSDS_ANCHOR,
    USER_ANCHOR_ATTRIBUTES,
    anchor_attributes,
    read_anchor_attributes,
)
from writeback.core.model import USER_ANCHOR_PREFIX, DirectoryAccount, DirectoryGroup, DirectoryUser
from writeback.core.ports import Directory, ResolvedAccounts
from writeback.core.text import plural


@dataclass(frozen=True)
class Schema:
    """Where anchors live in this forest: written to ``write``, read from ``read`` (both, to adopt what
    Connect v2 wrote in adminDescription only)."""

    write: tuple[str, ...]
    read: tuple[str, ...]
    # The mail and Exchange attributes writeback writes on mail groups that this forest's schema lacks
    # (without Exchange's schema: mailNickname and the msExch* recipient attributes).
    missing: frozenset[str] = frozenset()
    # Where a user anchor (User_<id>) is written and read: msDS-ExternalDirectoryObjectId only, or nothing
    # when the schema lacks it (then no user is written; see writeback.core.desired).
    users: tuple[str, ...] = ()

    @classmethod
    def of(cls, directory: Directory, anchor_mode: str) -> Schema:
        has_msds = directory.has_attribute(MSDS_ANCHOR)
        missing = frozenset(
            a for a in (*MAIL_ATTRIBUTES, *EXCHANGE_ATTRIBUTES) if not directory.has_attribute(a)
        )
        users = USER_ANCHOR_ATTRIBUTES if has_msds else ()
        return cls(anchor_attributes(anchor_mode, has_msds), read_anchor_attributes(has_msds), missing, users)

    @property
    def mail(self) -> tuple[str, ...]:
        """The mail and Exchange attributes this forest holds (read back to compare)."""
        return tuple(a for a in (*MAIL_ATTRIBUTES, *EXCHANGE_ATTRIBUTES) if a not in self.missing)


class Progress(Protocol):
    def __call__(self, message: str, /) -> None: ...


def gather(
    q: Questions,
    directory: Directory,
    schema: Schema,
    mapped: Sequence[str],
    progress: Progress,
    user_mapped: Sequence[str] = (),
) -> DirectoryFacts:
    """Answer ``q`` from ``directory``.

    A partial plan reads its groups first, with their members' accounts (:meth:`Directory.
    read_groups_with_accounts`), and searches AD only for the accounts not among them: most members of a
    changed big group are already in its AD group. A full plan resolves first, then reads every managed group.
    """
    attrs = tuple(dict.fromkeys((*schema.read, *mapped)))
    prefixes = q.prefixes
    if q.every_managed_group:
        accounts = _resolve(q, directory, progress)
        managed = directory.read_managed_groups(schema.read, attrs, prefixes)
    else:
        managed, known = _read_some(q, directory, schema, attrs, prefixes)
        # known is None when every managed group had to be read: then every member is searched for.
        accounts = _resolve(q, directory, progress, known)
    progress(f"{plural(len(managed), 'managed group')} in AD")
    names = q.names_to_check(managed)
    dns = q.dns_to_check(managed)
    by_sid, originals = _groups_by_sid(q, directory, schema, attrs, progress)
    users_by_sid, managed_users = _users(q, directory, schema, user_mapped, progress, managed)
    return DirectoryFacts(
        anchor_attributes=schema.write,
        accounts=accounts,
        managed=tuple(managed),
        taken_names=directory.taken_sam_account_names(names) if names else {},
        existing_dns=frozenset(_normalized(directory.existing_dns(dns)) if dns else ()),
        groups_by_sid=by_sid,
        originals=originals,
        missing_attributes=schema.missing,
        users_by_sid=users_by_sid,
        managed_users=managed_users,
        user_anchor_attributes=schema.users,
        **_member_account_names(q, directory, schema),
    )


def _member_account_names(q: Questions, directory: Directory, schema: Schema) -> dict[str, Any]:
    """Who holds the names of the accounts writeback may create (cloud_members): their sAMAccountNames in
    the domain, their UPNs in the forest, their DNs."""
    if not schema.users or not (q.user_names or q.user_upns or q.user_dns):
        return {}
    return {
        "user_taken_names": directory.taken_sam_account_names(q.user_names) if q.user_names else {},
        "taken_upns": directory.taken_user_principal_names(q.user_upns) if q.user_upns else {},
        "user_existing_dns": frozenset(_normalized(directory.existing_dns(q.user_dns)) if q.user_dns else ()),
    }


def _users(
    q: Questions,
    directory: Directory,
    schema: Schema,
    mapped: Sequence[str],
    progress: Progress,
    groups: Sequence[DirectoryGroup] = (),
) -> tuple[dict[str, DirectoryUser], tuple[DirectoryUser, ...]]:
    """The user accounts ``q`` asks for ([users]): by SID (SOA users' originals, accounts to release) and, in
    a full plan (or a partial one that may create or see leave an account: ``groups``, the groups read),
    every account anchored User_. Nothing is read when users are off or the schema has no place for their
    anchor."""
    every = q.reads_managed_users(groups)
    if not schema.users or not (q.user_sids or every):
        return {}, ()
    found: dict[str, DirectoryUser] = {}
    if q.user_sids:
        progress(f"Reading {plural(len(q.user_sids), 'user account')} by SID")
        found = {
            sid.upper(): u
            for sid, u in directory.read_users_by_sid(q.user_sids, schema.users, mapped).items()
        }
    managed: tuple[DirectoryUser, ...] = ()
    if every:
        managed = tuple(directory.read_managed_users(schema.users, mapped, (USER_ANCHOR_PREFIX,)))
        progress(f"{plural(len(managed), 'managed user account')} in AD")
    return found, managed


def _groups_by_sid(
    q: Questions, directory: Directory, schema: Schema, attrs: tuple[str, ...], progress: Progress
) -> tuple[dict[str, DirectoryAccount], dict[str, DirectoryGroup]]:
    """The AD groups of ``q.group_sids``: every one found (forest-wide through the GC), and those of the
    domain read as groups (anchored or not) so an SOA original can be taken over."""
    if not q.group_sids:
        return {}, {}
    progress(f"Finding {len(q.group_sids)} AD groups by SID")
    found = {sid.upper(): a for sid, a in directory.resolve_groups_by_sid(q.group_sids).items()}
    sid_by_dn = {normalize_dn(a.dn): sid for sid, a in found.items() if is_within(a.dn, q.base_dn)}
    originals: dict[str, DirectoryGroup] = {}
    if sid_by_dn:
        dns = [a.dn for a in found.values() if normalize_dn(a.dn) in sid_by_dn]
        for g in directory.read_groups(dns, schema.read, attrs):
            if (sid := sid_by_dn.get(normalize_dn(g.dn))) is not None:
                originals[sid] = g
    return found, originals


def _resolve(
    q: Questions, directory: Directory, progress: Progress, known: ResolvedAccounts | None = None
) -> ResolvedAccounts:
    """Synced members' AD accounts: by the first key of the match order, then by the next only for the users
    the ones before did not find (when every synced user has a SID, that halves the searches of a full plan).

    ``known``: accounts AD already gave with the planned groups' members. A key found there counts as found
    exactly as if the search had found it, so only the keys not there are searched for and the result (and
    the plan) is the one a search of every key gives."""
    progress(f"Resolving {len(q.accounts)} synced members in AD")
    by_sid: dict[str, DirectoryAccount] = {}
    by_guid: dict[str, DirectoryAccount] = {}
    known_sid = known.by_sid if known is not None else {}
    known_guid = known.by_guid if known is not None else {}
    pending = list(q.accounts)
    searched = 0
    for how in q.match_order:
        if how == "sid" and (sids := {s for s, _ in pending if s}):
            found, asked = _look_up(
                sids, known_sid, lambda k: directory.resolve_accounts(k, ()).by_sid, _upper
            )
            by_sid.update(found)
            searched += asked
            pending = [(s, g) for s, g in pending if not (s and s in by_sid)]
        elif how == "immutable_id" and (guids := {g for _, g in pending if g}):
            found, asked = _look_up(
                guids, known_guid, lambda k: directory.resolve_accounts((), k).by_guid, str.lower
            )
            by_guid.update(found)
            searched += asked
            pending = [(s, g) for s, g in pending if not (g and g in by_guid)]
    if known is not None:
        progress(
            f"{plural(searched, 'key')} searched for in AD, the rest known from the planned groups' members"
        )
    return ResolvedAccounts(by_sid=by_sid, by_guid=by_guid)


def _upper(sid: str) -> str:
    return sid if sid.isupper() else sid.upper()  # no copy of 100k SIDs already upper-case


def _look_up(
    wanted: set[str],
    known: Mapping[str, DirectoryAccount],
    search: Callable[[set[str]], Mapping[str, DirectoryAccount]],
    key: Callable[[str], str],
) -> tuple[dict[str, DirectoryAccount], int]:
    """The accounts of ``wanted`` keys: those in ``known`` as found, the rest searched for (their keys as
    ``key`` makes them); and how many keys were searched for."""
    found = {k: known[k] for k in wanted if k in known}
    rest = wanted - found.keys()
    if rest:
        found.update((key(k), v) for k, v in search(rest).items())
    return found, len(rest)


def _read_some(
    q: Questions, directory: Directory, schema: Schema, attrs: tuple[str, ...], prefixes: tuple[str, ...]
) -> tuple[list[DirectoryGroup], ResolvedAccounts | None]:
    """The planned groups where they were last written or will be created, with their members' accounts;
    every managed group when one of them is not where it was last seen (moved by hand: it must not look
    missing and be created twice) — then no accounts (None): the plan resolves every member as a full one."""
    dns = [dn for where in q.groups.values() for dn in where]
    read, known = directory.read_groups_with_accounts(dns, schema.read, attrs)
    found = [g for g in read if g.cloud_id in q.groups]
    if q.remembered - {g.cloud_id for g in found}:
        every = directory.read_managed_groups(schema.read, attrs, prefixes)
        return [g for g in every if g.cloud_id in q.groups], None
    return found, known


def _normalized(dns: set[str]) -> set[str]:
    return {normalize_dn(d) for d in dns}
