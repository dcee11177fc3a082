"""String collections (_), object collections (assignedPlans), -any/-all and plain operators on collections."""

from __future__ import annotations

import pytest

from writeback.core.rules import compile_rule

PROXIES = {"proxyAddresses": ["SMTP:ann@contoso.com", "smtp:ann@fabrikam.com"]}


@pytest.mark.parametrize(
    "rule",
    [
        'user.proxyAddresses -any (_ -startsWith "smtp:ann@fab")',
        'user.proxyAddresses -any _ -startsWith "smtp:ann@fab"',
        'user.proxyAddresses -ANY (_ -contains "fabrikam")',
        'user.proxyAddresses any (_ endsWith "@contoso.com")',
        'user.proxyAddresses -any (_ -match "^smtp:.*@fab")',
        'user.proxyAddresses -any (_ -in ["smtp:ann@fabrikam.com"])',
        'user.proxyAddresses -all (_ -startsWith "smtp:")',
        'user.proxyAddresses -all (_ -contains "ann" -and -not (_ -contains "bob"))',
    ],
)
def test_string_collection_quantifiers_match(rule: str) -> None:
    assert compile_rule(rule).matches(PROXIES)


@pytest.mark.parametrize(
    "rule",
    [
        'user.proxyAddresses -any (_ -startsWith "x400")',
        'user.proxyAddresses -all (_ -contains "contoso")',
        'user.proxyAddresses -any (_ -eq "ann@contoso.com")',
    ],
)
def test_string_collection_quantifiers_do_not_match(rule: str) -> None:
    assert not compile_rule(rule).matches(PROXIES)


def test_any_on_missing_collection_is_false_and_all_is_true() -> None:
    assert not compile_rule('user.otherMails -any (_ -contains "a")').matches({})
    assert compile_rule('user.otherMails -all (_ -contains "a")').matches({"otherMails": None})


def test_unparenthesised_any_takes_one_comparison() -> None:
    """`-any _ -eq "x" -and user.city ...`: the -and belongs to the rule, not to the item test."""
    rule = compile_rule('user.otherMails -any _ -eq "a@x" -and user.city -eq "Lagos"')
    assert rule.matches({"otherMails": ["a@x"], "city": "Lagos"})
    assert not rule.matches({"otherMails": ["a@x"], "city": "Abuja"})
    assert not rule.matches({"otherMails": ["b@x"], "city": "Lagos"})


def test_plain_operator_on_string_collection_is_true_when_any_element_passes() -> None:
    assert compile_rule('user.otherMails -startsWith "bob"').matches({"otherMails": ["ann@x", "bob@x"]})
    assert not compile_rule('user.otherMails -startsWith "eve"').matches({"otherMails": ["ann@x", "bob@x"]})
    assert compile_rule('user.proxyAddresses -eq "smtp:ann@fabrikam.com"').matches(PROXIES)


def test_negated_operator_on_collection_is_true_when_no_element_passes() -> None:
    rule = compile_rule('user.proxyAddresses -notEndsWith "@outlook.com"')
    assert rule.matches(PROXIES)
    assert not rule.matches({"proxyAddresses": ["smtp:a@contoso.com", "smtp:a@outlook.com"]})
    assert rule.matches({"proxyAddresses": []})


PLANS = {
    "assignedPlans": [
        {
            "servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0",
            "service": "exchange",
            "capabilityStatus": "Enabled",
        },
        {
            "servicePlanId": "4828c8ec-dc2e-4779-b502-87ac9ce28ab7",
            "service": "SCO",
            "capabilityStatus": "Deleted",
        },
    ]
}


def test_object_collection_any_requires_one_item_to_pass_whole_body() -> None:
    both_on_same_item = compile_rule(
        'user.assignedPlans -any (assignedPlan.service -eq "SCO" -and assignedPlan.capabilityStatus -eq "Enabled")'
    )
    assert not both_on_same_item.matches(PLANS)  # SCO exists and Enabled exists, but not on the same plan
    exchange = compile_rule(
        'user.assignedPlans -any (assignedPlan.service -eq "exchange" -and assignedPlan.capabilityStatus -eq "enabled")'
    )
    assert exchange.matches(PLANS)


def test_object_collection_all() -> None:
    assert compile_rule("user.assignedPlans -all (assignedPlan.servicePlanId -ne null)").matches(PLANS)
    assert not compile_rule('user.assignedPlans -all (assignedPlan.capabilityStatus -eq "Enabled")').matches(
        PLANS
    )


def test_item_alias_and_item_property_are_case_insensitive() -> None:
    rule = compile_rule('user.assignedplans -any (AssignedPlan.SERVICE -eq "sco")')
    assert rule.matches(PLANS)
    assert rule.properties == frozenset({"assignedPlans"})


def test_nested_not_and_or_inside_object_body() -> None:
    rule = compile_rule(
        'user.assignedPlans -any ((assignedPlan.service -eq "SCO" -or assignedPlan.service -eq "exchange") '
        '-and -not (assignedPlan.capabilityStatus -eq "Deleted"))'
    )
    assert rule.matches(PLANS)
    assert not rule.matches({"assignedPlans": [PLANS["assignedPlans"][1]]})


def test_quantified_combines_with_other_comparisons() -> None:
    rule = compile_rule('user.department -eq "IT" -and (user.proxyAddresses -any (_ -contains "contoso"))')
    assert rule.matches({"department": "IT", **PROXIES})
    assert not rule.matches({"department": "HR", **PROXIES})


def test_unknown_collection_property_is_allowed_with_any() -> None:
    rule = compile_rule('user.imAddresses -any (_ -eq "sip:a@x")')
    assert rule.matches({"imAddresses": ["sip:a@x"]})
