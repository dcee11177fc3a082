"""``LdapDirectory``: :class:`writeback.core.ports.Directory` over LDAP with python-ldap.

Reads are paged and follow ranged ``member`` retrieval; writes are batched (one add or modify per chunk of
``max_values_per_modify`` member values, never one per member) and idempotent, so replaying a half-applied
plan after a crash converges instead of failing. Every LDAP operation is counted in :attr:`stats`.

Windows Server limits followed here (tests/unit/ad_double.py answers the same way):

- MaxValRange (KB 315071, default 1,500; MS-ADTS 3.1.1.3.1.3.3 "Range Retrieval"): a ``member`` read of a big
  group is answered ``member;range=0-1499`` unasked; the reader continues at 1500 until a ``…-*`` slice.
- A modify or add carrying more values than the DC's administrative limits allow (the request size is bounded
  by MaxReceiveBuffer, 10,485,760 bytes by default, KB 315071) is refused with adminLimitExceeded (11): the
  values are halved and sent again, and the smaller size is kept for the rest of the session.
- USNs are per DC (MS-ADTS 3.1.1.1.9 "Change Tracking"): a watermark is the DC's invocationId with its
  highestCommittedUSN, and an incremental read against another DC (failover) is a full read.
"""

from __future__ import annotations

import logging
import secrets
import string
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

import ldap
from ldap.controls import RequestControl
from ldap.filter import escape_filter_chars
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.type import namedtype, univ

from writeback.adapters.directory.access import (
    attributes_not_writable,
    check_write_access,
    unwritable_managed_groups,
)
from writeback.adapters.directory.codec import (
    chunked,
    escape_filter_bytes,
    first_str,
    guid_to_bytes,
    guid_to_str,
    lower_keys,
    or_filter,
    parse_extended_dn,
    sid_from_str,
    sid_to_str,
    split_member_values,
)
from writeback.adapters.directory.connection import STAT_KEYS, Connect, LdapSession, new_ticket
from writeback.adapters.directory.entries import (
    ACCOUNT_ATTRIBUTES,
    GROUP_ATTRIBUTES,
    USER_ATTRIBUTES,
    account_from_entry,
    find_anchor,
    group_from_entry,
    user_from_entry,
)
from writeback.adapters.directory.kerberos import Ticket
from writeback.adapters.directory.readahead import MANAGED_ANCHORS, MANAGED_MAPPED, AccountIndex, ReadAhead
from writeback.adapters.directory.settings import DirectorySettings
from writeback.adapters.directory.users import AD_ATTRIBUTES, user_properties
from writeback.core.dn import is_within, normalize_dn, parent_dn, rdn
from writeback.core.model import (
    ANCHOR_PREFIXES,
    USER_ANCHOR_PREFIX,
    AttributeValue,
    DirectoryAccount,
    DirectoryGroup,
    DirectoryUser,
)
from writeback.core.ports import GroupStamp, ResolvedAccounts, UserChanges, UsnWatermark
from writeback.errors import DirectoryError, DirectoryUnavailable, DirectoryWriteError

log = logging.getLogger(__name__)

# OR filters of this many terms keep each search request small (AD's MaxQueryDuration, request size).
FILTER_BATCH = 200
# Above this many SIDs/GUIDs to resolve, resolve_accounts reads all users once (paged) instead.
FULL_SCAN_TERMS = 2_000
# Above this many DNs, the stamps of given groups are read from one listing of every managed group instead of
# one base read each (a base read costs a round trip; the listing of 10,000 groups without members ~1 s).
STAMP_BASE_READS = 200
# Member values are asked for in explicit ranges of this size, from the first request on. Windows answers at most
# MaxValRange (1,500) values per request anyway (MS-ADTS 3.1.1.3.4.6), so this changes nothing there; Samba
# answers an unranged read whole, in one response, and failed to answer a 250,000-member group read whole with
# the extended DN control, where 50,000-value ranges read it (docs/benchmarks.md, "Measurements behind the
# code").
MEMBER_RANGE = 50_000
_BASE, _SUBTREE = ldap.SCOPE_BASE, ldap.SCOPE_SUBTREE
_ANY = "(objectClass=*)"
_NO_ATTRS = ["1.1"]  # RFC 4511: return no attributes, just the DN

# A value already there / not there: AD and Samba word these differently. Each means "re-read and redo".
_ADD_CONFLICTS = (ldap.TYPE_OR_VALUE_EXISTS, ldap.ALREADY_EXISTS)
_REMOVE_CONFLICTS = (ldap.NO_SUCH_ATTRIBUTE, ldap.UNWILLING_TO_PERFORM)
_USERS = "(&(objectCategory=person)(objectClass=user))"
# LDAP_SERVER_SHOW_DELETED_OID: lets a search see deleted objects (tombstones and, with the Recycle Bin,
# deleted-but-recoverable objects). MS-ADTS 3.1.1.3.4.1.14; "Retrieving Deleted Objects" in the AD docs.
SHOW_DELETED_OID = "1.2.840.113556.1.4.417"
# GUID_DELETED_OBJECTS_CONTAINER_W (MS-ADTS 6.1.1.4 "Well-Known Objects"): the Deleted Objects container of a
# naming context, bound as <WKGUID=…,<NC>> whatever its name in the forest's language.
DELETED_OBJECTS_WKGUID = "18E2EA80684F11D2B9AA00C04F79F805"
# LDAP_SERVER_EXTENDED_DN_OID (MS-ADTS 3.1.1.3.4.1.5): every DN of the answer, member values included, comes as
# '<GUID=…>;<SID=…>;dn' ('<GUID=…>;dn' for objects without objectSid, such as contacts).
EXTENDED_DN_OID = "1.2.840.113556.1.4.529"
# The RDN of the container that holds a domain's foreign security principals (members from trusted forests).
_FSP_CONTAINER = "cn=foreignsecurityprincipals"


