"""$filter, $select and $top parsing of the Graph emulator (pure, no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from writeback.testbed.emulator.apierror import GraphApiError
from writeback.testbed.emulator.odata import (
    GROUP_DEFAULTS,
    check_advanced,
    parse_filter,
    parse_orderby,
    parse_select,
    parse_top,
    render,
)

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
    v1 = render(group, "group", "v1.0", None)
    assert "writebackConfiguration" not in v1 and "manager" not in v1
    assert v1["displayName"] == "G" and v1["description"] is None
    assert render(group, "group", "beta", None)["writebackConfiguration"] == {"isEnabled": True}
    # $select returns exactly what was selected: no implicit id, relationships never as properties.
    assert render(USER, "user", "v1.0", ("manager", "department")) == {"department": None}
    assert render(USER, "user", "v1.0", ("displayName",)) == {"displayName": "O'Brien Sales"}
    default_user = render(USER, "user", "v1.0", None)
    assert "proxyAddresses" not in default_user and default_user["displayName"] == "O'Brien Sales"


def test_group_default_set_is_graphs_and_collections_default_to_empty_lists() -> None:
    out = render({"id": "g", "displayName": "G", "custom": 1}, "group", "v1.0", None)
    assert tuple(out) == GROUP_DEFAULTS
    assert out["groupTypes"] == [] and out["proxyAddresses"] == []
    assert "custom" not in out and "allowExternalSenders" not in out  # returned only on $select


def test_render_omits_unset_properties_on_request() -> None:
    out = render(USER, "user", "v1.0", ("displayName", "department", "notes"), omit_unset=True)
    assert out == {"displayName": "O'Brien Sales"}


@pytest.mark.parametrize("name", ["foo", "members", "writebackconfiguration"])
def test_select_of_an_undeclared_property_is_graphs_400(name: str) -> None:
    with pytest.raises(GraphApiError) as info:
        parse_select(f"id,{name}", "group", "v1.0")
    assert info.value.status == 400
    assert info.value.message == f"Could not find a property named '{name}' on type 'microsoft.graph.group'."


def test_select_accepts_navigation_only_where_allowed_and_extension_properties() -> None:
    assert parse_select("displayName,members", "group", "v1.0", navigation=("members",)) == (
        "displayName",
        "members",
    )
    ext = "extension_0123456789abcdef0123456789abcdef_costCenter"
    assert parse_select(ext, "user", "v1.0") == (ext,)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("user", "nonsense eq 'x'"),
        ("user", "onPremisesDistinguishedName eq 'CN=x'"),  # declared, but not filterable
        ("group", "startsWith(theme,'x')"),
        ("group", "groupTypes/any(c:c eq 'Unified') and bogus eq 1"),
    ],
)
def test_filter_on_unknown_or_non_filterable_property_is_unsupported_query(kind: str, text: str) -> None:
    with pytest.raises(GraphApiError) as info:
        parse_filter(text, kind, "v1.0")
    assert (info.value.status, info.value.code) == (400, "Request_UnsupportedQuery")


def test_filter_lambda_variables_are_not_properties() -> None:
    flt = parse_filter("proxyAddresses/any(x:startsWith(x,'smtp:ob@'))", "user", "v1.0")
    assert flt.predicate(USER)


def test_orderby_basic_and_advanced() -> None:
    order = parse_orderby("displayName desc", "user", "v1.0", advanced=False, filtered=False)
    assert order is not None and order.descending
    with pytest.raises(GraphApiError) as info:
        parse_orderby("department", "user", "v1.0", advanced=False, filtered=False)
    assert info.value.code == "Request_UnsupportedQuery"
    with pytest.raises(GraphApiError):
        parse_orderby("displayName", "group", "v1.0", advanced=False, filtered=True)
    assert parse_orderby("department", "user", "v1.0", advanced=True, filtered=True) is not None
    with pytest.raises(GraphApiError):
        parse_orderby("displayName", "device", "v1.0", advanced=False, filtered=False)
    with pytest.raises(GraphApiError):
        parse_orderby("nope", "user", "v1.0", advanced=True, filtered=False)
