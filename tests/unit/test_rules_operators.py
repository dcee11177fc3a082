"""Operators, keywords, precedence, values, escapes and null handling."""

# The en-dashes in these rules are the point: the documentation and the portal paste them as hyphens.
# ruff: noqa: RUF001

from __future__ import annotations

from typing import Any

import pytest

from writeback.core.rules import compile_rule


def matches(rule: str, user: dict[str, Any]) -> bool:
    return compile_rule(rule).matches(user)


# Each operator: (operator, value, actual that passes, actual that fails)
OPERATORS = [
    ("eq", '"Sales"', "sales", "Sales Team"),
    ("ne", '"Sales"', "Sales Team", "SALES"),
    ("startsWith", '"Sal"', "SALES", "Resale"),
    ("notStartsWith", '"Sal"', "Resale", "salt"),
    ("endsWith", '"les"', "SALES", "Salesman"),
    ("notEndsWith", '"les"', "Salesman", "tales"),
    ("contains", '"ale"', "wholesALEr", "Sls"),
    ("notContains", '"ale"', "Sls", "tale"),
    ("match", '"^s.l"', "SALES", "resale"),
    ("notMatch", '"^s.l"', "resale", "sold? no: sales"[10:]),
    ("in", '["Sales", "HR"]', "hr", "Legal"),
    ("notIn", '["Sales", "HR"]', "Legal", "SALES"),
    ("le", '"m"', "Legal", "Sales"),
    ("ge", '"m"', "Sales", "Legal"),
    ("lt", '"m"', "Legal", "Sales"),
    ("gt", '"m"', "Sales", "Legal"),
]


@pytest.mark.parametrize(("op", "value", "yes", "no"), OPERATORS, ids=[o[0] for o in OPERATORS])
def test_each_operator(op: str, value: str, yes: str, no: str) -> None:
    rule = compile_rule(f"user.department -{op} {value}")
    assert rule.matches({"department": yes}) is True
    assert rule.matches({"department": no}) is False


@pytest.mark.parametrize(
    "spelling",
    ["-eq", "eq", "–eq", "—eq", "-EQ", "-Eq", "EQ"],
)
def test_operator_spellings(spelling: str) -> None:
    rule = compile_rule(f'user.department {spelling} "HR"')
    assert rule.matches({"department": "HR"})
    assert not rule.matches({"department": "IT"})


@pytest.mark.parametrize(
    ("and_", "or_", "not_"),
    [
        ("-and", "-or", "-not"),
        ("and", "or", "not"),
        ("–and", "–or", "–not"),
        ("-AND", "-Or", "-NOT"),
        ("—and", "—or", "—not"),
    ],
)
def test_logical_keyword_spellings(and_: str, or_: str, not_: str) -> None:
    rule = compile_rule(f'user.a -eq "1" {and_} {not_} (user.b -eq "2") {or_} user.c -eq "3"')
    assert rule.matches({"a": "1", "b": "x"})
    assert not rule.matches({"a": "1", "b": "2"})
    assert rule.matches({"a": "0", "c": "3"})


def test_property_names_are_case_insensitive_in_rule_and_in_user() -> None:
    assert matches('USER.DEPARTMENT -eq "HR"', {"department": "HR"})
    assert matches('user.Department -eq "HR"', {"department": "HR"})
    assert matches('user.department -eq "HR"', {"Department": "HR"})
    assert not matches('user.department -eq "HR"', {"Department": "IT"})


def test_object_id_reads_graph_id() -> None:
    assert matches('user.objectId -eq "ABC"', {"id": "abc"})
    assert not matches('user.objectId -eq "abc"', {"id": "abd"})


def test_and_binds_tighter_than_or() -> None:
    rule = compile_rule('user.a -eq "1" -or user.b -eq "1" -and user.c -eq "1"')
    assert rule.matches({"a": "1", "b": "0", "c": "0"})  # a or (b and c)
    assert not rule.matches({"a": "0", "b": "1", "c": "0"})


