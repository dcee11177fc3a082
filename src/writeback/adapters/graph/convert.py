"""Graph JSON → :mod:`writeback.core.model` values (pure).

Known properties become typed fields; every other property Graph returned is kept verbatim in ``attributes``
(rules and scope filters read them). OData annotations (``@odata.type``, ``members@delta``, ``@removed``) are
protocol, not data, and are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from writeback.adapters.graph.settings import BETA_GROUP_EXTRA, GROUP_SELECT, TAKEOVER_GROUP_SELECT
from writeback.core.model import CloudGroup, CloudUser, MemberRef, member_kind_from_odata

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


def _extra(obj: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    known_set = set(known)
    return {k: v for k, v in obj.items() if k not in known_set and "@" not in k}


def _bool(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


def user_from_graph(obj: Mapping[str, Any], *, deleted: bool = False) -> CloudUser:
    """A Graph user object (from delta, a list or deletedItems) as a CloudUser."""
    fields: dict[str, Any] = {attr: obj.get(prop) for prop, attr in _USER_FIELDS.items()}
    fields["id"] = str(obj["id"])
    return CloudUser(**fields, attributes=_extra(obj, _USER_FIELDS), deleted=deleted)


def group_from_graph(obj: Mapping[str, Any], *, deleted: bool = False) -> CloudGroup:
    """A Graph group object as a CloudGroup, without members (they arrive as ``members@delta`` slices)."""
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


def member_changes(obj: Mapping[str, Any]) -> Iterator[tuple[bool, MemberRef]]:
    """``members@delta`` entries in order as (added, member). Removed entries carry ``@removed``."""
    for entry in obj.get("members@delta") or ():
        if not isinstance(entry, Mapping) or not entry.get("id"):
            continue
        ref = MemberRef(member_kind_from_odata(entry.get("@odata.type")), str(entry["id"]))
        yield ("@removed" not in entry, ref)
