"""``LdapDirectory``: :class:`writeback.ports.Directory` over LDAP with python-ldap.

Reads are paged and follow ranged ``member`` retrieval; writes are batched (one add or modify per chunk of
``max_values_per_modify`` member values, never one per member) and idempotent, so replaying a half-applied
plan after a crash converges instead of failing. Every LDAP operation is counted in :attr:`stats`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import ldap
from ldap.filter import escape_filter_chars

from writeback.directory.access import check_write_access
from writeback.directory.codec import (
    chunked,
    escape_filter_bytes,
    first_str,
    guid_to_bytes,
    guid_to_str,
    lower_keys,
    or_filter,
    sid_from_str,
    sid_to_str,
    split_member_values,
)
from writeback.directory.connection import STAT_KEYS, LdapSession
from writeback.directory.entries import (
    ACCOUNT_ATTRIBUTES,
    GROUP_ATTRIBUTES,
    account_from_entry,
    group_from_entry,
)
from writeback.directory.settings import DirectorySettings
from writeback.directory.users import AD_ATTRIBUTES, user_properties
from writeback.dn import is_within, normalize_dn, parent_dn, rdn
from writeback.errors import DirectoryError, DirectoryWriteError
from writeback.model import ANCHOR_PREFIXES, DirectoryAccount, DirectoryGroup
from writeback.ports import ResolvedAccounts

log = logging.getLogger(__name__)

# OR filters of this many terms keep each search request small (AD's MaxQueryDuration, request size).
FILTER_BATCH = 200
# Above this many SIDs/GUIDs to resolve, resolve_accounts reads all users once (paged) instead.
FULL_SCAN_TERMS = 2_000
_BASE, _SUBTREE = ldap.SCOPE_BASE, ldap.SCOPE_SUBTREE
_ANY = "(objectClass=*)"
_NO_ATTRS = ["1.1"]  # RFC 4511: return no attributes, just the DN

# A value already there / not there: AD and Samba word these differently. Each means "re-read and redo".
_ADD_CONFLICTS = (ldap.TYPE_OR_VALUE_EXISTS, ldap.ALREADY_EXISTS)
_REMOVE_CONFLICTS = (ldap.NO_SUCH_ATTRIBUTE, ldap.UNWILLING_TO_PERFORM)


class LdapDirectory:
    """Active Directory through LDAP. Connects lazily; call :meth:`close` (or use ``with``) when done."""

    def __init__(self, settings: DirectorySettings) -> None:
        self._settings = settings
        self._stats: Counter[str] = Counter(dict.fromkeys(STAT_KEYS, 0))
        self._domain = LdapSession(settings, settings.urls, self._stats, "domain controller")
        self._gc = (
            LdapSession(settings, settings.gc_urls, self._stats, "global catalog")
            if settings.gc_urls
            else None
        )
        self._schema: dict[str, bool] = {}
        self._root_dse: dict[str, str] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """LDAP operations by kind (bind, search, add, modify, modrdn, delete) and values_written."""
        return dict(self._stats)

    def check_tls_and_bind(self) -> None:
        """Connect and bind to the domain (and the Global Catalog when configured); raise on failure."""
        self._domain.connection()
        if self._gc is not None:
            self._gc.connection()

    def check_write_access(
        self, ou_dn: str, attributes: Sequence[str] = ("member", "description", "displayName")
    ) -> list[str]:
        """Problems that would stop writeback in ``ou_dn`` (empty when none), as computed by the DC."""
        return check_write_access(self._domain, ou_dn, self._settings.bind_dn, attributes)

    def close(self) -> None:
        self._domain.close()
        if self._gc is not None:
            self._gc.close()

    def __enter__(self) -> LdapDirectory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- schema and naming contexts -----------------------------------------------------------------------

    def _naming_context(self, name: str) -> str:
        if self._root_dse is None:
            keys = ["defaultNamingContext", "schemaNamingContext", "rootDomainNamingContext"]
            entries = self._domain.search("", _BASE, _ANY, keys, paged=False)
            attrs = lower_keys(entries[0][1]) if entries else {}
            self._root_dse = {k.lower(): first_str(attrs, k) or "" for k in keys}
        value = self._root_dse.get(name.lower(), "")
        if not value:
            raise DirectoryError(f"the DC's RootDSE has no {name}")
        return value

    def has_attribute(self, ldap_name: str) -> bool:
        """True when the schema defines ``ldap_name`` (looked up once by lDAPDisplayName, then cached)."""
        key = ldap_name.lower()
        if key not in self._schema:
            flt = f"(&(objectClass=attributeSchema)(lDAPDisplayName={escape_filter_chars(ldap_name)}))"
            schema_nc = self._naming_context("schemaNamingContext")
            found = self._domain.search(schema_nc, ldap.SCOPE_ONELEVEL, flt, _NO_ATTRS, paged=False)
            self._schema[key] = bool(found)
        return self._schema[key]

    # -- accounts -----------------------------------------------------------------------------------------

    def resolve_accounts(self, sids: Iterable[str], guids: Iterable[str]) -> ResolvedAccounts:
        """Accounts by objectSid and objectGUID, in OR batches, through the Global Catalog when configured.

        Keys of the result are the strings as given. Malformed SIDs or GUIDs are skipped (they cannot
        match anything) and logged without their value's context beyond the value itself.
        """
        wanted_sids: dict[str, list[str]] = {}
        wanted_guids: dict[str, list[str]] = {}
        terms: list[str] = []
        for sid in dict.fromkeys(sids):
            try:
                raw = sid_from_str(sid)
            except ValueError:
                log.warning("skipping malformed SID %r", sid)
                continue
            wanted_sids.setdefault(sid_to_str(raw), []).append(sid)
            terms.append(f"(objectSid={escape_filter_bytes(raw)})")
        for guid in dict.fromkeys(guids):
            try:
                raw = guid_to_bytes(guid)
            except ValueError:
                log.warning("skipping malformed GUID %r", guid)
                continue
            wanted_guids.setdefault(guid_to_str(raw), []).append(guid)
            terms.append(f"(objectGUID={escape_filter_bytes(raw)})")
        by_sid: dict[str, DirectoryAccount] = {}
        by_guid: dict[str, DirectoryAccount] = {}
        session, base = (
            (self._gc, "")
            if self._gc is not None
            else (self._domain, self._naming_context("defaultNamingContext"))
        )
        if len(terms) > FULL_SCAN_TERMS:
            # Many lookups: one paged read of every user is far cheaper than hundreds of OR searches.
            searches: Iterable[str] = ["(&(objectCategory=person)(objectClass=user))"]
        else:
            searches = (or_filter(batch) for batch in chunked(terms, FILTER_BATCH))
        for flt in searches:
            for dn, raw_attrs in session.search(base, _SUBTREE, flt, ACCOUNT_ATTRIBUTES):
                if not dn:
                    continue
                account = account_from_entry(dn, lower_keys(raw_attrs))
                for given in wanted_guids.get(account.object_guid, ()):
                    by_guid.setdefault(given, account)
                for given in wanted_sids.get(account.object_sid or "", ()):
                    by_sid.setdefault(given, account)
        return ResolvedAccounts(by_sid=by_sid, by_guid=by_guid)

    # -- groups -------------------------------------------------------------------------------------------

    def read_managed_groups(
        self,
        anchor_attributes: Sequence[str] = ("msDS-ExternalDirectoryObjectId", "adminDescription"),
        mapped: Sequence[str] = ("description", "displayName"),
        prefixes: Sequence[str] = ANCHOR_PREFIXES,
    ) -> list[DirectoryGroup]:
        """Every group under base_dn carrying an anchor that starts with one of ``prefixes`` ('Group_' for
        cloud groups, 'WritebackDynamic_' for on-prem dynamic groups), in any OU (paged, ranged members)."""
        anchors = [a for a in anchor_attributes if self.has_attribute(a)]
        if not anchors:
            return []
        flt = or_filter([f"({a}={escape_filter_chars(p)}*)" for a in anchors for p in prefixes])
        flt = f"(&(objectClass=group){flt})"
        entries = self._domain.search(
            self._settings.base_dn, _SUBTREE, flt, self._group_attrs(anchors, mapped)
        )
        groups = [self._group(dn, attrs, anchors, mapped, prefixes) for dn, attrs in entries]
        # The filter matches case-insensitively; ownership needs the exact prefix.
        return sorted((g for g in groups if g.anchor is not None), key=lambda g: normalize_dn(g.dn))

    def read_groups(
        self,
        dns: Iterable[str],
        anchor_attributes: Sequence[str] = ("msDS-ExternalDirectoryObjectId", "adminDescription"),
        mapped: Sequence[str] = ("description", "displayName"),
    ) -> list[DirectoryGroup]:
        """The listed groups, anchored or not (base searches); DNs that do not exist or are not groups are
        left out."""
        anchors = [a for a in anchor_attributes if self.has_attribute(a)]
        attrs = self._group_attrs(anchors, mapped)
        groups: list[DirectoryGroup] = []
        for dn in dict.fromkeys(dns):
            for found_dn, raw in self._domain.search(
                dn, _BASE, "(objectClass=group)", attrs, paged=False, missing_ok=True
            ):
                groups.append(self._group(found_dn, raw, anchors, mapped))
        return groups

    def _group_attrs(self, anchors: Sequence[str], mapped: Sequence[str]) -> list[str]:
        return list(dict.fromkeys([*GROUP_ATTRIBUTES, *anchors, *mapped]))

    def _group(
        self,
        dn: str,
        raw_attrs: dict[str, list[bytes]],
        anchors: Sequence[str],
        mapped: Sequence[str],
        prefixes: Sequence[str] = ANCHOR_PREFIXES,
    ) -> DirectoryGroup:
        attrs = lower_keys(raw_attrs)
        members = self._complete_members(dn, attrs, range_size=None)
        return group_from_entry(dn, attrs, members, anchors, mapped, prefixes)

    # -- users (on-prem dynamic groups) -------------------------------------------------------------------

    def read_user_properties(
        self, base_dn: str, changed_after: int | None
    ) -> tuple[list[dict[str, Any]], int]:
        """AD users under ``base_dn`` as rule-ready dicts (see writeback.adusers), and the directory's
        highestCommittedUSN read *before* the search. With ``changed_after``, only users whose uSNChanged is
        above it (incremental: a later call passes the returned USN)."""
        root = self._domain.search("", _BASE, _ANY, ["highestCommittedUSN"], paged=False)
        usn = int(first_str(lower_keys(root[0][1]), "highestCommittedUSN") or 0) if root else 0
        flt = "(&(objectCategory=person)(objectClass=user))"
        if changed_after is not None:
            flt = f"(&(objectCategory=person)(objectClass=user)(uSNChanged>={changed_after + 1}))"
        users = [
            user_properties(dn, raw)
            for dn, raw in self._domain.search(base_dn, _SUBTREE, flt, list(AD_ATTRIBUTES))
            if dn
        ]
        return users, usn

    def read_members(self, dn: str, *, range_size: int | None = None) -> list[str]:
        """All member DNs of ``dn``. With ``range_size`` every read asks for an explicit range
        ('member;range=0-1499', …) the way AD forces for big groups; without it the server chooses."""
        first = "member" if range_size is None else f"member;range=0-{range_size - 1}"
        entries = self._domain.search(dn, _BASE, _ANY, [first], paged=False)
        if not entries:
            return []
        return self._complete_members(dn, lower_keys(entries[0][1]), range_size=range_size)

    def _complete_members(
        self, dn: str, attrs: Mapping[str, list[bytes]], *, range_size: int | None
    ) -> list[str]:
        values, next_low = split_member_values(attrs)
        while next_low is not None:
            high = "*" if range_size is None else str(next_low + range_size - 1)
            entries = self._domain.search(dn, _BASE, _ANY, [f"member;range={next_low}-{high}"], paged=False)
            if not entries:
                break  # deleted while we read it
            more, following = split_member_values(lower_keys(entries[0][1]))
            values.extend(more)
            if following is not None and following <= next_low:
                raise DirectoryError(f"ranged read of member of {dn} did not advance past {next_low}")
            next_low = following
        return values

    # -- lookups ------------------------------------------------------------------------------------------

    def existing_dns(self, dns: Iterable[str]) -> set[str]:
        """Which of ``dns`` exist (any object class), returned as given.

        DNs inside the domain are looked up in OR batches of distinguishedName; others by base search.
        """
        given = list(dict.fromkeys(dns))
        domain_nc = self._naming_context("defaultNamingContext")
        inside = [dn for dn in given if is_within(dn, domain_nc)]
        by_key: dict[str, list[str]] = {}
        for dn in inside:
            by_key.setdefault(normalize_dn(dn), []).append(dn)
        found: set[str] = set()
        for batch in chunked(list(by_key), FILTER_BATCH):
            terms = [f"(distinguishedName={escape_filter_chars(by_key[k][0])})" for k in batch]
            for dn, _attrs in self._domain.search(domain_nc, _SUBTREE, or_filter(terms), _NO_ATTRS):
                found.update(by_key.get(normalize_dn(dn), ()))
        for dn in given:
            outside = dn not in inside
            if outside and self._domain.search(dn, _BASE, _ANY, _NO_ATTRS, paged=False, missing_ok=True):
                found.add(dn)
        return found

    def taken_sam_account_names(self, names: Iterable[str]) -> dict[str, str]:
        """Lower-cased sAMAccountName -> DN for the names already used anywhere in the domain."""
        domain_nc = self._naming_context("defaultNamingContext")
        taken: dict[str, str] = {}
        for batch in chunked(list(dict.fromkeys(n.lower() for n in names)), FILTER_BATCH):
            flt = or_filter([f"(sAMAccountName={escape_filter_chars(n)})" for n in batch])
            for dn, raw in self._domain.search(domain_nc, _SUBTREE, flt, ["sAMAccountName"]):
                name = first_str(lower_keys(raw), "sAMAccountName")
                if name is not None:
                    taken[name.lower()] = dn
        return taken

    # -- writes -------------------------------------------------------------------------------------------

    def create_group(self, dn: str, attributes: Mapping[str, str | int], members: Sequence[str]) -> None:
        """One add carrying the attributes and up to max_values_per_modify members; the rest in chunks.

        Empty-string values are left out (LDAP cannot store them). An existing DN is refused by the server
        (DirectoryWriteError with result ALREADY_EXISTS…), never overwritten.
        """
        modlist: list[tuple[str, list[bytes]]] = []
        if not any(name.lower() == "objectclass" for name in attributes):
            modlist.append(("objectClass", [b"top", b"group"]))
        for name, value in attributes.items():
            if value != "":
                modlist.append((name, [str(value).encode("utf-8")]))
        unique = list(dict.fromkeys(members))
        limit = self._settings.max_values_per_modify
        if unique[:limit]:
            modlist.append(("member", [m.encode("utf-8") for m in unique[:limit]]))
        values = sum(len(v) for _name, v in modlist)
        self._write("add", dn, values, lambda conn: conn.add_ext_s(dn, modlist))
        if unique[limit:]:
            self.add_members(dn, unique[limit:])

    def modify_attributes(self, dn: str, values: Mapping[str, str | None]) -> None:
        """Replace each attribute in one modify; None (or '') removes it, whether or not it is set."""
        if not values:
            return
        modlist = [
            (ldap.MOD_REPLACE, name, None if value in (None, "") else [str(value).encode("utf-8")])
            for name, value in values.items()
        ]
        written = sum(1 for _op, _name, v in modlist if v)
        self._write("modify", dn, written, lambda conn: conn.modify_ext_s(dn, modlist))

    def move(self, dn: str, new_dn: str) -> None:
        """modRDN (delold=1) to ``new_dn``; newSuperior only when the parent changes. objectGUID is kept."""
        if dn == new_dn:
            return
        new_parent = parent_dn(new_dn)
        superior = new_parent if normalize_dn(parent_dn(dn)) != normalize_dn(new_parent) else None
        self._write("modrdn", dn, 0, lambda conn: conn.rename_s(dn, rdn(new_dn), superior, delold=1))

    def delete(self, dn: str) -> None:
        self._write("delete", dn, 0, lambda conn: conn.delete_ext_s(dn))

    def add_members(self, dn: str, members: Sequence[str]) -> None:
        """Add ``members`` in modifies of at most max_values_per_modify values (idempotent)."""
        for chunk in chunked(dict.fromkeys(members), self._settings.max_values_per_modify):
            self._change_members(dn, chunk, add=True)

    def remove_members(self, dn: str, members: Sequence[str]) -> None:
        """Remove ``members`` in modifies of at most max_values_per_modify values (idempotent)."""
        for chunk in chunked(dict.fromkeys(members), self._settings.max_values_per_modify):
            self._change_members(dn, chunk, add=False)

    def _change_members(self, dn: str, chunk: list[str], *, add: bool) -> None:
        """One modify for the chunk. If the server says some values are already (not) there, as after a
        crash between applying and journaling, re-read the group and redo with just the values needed."""
        try:
            self._modify_member(dn, chunk, add=add)
            return
        except DirectoryWriteError as exc:
            conflicts = _ADD_CONFLICTS if add else _REMOVE_CONFLICTS
            if not isinstance(exc.__cause__, conflicts):
                raise
            log.info(
                "member %s on %s partly done already (%s); re-reading",
                "add" if add else "remove",
                dn,
                exc.result,
            )
        current = {normalize_dn(m) for m in self.read_members(dn)}
        needed = [m for m in chunk if (normalize_dn(m) in current) != add]
        if needed:
            self._modify_member(dn, needed, add=add)

    def _modify_member(self, dn: str, values: list[str], *, add: bool) -> None:
        op = ldap.MOD_ADD if add else ldap.MOD_DELETE
        modlist = [(op, "member", [m.encode("utf-8") for m in values])]
        self._write("modify", dn, len(values), lambda conn: conn.modify_ext_s(dn, modlist))

    def _write(self, kind: str, dn: str, values: int, call: Any) -> None:
        """Count the operation (values only when accepted) and run it through the write policy."""
        self._stats[kind] += 1
        self._domain.write(kind, call, dn)
        self._stats["values_written"] += values