def test_not_binds_tighter_than_and_but_looser_than_comparison() -> None:
    rule = compile_rule('-not user.a -eq "1" -and user.b -eq "1"')  # (not (a eq 1)) and (b eq 1)
    assert rule.matches({"a": "0", "b": "1"})
    assert not rule.matches({"a": "1", "b": "1"})
    assert not rule.matches({"a": "0", "b": "0"})


def test_parentheses_override_precedence() -> None:
    rule = compile_rule('(user.a -eq "1" -or user.b -eq "1") -and user.c -eq "1"')
    assert not rule.matches({"a": "1", "c": "0"})
    assert rule.matches({"b": "1", "c": "1"})


def test_double_not_and_nested_parentheses() -> None:
    rule = compile_rule('-not (-not ((user.a -eq "1")))')
    assert rule.matches({"a": "1"})
    assert not rule.matches({"a": "2"})


def test_long_or_chain_short_circuits_and_is_correct() -> None:
    rule = compile_rule(" -or ".join(f'user.city -eq "c{i}"' for i in range(40)))
    assert rule.matches({"city": "C39"})
    assert not rule.matches({"city": "c40"})


def test_multiline_rule() -> None:
    rule = compile_rule('(user.department -eq "Sales")\n  -or\n(user.department -eq "HR")')
    assert rule.matches({"department": "HR"})


# Values -------------------------------------------------------------------------------------------------------


def test_booleans_compare_with_boolean_properties() -> None:
    assert matches("user.accountEnabled -eq true", {"accountEnabled": True})
    assert matches("user.accountEnabled -eq false", {"accountEnabled": False})
    assert matches("user.accountEnabled -eq TRUE", {"accountEnabled": True})
    assert not matches("user.accountEnabled -eq true", {"accountEnabled": False})
    assert matches("user.accountEnabled -ne true", {"accountEnabled": False})


def test_dir_sync_enabled_reads_on_premises_sync_enabled() -> None:
    assert matches("user.dirSyncEnabled -eq true", {"onPremisesSyncEnabled": True})
    assert not matches("user.dirSyncEnabled -eq true", {"onPremisesSyncEnabled": None})


def test_numbers() -> None:
    assert matches("user.employeeId -eq 42", {"employeeId": "42"})
    assert matches("user.employeeId -eq 42", {"employeeId": 42})
    assert matches("user.extensionAttribute1 -ge 10", {"extensionAttribute1": "9.5"}) is False
    assert matches("user.extensionAttribute1 -ge 10", {"extensionAttribute1": "10.5"})
    assert matches("user.extensionAttribute1 -lt -1.5", {"extensionAttribute1": "-2"})
    assert not matches("user.extensionAttribute1 -lt 5", {"extensionAttribute1": "not a number"})
    assert matches("user.department -in [1, 2]", {"department": "2"})


def test_single_quoted_strings_and_doubled_quote_escape() -> None:
    assert matches("user.department -eq 'Sales'", {"department": "Sales"})
    assert matches("user.surname -eq 'O''Brien'", {"surname": "O'Brien"})
    assert matches("user.department -in ['a', 'b']", {"department": "B"})


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        ('user.department -eq "say `"hi`""', 'say "hi"'),
        ('user.department -eq "say \\"hi\\""', 'say "hi"'),
        ('user.department -eq "tick``"', "tick`"),
        ('user.department -eq `"Sales`"', '"Sales"'),
        ('user.department -eq "it\'s"', "it's"),
    ],
)
def test_escapes(rule: str, value: str) -> None:
    compiled = compile_rule(rule)
    assert compiled.matches({"department": value})
    assert not compiled.matches({"department": value + "x"})


def test_backslashes_in_regex_are_kept() -> None:
    rule = compile_rule(r'user.employeeId -match "^\d{3}$"')
    assert rule.matches({"employeeId": "123"})
    assert not rule.matches({"employeeId": "12a"})


