"""Which cloud groups writeback writes to AD. Pure.

The default matches Cloud Sync: ``securityEnabled and not mailEnabled and not synced from AD`` — cloud-created
security groups, assigned or dynamic. Modes narrow that: selected ids, or the per-group
``writebackConfiguration.isEnabled`` switch. Attribute filters work like Cloud Sync's scoping filters: clauses
ANDed within a filter, filters ORed. A group whose ``securityEnabled`` is missing is out of scope: writeback
fails closed rather than guess.

Mail groups (issue 13) follow Connect Sync group writeback v2, which wrote them: ``isEnabled`` null means
"written back" for Microsoft 365 groups unless the tenant's ``NewUnifiedGroupWritebackDefault`` is false, and
"not written" for every other group ("Default value is true for Microsoft 365 groups and false for security
groups": https://learn.microsoft.com/graph/api/resources/groupwritebackconfiguration?view=graph-rest-beta;
the tenant setting: https://learn.microsoft.com/entra/identity/hybrid/connect/how-to-connect-group-writeback-v2).
In modes "all" and "selected" they join only with ``scope.include_microsoft365`` / ``scope.include_mail_enabled``
(Cloud Sync's "all security groups" never includes them); those settings also make writeback read Graph's beta
``writebackConfiguration``, which says which AD type each is written as.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from writeback.config import FilterClause, ScopeSettings
from writeback.core.model import CloudGroup

# Graph names accepted in filters for the group's typed fields.
_FIELDS = {
    "id": "id",
    "objectid": "id",
    "displayname": "display_name",
    "description": "description",
    "mailnickname": "mail_nickname",
    "mailenabled": "mail_enabled",
    "securityenabled": "security_enabled",
    "membershiprule": "membership_rule",
    "onpremisessyncenabled": "on_premises_sync_enabled",
    "mail": "mail",
    "visibility": "visibility",
    "proxyaddresses": "proxy_addresses",
}


def is_writable_kind(group: CloudGroup) -> str | None:
    """None when the group is a cloud-created security group; otherwise why it is not eligible by default."""
    if group.on_premises_sync_enabled:
        return "synced from AD (AD is its source of authority)"
    if group.security_enabled is None:
        # Fail closed: only a group Graph says is a security group may become an AD security group.
        return "securityEnabled is missing (out of scope until Graph reports it)"
    if group.is_unified:
        return "Microsoft 365 group"
    if group.mail_enabled:
        return "mail-enabled (mail-enabled security group or distribution list)"
    if group.security_enabled is not True:
        return "not a security group"
    return None


def writeback_enabled(group: CloudGroup, unified_default: bool | None) -> bool:
    """writebackConfiguration.isEnabled with Microsoft's meaning of null: true for a Microsoft 365 group unless
    the tenant's NewUnifiedGroupWritebackDefault is false; false for every other group."""
    if group.writeback_enabled is not None:
        return group.writeback_enabled
    return group.is_unified and unified_default is not False


def _mail_kind_reason(group: CloudGroup, settings: ScopeSettings, unified_default: bool | None) -> str | None:
    """For a Microsoft 365 or mail-enabled group: None when the scope settings take it in, else why not."""
    if not settings.cloud_enabled:
        return 'scope.mode is "none" (no cloud groups are written)'
    if settings.mode == "writeback_enabled":
        if writeback_enabled(group, unified_default):
            return None
        if group.writeback_enabled is None and group.is_unified:
            return "writebackConfiguration.isEnabled is null and the tenant's NewUnifiedGroupWritebackDefault is false"
        return "writebackConfiguration.isEnabled is not true"
    if group.is_unified and not settings.include_microsoft365:
        return f'Microsoft 365 group (set scope.include_microsoft365 = true to write them in mode "{settings.mode}")'
    if not group.is_unified and not settings.include_mail_enabled:
        return (
            "mail-enabled (mail-enabled security group or distribution list; set "
            f'scope.include_mail_enabled = true to write them in mode "{settings.mode}")'
        )
    if settings.mode == "selected" and group.id not in settings.group_ids:
        return "not in scope.group_ids"
    return None


def group_value(group: CloudGroup, attribute: str) -> Any:
    field = _FIELDS.get(attribute.lower())
    if field:
        return getattr(group, field)
    for k, v in group.attributes.items():
        if k.lower() == attribute.lower():
            return v
    return None


