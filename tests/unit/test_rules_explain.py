"""explain(), filter(), compile caching, properties, and evaluation speed."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from writeback.core.rules import RuleContext, compile_rule

RULE = '(user.department -eq "Sales") -and -not (user.jobTitle -startsWith "SDE")'


def test_explain_reports_each_comparison_with_property_actual_and_result() -> None:
    explanation = compile_rule(RULE).explain({"department": "Sales", "jobTitle": "SDE II"})
    assert explanation.matched is False
    assert not explanation
    steps = explanation.comparisons()
    assert [(s.text, s.property, s.actual, s.result) for s in steps] == [
        ('user.department -eq "Sales"', "user.department", "Sales", True),
        ('user.jobTitle -startsWith "SDE"', "user.jobTitle", "SDE II", True),
    ]
    assert explanation.root.kind == "and"
    assert explanation.root.children[1].kind == "not"
    assert explanation.root.children[1].result is False


def test_explain_text_is_readable() -> None:
    text = str(compile_rule(RULE).explain({"department": "Sales"}))
    assert text.splitlines()[0] == f"Rule matches: {RULE}"
    assert "✓ user.department -eq \"Sales\"    [user.department = 'Sales']" in text
    assert '✗ user.jobTitle -startsWith "SDE"    [user.jobTitle = null]' in text


def test_explain_agrees_with_matches() -> None:
    rule = compile_rule('user.a -eq "1" -or user.b -eq "1" -and -not (user.c -in ["x", "y"])')
    for a in ("0", "1"):
        for b in ("0", "1"):
            for c in ("x", "z"):
                user = {"a": a, "b": b, "c": c}
                assert rule.explain(user).matched is rule.matches(user), user


def test_explain_collection_lists_items() -> None:
    rule = compile_rule('user.assignedPlans -any (assignedPlan.service -eq "SCO")')
    explanation = rule.explain({"assignedPlans": [{"service": "exchange"}, {"service": "SCO"}]})
    assert explanation.matched
    assert explanation.root.kind == "any"
    assert [item.result for item in explanation.root.children] == [False, True]
    assert "item 1: {'service': 'SCO'}" in str(explanation)


def test_explain_special_rule() -> None:
    rule = compile_rule('Direct Reports for "m1"')
    explanation = rule.explain({"id": "u", "manager": {"id": "m2"}})
    assert not explanation.matched
    assert explanation.root.kind == "directReports"
    assert explanation.root.actual == "m2"


def test_filter_keeps_order_and_returns_matching_users() -> None:
    users = [{"id": str(i), "department": "Sales" if i % 3 == 0 else "HR"} for i in range(10)]
    result = compile_rule('user.department -eq "sales"').filter(users)
    assert [u["id"] for u in result] == ["0", "3", "6", "9"]


def test_compile_is_cached_by_text() -> None:
    assert compile_rule('user.city -eq "x"') is compile_rule('user.city -eq "x"')


def test_properties_and_graph_properties() -> None:
    rule = compile_rule(
        '(user.objectId -ne null) -and user.dirSyncEnabled -eq true -and user.extensionAttribute3 -eq "x" '
        '-and user.proxyAddresses -any (_ -eq "y")'
    )
    assert rule.properties == frozenset(
        {"objectId", "dirSyncEnabled", "extensionAttribute3", "proxyAddresses"}
    )
    assert rule.graph_properties == frozenset(
        {"id", "onPremisesSyncEnabled", "onPremisesExtensionAttributes", "proxyAddresses"}
    )
    assert rule.kind == "user" and rule.special is None


def test_typical_rule_over_many_users_is_fast() -> None:
    """Budget check with a wide margin (CI machines are slower and busy): 50k users well under 2 s."""
    users = [
        {
            "id": str(i),
            "department": ("Sales", "HR", None)[i % 3],
            "accountEnabled": i % 7 != 0,
            "city": "Lagos",
        }
        for i in range(50_000)
    ]
    rule = compile_rule(
        'user.department -eq "Sales" -and user.accountEnabled -eq true -and user.city -in ["Lagos"]'
    )
    context = RuleContext(now=datetime(2025, 1, 1, tzinfo=UTC))
    started = time.perf_counter()
    matched = rule.filter(users, context)
    elapsed = time.perf_counter() - started
    assert len(matched) == sum(1 for i in range(50_000) if i % 3 == 0 and i % 7 != 0)
    assert elapsed < 2.0
