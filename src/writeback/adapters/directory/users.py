"""AD user entries -> the rule language's user properties (Graph names). Pure.

On-prem dynamic groups evaluate Entra's rule language against AD users, so AD attribute names are mapped to
the names the rules use: ``title`` -> ``jobTitle``, ``l`` -> ``city``, ``userAccountControl`` ->
``accountEnabled`` and so on. Values arrive as python-ldap gives them (lists of bytes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from writeback.adapters.directory.codec import guid_to_str, sid_to_str

# AD lDAPDisplayName -> Graph/rule property; single-valued unless listed in MULTI.
SINGLE = {
    "department": "department",
    "title": "jobTitle",
    "mail": "mail",
    "displayName": "displayName",
    "givenName": "givenName",
    "sn": "surname",
    "company": "companyName",
    "l": "city",
    "st": "state",
    "co": "country",
    "employeeID": "employeeId",
    "employeeType": "employeeType",
    "physicalDeliveryOfficeName": "physicalDeliveryOfficeName",
    "postalCode": "postalCode",
    "streetAddress": "streetAddress",
    "telephoneNumber": "telephoneNumber",
    "mobile": "mobile",
    "facsimileTelephoneNumber": "facsimileTelephoneNumber",
    "userPrincipalName": "userPrincipalName",
    "sAMAccountName": "onPremisesSamAccountName",
    "mailNickname": "mailNickName",
    "preferredLanguage": "preferredLanguage",
    "distinguishedName": "onPremisesDistinguishedName",
}
MULTI = {"proxyAddresses": "proxyAddresses", "otherMailbox": "otherMails"}
EXTENSIONS = tuple(f"extensionAttribute{i}" for i in range(1, 16))
SPECIAL = ("userAccountControl", "objectGUID", "objectSid", "manager", "uSNChanged")
AD_ATTRIBUTES: tuple[str, ...] = (*SINGLE, *MULTI, *EXTENSIONS, *SPECIAL)
ACCOUNTDISABLE = 0x2


def _text(values: Sequence[bytes] | None) -> str | None:
    return values[0].decode("utf-8", "replace") if values else None


def user_properties(dn: str, attrs: Mapping[str, Sequence[bytes]]) -> dict[str, Any]:
    """One AD user as the rule evaluator sees it (keys are Graph property names)."""
    lower = {k.lower(): v for k, v in attrs.items()}
    out: dict[str, Any] = {"onPremisesDistinguishedName": dn, "onPremisesSyncEnabled": True}
    for ad, graph in SINGLE.items():
        value = _text(lower.get(ad.lower()))
        if value is not None:
            out[graph] = value
    for ad, graph in MULTI.items():
        out[graph] = [v.decode("utf-8", "replace") for v in lower.get(ad.lower(), [])]
    out["onPremisesExtensionAttributes"] = {e: _text(lower.get(e.lower())) for e in EXTENSIONS}
    uac = _text(lower.get("useraccountcontrol"))
    if uac is not None:
        out["accountEnabled"] = not int(uac) & ACCOUNTDISABLE
    guid = lower.get("objectguid")
    if guid:
        out["id"] = guid_to_str(bytes(guid[0]))
    sid = lower.get("objectsid")
    if sid:
        out["onPremisesSecurityIdentifier"] = sid_to_str(bytes(sid[0]))
    manager = _text(lower.get("manager"))
    if manager:
        out["managerDn"] = manager
    return out
