"""Every documented example from the Entra ID rule reference behaves as the documentation says."""

# The en-dashes in these rules are the point: the documentation and the portal paste them as hyphens.
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from writeback.core.rules import RuleContext, compile_rule

NOW = RuleContext(now=datetime(2025, 1, 1, tzinfo=UTC))
MANAGER = "aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb"

# (rule, a user it must match, a user it must not match)
DOCUMENTED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ('user.department -eq "Sales"', {"department": "Sales"}, {"department": "Marketing"}),
    (
        '(user.department -eq "Sales") -or (user.department -eq "Marketing")',
        {"department": "Marketing"},
        {"department": "HR"},
    ),
    (
        '(user.department -eq "Sales") -and -not (user.jobTitle -startsWith "SDE")',
        {"department": "Sales", "jobTitle": "Account Manager"},
        {"department": "Sales", "jobTitle": "SDE II"},
    ),
    (
        'user.department –eq "Marketing" –and user.country –eq "US"',
        {"department": "Marketing", "country": "US"},
        {"department": "Marketing", "country": "NG"},
    ),
    (
        'user.country –eq "US" –and (user.department –eq "Marketing" –or user.department –eq "Sales")',
        {"country": "US", "department": "Sales"},
        {"country": "NG", "department": "Sales"},
    ),
    ('user.department -in ["50001","50002","50003"]', {"department": "50002"}, {"department": "50004"}),
    ('user.city -eq "Lagos" or user.city -startswith "Lag"', {"city": "Lagoon"}, {"city": "Abuja"}),
    (
        'user.department -eq "Accounts" -and user.city -in ["Lagos", "Ibadan", "Kaduna", "Abuja", "Port Harcourt"]',
        {"department": "Accounts", "city": "Port Harcourt"},
        {"department": "Accounts", "city": "Seattle"},
    ),
    ('user.mail -notEndsWith "@Contoso.com"', {"mail": "a@fabrikam.com"}, {"mail": "a@contoso.com"}),
    (
        'user.otherMails -endsWith"@contoso.com"',
        {"otherMails": ["x@fabrikam.com", "y@contoso.com"]},
        {"otherMails": ["x@fabrikam.com"]},
    ),
    # Documented: `"Sales`" is the proper syntax when "Sales" (with its quotes) is the value.
    ('user.department -eq `"Sales`"', {"department": '"Sales"'}, {"department": "Sales"}),
    ("user.employeeId -ne null", {"employeeId": "E1"}, {"employeeId": None}),
    (
        '(user.objectId -ne null) -and (user.userType -eq "Member")',
        {"id": "u1", "userType": "Member"},
        {"id": "u1", "userType": "Guest"},
    ),
    (
        '(user.extensionAttribute15 -eq "Marketing")',
        {"onPremisesExtensionAttributes": {"extensionAttribute15": "Marketing"}},
        {"onPremisesExtensionAttributes": {"extensionAttribute15": None}},
    ),
    (
        'user.extension_c272a57b722d4eb29bfe327874ae79cb_OfficeNumber -eq "123"',
        {"extension_c272a57b722d4eb29bfe327874ae79cb_OfficeNumber": "123"},
        {"extension_c272a57b722d4eb29bfe327874ae79cb_OfficeNumber": "124"},
    ),
    (
        '(user.proxyAddresses -any (_ -startsWith "contoso"))',
        {"proxyAddresses": ["smtp:a@fabrikam.com", "contoso:x"]},
        {"proxyAddresses": ["smtp:a@fabrikam.com"]},
    ),
    (
        'user.assignedPlans -any (assignedPlan.service -eq "SCO" -and assignedPlan.capabilityStatus -eq "Enabled")',
        {
            "assignedPlans": [
                {"service": "exchange", "capabilityStatus": "Enabled"},
                {"service": "SCO", "capabilityStatus": "Enabled"},
            ]
        },
        {"assignedPlans": [{"service": "SCO", "capabilityStatus": "Suspended"}]},
    ),
    (
        'user.assignedPlans -any (assignedPlan.servicePlanId -eq "efb87545-963c-4e0d-99df-69c6916d9eb0" '
        '-and assignedPlan.capabilityStatus -eq "Enabled")',
        {
            "assignedPlans": [
                {"servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0", "capabilityStatus": "Enabled"}
            ]
        },
        {
            "assignedPlans": [
                {"servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0", "capabilityStatus": "Deleted"}
            ]
        },
    ),
    # "selects all users who have no assigned service plan"
    (
        "user.assignedPlans -all (assignedPlan.servicePlanId -eq null)",
        {"assignedPlans": []},
        {"assignedPlans": [{"servicePlanId": "p"}]},
    ),
    (
        f'Direct Reports for "{MANAGER}"',
        {"id": "u1", "manager": MANAGER},
        {"id": "u2", "manager": "someone-else"},
    ),
    (
        f"user.memberOf -any (group.objectId -in ['{MANAGER}'])",
        {"memberOf": [MANAGER]},
        {"memberOf": ["other"]},
    ),
    ("user.accountEnabled -eq true", {"accountEnabled": True}, {"accountEnabled": False}),
    ('user.mailNickname -endsWith "-vendor"', {"mailNickname": "bob-vendor"}, {"mailNickname": "bob"}),
    (
        "user.employeehiredate -le 2020-06-10T18:13:20Z",
        {"employeeHireDate": "2019-01-01T00:00:00Z"},
        {"employeeHireDate": "2021-01-01T00:00:00Z"},
    ),
    (
        "user.employeehiredate -ge system.now -plus p1d",
        {"employeeHireDate": "2025-01-03T00:00:00Z"},
        {"employeeHireDate": "2024-12-31T00:00:00Z"},
    ),
    ('user.memberof -any (group.objectId -in ["g1", "g2"])', {"memberOf": ["g2"]}, {"memberOf": []}),
]


