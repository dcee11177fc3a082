"""Graph's documented types for every property writeback reads, checked where Graph JSON becomes model values.

One object whose ``displayName`` came as a number used to fail every sync cycle (issue 23, finding 9). So a
delta object is checked here before it is converted: a property of the wrong type makes that object
*malformed* (skipped and reported by the delta round, :mod:`writeback.adapters.graph.delta`), and one bad
``members@delta`` entry skips that member only. Pure: values in, :class:`Problem` values out.

The types are those of the Properties tables on learn.microsoft.com (v1.0 unless noted):

- group: https://learn.microsoft.com/graph/api/resources/group — ``id`` String (a GUID, read-only);
  ``displayName``, ``description``, ``mail``, ``mailNickname``, ``membershipRule``,
  ``membershipRuleProcessingState``, ``onPremisesSecurityIdentifier``, ``visibility`` String;
  ``mailEnabled``, ``securityEnabled``, ``onPremisesSyncEnabled`` Boolean; ``groupTypes``,
  ``proxyAddresses`` String collection; ``createdDateTime``, ``expirationDateTime``, ``renewedDateTime``,
  ``deletedDateTime`` DateTimeOffset (ISO 8601 text on the wire).
- group, beta: ``writebackConfiguration`` groupWritebackConfiguration, an object with ``isEnabled`` Boolean
  and ``onPremisesGroupType`` String (https://learn.microsoft.com/graph/api/resources/groupwritebackconfiguration
  ?view=graph-rest-beta).
- user: https://learn.microsoft.com/graph/api/resources/user — ``accountEnabled``, ``onPremisesSyncEnabled``
  Boolean; ``otherMails``, ``proxyAddresses`` String collection; ``employeeHireDate`` DateTimeOffset;
  ``onPremisesExtensionAttributes`` onPremisesExtensionAttributes, an object of ``extensionAttribute1``..``15``
  String (https://learn.microsoft.com/graph/api/resources/onpremisesextensionattributes); every other
  property in :data:`~writeback.adapters.graph.settings.DEFAULT_USER_SELECT` String.
- onPremisesSyncBehavior, beta, read for groups and users alike: ``isCloudManaged`` Boolean
  (https://learn.microsoft.com/graph/api/resources/onpremisessyncbehavior?view=graph-rest-beta).
- delta (https://learn.microsoft.com/graph/api/group-delta, .../user-delta): a removed object is
  ``{"id", "@removed": {"reason": "changed" | "deleted"}}``; ``members@delta`` is an array of directory
  objects, each with ``@odata.type`` and ``id``, removed ones carrying ``@removed`` too.

What is accepted beyond the letter of those tables, and why:

- ``null`` for every scalar and collection: delta leaves out properties that were never set, Graph answers
  ``null`` for unset nullable ones, and the converters already read both as "unknown" (``securityEnabled``
  unknown keeps a group out of scope: fail closed, :mod:`writeback.core.scope`).
- Any non-empty string as ``id``, not only a GUID: writeback needs the id as a key (anchors are built from
  it, and LDAP filters and DNs escape it). Real Graph ids are GUIDs; test tenants and the emulator's seed data
  use readable ids ("g1", "fromad"), which writeback must go on reading.
- A member entry without ``@odata.type`` is a user (:func:`writeback.core.model.member_kind_from_odata`).
- Properties writeback neither selects nor reads (extension attributes a tenant adds to ``user_select``)
  pass unchecked: they reach rules and expressions as Graph sent them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class Problem:
    """One property (``field``, a path such as ``members@delta[2].id``) and what was wrong with it."""

    field: str
    problem: str  # e.g. "a number (int), expected a string or null"


Check = Callable[[str, Any], "Problem | None"]
_MISSING: Final = object()


def kind_of(value: Any) -> str:
    """A JSON value's kind as a message says it (never the value itself: it may be long, or hostile)."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({type(value).__name__})"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _string(field: str, value: Any) -> Problem | None:
    if value is None or isinstance(value, str):
        return None
    return Problem(field, f"{kind_of(value)}, expected a string or null")


def _boolean(field: str, value: Any) -> Problem | None:
    if value is None or isinstance(value, bool):
        return None
    return Problem(field, f"{kind_of(value)}, expected true, false or null")