def _clause_matches(clause: FilterClause, group: CloudGroup) -> bool:
    value = group_value(group, clause.attribute)
    text = None if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
    op, want = clause.operator, clause.value
    if op == "IS_NULL":
        return value is None or value == ""
    if op == "IS_NOT_NULL":
        return not (value is None or value == "")
    if op == "IS_TRUE":
        return value is True or text == "true"
    if op == "IS_FALSE":
        return value is False or text == "false"
    if text is None:
        return op in ("NOT_EQUALS", "NOT_REGEX_MATCH")
    want = want or ""
    if op == "EQUALS":
        return text.casefold() == want.casefold()
    if op == "NOT_EQUALS":
        return text.casefold() != want.casefold()
    if op == "STARTS_WITH":
        return text.casefold().startswith(want.casefold())
    if op == "ENDS_WITH":
        return text.casefold().endswith(want.casefold())
    if op in ("REGEX_MATCH", "NOT_REGEX_MATCH"):
        found = re.search(want, text, re.IGNORECASE) is not None
        return found if op == "REGEX_MATCH" else not found
    try:
        a, b = float(text), float(want)
    except ValueError:
        a_s, b_s = text.casefold(), want.casefold()
        return a_s > b_s if op == "GREATER_THAN" else a_s < b_s
    return a > b if op == "GREATER_THAN" else a < b


def out_of_scope_reason(
    group: CloudGroup, settings: ScopeSettings, unified_default: bool | None = None
) -> str | None:
    """None when ``group`` is in scope; otherwise a short reason (for reports).

    ``unified_default``: the tenant's NewUnifiedGroupWritebackDefault (None: not set, Microsoft's default).
    """
    if group.deleted:
        return "soft-deleted in the cloud"
    reason = is_writable_kind(group)
    mail_group = (
        group.is_mail_group and not group.on_premises_sync_enabled and group.security_enabled is not None
    )
    if mail_group:
        reason = _mail_kind_reason(group, settings, unified_default)
    elif reason is None:
        reason = _security_reason(group, settings, unified_default)
    if reason:
        return reason
    if settings.filters and not any(all(_clause_matches(c, group) for c in f) for f in settings.filters):
        return "no scope filter matches"
    return None


def _security_reason(group: CloudGroup, settings: ScopeSettings, unified_default: bool | None) -> str | None:
    if not settings.cloud_enabled:
        return 'scope.mode is "none" (no cloud groups are written)'
    if settings.mode == "selected" and group.id not in settings.group_ids:
        return "not in scope.group_ids"
    if settings.mode == "writeback_enabled" and not writeback_enabled(group, unified_default):
        return "writebackConfiguration.isEnabled is not true"
    return None


def select_in_scope(
    groups: Mapping[str, CloudGroup], settings: ScopeSettings, unified_default: bool | None = None
) -> dict[str, CloudGroup]:
    return {gid: g for gid, g in groups.items() if out_of_scope_reason(g, settings, unified_default) is None}


def source_of_authority_reason(group: CloudGroup) -> str | None:
    """None unless the group's source of authority is AD; then why writeback does not write it.

    A group synced from AD keeps its ``onPremisesSecurityIdentifier`` after a Group Source of Authority
    conversion; only ``onPremisesSyncBehavior.isCloudManaged`` (beta) tells a converted group (true) from one
    rolled back (false): states isCloudManaged/onPremisesSyncEnabled synced false/true, converted true/null,
    rolled back false/null (https://learn.microsoft.com/graph/api/resources/onpremisessyncbehavior
    ?view=graph-rest-beta; entra-docs concept-group-source-of-authority-guidance). Writeback fails closed: a
    group that came from AD is written only when Graph says it is cloud-managed.
    """
    if not group.from_ad or group.soa_converted:
        return None
    if group.on_premises_sync_enabled:
        return "synced from AD (AD is its source of authority)"
    if group.is_cloud_managed is False:
        return (
            "source of authority rolled back to AD (onPremisesSyncBehavior.isCloudManaged is false); "
            "writeback lets go of its AD group"
        )
    return (
        "synced from AD once (onPremisesSecurityIdentifier is set) and Graph did not say it is cloud-managed "
        "(onPremisesSyncBehavior unread); not written until isCloudManaged is true"
    )