@pytest.mark.parametrize(("rule", "yes", "no"), DOCUMENTED, ids=[d[0][:60] for d in DOCUMENTED])
def test_documented_example(rule: str, yes: dict[str, Any], no: dict[str, Any]) -> None:
    compiled = compile_rule(rule)
    assert compiled.matches(yes, NOW) is True
    assert compiled.matches(no, NOW) is False


@pytest.mark.parametrize(("name", "expected"), [("Da", True), ("Dav", True), ("David", True), ("aDa", False)])
def test_match_anchored_start(name: str, expected: bool) -> None:
    assert compile_rule('user.displayName -match "^Da.*"').matches({"displayName": name}) is expected


@pytest.mark.parametrize(("name", "expected"), [("David", True), ("Da", False)])
def test_match_suffix_pattern(name: str, expected: bool) -> None:
    assert compile_rule('user.displayName -match ".*vid"').matches({"displayName": name}) is expected


def test_match_has_search_semantics() -> None:
    """The efficiency page says user.city -match "ago" selects Lagos: the regex is searched, not anchored."""
    rule = compile_rule('user.city -match "ago"')
    assert rule.matches({"city": "Lagos"})
    assert not rule.matches({"city": "Abuja"})


@pytest.mark.parametrize(
    "rule",
    [
        'device.deviceOSType -eq "Windows"',
        '(device.deviceOSType -eq "iPad") -or (device.deviceOSType -eq "iOS")',
        'device.devicePhysicalIDs -any _ -startsWith "[ZTDId]"',
        'device.devicePhysicalIds -any _ -eq "[OrderID]:179887111881"',
        "device.objectId -ne null",
        "device.memberof -any (group.objectId -in ['groupId'])",
    ],
)
def test_device_rules_parse_as_device_kind(rule: str) -> None:
    assert compile_rule(rule).kind == "device"


def test_device_rule_reads_graph_device_names() -> None:
    """Rules say deviceOSType and devicePhysicalIds; Graph device JSON says operatingSystem and physicalIds."""
    assert compile_rule('device.deviceOSType -eq "Windows"').matches({"operatingSystem": "Windows"})
    rule = compile_rule('device.devicePhysicalIds -any _ -eq "[OrderID]:179887111881"')
    assert rule.matches({"physicalIds": ["[ZTDId]:x", "[OrderID]:179887111881"]})
    assert not rule.matches({"physicalIds": ["[ZTDId]:x"]})