def _strings(field: str, value: Any) -> Problem | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return Problem(field, f"{kind_of(value)}, expected a list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            return Problem(f"{field}[{index}]", f"{kind_of(item)}, expected a string")
    return None


def _object(fields: Mapping[str, Check]) -> Check:
    """An object (or null) whose listed members have their own types; other members pass."""

    def check(field: str, value: Any) -> Problem | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            return Problem(field, f"{kind_of(value)}, expected an object or null")
        return _first(value, fields, prefix=f"{field}.")

    return check


def _first(obj: Mapping[str, Any], checks: Mapping[str, Check], *, prefix: str = "") -> Problem | None:
    """The first property of ``obj`` that breaks its type (only properties present are checked)."""
    for name, check in checks.items():
        if name in obj and (problem := check(f"{prefix}{name}", obj[name])) is not None:
            return problem
    return None


GROUP_TYPES: Final[Mapping[str, Check]] = {
    **dict.fromkeys(
        (
            "displayName",
            "description",
            "mail",
            "mailNickname",
            "membershipRule",
            "membershipRuleProcessingState",
            "onPremisesSecurityIdentifier",
            "visibility",
            "createdDateTime",
            "expirationDateTime",
            "renewedDateTime",
            "deletedDateTime",
        ),
        _string,
    ),
    **dict.fromkeys(("mailEnabled", "securityEnabled", "onPremisesSyncEnabled"), _boolean),
    **dict.fromkeys(("groupTypes", "proxyAddresses"), _strings),
    "writebackConfiguration": _object({"isEnabled": _boolean, "onPremisesGroupType": _string}),
}

USER_TYPES: Final[Mapping[str, Check]] = {
    **dict.fromkeys(
        (
            "displayName",
            "userPrincipalName",
            "mail",
            "mailNickname",
            "department",
            "jobTitle",
            "companyName",
            "city",
            "state",
            "country",
            "usageLocation",
            "employeeId",
            "employeeType",
            "employeeHireDate",
            # What Cloud Sync's default user mappings read ([users], writeback.config DEFAULT_USER_ATTRIBUTES).
            "givenName",
            "surname",
            "postalCode",
            "streetAddress",
            "mobilePhone",
            "preferredLanguage",
            "userType",
            "onPremisesSecurityIdentifier",
            "onPremisesImmutableId",
            "onPremisesDistinguishedName",
            "onPremisesSamAccountName",
            "onPremisesDomainName",
            "onPremisesUserPrincipalName",
            "deletedDateTime",
        ),
        _string,
    ),
    **dict.fromkeys(("accountEnabled", "onPremisesSyncEnabled"), _boolean),
    **dict.fromkeys(("otherMails", "proxyAddresses"), _strings),
    "onPremisesExtensionAttributes": _object(
        dict.fromkeys((f"extensionAttribute{n}" for n in range(1, 16)), _string)
    ),
}


# The beta onPremisesSyncBehavior object (GET /beta/{groups|users}/{id}/onPremisesSyncBehavior).
SYNC_BEHAVIOR_TYPES: Final[Mapping[str, Check]] = {"isCloudManaged": _boolean}


def object_id_of(obj: Any) -> str | None:
    """The object's id when it is usable (a non-empty string), else None."""
    if isinstance(obj, Mapping):
        value = obj.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def id_problem(obj: Mapping[str, Any]) -> Problem | None:
    """``id`` must be a non-empty string: without it nothing in the object can be attributed."""
    value = obj.get("id", _MISSING)
    if isinstance(value, str) and value:
        return None
    return Problem("id", f"{kind_of(value)}, expected a non-empty string")


def removed_problem(obj: Mapping[str, Any], *, prefix: str = "") -> Problem | None:
    """``@removed`` absent, null, or an object whose ``reason`` is a string (or absent/null)."""
    removed = obj.get("@removed")
    if removed is None:
        return None
    if not isinstance(removed, Mapping):
        return Problem(f"{prefix}@removed", f"{kind_of(removed)}, expected an object")
    return _string(f"{prefix}@removed.reason", removed.get("reason"))


def group_problem(obj: Mapping[str, Any]) -> Problem | None:
    """The first problem of a group object (id, ``@removed``, then the properties writeback reads)."""
    return id_problem(obj) or removed_problem(obj) or _first(obj, GROUP_TYPES)


def user_problem(obj: Mapping[str, Any]) -> Problem | None:
    """The first problem of a user object (id, ``@removed``, then the properties writeback reads)."""
    return id_problem(obj) or removed_problem(obj) or _first(obj, USER_TYPES)


def member_problem(entry: Any, index: int) -> Problem | None:
    """A ``members@delta`` entry: an object with a non-empty string ``id``, ``@odata.type`` a string when
    present, ``@removed`` an object when present."""
    # Called for every membership of a full read (200,000 at medium): the entry's place in the problem's
    # name is only formatted when there is a problem.
    if not isinstance(entry, Mapping):
        return Problem(f"members@delta[{index}]", f"{kind_of(entry)}, expected an object")
    value = entry.get("id", _MISSING)
    if not (isinstance(value, str) and value):
        return Problem(f"members@delta[{index}].id", f"{kind_of(value)}, expected a non-empty string")
    odata_type = entry.get("@odata.type")
    if odata_type is not None and not isinstance(odata_type, str):
        return Problem(f"members@delta[{index}].@odata.type", f"{kind_of(odata_type)}, expected a string")
    if entry.get("@removed") is None:
        return None
    return removed_problem(entry, prefix=f"members@delta[{index}].")


def sync_behavior_problem(body: Mapping[str, Any]) -> Problem | None:
    """An onPremisesSyncBehavior answer: ``isCloudManaged`` true, false, null or absent; the field is named
    ``onPremisesSyncBehavior.isCloudManaged`` as the object it belongs to reports it."""
    return _first(body, SYNC_BEHAVIOR_TYPES, prefix="onPremisesSyncBehavior.")