def test_regex_is_case_insensitive_and_dotnet_named_groups_work() -> None:
    assert matches('user.mail -match "@CONTOSO\\.com$"', {"mail": "a@contoso.com"})
    assert matches('user.mail -match "^(?<name>[a-z]+)@"', {"mail": "abc@x"})


def test_no_space_before_value_and_around_parentheses() -> None:
    assert matches('(user.department-eq"HR")', {"department": "hr"})
    assert matches('(user.department -eq"HR")-and(user.city -eq"X")', {"department": "hr", "city": "x"})


# Null ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("absent", [{}, {"department": None}, {"department": ""}])
def test_eq_null_matches_missing_none_and_empty(absent: dict[str, Any]) -> None:
    assert matches("user.department -eq null", absent)
    assert not matches("user.department -ne null", absent)


def test_ne_null_matches_present_values() -> None:
    assert matches("user.department -ne null", {"department": "HR"})
    assert not matches("user.department -eq null", {"department": "HR"})


def test_dollar_null_and_case_are_accepted() -> None:
    assert matches("user.department -eq $null", {})
    assert matches("user.department -eq NULL", {})


def test_quoted_null_is_the_literal_string() -> None:
    rule = compile_rule('user.department -eq "null"')
    assert rule.matches({"department": "null"})
    assert not rule.matches({})


def test_null_property_fails_positive_and_passes_negated_operators() -> None:
    for op in ("eq", "startsWith", "endsWith", "contains", "match", "ge"):
        assert not matches(f'user.city -{op} "a"', {}), op
    for op in ("ne", "notStartsWith", "notEndsWith", "notContains", "notMatch"):
        assert matches(f'user.city -{op} "a"', {}), op
    assert not matches('user.city -in ["a"]', {})
    assert matches('user.city -notIn ["a"]', {})


def test_in_list_may_contain_null() -> None:
    rule = compile_rule('user.city -in ["Lagos", null]')
    assert rule.matches({})
    assert rule.matches({"city": "lagos"})
    assert not rule.matches({"city": "Abuja"})


def test_empty_collection_is_null() -> None:
    assert matches("user.otherMails -eq null", {"otherMails": []})
    assert matches("user.otherMails -ne null", {"otherMails": ["a@b"]})


# Extension attributes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 15])
def test_extension_attributes_read_nested_then_top_level(n: int) -> None:
    rule = compile_rule(f'user.extensionAttribute{n} -eq "x"')
    assert rule.matches({"onPremisesExtensionAttributes": {f"extensionAttribute{n}": "X"}})
    assert rule.matches({f"extensionAttribute{n}": "x"})
    assert not rule.matches({"onPremisesExtensionAttributes": {f"extensionAttribute{n}": "y"}})
    assert rule.properties == frozenset({f"extensionAttribute{n}"})
    assert rule.graph_properties == frozenset({"onPremisesExtensionAttributes"})


def test_extension_attribute_name_is_case_insensitive() -> None:
    assert matches(
        'user.extensionattribute3 -eq "x"', {"onPremisesExtensionAttributes": {"extensionAttribute3": "x"}}
    )


def test_nested_null_is_not_overridden_by_top_level() -> None:
    user = {"onPremisesExtensionAttributes": {"extensionAttribute2": None}, "extensionAttribute2": "x"}
    assert matches("user.extensionAttribute2 -eq null", user)


def test_custom_extension_property_is_case_insensitive() -> None:
    name = "extension_c272a57b722d4eb29bfe327874ae79cb_OfficeNumber"
    assert matches(f'user.{name.upper()} -eq "123"', {name: "123"})


def test_unknown_property_is_read_by_name() -> None:
    assert matches('user.someNewProperty -eq "x"', {"someNewProperty": "X"})
    assert compile_rule('user.someNewProperty -eq "x"').properties == frozenset({"someNewProperty"})
