"""A python-ldap connection double that answers the way Windows Server AD does, limits included.

Samba (the integration test bed) is more lenient than Windows AD in exactly the places that break clients on big
directories, so the reader and writer are unit-tested against this double instead. Each behaviour is Windows
Server's default and comes from Microsoft's documentation:

- MaxPageSize = 1,000 (KB 315071 "View and set LDAP policy in Active Directory by using Ntdsutil.exe"; MS-ADTS
  3.1.1.3.4.6): a paged search returns at most that many entries per page, whatever size the client asks for;
  a search without the paged results control that matches more is answered sizeLimitExceeded (4) after the
  first 1,000 entries (python-ldap raises SIZELIMIT_EXCEEDED and hands the caller none of them).
- MaxValRange = 1,500 (KB 315071; "Searching Using Range Retrieval"; MS-ADTS 3.1.1.3.1.3.3): an attribute with
  more values than that is returned, unasked, as ``member;range=0-1499``; an explicit ``member;range=L-H`` is
  answered with at most 1,500 values, and the slice holding the last value is named ``member;range=L-*``.
- MaxQueryDuration = 120 s (KB 315071): the DC works at most that long on one search request (one page);
  then it answers timeLimitExceeded (3). The time a page costs is modelled (``seconds_per_entry``), not
  slept: a page costing more than the client's own wait (``timeout`` of result3) raises ldap.TIMEOUT, as
  python-ldap does when the client stops waiting first.
- Administrative limits on one add or modify (the request is bounded by MaxReceiveBuffer, 10,485,760 bytes,
  KB 315071): more than ``max_values_per_modify`` values of one attribute are refused with adminLimitExceeded
  (11). The real limit is in bytes, so a test chooses the number of values the DC accepts.
- Adding a value already there: attributeOrValueExists (20); removing one that is not there: unwillingToPerform
  (53) — both are what AD answers for ``member``.
- Deleted objects (MS-ADTS 3.1.1.5.5 "Delete Operation"; "Retrieving Deleted Objects"): a delete moves the object
  to the naming context's Deleted Objects container with isDeleted=TRUE, keeps few attributes (objectGUID,
  objectSid, objectClass, sAMAccountName, lastKnownParent) and drops the object from every group's member.
  Deleted objects are invisible unless the search carries the Show Deleted control (1.2.840.113556.1.4.417).
  The container is reachable as ``<WKGUID=18E2EA80684F11D2B9AA00C04F79F805,<NC>>``.
- USNs are per DC: every write takes the DC's next USN into uSNChanged and highestCommittedUSN; the rootDSE's
  dsServiceName names the NTDS Settings object carrying the DC's invocationId.
- Extended DNs (LDAP_SERVER_EXTENDED_DN_OID, MS-ADTS 3.1.1.3.4.1.5): with the control, every DN of the answer
  — the entry's own and each ``member`` value, ranged slices included — is written ``<GUID=…>;<SID=…>;dn``
  (``<GUID=…>;dn`` without objectSid), as strings with Flag 1, as hex with Flag 0 or no value. A member value
  naming an object the double does not hold stays a plain DN (Windows always knows the object, a phantom at
  least; tests that need keys add the objects).
- The Partitions container of the configuration NC holds a crossRef (nCName) per naming context of the
  forest: the domain, its DomainDnsZones, and the child domains a test adds (``add_child_domain``).

- allowedAttributesEffective ([MS-ADTS] 3.1.1.4.5.7, a constructed attribute): asked for, a group answers the
  attributes of its class (:data:`GROUP_CLASS_ATTRIBUTES`: the class's allowedAttributes, without back links
  such as memberOf and without constructed attributes) that the bound account has Write Property on; an entry
  where it may write nothing leaves the attribute out, as AD leaves out any attribute without values. The rights
  are a test's ``write_rights`` (normalized DN -> attributes); an object not listed is writable throughout, as
  for an administrator. A modify of an attribute without the right is refused insufficientAccessRights (50)
  with Windows' message ([MS-ADTS] 3.1.1.5.3.1: Write Property on every attribute modified).

- Hardened DCs (issue 26). ``require_signing`` is LDAPServerIntegrity = 2, "Domain controller: LDAP server signing
  requirements" = Require signing (Microsoft Learn, that policy's page; Windows Server 2025 enforces it): a simple
  bind on a connection without TLS, and a SASL bind that does not sign, are refused strongerAuthRequired (8)
  with AD's diagnostic 00002028. ``channel_binding`` is LdapEnforceChannelBinding (KB 4520412 "2020, 2023, and
  2024 LDAP channel binding and LDAP signing requirements for Windows"; MS-ADTS 5.1.2.2): at 2 a SASL bind
  inside TLS without a channel binding token is refused invalidCredentials with "AcceptSecurityContext error,
  data 80090346" (SEC_E_BAD_BINDINGS); at 1 a client that sends none is let through. python-ldap with Cyrus
  SASL 2.1.28 sends none, so the double models a client without a token. A SASL layer inside TLS is refused
  (MS-ADTS 5.1.2.2: AD "does not permit SASL-layer message confidentiality/integrity protection mechanisms
  to be employed on an SSL/TLS-protected LDAP connection"; the diagnostic is AD's 00002029, the result code
  unwillingToPerform is this double's choice). unicodePwd is taken only over TLS or a SASL layer of 128 bits
  or more (MS-ADTS 3.1.1.3.1.5.1); otherwise unwillingToPerform (53) with AD's "0000001F: SvcErr ... problem
  5003 (WILL_NOT_PERFORM)". The GSSAPI SSF the double negotiates on 389 is 256 (AES-256 session keys),
  within the client's OPT_X_SASL_SSF_MIN/MAX.

Not modelled (the engine does not use them): referrals, the Global Catalog, SD propagation, attribute syntaxes.
"""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ldap
from ldap.controls import SimplePagedResultsControl
from pyasn1.codec.ber import decoder as ber_decoder

