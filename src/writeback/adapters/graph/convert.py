"""Graph JSON → :mod:`writeback.core.model` values (pure).

Known properties become typed fields; every other property Graph returned is kept verbatim in ``attributes``
(rules and scope filters read them). OData annotations (``@odata.type``, ``members@delta``, ``@removed``) are
protocol, not data, and are dropped.

An object is converted only when every property writeback reads has the type Graph documents for it
(:mod:`writeback.adapters.graph.validate`); otherwise :class:`MalformedObjectError` names the object and the
property, and the delta round skips that object alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from writeback.adapters.graph.settings import BETA_GROUP_EXTRA, GROUP_SELECT, TAKEOVER_GROUP_SELECT
from writeback.adapters.graph.validate import (
    Problem,
    group_problem,
    kind_of,
    member_problem,
    object_id_of,
    user_problem,
)
from writeback.core.model import CloudGroup, CloudUser, MemberRef, member_kind_from_odata
from writeback.errors import SourceError

_USER_FIELDS = {
    "id": "id",
    "displayName": "display_name",
    "userPrincipalName": "user_principal_name",
    "accountEnabled": "account_enabled",
    "onPremisesSyncEnabled": "on_premises_sync_enabled",
    "onPremisesSecurityIdentifier": "on_premises_security_identifier",
    "onPremisesImmutableId": "on_premises_immutable_id",
    "onPremisesDistinguishedName": "on_premises_distinguished_name",
    "onPremisesDomainName": "on_premises_domain_name",
}
# Graph properties read into CloudGroup's typed fields; the rest of what is selected (GROUP_ATTRIBUTE_SELECT,
# e.g. createdDateTime) stays in ``attributes`` for scope filters and mapping expressions.
_GROUP_FIELDS = frozenset((*GROUP_SELECT, *BETA_GROUP_EXTRA, *TAKEOVER_GROUP_SELECT))


class MalformedObjectError(SourceError):
    """A Graph object with a property of the wrong type: that object is skipped, the rest of a sync goes on.

    A :class:`~writeback.errors.SourceError` (the cloud side sent it), raised by the converters below and
    caught per object by the delta round, which reports it (:class:`~writeback.core.ports.SkippedObject`).
    ``object_id`` is None when the id itself is missing or not a string.
    """

    def __init__(self, resource: str, object_id: str | None, problem: Problem) -> None:
        self.resource = resource
        self.object_id = object_id
        self.field = problem.field
        self.problem = problem.problem
        kind = "user" if resource == "users" else "group"
        shown = f"{kind} {object_id}" if object_id is not None else f"a {kind} without a usable id"
        super().__init__(
            f"Graph sent {shown} whose {problem.field} is {problem.problem} "
            f"(https://learn.microsoft.com/graph/api/resources/{kind} documents its type); the object is skipped "
            "and its last good copy, if any, is kept. Look at it with GET "
            f"/{resource}/{object_id or '{id}'} in Graph Explorer; writeback reads it again at its next change."
        )


def _checked(resource: str, obj: Mapping[str, Any], problem: Problem | None) -> None:
    if problem is not None:
        raise MalformedObjectError(resource, object_id_of(obj), problem)


def _extra(obj: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    known_set = set(known)
    return {k: v for k, v in obj.items() if k not in known_set and "@" not in k}


def _bool(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


def user_from_graph(obj: Mapping[str, Any], *, deleted: bool = False) -> CloudUser:
    """A Graph user object (from delta, a list or deletedItems) as a CloudUser.

    Raises :class:`MalformedObjectError` when a property writeback reads has the wrong type."""
    _checked("users", obj, user_problem(obj))
    fields: dict[str, Any] = {attr: obj.get(prop) for prop, attr in _USER_FIELDS.items()}
    fields["id"] = str(obj["id"])
    return CloudUser(**fields, attributes=_extra(obj, _USER_FIELDS), deleted=deleted)


def group_from_graph(obj: Mapping[str, Any], *, deleted: bool = False) -> CloudGroup:
    """A Graph group object as a CloudGroup, without members (they arrive as ``members@delta`` slices).

    Raises :class:`MalformedObjectError` when a property writeback reads has the wrong type."""
    _checked("groups", obj, group_problem(obj))
    writeback = obj.get("writebackConfiguration")
    writeback = writeback if isinstance(writeback, Mapping) else {}
    enabled = writeback.get("isEnabled")
    return CloudGroup(
        id=str(obj["id"]),
        display_name=obj.get("displayName") or "",
        description=obj.get("description"),
        mail_nickname=obj.get("mailNickname"),
        mail_enabled=_bool(obj.get("mailEnabled"), False),
        # Kept None when Graph did not say: such a group is out of scope (fail closed, writeback.core.scope).
        security_enabled=obj.get("securityEnabled"),
        group_types=tuple(obj.get("groupTypes") or ()),
        on_premises_sync_enabled=obj.get("onPremisesSyncEnabled"),
        membership_rule=obj.get("membershipRule"),
        membership_rule_processing_state=obj.get("membershipRuleProcessingState"),
        writeback_enabled=None if enabled is None else bool(enabled),
        writeback_group_type=writeback.get("onPremisesGroupType"),
        attributes=_extra(obj, _GROUP_FIELDS),
        deleted=deleted,
        on_premises_security_identifier=obj.get("onPremisesSecurityIdentifier"),
        mail=obj.get("mail"),
        proxy_addresses=tuple(str(p) for p in obj.get("proxyAddresses") or ()),
        visibility=obj.get("visibility"),
    )


UNIFIED_TEMPLATE = "Group.Unified"  # the directory setting template holding NewUnifiedGroupWritebackDefault
UNIFIED_WRITEBACK_DEFAULT = "NewUnifiedGroupWritebackDefault"


def unified_writeback_default(settings: Iterable[Mapping[str, Any]]) -> bool | None:
    """NewUnifiedGroupWritebackDefault from ``GET /groupSettings`` values: True/False, or None when the tenant
    has no Group.Unified setting or it does not set the value (Microsoft's default then applies: true).

    A groupSetting is ``{displayName, templateId, values: [{name, value}]}`` with string values
    (https://learn.microsoft.com/graph/api/resources/groupsetting).
    """
    for setting in settings:
        if str(setting.get("displayName") or "") != UNIFIED_TEMPLATE:
            continue
        for item in setting.get("values") or ():
            if isinstance(item, Mapping) and item.get("name") == UNIFIED_WRITEBACK_DEFAULT:
                value = str(item.get("value") or "").strip().lower()
                if value in ("true", "false"):
                    return value == "true"
    return None


def removed_reason(obj: Mapping[str, Any]) -> str | None:
    """'changed' (soft delete / left the view), 'deleted' (permanent), or None when the object is present."""
    removed = obj.get("@removed")
    if removed is None:
        return None
    if isinstance(removed, Mapping):
        return str(removed.get("reason") or "changed")
    return "changed"


def _plain_add(entry: Any) -> bool:
    """An added member as JSON decodes it (a dict with a non-empty string id, a string @odata.type if any), which
    :func:`member_problem` (the rule) would accept: checked at once, without its ABC isinstance checks, for the
    200,000 entries of a full read at medium. Anything else is left to the rule."""
    return (
        type(entry) is dict
        and type(member_id := entry.get("id")) is str
        and member_id != ""
        and type(entry.get("@odata.type", "")) is str
        and entry.get("@removed") is None
    )


def member_delta(obj: Mapping[str, Any]) -> tuple[list[tuple[bool, MemberRef]], list[Problem]]:
    """``members@delta`` as (added, member) changes in order (removed entries carry ``@removed``), and the
    problems of the entries left out: a malformed entry skips that member, not the group."""
    entries = obj.get("members@delta")
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        return [], [Problem("members@delta", f"{kind_of(entries)}, expected a list of objects")]
    changes: list[tuple[bool, MemberRef]] = []
    problems: list[Problem] = []
    kinds: dict[str | None, str] = {}  # @odata.type -> member kind: a handful of types over every member
    for index, entry in enumerate(entries):
        if not _plain_add(entry) and (problem := member_problem(entry, index)) is not None:
            problems.append(problem)
            continue
        odata_type = entry.get("@odata.type")
        kind = kinds.get(odata_type)
        if kind is None:
            kind = kinds[odata_type] = member_kind_from_odata(odata_type)
        changes.append((entry.get("@removed") is None, MemberRef(kind, entry["id"])))
    return changes, problems


def member_changes(obj: Mapping[str, Any]) -> Iterator[tuple[bool, MemberRef]]:
    """``members@delta`` entries in order as (added, member), leaving malformed entries out."""
    yield from member_delta(obj)[0]