class AccountKeys:
    """The keys a resolve asked for: each canonical form (as AD's value decodes) -> the strings given for it.

    Usually one string per key, the canonical form itself, held once; a second spelling of the same key (a
    SID in lower case) is kept aside, so each given string is answered as before."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}
        self._more: dict[str, list[str]] = {}
        self._count = 0

    def __len__(self) -> int:
        """How many distinct strings were given (one filter term each)."""
        return self._count

    def __iter__(self) -> Iterator[str]:
        """The canonical forms asked for."""
        return iter(self._first)

    def add(self, canonical: str, given: str) -> bool:
        """Record ``given`` (whose canonical form is ``canonical``); False when it was given already."""
        first = self._first.get(canonical)
        if first is None:
            self._first[given if given == canonical else canonical] = given
        elif first == given or given in self._more.get(canonical, ()):
            return False
        else:
            self._more.setdefault(canonical, []).append(given)
        self._count += 1
        return True

    def given(self, canonical: str) -> tuple[str, ...]:
        """The strings given for the key ``canonical`` (none when it was not asked for)."""
        first = self._first.get(canonical)
        if first is None:
            return ()
        more = self._more.get(canonical)
        return (first, *more) if more else (first,)

    def shared(self, value: str | None) -> str | None:
        """``value``, as the one string a given key already holds when they are equal."""
        if value is None:
            return None
        first = self._first.get(value)
        return first if first is not None and first == value else value


def shared_account(account: DirectoryAccount, sids: AccountKeys, guids: AccountKeys) -> DirectoryAccount:
    """``account`` holding the SID and GUID strings of the keys it was found by (no second copy of each)."""
    sid, guid = sids.shared(account.object_sid), guids.shared(account.object_guid)
    if sid is account.object_sid and guid is account.object_guid:
        return account
    return replace(account, object_sid=sid, object_guid=guid or account.object_guid)


def account_keys(
    sids: Iterable[str], guids: Iterable[str], terms: list[str] | None = None
) -> tuple[AccountKeys, AccountKeys]:
    """The SIDs and GUIDs a resolve asks for, each under its canonical form (malformed ones skipped and
    logged); with ``terms``, their filter terms appended while there are at most :data:`FULL_SCAN_TERMS`."""
    sid_keys = AccountKeys()
    guid_keys = AccountKeys()
    kinds = (
        (sids, sid_from_str, sid_to_str, "objectSid", "SID", sid_keys),
        (guids, guid_to_bytes, guid_to_str, "objectGUID", "GUID", guid_keys),
    )
    for given, parse, canonical, attribute, what, keys in kinds:
        for value in given:
            try:
                raw = parse(value)
            except ValueError:
                log.warning("skipping malformed %s %r", what, value)
                continue
            if keys.add(canonical(raw), value) and terms is not None and len(terms) <= FULL_SCAN_TERMS:
                terms.append(f"({attribute}={escape_filter_bytes(raw)})")
    return sid_keys, guid_keys


class AccountMatches:
    """The answer of a resolve: each account offered (as AD returned it) kept under every key asked for that
    names it, by SID or GUID; the first account offered for a key wins (a repeated page changes nothing)."""

    def __init__(self, sid_keys: AccountKeys, guid_keys: AccountKeys) -> None:
        self.sid_keys, self.guid_keys = sid_keys, guid_keys
        self.by_sid: dict[str, DirectoryAccount] = {}
        self.by_guid: dict[str, DirectoryAccount] = {}

    def offer(self, account: DirectoryAccount) -> DirectoryAccount | None:
        """Keep ``account`` if a key names it: the account as kept (holding the keys' strings), else None."""
        sid_given = self.sid_keys.given(account.object_sid or "")
        guid_given = self.guid_keys.given(account.object_guid)
        if not sid_given and not guid_given:
            return None  # a user no key asked for (read by the scan of every user)
        # One string per SID and GUID: the key's, when it is the canonical form (as callers pass it).
        account = shared_account(account, self.sid_keys, self.guid_keys)
        for given in guid_given:
            self.by_guid.setdefault(given, account)
        for given in sid_given:
            self.by_sid.setdefault(given, account)
        return account

    def result(self) -> ResolvedAccounts:
        return ResolvedAccounts(by_sid=self.by_sid, by_guid=self.by_guid)


class _ExtendedDNRequestValue(univ.Sequence):  # type: ignore[misc]
    """MS-ADTS 3.1.1.3.4.1.5: ``ExtendedDNRequestValue ::= SEQUENCE { Flag INTEGER }``."""

    componentType = namedtype.NamedTypes(namedtype.NamedType("Flag", univ.Integer()))


class ExtendedDNControl(RequestControl):  # type: ignore[misc]
    """LDAP_SERVER_EXTENDED_DN_OID with Flag 1: the GUID and SID as strings ('b3a2…-…', 'S-1-5-21-…')
    rather than hex (Flag 0). Not critical: a DC that ignores it answers plain DNs, which the reader takes as
    members with no account known (they are then resolved the ordinary way)."""

    def __init__(self, criticality: bool = False) -> None:
        self.controlType = EXTENDED_DN_OID
        self.criticality = criticality

    def encodeControlValue(self) -> bytes:  # python-ldap calls it by this name
        value = _ExtendedDNRequestValue()
        value.setComponentByName("Flag", 1)
        return bytes(ber_encoder.encode(value))


class LdapDirectory:
    """Active Directory through LDAP. Connects lazily; call :meth:`close` (or use ``with``) when done."""

    def __init__(
        self, settings: DirectorySettings, *, connect: Connect = ldap.initialize, ticket: Ticket | None = None
    ) -> None:
        """``connect`` opens a python-ldap connection for a URL (``ldap.initialize``; tests pass a double).
        ``ticket``: a Kerberos bind's credentials (built from the settings when not given)."""
        self._settings = settings
        self._connect = connect
        self._ticket = ticket if ticket is not None else new_ticket(settings)
        self._account_dn: str | None = settings.bind_dn or None
        self._stats: Counter[str] = Counter(dict.fromkeys(STAT_KEYS, 0))
        self._timings: dict[str, float] = {"ad_read": 0.0, "ad_write": 0.0}
        self._domain = LdapSession(
            settings, settings.urls, self._stats, "domain controller", connect, self._timings, self._ticket
        )
        self._gc = (
            LdapSession(
                settings,
                settings.gc_urls,
                self._stats,
                "global catalog",
                connect,
                self._timings,
                self._ticket,
            )
            if settings.gc_urls
            else None
        )
        # Lowered (never raised) when the DC answers adminLimitExceeded; see _modify_member.
        self._values_per_modify = settings.max_values_per_modify
        self._write_check: Callable[[], None] | None = None  # the leader lease's check (fence_writes)
        self._write_deadline: float | None = None
        self._deleted_warned = False
        self._schema: dict[str, bool] = {}
        self._root_dse: dict[str, str] | None = None
        self._scope: tuple[str, tuple[str, ...]] | None = None  # see _domain_scope

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """LDAP operations by kind (bind, search, add, modify, modrdn, delete) and values_written."""
        return dict(self._stats)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent in LDAP reads ("ad_read") and writes ("ad_write") since start, connecting included."""
        return dict(self._timings)

    def check_tls_and_bind(self) -> None:
        """Connect and bind to the domain (and the Global Catalog when configured); raise on failure."""
        self._domain.connection()
        if self._gc is not None:
            self._gc.connection()

    @property
    def protection(self) -> str:
        """How the domain connection is protected ("tls", "kerberos-sealed (SSF n)", "none"; "" if closed)."""
        return self._domain.protection

    def account_dn(self) -> str:
        """The DN of the account writeback binds as: bind_dn, or with Kerberos the principal's account (its
        sAMAccountName is the principal's name part; a gMSA's ends in $)."""
        if self._account_dn is None:
            principal = self._settings.principal or ""
            sam = principal.rsplit("@", 1)[0]
            found = self._domain.search(
                self._naming_context("defaultNamingContext"),
                _SUBTREE,
                f"(sAMAccountName={escape_filter_chars(sam)})",
                ["1.1"],
                paged=False,
            )
            dns = [dn for dn, _ in found if dn]
            if len(dns) != 1:
                raise DirectoryError(
                    f"cannot find the account of the Kerberos principal {principal!r} (sAMAccountName {sam!r}) "
                    "in the domain; set target.bind_dn to its DN"
                )
            self._account_dn = dns[0]
        return self._account_dn

    def check_write_access(
        self,
        ou_dn: str,
        attributes: Sequence[str] = ("member", "description", "displayName", "groupType"),
    ) -> list[str]:
        """Problems that would stop writeback in ``ou_dn`` (empty when none), as computed by the DC."""
        return check_write_access(self._domain, ou_dn, self.account_dn(), attributes)

    def unwritable_managed_groups(
        self,
        anchor_attributes: Sequence[str],
        needed: Sequence[str],
        outside: Sequence[str],
        prefixes: Sequence[str] = ANCHOR_PREFIXES,
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Managed groups outside the OUs ``outside`` where the bound account may not write all of
        ``needed``, with the attributes missing (allowedAttributesEffective, as the DC computes it)."""
        anchors = [a for a in anchor_attributes if self.has_attribute(a)]
        return unwritable_managed_groups(
            self._domain, self._settings.base_dn, anchors, prefixes, needed, outside
        )

    def attributes_not_writable(
        self, dns: Sequence[str], needed: Sequence[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Of the objects ``dns``, those the bound account may not write all of ``needed`` on (with the
        attributes missing, as the DC computes allowedAttributesEffective)."""
        return attributes_not_writable(self._domain, dns, needed)

    def close(self) -> None:
        self._domain.close()
        if self._gc is not None:
            self._gc.close()
        if self._ticket is not None:
            self._ticket.close()

    def __enter__(self) -> LdapDirectory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- schema and naming contexts -----------------------------------------------------------------------

    def _naming_context(self, name: str) -> str:
        if self._root_dse is None:
            keys = [
                "defaultNamingContext",
                "schemaNamingContext",
                "rootDomainNamingContext",
                "configurationNamingContext",
            ]
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

    def resolve_accounts(
        self, sids: Iterable[str], guids: Iterable[str], *, known: AccountIndex | None = None
    ) -> ResolvedAccounts:
        """Accounts by objectSid and objectGUID, in OR batches, through the Global Catalog when configured.

        Keys of the result are the strings as given. Malformed SIDs or GUIDs are skipped (they cannot
        match anything) and logged without their value's context beyond the value itself.

        Memory (issue 27: a 250,000-member group's first apply): above :data:`FULL_SCAN_TERMS` keys every user
        is read, page by page, and no filter term is built; each key is held once (the given string, which is
        the canonical form AD's is compared in when the caller passes SIDs upper-cased and GUIDs lower-cased),
        and an account found shares its SID and GUID strings with its keys.

        ``known``: every user account, read before (:mod:`.readahead`): where every user would be read, they
        are taken from it instead (the same answer: the read of every user, made earlier).
        """
        terms: list[str] = []  # kept only while a search per batch of keys is still possible
        sid_keys, guid_keys = account_keys(sids, guids, terms)
        matches = AccountMatches(sid_keys, guid_keys)
        if len(sid_keys) + len(guid_keys) > FULL_SCAN_TERMS and known is not None:
            for account in known.named(sid_keys, guid_keys):
                kept = matches.offer(account)
                if kept is not None:
                    known.replace(account, kept)
        elif len(sid_keys) + len(guid_keys) > FULL_SCAN_TERMS:
            # Many lookups: one paged read of every user is far cheaper than hundreds of OR searches.
            self.read_every_account(matches.offer)
        else:
            session, base = self._account_scope()
            for batch in chunked(terms, FILTER_BATCH):
                for dn, raw_attrs in session.search(base, _SUBTREE, or_filter(batch), ACCOUNT_ATTRIBUTES):
                    if dn:
                        matches.offer(account_from_entry(dn, lower_keys(raw_attrs)))
        return matches.result()

    def read_every_account(self, each: Callable[[DirectoryAccount], object]) -> None:
        """Every user account (objectSid, objectGUID, class), page by page, handed to ``each`` as read: the
        read :meth:`resolve_accounts` makes above :data:`FULL_SCAN_TERMS` keys (through the Global Catalog when
        configured). A search retried after a lost connection hands its pages again (``each`` must be
        harmless to repeat)."""
        session, base = self._account_scope()

        def page(entries: list[tuple[str, dict[str, list[bytes]]]]) -> None:
            for dn, raw_attrs in entries:
                if dn:
                    each(account_from_entry(dn, lower_keys(raw_attrs)))

        session.search(base, _SUBTREE, _USERS, ACCOUNT_ATTRIBUTES, each_page=page)

    def _account_scope(self) -> tuple[LdapSession, str]:
        """Where accounts are searched for: the Global Catalog (the whole forest) when configured, else the
        domain."""
        if self._gc is not None:
            return self._gc, ""
        return self._domain, self._naming_context("defaultNamingContext")

    def sibling(self) -> LdapDirectory:
        """A directory on the same settings and credentials with connections of its own, for reads in another
        thread (a python-ldap connection is not shared between threads): :meth:`read_ahead`."""
        return LdapDirectory(self._settings, connect=self._connect, ticket=self._ticket)

    def read_ahead(
        self,
        anchor_attributes: Sequence[str],
        mapped: Sequence[str],
        prefixes: Sequence[str],
    ) -> ReadAhead:
        """Start the big reads of a full plan that do not depend on the cloud, in a thread on connections of
        their own, while the caller reads Graph (:mod:`.readahead`)."""
        return ReadAhead(self, anchor_attributes, mapped, prefixes)

    def count_read_ahead(self, stats: Mapping[str, int], seconds: float, waited: float) -> None:
        """Add a read-ahead's LDAP operations to :attr:`stats`, its LDAP time to ``timings["ad_read_ahead"]``
        (overlapped with the Graph read) and the time a plan waited for it to ``timings["ad_read"]``."""
        self._stats.update(stats)
        self._timings["ad_read_ahead"] = self._timings.get("ad_read_ahead", 0.0) + seconds
        self._timings["ad_read"] += waited

    def resolve_groups_by_sid(self, sids: Iterable[str]) -> dict[str, DirectoryAccount]:
        """Groups by objectSid in OR batches, through the Global Catalog when configured (a group synced from
        another domain of the forest is found there: objectSid is in the GC's partial attribute set).

        Keys are the SIDs upper-cased. Malformed SIDs are skipped and logged.
        """
        terms: list[str] = []
        for sid in dict.fromkeys(s.upper() for s in sids):
            try:
                raw = sid_from_str(sid)
            except ValueError:
                log.warning("skipping malformed group SID %r", sid)
                continue
            terms.append(f"(objectSid={escape_filter_bytes(raw)})")
        session, base = (
            (self._gc, "")
            if self._gc is not None
            else (self._domain, self._naming_context("defaultNamingContext"))
        )
        found: dict[str, DirectoryAccount] = {}
        for batch in chunked(terms, FILTER_BATCH):
            flt = f"(&(objectClass=group){or_filter(batch)})"
            for dn, raw_attrs in session.search(base, _SUBTREE, flt, ACCOUNT_ATTRIBUTES):
                if dn:
                    account = account_from_entry(dn, lower_keys(raw_attrs))
                    if account.object_sid:
                        found[account.object_sid.upper()] = account
        return found

    # -- groups -------------------------------------------------------------------------------------------

    def read_managed_groups(
        self,
        anchor_attributes: Sequence[str] = MANAGED_ANCHORS,
        mapped: Sequence[str] = MANAGED_MAPPED,
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

    def read_group_stamps(
        self,
        anchor_attributes: Sequence[str] = ("msDS-ExternalDirectoryObjectId", "adminDescription"),
        prefixes: Sequence[str] = ANCHOR_PREFIXES,
        dns: Iterable[str] | None = None,
    ) -> tuple[UsnWatermark, list[GroupStamp]]:
        """The DC's watermark, then every managed group's DN, key and uSNChanged: the same search as
        :meth:`read_managed_groups` without members (a quick reconcile reads members only of what changed).
        With ``dns``: just the groups at those DNs (the ones an incremental cycle wrote), missing ones left out
        — a base read each, or the one listing filtered when there are more than ``STAMP_BASE_READS``.

        The watermark is read first, so a change made while the list is read is above it. uSNChanged is a
        per-DC, non-replicated counter (MS-ADTS 3.1.1.1.9): the watermark carries the DC's invocationId, and
        stamps are compared only with stamps of the same DC."""
        watermark = self._dc_watermark()
        anchors = [a for a in anchor_attributes if self.has_attribute(a)]
        if not anchors:
            return watermark, []
        flt = or_filter([f"({a}={escape_filter_chars(p)}*)" for a in anchors for p in prefixes])
        attrs = list(dict.fromkeys([*anchors, "uSNChanged"]))
        stamps: list[GroupStamp] = []
        wanted = None if dns is None else {normalize_dn(d): d for d in dns}
        entries: Iterable[tuple[str, dict[str, list[bytes]]]]
        if wanted is None or len(wanted) > STAMP_BASE_READS:
            # Every managed group (one paged search): cheaper than hundreds of base reads after a big cycle.
            entries = self._domain.search(
                self._settings.base_dn, _SUBTREE, f"(&(objectClass=group){flt})", attrs
            )
        else:
            entries = (
                entry
                for at in wanted.values()
                for entry in self._domain.search(
                    at, _BASE, f"(&(objectClass=group){flt})", attrs, paged=False, missing_ok=True
                )
            )
        for dn, raw in entries:
            if wanted is not None and normalize_dn(dn) not in wanted:
                continue
            found = lower_keys(raw)
            anchor = find_anchor(found, anchors, prefixes)
            key = DirectoryGroup.key_of(anchor)
            usn = first_str(found, "uSNChanged")
            if dn and key is not None and usn is not None:
                stamps.append(GroupStamp(dn, key, int(usn)))
        return watermark, stamps

    def changed_account_keys(self, base_dn: str, since_usn: int) -> list[tuple[str | None, str | None]]:
        entries = self._domain.search(
            base_dn, _SUBTREE, _changed_users(since_usn), ["objectSid", "objectGUID"]
        )
        keys: list[tuple[str | None, str | None]] = []
        for dn, raw in entries:
            found = lower_keys(raw)
            sid, guid = found.get("objectsid"), found.get("objectguid")
            if dn:
                keys.append(
                    (sid_to_str(sid[0]) if sid else None, guid_to_str(bytes(guid[0])) if guid else None)
                )
        return keys

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

    def read_groups_with_accounts(
        self,
        dns: Iterable[str],
        anchor_attributes: Sequence[str] = ("msDS-ExternalDirectoryObjectId", "adminDescription"),
        mapped: Sequence[str] = ("description", "displayName"),
        *,
        range_size: int | None = MEMBER_RANGE,
    ) -> tuple[list[DirectoryGroup], ResolvedAccounts]:
        """:meth:`read_groups`, and the accounts of the members read: each search of the read (the ranged
        ``member;range=`` reads too) carries LDAP_SERVER_EXTENDED_DN_OID, so AD hands every member value with
        its objectGUID and objectSid (MS-ADTS 3.1.1.3.4.1.5) and a member already in the group needs no
        search of its own. The groups are the same values :meth:`read_groups` returns (plain member DNs).

        Accounts are left out where :meth:`resolve_accounts` would not find them, so a plan decides the same
        either way: foreign security principals (``CN=ForeignSecurityPrincipals``: objects standing for
        principals of trusted forests, not accounts of this forest), and, without a Global Catalog, members
        outside the domain naming context (resolve_accounts then searches the domain only).

        ``range_size``: ask for members in explicit ranges of that size (as :meth:`read_members` does), the
        way AD answers big groups unasked; None lets the server choose (see :data:`MEMBER_RANGE`).
        """
        anchors = [a for a in anchor_attributes if self.has_attribute(a)]
        attrs = self._group_attrs(anchors, mapped, range_size)
        controls = [ExtendedDNControl()]
        groups: list[DirectoryGroup] = []
        by_sid: dict[str, DirectoryAccount] = {}
        by_guid: dict[str, DirectoryAccount] = {}
        extended = plain = 0
        for dn in dict.fromkeys(dns):
            for found_dn, raw in self._domain.search(
                dn, _BASE, "(objectClass=group)", attrs, paged=False, missing_ok=True, controls=controls
            ):
                # "The DC uses this extended DN for all DNs in the LDAP search response": the entry's own too.
                group_dn = parse_extended_dn(found_dn)[0]
                found = _plain_dn_values(lower_keys(raw))
                members: list[str] = []
                # Each range's extended values are parsed as they come, not all of a big group's at once.
                for values in self._member_ranges(group_dn, found, range_size=range_size, controls=controls):
                    for value in values:
                        member, guid, sid = parse_extended_dn(value)
                        if guid is None:
                            members.append(member)
                            plain += 1
                            continue
                        extended += 1
                        if self._member_account_findable(member):
                            # One string per member DN: the group's value and its account's.
                            member = sys.intern(member)
                            account = DirectoryAccount(member, guid, sid.upper() if sid else None)
                            by_guid.setdefault(guid, account)
                            if account.object_sid:
                                by_sid.setdefault(account.object_sid, account)
                        members.append(member)
                    del values
                groups.append(group_from_entry(group_dn, found, members, anchors, mapped))
        if plain and not extended:
            log.info(
                "%s answered member values without objectGUID/objectSid (extended DN control %s not "
                "honoured): the members are resolved by searching for them instead",
                self._domain.url,
                EXTENDED_DN_OID,
            )
        return groups, ResolvedAccounts(by_sid=by_sid, by_guid=by_guid)

    def _member_account_findable(self, member: str) -> bool:
        """Whether :meth:`resolve_accounts` could find the account ``member`` names (see
        :meth:`read_groups_with_accounts`)."""
        key = normalize_dn(member)
        parent = key.partition(",")[2] if "\\" not in key else normalize_dn(parent_dn(member))
        if parent.startswith(_FSP_CONTAINER + ","):
            return False
        if self._gc is not None:
            return True
        domain, nested = self._domain_scope()
        # A child domain's objects lie below the domain's DN but in another naming context: a subtree search
        # of the domain does not return them (the DC answers a referral, which the reader drops).
        return (key == domain or key.endswith("," + domain)) and not any(
            key == nc or key.endswith("," + nc) for nc in nested
        )

    def _domain_scope(self) -> tuple[str, tuple[str, ...]]:
        """The domain NC and the naming contexts of the forest below its DN (child domains, application
        partitions such as DomainDnsZones), normalized: the crossRef objects' nCName in the Partitions
        container of the configuration NC (MS-ADTS 6.1.1.2.1.1 "Partitions Container", readable by
        Authenticated Users). Read once per session."""
        if self._scope is None:
            domain = normalize_dn(self._naming_context("defaultNamingContext"))
            partitions = f"CN=Partitions,{self._naming_context('configurationNamingContext')}"
            entries = self._domain.search(
                partitions, ldap.SCOPE_ONELEVEL, "(objectClass=crossRef)", ["nCName"], missing_ok=True
            )
            names = (first_str(lower_keys(raw), "nCName") for dn, raw in entries if dn)
            keys = (normalize_dn(nc) for nc in names if nc)
            self._scope = (domain, tuple(k for k in keys if k.endswith("," + domain)))
        return self._scope

    def _group_attrs(
        self, anchors: Sequence[str], mapped: Sequence[str], range_size: int | None = MEMBER_RANGE
    ) -> list[str]:
        """A group read's attributes, ``member`` asked for in a first range of ``range_size`` (:data:`MEMBER_RANGE`)."""
        attrs = list(dict.fromkeys([*GROUP_ATTRIBUTES, *anchors, *mapped]))
        if range_size is None:
            return attrs
        return [f"member;range=0-{range_size - 1}" if a == "member" else a for a in attrs]

    def _group(
        self,
        dn: str,
        raw_attrs: dict[str, list[bytes]],
        anchors: Sequence[str],
        mapped: Sequence[str],
        prefixes: Sequence[str] = ANCHOR_PREFIXES,
    ) -> DirectoryGroup:
        attrs = lower_keys(raw_attrs)
        members = self._complete_members(dn, attrs, range_size=MEMBER_RANGE)
        return group_from_entry(dn, attrs, members, anchors, mapped, prefixes)

    # -- user accounts as targets ([users] provision = "soa") ---------------------------------------------

    def read_users_by_sid(
        self,
        sids: Iterable[str],
        anchor_attributes: Sequence[str] = ("msDS-ExternalDirectoryObjectId",),
        mapped: Sequence[str] = ("displayName",),
    ) -> dict[str, DirectoryUser]:
        """The objects of these SIDs in the domain, whatever their class (a computer or group holding an SOA
        user's SID is reported, not written), in OR batches of escaped binary objectSid terms, keyed by the
        upper-cased SID. Malformed SIDs are skipped and logged. The whole domain naming context, not only
        base_dn: an SOA user's original account stays where AD had it (OU=Staff…), as an SOA group's original
        does (resolve_groups_by_sid). The domain only, never the Global Catalog: writeback writes accounts of its
        own domain."""
        terms: list[str] = []
        for sid in dict.fromkeys(s.upper() for s in sids):
            try:
                raw = sid_from_str(sid)
            except ValueError:
                log.warning("skipping malformed user SID %r", sid)
                continue
            terms.append(f"(objectSid={escape_filter_bytes(raw)})")
        anchors = [a for a in anchor_attributes if self.has_attribute(a)]
        attrs = list(dict.fromkeys([*USER_ATTRIBUTES, *anchors, *mapped]))
        found: dict[str, DirectoryUser] = {}
        for batch in chunked(terms, FILTER_BATCH):
            for dn, raw_attrs in self._domain.search(
                self._naming_context("defaultNamingContext"), _SUBTREE, or_filter(batch), attrs
            ):
                if dn:
                    user = user_from_entry(dn, lower_keys(raw_attrs), anchors, mapped)
                    if user.object_sid:
                        found[user.object_sid.upper()] = user
        return found

    def read_managed_users(
        self,
        anchor_attributes: Sequence[str] = ("msDS-ExternalDirectoryObjectId",),
        mapped: Sequence[str] = ("displayName",),
        prefixes: Sequence[str] = (USER_ANCHOR_PREFIX,),
    ) -> list[DirectoryUser]:
        """Every user account of the domain whose anchor starts with one of ``prefixes`` ('User_'), paged: the
        original accounts writeback writes are wherever AD keeps them (read_users_by_sid)."""
        anchors = [a for a in anchor_attributes if self.has_attribute(a)]
        if not anchors:
            return []
        flt = or_filter([f"({a}={escape_filter_chars(p)}*)" for a in anchors for p in prefixes])
        attrs = list(dict.fromkeys([*USER_ATTRIBUTES, *anchors, *mapped]))
        base = self._naming_context("defaultNamingContext")
        entries = self._domain.search(base, _SUBTREE, f"(&{_USERS}{flt})", attrs)
        users = [user_from_entry(dn, lower_keys(raw), anchors, mapped) for dn, raw in entries if dn]
        # The filter matches case-insensitively; ownership needs the exact prefix.
        return sorted((u for u in users if u.anchor is not None), key=lambda u: normalize_dn(u.dn))

    # -- users (on-prem dynamic groups) -------------------------------------------------------------------

    def read_user_properties(
        self, base_dn: str, changed_after: int | None
    ) -> tuple[list[dict[str, Any]], int]:
        """AD users under ``base_dn`` as rule-ready dicts (see writeback.adapters.directory.users), and the directory's
        highestCommittedUSN read *before* the search. With ``changed_after``, only users whose uSNChanged is
        above it. Incremental callers use :meth:`read_user_changes`, which also knows which DC the USN is of."""
        root = self._domain.search("", _BASE, _ANY, ["highestCommittedUSN"], paged=False)
        usn = int(first_str(lower_keys(root[0][1]), "highestCommittedUSN") or 0) if root else 0
        flt = _USERS if changed_after is None else _changed_users(changed_after)
        return self._read_users(base_dn, flt), usn

    def read_user_changes(self, base_dn: str, since: UsnWatermark | None) -> UserChanges:
        """AD users under ``base_dn`` changed since ``since`` (all of them when None or when ``since`` is of
        another DC), the objectGUIDs of users deleted since then, and the watermark for the next call.

        The watermark (invocationId and highestCommittedUSN) is read before the users, so a change made during
        the read is read again next time rather than missed. Should the session fail over to another DC
        during the read, the read is done again against the new DC.
        """
        for _attempt in (1, 2):
            self._domain.connection()
            url = self._domain.url
            watermark = self._dc_watermark()
            full = since is None or since.dc != watermark.dc
            if since is not None and full:
                log.info(
                    "domain controller %s has invocationId %s, not %s as at the last read: its USNs are "
                    "not comparable, reading every AD user",
                    url,
                    watermark.dc,
                    since.dc,
                )
            if since is None or full:
                users, removed = self._read_users(base_dn, _USERS), []
            else:
                users = self._read_users(base_dn, _changed_users(since.usn))
                removed = self._deleted_user_ids(since.usn)
            if self._domain.url == url:
                return UserChanges(users=users, removed=removed, watermark=watermark, full=full)
            log.warning(
                "failed over from %s to %s while reading AD users; reading again", url, self._domain.url
            )
        raise DirectoryUnavailable(
            "the domain controller changed twice while reading AD users; check the DCs in target.ldap_urls"
        )

    def _read_users(self, base_dn: str, flt: str) -> list[dict[str, Any]]:
        entries = self._domain.search(base_dn, _SUBTREE, flt, list(AD_ATTRIBUTES))
        return [user_properties(dn, raw) for dn, raw in entries if dn]

    def _dc_watermark(self) -> UsnWatermark:
        """The connected DC's invocationId (rootDSE dsServiceName -> its NTDS Settings object) and
        highestCommittedUSN. MS-ADTS 3.1.1.3.2 (rootDSE) and 6.1.1.2.2.1.2.1.1 (nTDSDSA invocationId)."""
        root = self._domain.search("", _BASE, _ANY, ["highestCommittedUSN", "dsServiceName"], paged=False)
        attrs = lower_keys(root[0][1]) if root else {}
        service = first_str(attrs, "dsServiceName")
        usn = first_str(attrs, "highestCommittedUSN")
        if not service or usn is None:
            raise DirectoryError(
                f"the rootDSE of {self._domain.url} has no dsServiceName or highestCommittedUSN: "
                "is target.ldap_urls an Active Directory domain controller?"
            )
        ntds = self._domain.search(service, _BASE, _ANY, ["invocationId"], paged=False, missing_ok=True)
        raw = lower_keys(ntds[0][1]).get("invocationid") if ntds else None
        if not raw:
            raise DirectoryError(
                f"cannot read invocationId of {service} on {self._domain.url}; the bind account needs read "
                "access to the DC's NTDS Settings object (Authenticated Users has it by default)"
            )
        return UsnWatermark(dc=guid_to_str(bytes(raw[0])), usn=int(usn))

    def _deleted_user_ids(self, since_usn: int) -> list[str]:
        """objectGUIDs of users deleted (isDeleted=TRUE) with uSNChanged above ``since_usn``: a one-level
        search of the domain's Deleted Objects container with the Show Deleted control, as documented in
        "Retrieving Deleted Objects" (AD DS docs). Deleted objects keep objectGUID and objectClass; they lose
        objectCategory, so the filter uses objectClass (computers match too; their GUIDs are not in the user
        cache and removing them is a no-op)."""
        domain_nc = self._naming_context("defaultNamingContext")
        base = f"<WKGUID={DELETED_OBJECTS_WKGUID},{domain_nc}>"
        flt = f"(&(isDeleted=TRUE)(objectClass=user)(uSNChanged>={since_usn + 1}))"
        control = RequestControl(SHOW_DELETED_OID, True)
        try:
            entries = self._domain.search(base, ldap.SCOPE_ONELEVEL, flt, ["objectGUID"], controls=[control])
        except DirectoryUnavailable:
            raise
        except DirectoryError as exc:
            # "Retrieving Deleted Objects": only administrators see the container unless it is delegated.
            # Users deleted in AD then leave the cache at the next full reconcile instead of the next poll.
            if not self._deleted_warned:
                self._deleted_warned = True
                log.warning(
                    "cannot read the Deleted Objects container of %s (%s): AD users deleted since the last "
                    "poll stay in on-prem dynamic groups' cache until the next full reconcile. To fix, as a "
                    'domain admin: dsacls "CN=Deleted Objects,%s" /takeownership, then dsacls '
                    '"CN=Deleted Objects,%s" /G "<DOMAIN>\\<service account>:LCRP"',
                    domain_nc,
                    exc,
                    domain_nc,
                    domain_nc,
                )
            return []
        ids: list[str] = []
        for _dn, raw in entries:
            guid = lower_keys(raw).get("objectguid")
            if guid:
                ids.append(guid_to_str(bytes(guid[0])))
        return ids

    def read_members(self, dn: str, *, range_size: int | None = None) -> list[str]:
        """All member DNs of ``dn``. With ``range_size`` every read asks for an explicit range
        ('member;range=0-1499', …) the way AD forces for big groups; without it the server chooses."""
        first = "member" if range_size is None else f"member;range=0-{range_size - 1}"
        entries = self._domain.search(dn, _BASE, _ANY, [first], paged=False)
        if not entries:
            return []
        return self._complete_members(dn, lower_keys(entries[0][1]), range_size=range_size)

    def _complete_members(
        self,
        dn: str,
        attrs: Mapping[str, list[bytes]],
        *,
        range_size: int | None,
        controls: Sequence[RequestControl] = (),
    ) -> list[str]:
        """The member values of ``attrs`` and of the ranged reads that follow them, each read sent with
        ``controls`` (the extended DN control of :meth:`read_groups_with_accounts` must ride on every slice)."""
        values: list[str] = []
        for part in self._member_ranges(dn, attrs, range_size=range_size, controls=controls):
            values.extend(part)
        return values

    def _member_ranges(
        self,
        dn: str,
        attrs: Mapping[str, list[bytes]],
        *,
        range_size: int | None,
        controls: Sequence[RequestControl] = (),
    ) -> Iterator[list[str]]:
        """The member values of ``attrs``, then those of each ranged read that follows, one range at a time
        (a caller that turns each range into something smaller never holds every raw value of a big group)."""
        values, next_low = split_member_values(attrs)
        yield values
        del values
        while next_low is not None:
            high = "*" if range_size is None else str(next_low + range_size - 1)
            entries = self._domain.search(
                dn, _BASE, _ANY, [f"member;range={next_low}-{high}"], paged=False, controls=controls
            )
            if not entries:
                break  # deleted while we read it
            more, following = split_member_values(lower_keys(entries[0][1]))
            del entries
            yield more
            del more
            if following is not None and following <= next_low:
                raise DirectoryError(f"ranged read of member of {dn} did not advance past {next_low}")
            next_low = following

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
    #
    # One operation at a time, on purpose: several in flight, or two connections, measured no gain beyond the
    # run-to-run noise, because the DC serves the requests one after the other and a first apply's write phase
    # is nearly all waiting for its answers (docs/benchmarks.md, "Measurements behind the code", and "Issue 27:
    # keeping the DC busy" for 4 in flight measured again). What is left to the client is to send fewer
    # operations (nested groups ride in their parent's add: Engine write_order) and to send the next one at once
    # (the apply's writer thread journals nothing between two writes: writeback.app.writer). During an apply this
    # adapter is used by the writer thread only.

    def create_group(
        self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]], members: Sequence[str]
    ) -> None:
        """One add carrying the attributes and up to max_values_per_modify members; the rest in chunks.

        Empty-string values are left out (LDAP cannot store them). An existing DN is refused by the server
        (DirectoryWriteError with result ALREADY_EXISTS…), never overwritten.
        """
        modlist: list[tuple[str, list[bytes]]] = []
        if not any(name.lower() == "objectclass" for name in attributes):
            modlist.append(("objectClass", [b"top", b"group"]))
        for name, value in attributes.items():
            if value not in ("", ()):
                modlist.append((name, _encoded(value)))
        unique = list(dict.fromkeys(members))
        initial = unique[: self._values_per_modify]
        while True:
            full = [*modlist, ("member", [m.encode("utf-8") for m in initial])] if initial else modlist
            values = sum(len(v) for _name, v in full)
            try:
                self._write("add", dn, values, lambda conn, full=full: conn.add_ext_s(dn, full))
                break
            except DirectoryWriteError as exc:
                if not initial or not isinstance(exc.__cause__, ldap.ADMINLIMIT_EXCEEDED):
                    raise
                refused, initial = len(initial), initial[: len(initial) // 2]
                self._lower_values_per_modify(refused, max(1, len(initial)), dn)
        self._send_chunks(dn, unique, len(initial), add=True)

    def create_user(self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]]) -> None:
        """Add a user account ([users] provision = "cloud_members") with a random password in the add.

        The password (:func:`new_password`) is generated here, for this add only, and set as ``unicodePwd``:
        the password in double quotes, UTF-16LE. AD accepts unicodePwd only over an encrypted connection
        (MS-ADTS 3.1.1.3.1.5.1 "unicodePwd": TLS, or SASL with 128-bit encryption), so the add is refused before
        it is sent unless this connection is ldaps://, StartTLS, or a Kerberos bind sealed with 128 bits or more
        on ldap:// (Microsoft Learn, "Change a Windows Active Directory and LDS user password through LDAP":
        "An encrypted session using SSP-created session keys using NTLM or Kerberos are also acceptable as long
        as the minimum key length is met"). The password is never returned, kept,
        logged or put in an exception: an error is reported from the add's result code, never from its
        request. Nobody knows it; sign-in is passwordless (README, "Users")."""
        modlist: list[tuple[str, list[bytes]]] = []
        for name, value in attributes.items():
            if name.lower() == "unicodepwd":
                raise ValueError("create_user makes the password itself; it is never passed in")
            if value not in ("", ()):
                modlist.append((name, _encoded(value)))
        if not any(name.lower() == "objectclass" for name in attributes):
            modlist.insert(0, ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]))

        def add(conn: Any) -> Any:
            if not self._encrypted():
                raise DirectoryWriteError(
                    f"{dn}: refusing to create a user account over an unencrypted connection: AD takes a password "
                    "(unicodePwd) only over TLS or a SASL layer sealed with 128 bits or more (MS-ADTS "
                    '3.1.1.3.1.5.1). Use ldaps://, StartTLS (drop target.insecure_plain_ldap), or auth = "kerberos"',
                    permanent=True,
                )
            password = ('"' + new_password() + '"').encode("utf-16-le")
            try:
                return conn.add_ext_s(dn, [*modlist, ("unicodePwd", [password])])
            finally:
                del password

        self._write("add", dn, len(modlist), add)

    def _encrypted(self) -> bool:
        """True when the domain connection in use is encrypted: TLS (ldaps://, or ldap:// with StartTLS), or a
        Kerberos bind sealed with at least 128 bits (the session checks the SSF it negotiated)."""
        return self._domain.encrypted

    def taken_user_principal_names(self, upns: Iterable[str]) -> dict[str, str]:
        """Lower-cased userPrincipalName -> DN for the UPNs already held in the forest: through the Global
        Catalog when configured (UPNs are unique forest-wide), else in the domain."""
        session, base = (
            (self._gc, "")
            if self._gc is not None
            else (self._domain, self._naming_context("defaultNamingContext"))
        )
        taken: dict[str, str] = {}
        for batch in chunked(list(dict.fromkeys(u.lower() for u in upns)), FILTER_BATCH):
            flt = or_filter([f"(userPrincipalName={escape_filter_chars(u)})" for u in batch])
            for dn, raw in session.search(base, _SUBTREE, flt, ["userPrincipalName"]):
                upn = first_str(lower_keys(raw), "userPrincipalName")
                if dn and upn is not None:
                    taken[upn.lower()] = dn
        return taken

    def modify_attributes(self, dn: str, values: Mapping[str, AttributeValue]) -> None:
        """Replace each attribute in one modify (a tuple: all its values); None (or '') removes it, whether or
        not it is set."""
        if not values:
            return
        modlist = [
            (ldap.MOD_REPLACE, name, None if value in (None, "", ()) else _encoded(value))
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
        self._change_all(dn, members, add=True)

    def remove_members(self, dn: str, members: Sequence[str]) -> None:
        """Remove ``members`` in modifies of at most max_values_per_modify values (idempotent)."""
        self._change_all(dn, members, add=False)

    def _change_all(self, dn: str, members: Sequence[str], *, add: bool) -> None:
        self._send_chunks(dn, list(dict.fromkeys(members)), 0, add=add)

    def _send_chunks(self, dn: str, unique: list[str], start: int, *, add: bool) -> None:
        """Modifies of ``unique[start:]``, each chunk (and its encoded values) made only when it is sent, and
        no copy of what is left (issue 27: a 250,000-member group). Chunked as we go: an adminLimitExceeded
        answer lowers the size of the chunks that follow."""
        done = start
        while done < len(unique):
            chunk = unique[done : done + self._values_per_modify]
            self._change_members(dn, chunk, add=add)
            done += len(chunk)

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
        """One modify; on adminLimitExceeded (too many values for the DC's limits) each half is sent alone."""
        op = ldap.MOD_ADD if add else ldap.MOD_DELETE
        modlist = [(op, "member", [m.encode("utf-8") for m in values])]
        try:
            self._write("modify", dn, len(values), lambda conn: conn.modify_ext_s(dn, modlist))
        except DirectoryWriteError as exc:
            if len(values) < 2 or not isinstance(exc.__cause__, ldap.ADMINLIMIT_EXCEEDED):
                raise
            self._lower_values_per_modify(len(values), (len(values) + 1) // 2, dn)
            # Re-read the size each round: a refusal deeper down lowers it for the values still to send.
            done = 0
            while done < len(values):
                part = values[done : done + self._values_per_modify]
                self._modify_member(dn, part, add=add)
                done += len(part)

    def _lower_values_per_modify(self, refused: int, size: int, dn: str) -> None:
        if size >= self._values_per_modify:
            return
        log.warning(
            "the DC refused %d member values in one operation on %s (adminLimitExceeded); sending at most %d "
            "per operation from now on. Set target.max_values_per_modify = %d to start there",
            refused,
            dn,
            size,
            size,
        )
        self._values_per_modify = size

    def fence_writes(self, check: Callable[[], None] | None, deadline: float | None = None) -> None:
        self._write_check, self._write_deadline = check, deadline

    def _write(self, kind: str, dn: str, values: int, call: Any) -> None:
        """Check the fence, count the operation (values only when accepted) and run it through the write
        policy. Each write is fenced, not only each change: one change can be hundreds of modifies
        (max_values_per_modify), and an instance paused mid-change must not finish it after losing the lease."""
        if self._write_check is not None:
            self._write_check()
        self._stats[kind] += 1
        try:
            self._domain.write(kind, call, dn, deadline=self._write_deadline)
        except Exception:
            self._stats[f"{kind}_errors"] += 1  # operations by result (the console's metrics)
            raise
        self._stats["values_written"] += values


# AD's default password policy asks for three of four classes; every class is in each password, and 64
# characters is far beyond any minimum length (AD accepts up to 256 in unicodePwd).
PASSWORD_LENGTH = 64
_PASSWORD_CLASSES = (
    string.ascii_uppercase,
    string.ascii_lowercase,
    string.digits,
    "!#$%&()*+,-./:;<=>?@[]^_{|}~",
)


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password from :mod:`secrets` with at least one character of each class (AD's complexity
    rule), shuffled with the system's CSPRNG."""
    alphabet = "".join(_PASSWORD_CLASSES)
    chars = [secrets.choice(c) for c in _PASSWORD_CLASSES]
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def _plain_dn_values(attrs: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """``attrs`` with the extended DN prefixes taken off every value but the members' (parsed by the caller)
    and the binary objectGUID/objectSid: a mapped attribute of DN syntax (managedBy) compares as the plain DN
    :meth:`LdapDirectory.read_groups` reads. MS-ADTS 3.1.1.3.4.1.5: the DC extends every DN of its answer."""
    out: dict[str, list[bytes]] = {}
    for name, values in attrs.items():
        if name in ("objectguid", "objectsid") or name == "member" or name.startswith("member;"):
            out[name] = values
            continue
        out[name] = [_plain_dn_value(v) if v[:6].upper() == b"<GUID=" else v for v in values]
    return out


def _plain_dn_value(value: bytes) -> bytes:
    """The DN of an extended DN value; any other value as it is."""
    dn, guid, _sid = parse_extended_dn(value.decode("utf-8", errors="replace"))
    return dn.encode("utf-8") if guid is not None else value


def _changed_users(after_usn: int) -> str:
    return f"(&(objectCategory=person)(objectClass=user)(uSNChanged>={after_usn + 1}))"


def _encoded(value: str | int | tuple[str, ...] | None) -> list[bytes]:
    """LDAP values of one attribute: a tuple is several values (a multi-valued attribute such as proxyAddresses)."""
    if isinstance(value, tuple):
        return [v.encode("utf-8") for v in value]
    return [str(value).encode("utf-8")]
