"""$filter, $select and $top parsing of the Graph emulator (pure, no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from writeback.emulator.apierror import GraphApiError
from writeback.emulator.odata import check_advanced, parse_filter, parse_select, parse_top, render

USER: dict[str, Any] = {
    "id": "a1",
    "displayName": "O'Brien Sales",
    "groupTypes": ["Unified", "DynamicMembership"],
    "securityEnabled": True,
    "proxyAddresses": ["SMTP:o.brien@contoso.test", "smtp:ob@contoso.test"],
    "onPremisesExtensionAttributes": {"extensionAttribute1": "Blue"},
    "notes": None,
    "manager": "m1",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id eq 'a1'", True),
        ("id eq 'A1'", True),  # directory strings compare case-insensitively
        ("id eq 'b2'", False),
        ("id in ('x','a1')", True),
        ("startsWith(displayName,'o''brien')", True),
        ("startswith(displayName,'Sales')", False),
        ("groupTypes/any(c:c eq 'Unified')", True),
        ("groupTypes/any(c:c eq 'Other')", False),
        ("securityEnabled eq true and startsWith(displayName,'O')", True),
        ("securityEnabled eq false or id eq 'a1'", True),
        ("proxyAddresses/any(x:startsWith(x,'smtp:ob@'))", True),
        ("onPremisesExtensionAttributes/extensionAttribute1 eq 'blue'", True),
        ("notes eq null", True),  # 'notes' is a property, not the keyword 'not'
        ("(id eq 'a1')", True),
    ],
)
def test_filters_evaluate_like_graph(text: str, expected: bool) -> None:
    assert parse_filter(text).predicate(USER) is expected


def test_filters_know_their_ids_and_whether_they_are_advanced() -> None:
    assert parse_filter("id eq 'a' or id eq 'b'").ids == frozenset({"a", "b"})
    assert parse_filter("id eq 'a' or id eq 'b'").ids_only
    assert not parse_filter("id in ('a','b')").ids_only
    assert parse_filter("id eq 'a' and displayName eq 'x'").ids == frozenset({"a"})
    assert parse_filter("displayName eq 'x'").ids is None
    assert not parse_filter("startsWith(displayName,'x')").advanced
    for advanced in (
        "displayName ne 'x'",
        "not (id eq 'a')",
        "endsWith(mail,'x')",
        "groupTypes/all(c:c eq 'x')",
    ):
        assert parse_filter(advanced).advanced, advanced


@pytest.mark.parametrize(
    "text", ["", "id", "id eq", "contains(displayName,'x')", "id eq 'a' and", "true", "x eq 'a"]
)
def test_invalid_filters_are_unsupported_query(text: str) -> None:
    with pytest.raises(GraphApiError) as info:
        parse_filter(text)
    assert (info.value.status, info.value.code) == (400, "Request_UnsupportedQuery")


def test_advanced_filters_need_consistency_level_and_count() -> None:
    flt = parse_filter("displayName ne 'x'")
    check_advanced(flt, consistency_eventual=True, count_requested=True)
    with pytest.raises(GraphApiError):
        check_advanced(flt, consistency_eventual=True, count_requested=False)
    check_advanced(parse_filter("id eq 'a'"), consistency_eventual=False, count_requested=False)


def test_select_and_top() -> None:
    assert parse_select("id, displayName,,displayName", "user", "v1.0") == ("id", "displayName")
    assert parse_select(None, "user", "v1.0") is None
    assert parse_select("writebackConfiguration", "group", "beta") == ("writebackConfiguration",)
    with pytest.raises(GraphApiError):
        parse_select("writebackConfiguration", "group", "v1.0")
    assert parse_top(None) == 100
    assert parse_top("999") == 999
    for bad in ("1000", "0", "-1", "ten"):
        with pytest.raises(GraphApiError):
            parse_top(bad)


def test_render_hides_relationships_and_beta_properties() -> None:
    group = {"id": "g", "displayName": "G", "writebackConfiguration": {"isEnabled": True}, "manager": "x"}
    assert render(group, "group", "v1.0", None) == {"id": "g", "displayName": "G"}
    assert render(group, "group", "beta", None)["writebackConfiguration"] == {"isEnabled": True}
    assert render(USER, "user", "v1.0", ("manager", "department")) == {"id": "a1", "department": None}
    default_user = render(USER, "user", "v1.0", None)
    assert "proxyAddresses" not in default_user and default_user["displayName"] == "O'Brien Sales"
