"""Which properties rules may name, their types, and how to read them from Graph-shaped dicts.

Rules use Entra's rule names (``user.objectId``, ``device.deviceOSType``); the objects we evaluate are Graph
JSON (``id``, ``operatingSystem``). This module maps one to the other once, at compile time, so evaluation is
a dict lookup. Names are matched case-insensitively because administrators paste ``user.memberof`` and
``user.employeehiredate`` from the documentation. Properties this table does not know are still allowed: the
rule text comes from Entra, which already validated it, and refusing a property Entra added later would stop
the whole group from syncing; they are read by name and compared as strings. They are not silent, though: a
compiled rule carries a warning naming each one with the closest known property (:func:`unknown_warning`),
because ``user.departmnt -eq "HR"`` would otherwise be "valid" and match nobody.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(Enum):
    STRING = "string"
    BOOL = "bool"
    DATETIME = "datetime"
    STRING_COLLECTION = "string collection"
    OBJECT_COLLECTION = "object collection"
    UNKNOWN = "unknown"

    @property
    def is_collection(self) -> bool:
        return self in (Kind.STRING_COLLECTION, Kind.OBJECT_COLLECTION)


@dataclass(frozen=True, slots=True)
class PropertyInfo:
    """A property as the rule language knows it.

    ``name`` is the documented spelling, ``keys`` the dict keys to try in order (Graph's name first),
    ``item_alias`` the name rules use for one element of an object collection (``assignedPlan``).
    """

    name: str
    kind: Kind
    keys: tuple[str, ...]
    item_alias: str | None = None
    nested: tuple[str, str] | None = None  # (container key, key inside it), for extension attributes


def _p(name: str, kind: Kind = Kind.STRING, *graph_keys: str, item_alias: str | None = None) -> PropertyInfo:
    keys = (*graph_keys, name) if graph_keys else (name,)
    return PropertyInfo(name, kind, keys, item_alias)


_S, _B, _D, _SC, _OC = Kind.STRING, Kind.BOOL, Kind.DATETIME, Kind.STRING_COLLECTION, Kind.OBJECT_COLLECTION

USER_PROPERTIES: tuple[PropertyInfo, ...] = (
    _p("accountEnabled", _B),
    _p("dirSyncEnabled", _B, "onPremisesSyncEnabled"),
    _p("employeeHireDate", _D),
    *(
        _p(n)
        for n in [
            "city",
            "country",
            "companyName",
            "department",
            "displayName",
            "employeeId",
            "givenName",
            "jobTitle",
            "mail",
            "onPremisesDistinguishedName",
            "onPremisesSecurityIdentifier",
            "passwordPolicies",
            "postalCode",
            "preferredLanguage",
            "state",
            "streetAddress",
            "surname",
            "usageLocation",
            "userPrincipalName",
            "userType",
            "employeeType",
            "onPremisesSamAccountName",
            "onPremisesUserPrincipalName",
        ]
    ),
    _p("objectId", _S, "id"),
    _p("mailNickName", _S, "mailNickname"),
    _p("mobile", _S, "mobilePhone"),
    _p("facsimileTelephoneNumber", _S, "faxNumber"),
    _p("physicalDeliveryOfficeName", _S, "officeLocation"),
    _p("telephoneNumber", _S, "businessPhones"),
    _p("sipProxyAddress", _S),
    _p("otherMails", _SC),
    _p("proxyAddresses", _SC),
    _p("assignedPlans", _OC, item_alias="assignedPlan"),
    _p("memberOf", _OC, item_alias="group"),
)

DEVICE_PROPERTIES: tuple[PropertyInfo, ...] = (
    _p("accountEnabled", _B),
    _p("isRooted", _B),
    _p("objectId", _S, "id"),
    _p("deviceOSType", _S, "operatingSystem"),
    _p("deviceOSVersion", _S, "operatingSystemVersion"),
    _p("deviceManufacturer", _S, "manufacturer"),
    _p("deviceModel", _S, "model"),
    _p("deviceTrustType", _S, "trustType"),
    _p("deviceManagementAppId", _S, "mdmAppId"),
    _p("devicePhysicalIds", _SC, "physicalIds"),
    _p("systemLabels", _SC),
    *(
        _p(n)
        for n in [
            "deviceCategory",
            "deviceId",
            "displayName",
            "deviceOwnership",
            "enrollmentProfileName",
            "managementType",
            "profileType",
        ]
    ),
    _p("memberOf", _OC, item_alias="group"),
)

# The string properties of one element of an object collection, by collection.
ITEM_PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "assignedPlans": ("capabilityStatus", "service", "servicePlanId", "assignedDateTime"),
    "memberOf": ("objectId",),
}

_EXTENSION_ATTRIBUTE = re.compile(r"extensionattribute(1[0-5]|[1-9])", re.IGNORECASE)
_CUSTOM_EXTENSION = re.compile(r"extension_[0-9a-f]{32}_\w+", re.IGNORECASE)

_BY_KIND: Mapping[str, Mapping[str, PropertyInfo]] = {
    "user": {p.name.casefold(): p for p in USER_PROPERTIES},
    "device": {p.name.casefold(): p for p in DEVICE_PROPERTIES},
}


def lookup(obj: str, name: str) -> PropertyInfo:
    """The property ``obj.name`` (``obj`` is "user" or "device"); unknown names become string properties."""
    known = _BY_KIND[obj].get(name.casefold())
    if known is not None:
        return known
    match = _EXTENSION_ATTRIBUTE.fullmatch(name)
    if match:
        canonical = f"extensionAttribute{match.group(1)}"
        container = "onPremisesExtensionAttributes" if obj == "user" else "extensionAttributes"
        return PropertyInfo(canonical, Kind.STRING, (canonical,), nested=(container, canonical))
    if _CUSTOM_EXTENSION.fullmatch(name):
        return PropertyInfo(name, Kind.STRING, (name,))
    return PropertyInfo(name, Kind.UNKNOWN, (name,))


def unknown_warning(obj: str, name: str) -> str:
    """What to say about ``obj.name`` when :func:`lookup` does not know it: the closest known property
    (difflib, case-insensitive), since a misspelling reads as an absent value on every user."""
    known = [p.name for p in _BY_KIND[obj].values()]
    known += [f"extensionAttribute{i}" for i in range(1, 16)]
    by_folded = {n.casefold(): n for n in known}
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    hint = f", did you mean '{obj}.{by_folded[close[0]]}'?" if close else " (no known property is close)"
    return f"unknown property '{obj}.{name}'{hint} It is read by that name: a user without it has no value."


def item_alias_matches(collection: PropertyInfo, alias: str) -> bool:
    """True when ``alias`` names one element of ``collection`` (``assignedPlan`` for ``assignedPlans``)."""
    folded = alias.casefold()
    if collection.item_alias and folded == collection.item_alias.casefold():
        return True
    name = collection.name.casefold()
    return name.endswith("s") and folded == name[:-1]


def graph_keys(info: PropertyInfo) -> tuple[str, ...]:
    """The top-level Graph properties a caller must fetch (``$select``) to evaluate ``info``."""
    if info.nested is not None:
        return (info.nested[0],)
    return info.keys[:1]


_MISSING: Any = object()


def items_of(value: Any) -> tuple[Any, ...] | list[Any]:
    """A property value as a sequence of items: None is empty, a scalar is one item."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, set | frozenset):
        return tuple(value)
    return (value,)


def _get_ci(obj: Mapping[str, Any], folded: str) -> Any:
    """Case-insensitive key lookup; the slow path, taken only when the exact key is absent."""
    for key, value in obj.items():
        if key.casefold() == folded:
            return value
    return _MISSING


def make_getter(keys: tuple[str, ...], nested: tuple[str, str] | None = None) -> Callable[[Any], Any]:
    """A function reading the first present key of ``keys`` from a mapping (None when absent).

    Exact keys are tried first (Graph JSON is consistently cased), then a case-insensitive scan. For
    extension attributes the nested container is read (``onPremisesExtensionAttributes``), and a top-level
    key of the same name only when there is no container.
    """
    if nested is not None:
        container_getter = make_getter((nested[0],))
        inner = _lookup_one(nested[1])
        top_level = _lookup_one(nested[1])

        def with_container(obj: Any) -> Any:
            container = container_getter(obj)
            if isinstance(container, Mapping):
                value = inner(container)
                if value is not _MISSING:
                    return value
            value = top_level(obj)
            return None if value is _MISSING else value

        return with_container
    lookups = [_lookup_one(key) for key in keys]
    if len(lookups) == 1:
        (only,) = lookups

        def one(obj: Any) -> Any:
            # The hot path of most rules: one exact dict lookup.
            value = only(obj)
            return None if value is _MISSING else value

        return one

    def first(obj: Any) -> Any:
        for lookup_key in lookups:
            value = lookup_key(obj)
            if value is not _MISSING:
                return value
        return None

    return first


def _lookup_one(key: str) -> Callable[[Any], Any]:
    """Exact key, then case-insensitive; ``_MISSING`` when absent or ``obj`` is not a mapping."""
    folded = key.casefold()

    def lookup_key(obj: Any) -> Any:
        try:
            value = obj.get(key, _MISSING)
        except AttributeError:  # not a mapping (e.g. a string item of a collection)
            return _MISSING
        if value is _MISSING and isinstance(obj, Mapping):
            return _get_ci(obj, folded)
        return value

    return lookup_key
