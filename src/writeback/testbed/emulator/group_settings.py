"""Directory settings for groups (``/groupSettings``) and Microsoft 365 group mail addresses, as Graph has them.

- ``GET/POST /groupSettings``, ``GET/PATCH/DELETE /groupSettings/{id}`` (v1.0 and beta): tenant-wide settings
  made from a template; ``Group.Unified`` (template 62375ab9-6b52-47ed-826b-58e47e0e304b) holds
  ``NewUnifiedGroupWritebackDefault`` among others. Values are strings; a tenant has at most one setting per
  template (https://learn.microsoft.com/graph/api/resources/groupsetting,
  https://learn.microsoft.com/graph/api/group-post-settings). Settings live in the tenant file under
  ``groupSettings``.
- A new Microsoft 365 group gets ``mail`` = ``<mailNickname>@<default domain>`` and ``proxyAddresses``
  ``["SMTP:<mail>"]`` from Exchange Online's default address policy; an address already used by another object
  is refused, as Graph does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from writeback.testbed.emulator.apierror import GraphApiError, bad_request
from writeback.testbed.emulator.tenant import Tenant

UNIFIED_TEMPLATE_ID = "62375ab9-6b52-47ed-826b-58e47e0e304b"
# The Group.Unified template's names and defaults (directorySettingTemplate "Group.Unified"; only those the
# emulator needs, plus the common ones an administrator script sets).
UNIFIED_DEFAULTS = {
    "NewUnifiedGroupWritebackDefault": "true",
    "EnableGroupCreation": "true",
    "GroupCreationAllowedGroupId": "",
    "AllowGuestsToAccessGroups": "true",
    "AllowToAddGuests": "true",
    "UsageGuidelinesUrl": "",
    "ClassificationList": "",
    "EnableMIPLabels": "false",
}
TEMPLATES = {UNIFIED_TEMPLATE_ID: ("Group.Unified", UNIFIED_DEFAULTS)}
KEY = "groupSettings"


def settings(tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's group settings (stored in the tenant file's ``groupSettings``)."""
    stored = tenant.extra.setdefault(KEY, [])
    if not isinstance(stored, list):
        raise GraphApiError(500, "Service_InternalServerError", "tenant file: groupSettings must be a list")
    return stored


def find(tenant: Tenant, setting_id: str) -> dict[str, Any]:
    for s in settings(tenant):
        if s.get("id") == setting_id:
            return s  # type: ignore[no-any-return]
    raise GraphApiError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{setting_id}' does not exist or one of its queried reference-property objects are not present.",
    )


def _values(raw: Any, allowed: Mapping[str, str]) -> list[dict[str, str]]:
    if not isinstance(raw, list):
        raise bad_request("Invalid value specified for property 'values' of resource 'GroupSetting'.")
    out: list[dict[str, str]] = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise bad_request("Invalid value specified for property 'values' of resource 'GroupSetting'.")
        name, value = str(item["name"]), item.get("value")
        if name not in allowed:
            raise bad_request(f"Setting '{name}' is not defined in the template.")
        if not isinstance(value, str):
            raise bad_request(f"Invalid value specified for setting '{name}': values are strings.")
        if name == "NewUnifiedGroupWritebackDefault" and value.lower() not in ("true", "false"):
            raise bad_request(f"Invalid value specified for setting '{name}'.")
        out.append({"name": name, "value": value})
    return out


def render_setting(setting: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": setting["id"],
        "displayName": setting.get("displayName"),
        "templateId": setting.get("templateId"),
        "values": [dict(v) for v in setting.get("values") or ()],
    }


def create(tenant: Tenant, body: Mapping[str, Any]) -> dict[str, Any]:
    template_id = str(body.get("templateId") or "")
    if template_id not in TEMPLATES:
        raise bad_request(f"Invalid value specified for property 'templateId': '{template_id}'.")
    name, defaults = TEMPLATES[template_id]
    if any(s.get("templateId") == template_id for s in settings(tenant)):
        raise GraphApiError(
            409,
            "Request_BadRequest",
            "A conflicting object with one or more of the specified property values is present in the directory.",
        )
    given = {v["name"]: v["value"] for v in _values(body.get("values", []), defaults)}
    setting = {
        "id": str(uuid.uuid4()),
        "displayName": name,
        "templateId": template_id,
        "values": [{"name": k, "value": given.get(k, v)} for k, v in defaults.items()],
    }
    settings(tenant).append(setting)
    return setting


def update(tenant: Tenant, setting_id: str, body: Mapping[str, Any]) -> None:
    setting = find(tenant, setting_id)
    _name, defaults = TEMPLATES.get(str(setting.get("templateId")), ("", UNIFIED_DEFAULTS))
    given = {v["name"]: v["value"] for v in _values(body.get("values", []), defaults)}
    values = {v["name"]: v["value"] for v in setting.get("values") or ()}
    values.update(given)
    setting["values"] = [{"name": k, "value": v} for k, v in values.items()]


def delete(tenant: Tenant, setting_id: str) -> None:
    setting = find(tenant, setting_id)
    settings(tenant).remove(setting)


def default_domain(tenant: Tenant) -> str:
    """The tenant's default domain: ``defaultDomain`` in the tenant file, else the domain of the first user's
    userPrincipalName, else <first 8 of the tenant id>.onmicrosoft.com."""
    configured = tenant.extra.get("defaultDomain")
    if isinstance(configured, str) and configured:
        return configured
    for user in tenant.iter_live("user"):
        upn = str(user.get("userPrincipalName") or "")
        if "@" in upn:
            return upn.rsplit("@", 1)[1]
    return f"{tenant.tenant_id[:8]}.onmicrosoft.com"


def assign_unified_mail(tenant: Tenant, group: dict[str, Any]) -> None:
    """Give a new Microsoft 365 group its mail and primary SMTP proxy address; refuse an address in use."""
    mail = f"{group['mailNickname']}@{default_domain(tenant)}"
    wanted = f"smtp:{mail}".lower()
    for kind in ("user", "group", "orgContact"):
        for obj in tenant.iter_live(kind):
            used = {str(p).lower() for p in obj.get("proxyAddresses") or ()}
            if wanted in used or str(obj.get("mail") or "").lower() == mail.lower():
                raise bad_request(
                    "Another object with the same value for property proxyAddresses already exists."
                )
    group["mail"] = mail
    group["proxyAddresses"] = [f"SMTP:{mail}"]
    group.setdefault("visibility", "Public")
