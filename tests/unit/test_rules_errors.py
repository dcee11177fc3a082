"""Invalid rules raise RuleError with the 0-based position, a message saying what was expected, and a caret."""

from __future__ import annotations

import pytest

from writeback.core.rules import MAX_RULE_LENGTH, compile_rule
from writeback.core.rules import RuleError as ReexportedRuleError
from writeback.errors import RuleError, WritebackError


def error_of(rule: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        compile_rule(rule)
    return info.value


def test_rule_error_is_the_one_from_the_exception_tree() -> None:
    assert ReexportedRuleError is RuleError
    assert issubclass(RuleError, WritebackError)


def test_missing_operator_message_position_and_caret() -> None:
    err = error_of('user.department "HR"')
    assert err.position == 16
    assert err.rule == 'user.department "HR"'
    assert 'Expected an operator such as -eq after "user.department" at position 16' in str(err)
    lines = str(err).splitlines()
    assert lines[1].strip() == 'user.department "HR"'
    assert lines[2].index("^") - lines[1].index("u") == 16


# (rule, position, text the message must contain)
SYNTAX_ERRORS = [
    ("user.department", 15, "ends too early: expected an operator such as -eq"),
    ("user.department -eq", 19, "expected a value such as"),
    ('user.department -eq "x" -and', 28, "expected a property such as user.department"),
    ("user.department -eq Sales", 20, 'found "Sales"'),
    ('(user.department -eq "x"', 24, 'expected ")"'),
    ('user.department -eq "x")', 23, "Expected the end of the rule"),
    ('user.department -eq "x" user.city -eq "y"', 24, "Expected -and, -or or the end of the rule"),
    ('(user.department -eq "x" user.city -eq "y")', 25, 'Expected -and, -or or ")"'),
    ('user.department -eq ["a" "b"]', 25, 'Expected "]" or ","'),
    ('department -eq "x"', 0, "Expected a property such as user.department"),
    ('user.department -eq "x', 20, "Unterminated string"),
    ("user.department -eq 'x", 20, "Unterminated string"),
    ('user.department -eq "x" @', 24, 'found "@"'),
    ("user.department -like 'x'", 16, "Expected an operator such as -eq"),
    ("", 0, "The rule is empty"),
]


@pytest.mark.parametrize(
    ("rule", "position", "text"), SYNTAX_ERRORS, ids=[e[0] or "empty" for e in SYNTAX_ERRORS]
)
def test_syntax_errors(rule: str, position: int, text: str) -> None:
    err = error_of(rule)
    assert err.position == position
    assert text in str(err)
    assert f"position {position}" in str(err) or not rule


SEMANTIC_ERRORS = [
    ('group.id -eq "x"', 0, 'Unknown object "group"'),
    ('user.a.b -eq "x"', 0, '"user.a.b" is not a property'),
    ("user.department -startsWith null", 28, "null can only be compared with -eq or -ne, not -startsWith"),
    ('user.department -in "x"', 20, "-in needs a list"),
    ('user.department -eq ["x"]', 16, "A list of values needs -in or -notIn"),
    ('user.x -match "("', 14, "Invalid regular expression"),
    ('_ -eq "x"', 0, "_ is only allowed inside -any/-all"),
    ('user.proxyAddresses -any (user.city -eq "x")', 26, '"user.city" cannot be used inside -any/-all'),
    ('user.department -any (_ -eq "x")', 0, "holds a single value, not a collection"),
    ('user.assignedPlans -eq "x"', 19, "is a collection of objects"),
    ('user.assignedPlans -any (_ -eq "x")', 25, "are objects"),
    ('user.otherMails -any (mail.x -eq "x")', 22, "are strings"),
    ('user.assignedPlans -any (plan.service -eq "x")', 25, 'Unknown item "plan.service"'),
    ('user.otherMails -any (_ -any (_ -eq "x"))', 22, "cannot be nested"),
    ("user.accountEnabled -ge true", 24, "true and false cannot be compared"),
    ('user.department -eq [["a"]]', 21, "A list cannot contain another list"),
    ('user.x -eq "a" -and device.y -eq "b"', 20, "a rule is for users or for devices, not both"),
    ('device.x -eq "a" -or (user.y -eq "b")', 22, "a rule is for users or for devices, not both"),
    ("user.employeeHireDate -ge 2020-13-45", 26, "is not a date"),
]


@pytest.mark.parametrize(("rule", "position", "text"), SEMANTIC_ERRORS, ids=[e[0] for e in SEMANTIC_ERRORS])
def test_semantic_errors(rule: str, position: int, text: str) -> None:
    err = error_of(rule)
    assert err.position == position
    assert text in str(err)
    assert err.rule == rule


@pytest.mark.parametrize(
    ("rule", "position"),
    [
        ("-not user.department -eq null", 0),
        ("-not (user.department -ne null)", 0),
        ('user.x -eq "a" -and -not (((user.y -ne null)))', 20),
        ("not (user.department -eq $null)", 0),
    ],
)
def test_not_applied_to_null_comparison_is_an_error(rule: str, position: int) -> None:
    err = error_of(rule)
    assert err.position == position
    assert "-not cannot be applied to a comparison with null" in str(err)


def test_not_over_a_group_containing_null_is_allowed() -> None:
    rule = compile_rule('-not (user.department -eq null -or user.department -eq "x")')
    assert rule.matches({"department": "y"})
    assert not rule.matches({})


def test_length_limit() -> None:
    base = 'user.department -eq "'
    at_limit = base + "x" * (MAX_RULE_LENGTH - len(base) - 1) + '"'
    assert len(at_limit) == MAX_RULE_LENGTH
    assert compile_rule(at_limit).matches({"department": "x" * (MAX_RULE_LENGTH - len(base) - 1)})
    err = error_of(at_limit + " ")
    assert err.position == MAX_RULE_LENGTH
    assert "3073 characters" in str(err) and "3072" in str(err)


def test_caret_window_for_long_rules_stays_short_and_points_at_error() -> None:
    rule = " -or ".join(f'user.city -eq "c{i}"' for i in range(60)) + " -or user.city"
    err = error_of(rule)
    assert err.position == len(rule)
    _, line, caret = str(err).splitlines()
    assert len(line) < 140
    assert line.startswith("    …")
    assert caret.index("^") == len(line)  # just past the end of the shown text: the rule ends too early


def test_error_message_never_loses_the_rule_with_newlines() -> None:
    err = error_of('user.a -eq "x"\n-and user.b "y"')
    assert err.position == 27
    assert "\n" not in str(err).splitlines()[1]