from writeback.adapters.directory.adapter import DELETED_OBJECTS_WKGUID, EXTENDED_DN_OID, SHOW_DELETED_OID
from writeback.adapters.directory.codec import sid_to_str

MAX_PAGE_SIZE = 1000
MAX_VAL_RANGE = 1500
MAX_QUERY_DURATION = 120.0
_BINARY = {"objectguid", "objectsid", "invocationid"}
# Attributes of DN syntax the double knows (the extended DN control rewrites their values).
_DN_VALUED = {"member", "distinguishedname", "managedby"}
_KEPT_ON_DELETE = {"objectguid", "objectsid", "objectclass", "samaccountname", "distinguishedname"}
# The group class's attributes as allowedAttributes lists them (a subset: those tests touch), by lDAPDisplayName.
GROUP_CLASS_ATTRIBUTES = (
    "adminDescription",
    "cn",
    "description",
    "displayName",
    "groupType",
    "info",
    "mail",
    "mailNickname",
    "managedBy",
    "member",
    "msDS-ExternalDirectoryObjectId",
    "msExchRecipientDisplayType",
    "msExchRecipientTypeDetails",
    "name",
    "proxyAddresses",
    "sAMAccountName",
)
_ALLOWED_EFFECTIVE = "allowedattributeseffective"
_RANGE = re.compile(r"^(?P<attr>[^;]+);range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.IGNORECASE)

Attrs = dict[str, list[bytes]]
Match = Callable[[Attrs], bool]


def _norm(dn: str) -> str:
    return ",".join(part.strip().lower() for part in dn.split(","))


# -- a small RFC 4515 filter evaluator (what the adapter sends: & | ! = >= <= =* and prefix*) ---------------


def _unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        if raw[i : i + 1] == b"\\":
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _item(text: str) -> Match:
    for op in (">=", "<=", "="):
        if op in text:
            name, value = text.split(op, 1)
            break
    else:
        raise ldap.FILTER_ERROR({"desc": "Bad search filter", "info": text})
    name = name.strip().lower()

    def values(attrs: Attrs) -> list[bytes]:
        return attrs.get(name, [])

    if op == "=" and value == "*":
        return lambda a: bool(values(a))
    if op in (">=", "<="):
        bound = int(value)
        if op == ">=":
            return lambda a: any(int(v) >= bound for v in values(a))
        return lambda a: any(int(v) <= bound for v in values(a))
    if "*" in value:
        parts = [_unescape(p).lower() for p in value.split("*")]

        def substring(a: Attrs) -> bool:
            for v in values(a):
                low = v.lower()
                if low.startswith(parts[0]) and low.endswith(parts[-1]):
                    pos = len(parts[0])
                    for mid in parts[1:-1]:
                        pos = low.find(mid, pos)
                        if pos < 0:
                            break
                        pos += len(mid)
                    else:
                        return True
            return False

        return substring
    wanted = _unescape(value)
    if name in _BINARY:
        return lambda a: wanted in values(a)
    if name == "objectcategory" and b"=" not in wanted:
        # AD expands the short form (objectCategory=person) to the category's DN (CN=Person,CN=Schema,…).
        return lambda a: any(v.split(b",")[0].split(b"=")[-1].lower() == wanted.lower() for v in values(a))
    return lambda a: any(v.lower() == wanted.lower() for v in values(a))


def parse_filter(text: str) -> Match:
    match, rest = _parse(text.strip())
    if rest:
        raise ldap.FILTER_ERROR({"desc": "Bad search filter", "info": text})
    return match


def _parse(text: str) -> tuple[Match, str]:
    if not text.startswith("("):
        raise ldap.FILTER_ERROR({"desc": "Bad search filter", "info": text})
    kind = text[1]
    if kind in "&|":
        subs: list[Match] = []
        rest = text[2:]
        while rest.startswith("("):
            sub, rest = _parse(rest)
            subs.append(sub)
        combine = all if kind == "&" else any
        return (lambda a: combine(s(a) for s in subs)), rest[1:]
    if kind == "!":
        sub, rest = _parse(text[2:])
        return (lambda a: not sub(a)), rest[1:]
    end = text.index(")")
    return _item(text[1:end]), text[end + 1 :]


# -- the directory of one DC ----------------------------------------------------------------------------------


@dataclass
class WindowsDC:
    """One Windows Server domain controller's view of the domain ``nc`` and its LDAP policies."""

    nc: str = "DC=corp,DC=test"
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    max_page_size: int = MAX_PAGE_SIZE
    max_val_range: int = MAX_VAL_RANGE
    max_query_duration: float = MAX_QUERY_DURATION
    max_values_per_modify: int = 5000
    seconds_per_entry: float = 0.0
    down: bool = False
    searches_before_down: int | None = None  # the DC goes down at this search (failover tests)
    require_signing: bool = False  # LDAPServerIntegrity = 2 (module docstring, "Hardened DCs")
    channel_binding: int = 0  # LdapEnforceChannelBinding: 0 never, 1 when supported, 2 always
    # "Retrieving Deleted Objects": the container is normally visible to administrators only. With False the
    # double answers noSuchObject for it; Windows' exact answer to an account without rights is not documented.
    deleted_objects_visible: bool = True
    usn: int = 1000
    # Normalized DN -> the attributes the bound account may write there (allowedAttributesEffective); objects
    # not listed: every attribute, as for an administrator.
    write_rights: dict[str, frozenset[str]] = field(default_factory=dict)
    entries: dict[str, tuple[str, Attrs]] = field(default_factory=dict)
    log: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server_dn = f"CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,{self.nc}"
        self.ntds_dn = f"CN=NTDS Settings,{self.server_dn}"
        self.deleted_dn = f"CN=Deleted Objects,{self.nc}"
        self._put(self.nc, {"objectClass": [b"top", b"domain"]})
        self._put(self.ntds_dn, {"objectClass": [b"nTDSDSA"], "invocationId": [self.invocation_bytes]})
        self._put(self.deleted_dn, {"objectClass": [b"container"], "isDeleted": [b"TRUE"]})
        self.config_dn = f"CN=Configuration,{self.nc}"
        self.partitions_dn = f"CN=Partitions,{self.config_dn}"
        self._put(self.partitions_dn, {"objectClass": [b"top", b"crossRefContainer"]})
        for nc in (self.nc, f"DC=DomainDnsZones,{self.nc}"):
            self.add_child_domain(nc)

    def add_child_domain(self, nc: str) -> None:
        """A naming context of the forest (a crossRef naming it); its objects are added like any other."""
        name = nc.split(",")[0].split("=")[1]
        self._put(
            f"CN={name},{self.partitions_dn}", {"objectClass": [b"top", b"crossRef"], "nCName": [nc.encode()]}
        )

    @property
    def invocation_bytes(self) -> bytes:
        return uuid.UUID(self.invocation_id).bytes_le

    def replica(self, invocation_id: str, usn: int) -> WindowsDC:
        """Another DC of the same domain: the same objects, its own invocationId and USN counter."""
        other = copy.deepcopy(self)
        other.invocation_id, other.usn, other.log = invocation_id, usn, []
        _dn, attrs = other.entries[_norm(other.ntds_dn)]
        attrs["invocationid"] = [other.invocation_bytes]
        return other

    def connect(self, url: str) -> DoubleConnection:
        """Stands in for ``ldap.initialize``."""
        return DoubleConnection(self, url)

    # -- building the directory --------------------------------------------------------------------------

    def _put(self, dn: str, attrs: dict[str, list[bytes]]) -> None:
        self.usn += 1
        stored = {k.lower(): list(v) for k, v in attrs.items()}
        stored.setdefault("objectguid", [uuid.uuid4().bytes_le])
        stored["distinguishedname"] = [dn.encode()]
        stored["usnchanged"] = [str(self.usn).encode()]
        self.entries[_norm(dn)] = (dn, stored)

    def add_user(self, name: str, parent: str | None = None, **attrs: str) -> str:
        dn = f"CN={name},{parent or self.nc}"
        values = {
            "objectClass": [b"top", b"person", b"organizationalPerson", b"user"],
            "objectCategory": [f"CN=Person,CN=Schema,CN=Configuration,{self.nc}".encode()],
            "sAMAccountName": [name.encode()],
            "userAccountControl": [b"512"],
        }
        values.update({k: [v.encode()] for k, v in attrs.items()})
        self._put(dn, values)
        return dn

    def add_group(self, name: str, members: Iterable[str] = (), parent: str | None = None) -> str:
        dn = f"CN={name},{parent or self.nc}"
        values = {"objectClass": [b"top", b"group"], "sAMAccountName": [name.encode()]}
        member = [m.encode() for m in members]
        if member:
            values["member"] = member
        self._put(dn, values)
        return dn

    def guid_of(self, dn: str) -> str:
        return str(uuid.UUID(bytes_le=self.entries[_norm(dn)][1]["objectguid"][0]))

    def members_of(self, dn: str) -> list[str]:
        return [v.decode() for v in self.entries[_norm(dn)][1].get("member", [])]

    # -- what the server does ----------------------------------------------------------------------------

    def extended(self, dn: str, flag: int) -> str:
        """``dn`` as the extended DN control writes it (see the module docstring)."""
        found = self.entries.get(_norm(dn))
        if found is None:
            return dn
        attrs = found[1]
        raw_guid, raw_sid = attrs["objectguid"][0], attrs.get("objectsid", [None])[0]
        guid = str(uuid.UUID(bytes_le=raw_guid)) if flag == 1 else raw_guid.hex()
        sid = (sid_to_str(raw_sid) if flag == 1 else raw_sid.hex()) if raw_sid else None
        return f"<GUID={guid}>;" + (f"<SID={sid}>;" if sid else "") + found[0]

    def resolve_base(self, base: str) -> str:
        wk = re.match(r"^<WKGUID=([0-9a-fA-F]{32}),(.*)>$", base)
        if wk:
            if wk.group(1).upper() != DELETED_OBJECTS_WKGUID or _norm(wk.group(2)) != _norm(self.nc):
                raise ldap.NO_SUCH_OBJECT({"desc": "No such object", "info": base})
            return self.deleted_dn
        return base

    def delete(self, dn: str) -> None:
        key = _norm(dn)
        if key not in self.entries:
            raise ldap.NO_SUCH_OBJECT({"desc": "No such object", "info": dn})
        _dn, attrs = self.entries.pop(key)
        guid = str(uuid.UUID(bytes_le=attrs["objectguid"][0]))
        rdn = dn.split(",")[0]
        new_dn = f"{rdn}\\0ADEL:{guid},{self.deleted_dn}"
        kept = {k: v for k, v in attrs.items() if k in _KEPT_ON_DELETE}
        kept["isdeleted"] = [b"TRUE"]
        kept["lastknownparent"] = [dn.split(",", 1)[1].encode()]
        self._put(new_dn, kept)
        # member is a linked attribute: the deleted object leaves every group (MS-ADTS 3.1.1.5.5.1.3).
        for gkey, (gdn, gattrs) in list(self.entries.items()):
            before = gattrs.get("member", [])
            after = [m for m in before if _norm(m.decode()) != key]
            if len(after) != len(before):
                gattrs["member"] = after
                self.usn += 1
                gattrs["usnchanged"] = [str(self.usn).encode()]
                self.entries[gkey] = (gdn, gattrs)

    def modify(self, dn: str, modlist: Sequence[tuple[int, str, list[bytes] | None]]) -> None:
        key = _norm(dn)
        if key not in self.entries:
            raise ldap.NO_SUCH_OBJECT({"desc": "No such object", "info": dn})
        for _op, name, values in modlist:
            self._check_values(name, values or [])
        granted = self.write_rights.get(key)
        if granted is not None and any(name.lower() not in self._writable(key) for _op, name, _v in modlist):
            raise ldap.INSUFFICIENT_ACCESS(
                {
                    "desc": "Insufficient access",
                    "info": "00002098: SecErr: DSID-03150F94, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0",
                }
            )
        gdn, attrs = self.entries[key]
        for op, name, values in modlist:
            name = name.lower()
            current = attrs.get(name, [])
            keys = {v.lower() for v in current}
            if op == ldap.MOD_ADD:
                for v in values or []:
                    if v.lower() in keys:
                        raise ldap.TYPE_OR_VALUE_EXISTS(
                            {"desc": "Type or value exists", "info": "00002083: AtrErr: DSID-03151904"}
                        )
                attrs[name] = current + list(values or [])
            elif op == ldap.MOD_DELETE:
                gone = {v.lower() for v in values or []}
                if not gone <= keys:
                    raise ldap.UNWILLING_TO_PERFORM(
                        {"desc": "Server is unwilling to perform", "info": "00000561: SvcErr: DSID-031A1248"}
                    )
                attrs[name] = [v for v in current if v.lower() not in gone]
            else:
                attrs[name] = list(values or [])
        self.usn += 1
        attrs["usnchanged"] = [str(self.usn).encode()]
        self.entries[key] = (gdn, attrs)

    def add(self, dn: str, modlist: Sequence[tuple[str, list[bytes]]]) -> None:
        if _norm(dn) in self.entries:
            raise ldap.ALREADY_EXISTS({"desc": "Already exists", "info": "00002071: UpdErr: DSID-0305038D"})
        for name, values in modlist:
            self._check_values(name, values)
        self._put(dn, {name: list(values) for name, values in modlist})

    def _writable(self, key: str) -> set[str]:
        """Lower-cased names of the attributes the bound account may write on the object ``key``."""
        granted = self.write_rights.get(key)
        names = GROUP_CLASS_ATTRIBUTES if granted is None else granted
        return {n.lower() for n in names}

    def allowed_attributes_effective(self, key: str) -> list[bytes]:
        """What a group answers for allowedAttributesEffective (see the module docstring)."""
        writable = self._writable(key)
        return [a.encode() for a in GROUP_CLASS_ATTRIBUTES if a.lower() in writable]

    def _check_values(self, name: str, values: Sequence[bytes]) -> None:
        if len(values) > self.max_values_per_modify:
            raise ldap.ADMINLIMIT_EXCEEDED(
                {"desc": "Administrative limit exceeded", "info": f"{len(values)} values of {name}"}
            )

    def root_dse(self) -> Attrs:
        return {
            "dsservicename": [self.ntds_dn.encode()],
            "highestcommittedusn": [str(self.usn).encode()],
            "defaultnamingcontext": [self.nc.encode()],
            "schemanamingcontext": [f"CN=Schema,CN=Configuration,{self.nc}".encode()],
            "rootdomainnamingcontext": [self.nc.encode()],
            "configurationnamingcontext": [self.config_dn.encode()],
        }

    def search(self, base: str, scope: int, filterstr: str, show_deleted: bool) -> list[tuple[str, Attrs]]:
        if base == "" and scope == ldap.SCOPE_BASE:
            return [("", self.root_dse())]
        base = self.resolve_base(base)
        bkey = _norm(base)
        if bkey not in self.entries or (bkey == _norm(self.deleted_dn) and not self.deleted_objects_visible):
            raise ldap.NO_SUCH_OBJECT({"desc": "No such object", "info": base})
        match = parse_filter(filterstr)
        found = []
        for key, (dn, attrs) in self.entries.items():
            deleted = attrs.get("isdeleted") == [b"TRUE"]
            if deleted and not show_deleted:
                continue
            if scope == ldap.SCOPE_BASE:
                inside = key == bkey
            elif scope == ldap.SCOPE_ONELEVEL:
                inside = key.endswith("," + bkey) and "," not in key[: -len(bkey) - 1].replace("\\,", "")
            else:
                inside = key == bkey or key.endswith("," + bkey)
            if inside and match(attrs):
                found.append((dn, attrs))
        return found

    def select(self, attrs: Attrs, attrlist: Sequence[str] | None) -> Attrs:
        """The attributes asked for, with MaxValRange applied to every multi-valued one."""
        if attrlist is not None and list(attrlist) == ["1.1"]:
            return {}
        wanted = [a for a in attrs] if attrlist is None else list(attrlist)
        out: Attrs = {}
        for asked in wanted:
            ranged = _RANGE.match(asked)
            name = (ranged.group("attr") if ranged else asked).lower()
            values = attrs.get(name)
            if name == _ALLOWED_EFFECTIVE and b"group" in attrs.get("objectclass", []):
                values = self.allowed_attributes_effective(_norm(attrs["distinguishedname"][0].decode()))
            if not values:
                continue
            low = int(ranged.group("low")) if ranged else 0
            high_text = ranged.group("high") if ranged else "*"
            if low >= len(values):
                raise ldap.OPERATIONS_ERROR(
                    {"desc": "Operations error", "info": f"range starts at {low}, past the last value"}
                )
            high = len(values) - 1 if high_text == "*" else min(int(high_text), len(values) - 1)
            high = min(high, low + self.max_val_range - 1)
            part = values[low : high + 1]
            if ranged is None and high == len(values) - 1:
                out[name] = part  # everything fits: plain attribute name
            else:
                end = "*" if high == len(values) - 1 else str(high)
                out[f"{name};range={low}-{end}"] = part
        return out


# AD's answers to what a hardened DC refuses (module docstring, "Hardened DCs").
_STRONGER_AUTH = {
    "desc": "Strong(er) authentication required",
    "info": "00002028: LdapErr: DSID-0C090259, comment: The server requires binds to turn on integrity checking "
    "if SSL\\TLS are not already active on the connection, data 0, v4563",
}
_BAD_BINDINGS = {
    "desc": "Invalid credentials",
    "info": "80090346: LdapErr: DSID-0C090749, comment: AcceptSecurityContext error, data 80090346, v4563",
}
_LAYER_IN_TLS = {
    "desc": "Server is unwilling to perform",
    "info": "00002029: LdapErr: DSID-0C0906E8, comment: Cannot start kerberos signing/sealing when using TLS/SSL, "
    "data 0, v4563",
}
_PASSWORD_UNENCRYPTED = {
    "desc": "Server is unwilling to perform",
    "info": "0000001F: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM), data 0",
}
_UNLIMITED = 2**31 - 1
_GSSAPI_SSF = 256


class DoubleConnection:
    """What ``ldap.initialize(url)`` returns, for the calls LdapSession and LdapDirectory make."""

    def __init__(self, dc: WindowsDC, url: str) -> None:
        self.dc, self.url = dc, url
        self.options: dict[int, Any] = {}
        self.tls = url.lower().startswith("ldaps://")
        self.ssf = 0  # the SASL layer's strength once bound with one
        self.binds: list[str] = []  # "simple" / "sasl"
        self.timeout: float = -1
        self._msgids = itertools.count(1)
        self._pending: dict[int, tuple[str, int, str, list[str] | None, list[Any]]] = {}
        self._results: dict[tuple[str, int, str], list[tuple[str, Attrs]]] = {}
        self.waits: list[tuple[str, float]] = []  # (filter, how long the client waited)

    def _alive(self) -> None:
        if self.dc.down:
            raise ldap.SERVER_DOWN({"desc": "Can't contact LDAP server", "errno": 111})

    def set_option(self, option: int, value: Any) -> None:
        self.options[option] = value

    def get_option(self, option: int) -> Any:
        if option == ldap.OPT_X_SASL_SSF:
            return self.ssf
        return self.options.get(option)

    def start_tls_s(self) -> None:
        self._alive()
        self.tls = True

    def simple_bind_s(self, who: str, cred: str) -> None:
        self._alive()
        self.binds.append("simple")
        if self.dc.require_signing and not self.tls:
            raise ldap.STRONG_AUTH_REQUIRED(_STRONGER_AUTH)

    def sasl_interactive_bind_s(self, who: str, auth: Any) -> None:
        self._alive()
        self.binds.append("sasl")
        if self.tls:
            if self.options.get(ldap.OPT_X_SASL_SSF_MAX, _UNLIMITED) > 0:
                raise ldap.UNWILLING_TO_PERFORM(_LAYER_IN_TLS)
            if self.dc.channel_binding == 2:
                raise ldap.INVALID_CREDENTIALS(_BAD_BINDINGS)
            self.ssf = 0
            return
        wanted_max = self.options.get(ldap.OPT_X_SASL_SSF_MAX, _UNLIMITED)
        self.ssf = min(_GSSAPI_SSF, wanted_max)
        if self.ssf < self.options.get(ldap.OPT_X_SASL_SSF_MIN, 0):
            raise ldap.LOCAL_ERROR(
                {"desc": "Local error", "info": "SASL(-15): mechanism too weak for this user"}
            )
        if self.dc.require_signing and self.ssf < 1:
            raise ldap.STRONG_AUTH_REQUIRED(_STRONGER_AUTH)

    def _password_allowed(self, names: Iterable[str]) -> None:
        if any(n.lower() == "unicodepwd" for n in names) and not (self.tls or self.ssf >= 128):
            raise ldap.UNWILLING_TO_PERFORM(_PASSWORD_UNENCRYPTED)

    def unbind_s(self) -> None:
        return None

    def search_ext(
        self,
        base: str,
        scope: int,
        filterstr: str,
        attrlist: list[str] | None,
        serverctrls: list[Any] | None = None,
    ) -> int:
        self._alive()
        msgid = next(self._msgids)
        self._pending[msgid] = (base, scope, filterstr, attrlist, list(serverctrls or []))
        return msgid

    def result3(self, msgid: int, all: int = 1, timeout: float = -1) -> tuple[int, list[Any], int, list[Any]]:
        if self.dc.searches_before_down is not None:
            self.dc.searches_before_down -= 1
            self.dc.down = self.dc.down or self.dc.searches_before_down < 0
        self._alive()
        base, scope, filterstr, attrlist, controls = self._pending.pop(msgid)
        self.waits.append((filterstr, timeout))
        self.dc.log.append(("search", (base, scope, filterstr, attrlist)))
        show_deleted = any(c.controlType == SHOW_DELETED_OID for c in controls)
        paged = next((c for c in controls if c.controlType == SimplePagedResultsControl.controlType), None)
        key = (base, scope, filterstr)
        if paged is None or not paged.cookie:
            self._results[key] = self.dc.search(base, scope, filterstr, show_deleted)
        found = self._results[key]
        if paged is None:
            if len(found) > self.dc.max_page_size:
                raise ldap.SIZELIMIT_EXCEEDED({"desc": "Size limit exceeded", "info": ""})
            page, cookie = found, None
        else:
            start = int(paged.cookie or b"0")
            size = min(paged.size or self.dc.max_page_size, self.dc.max_page_size)
            page = found[start : start + size]
            more = start + size < len(found)
            cookie = str(start + size).encode() if more else b""
        cost = len(page) * self.dc.seconds_per_entry
        if cost > self.dc.max_query_duration:
            raise ldap.TIMELIMIT_EXCEEDED({"desc": "Time limit exceeded", "info": ""})
        if 0 <= timeout < cost:
            raise ldap.TIMEOUT({"desc": "Timed out", "info": ""})
        rdata = [(dn, self.dc.select(attrs, attrlist)) for dn, attrs in page]
        extended = next((c for c in controls if c.controlType == EXTENDED_DN_OID), None)
        if extended is not None:
            value = extended.encodeControlValue()
            flag = int(ber_decoder.decode(value)[0][0]) if value else 0
            rdata = [
                (
                    self.dc.extended(dn, flag),
                    {
                        name: [self.dc.extended(v.decode(), flag).encode() for v in values]
                        if name.split(";")[0] in _DN_VALUED
                        else values
                        for name, values in attrs.items()
                    },
                )
                for dn, attrs in rdata
            ]
        out = []
        if paged is not None:
            out.append(SimplePagedResultsControl(True, size=0, cookie=cookie))
        return ldap.RES_SEARCH_RESULT, rdata, msgid, out

    def modify_ext_s(self, dn: str, modlist: list[tuple[int, str, list[bytes] | None]]) -> None:
        self._alive()
        self._password_allowed(name for _op, name, _v in modlist)
        self.dc.log.append(("modify", (dn, [(op, name, len(v or [])) for op, name, v in modlist])))
        self.dc.modify(dn, modlist)

    def add_ext_s(self, dn: str, modlist: list[tuple[str, list[bytes]]]) -> None:
        self._alive()
        self._password_allowed(name for name, _v in modlist)
        self.dc.log.append(("add", (dn, [(name, len(v)) for name, v in modlist])))
        self.dc.add(dn, modlist)

    def delete_ext_s(self, dn: str) -> None:
        self._alive()
        self.dc.delete(dn)


def connect_to(dcs: dict[str, WindowsDC]) -> Callable[[str], DoubleConnection]:
    """``ldap.initialize`` over several DCs by URL (for failover)."""
    return lambda url: dcs[url].connect(url)
