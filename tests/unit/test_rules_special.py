"""Direct Reports, memberOf, system.now date arithmetic, RuleContext."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

import pytest

from writeback.core.rules import RuleContext, compile_rule
from writeback.errors import RuleError

BOSS = "aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb"
DIRECT_REPORTS = f'Direct Reports for "{BOSS}"'


def test_direct_reports_reads_manager_from_user() -> None:
    rule = compile_rule(DIRECT_REPORTS)
    assert rule.special == "directReports" and rule.kind == "user"
    assert rule.properties == frozenset({"manager"})
    assert rule.matches({"id": "u1", "manager": BOSS.upper()})
    assert rule.matches({"id": "u1", "manager": {"id": BOSS}})  # $expand=manager shape
    assert not rule.matches({"id": "u1", "manager": None})
    assert not rule.matches({"id": "u1", "manager": "other"})


@pytest.mark.parametrize(
    "spelling", ['direct reports for "{}"', 'DIRECT  REPORTS  FOR "{}"', '(Direct Reports for "{}")']
)
def test_direct_reports_spellings(spelling: str) -> None:
    assert compile_rule(spelling.format(BOSS)).matches({"manager": BOSS})


def test_direct_reports_from_context_manager_of() -> None:
    managers = {"u1": BOSS, "u2": "other"}
    context = RuleContext(manager_of=managers.get)
    rule = compile_rule(DIRECT_REPORTS)
    assert rule.matches({"id": "u1"}, context)
    assert not rule.matches({"id": "u2"}, context)
    assert not rule.matches({"id": "u3"}, context)


def test_direct_reports_from_context_direct_reports_of_is_asked_once_per_batch() -> None:
    calls: list[str] = []

    def direct_reports_of(manager_id: str) -> Collection[str]:
        calls.append(manager_id)
        return {"U1", "u2"}

    context = RuleContext(direct_reports_of=direct_reports_of)
    users = [{"id": "u1"}, {"id": "u2"}, {"id": "u3"}]
    assert compile_rule(DIRECT_REPORTS).filter(users, context) == users[:2]
    assert calls == [BOSS]


def test_direct_reports_without_any_manager_information_is_an_error() -> None:
    """Silently treating 'unknown manager' as 'no manager' would empty the group in AD."""
    with pytest.raises(RuleError, match="manager") as info:
        compile_rule(DIRECT_REPORTS).matches({"id": "u1"})
    assert info.value.rule == DIRECT_REPORTS
    with pytest.raises(RuleError, match="manager"):
        users: list[dict[str, str | None]] = [{"id": "u1", "manager": None}, {"id": "u2"}]
        compile_rule(DIRECT_REPORTS).filter(users)


def test_member_of_reads_user_groups_or_context() -> None:
    rule = compile_rule("user.memberOf -any (group.objectId -in ['G1', 'g2'])")
    assert rule.special == "memberOf" and rule.kind == "user"
    assert rule.matches({"id": "u", "memberOf": ["g1"]})
    assert rule.matches({"id": "u", "memberOf": [{"id": "G2"}]})
    assert not rule.matches({"id": "u", "memberOf": ["g3"]})
    context = RuleContext(member_of=lambda user_id: {"g2"} if user_id == "u" else set())
    assert rule.matches({"id": "u"}, context)
    assert not rule.matches({"id": "v"}, context)


def test_member_of_without_groups_is_an_error() -> None:
    with pytest.raises(RuleError, match="memberOf"):
        compile_rule("user.memberOf -any (group.objectId -in ['g1'])").matches({"id": "u"})


def test_member_of_allows_fifty_groups_and_refuses_fifty_one() -> None:
    ids = ", ".join(f"'g{i}'" for i in range(50))
    assert compile_rule(f"user.memberOf -any (group.objectId -in [{ids}])").matches({"memberOf": ["g49"]})
    with pytest.raises(RuleError, match="at most 50"):
        compile_rule(f"user.memberOf -any (group.objectId -in [{ids}, 'g50'])")


@pytest.mark.parametrize(
    "rule",
    [
        f'{DIRECT_REPORTS} -and user.department -eq "x"',
        f'user.department -eq "x" -or {DIRECT_REPORTS}',
        f"-not {DIRECT_REPORTS}",
        "user.memberOf -any (group.objectId -in ['g']) -and user.city -eq \"x\"",
        "-not (user.memberOf -any (group.objectId -in ['g']))",
    ],
)
def test_special_rules_must_stand_alone(rule: str) -> None:
    with pytest.raises(RuleError, match="must stand alone"):
        compile_rule(rule)


@pytest.mark.parametrize(
    "rule",
    [
        "user.memberOf -all (group.objectId -in ['g'])",
        "user.memberOf -any (group.displayName -eq 'g')",
        "user.memberOf -any (group.objectId -in [1])",
    ],
)
def test_member_of_shape_is_checked(rule: str) -> None:
    with pytest.raises(RuleError):
        compile_rule(rule)


NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "hire", "expected"),
    [
        ("user.employeeHireDate -ge system.now -plus p1d", "2025-02-01T12:00:00Z", True),
        ("user.employeeHireDate -ge system.now -plus p1d", "2025-02-01T11:59:59Z", False),
        ("user.employeeHireDate -ge system.now -plus -p30d", "2025-01-01T12:00:00Z", True),
        ("user.employeeHireDate -ge system.now -plus -p30d", "2024-12-31T00:00:00Z", False),
        ("user.employeeHireDate -ge system.now -minus P30D", "2025-01-01T12:00:00Z", True),
        ("user.employeeHireDate -le system.now", "2025-01-31T12:00:00Z", True),
        ("user.employeeHireDate -gt system.now", "2025-01-31T12:00:00Z", False),
        ("user.employeeHireDate -ge system.now -plus PT12H", "2025-02-01T00:00:00Z", True),
        (
            "user.employeeHireDate -ge system.now -plus P1M",
            "2025-02-28T12:00:00Z",
            True,
        ),  # clamped to month end
        ("user.employeeHireDate -ge system.now -plus P1M", "2025-02-27T12:00:00Z", False),
        ("user.employeeHireDate -le system.now -plus -P1Y", "2024-01-31T12:00:00Z", True),
        ("user.employeeHireDate -ge system.now -plus P2W", "2025-02-14T12:00:00Z", True),
        ("user.employeehiredate -le 2020-06-10T18:13:20Z", "2020-06-10T18:13:20Z", True),
        ("user.employeehiredate -le 2020-06-10", "2020-06-10T00:00:01Z", False),
        ('user.employeeHireDate -eq "2020-06-10T18:13:20Z"', "2020-06-10T20:13:20+02:00", True),
        ('user.employeeHireDate -ne "2020-06-10T18:13:20Z"', "2020-06-10T18:13:21Z", True),
        ("user.employeeHireDate -ge system.now -plus p1d", "2025-06-01T00:00:00.1234567Z", True),
    ],
)
def test_dates(rule: str, hire: str, expected: bool) -> None:
    assert compile_rule(rule).matches({"employeeHireDate": hire}, RuleContext(now=NOW)) is expected


def test_missing_or_unparseable_hire_date_does_not_match() -> None:
    rule = compile_rule("user.employeeHireDate -ge system.now -plus -p30d")
    context = RuleContext(now=NOW)
    assert not rule.matches({}, context)
    assert not rule.matches({"employeeHireDate": "soon"}, context)


def test_system_now_defaults_to_current_time() -> None:
    rule = compile_rule("user.employeeHireDate -le system.now")
    assert rule.matches({"employeeHireDate": "2000-01-01T00:00:00Z"})
    assert not rule.matches({"employeeHireDate": "2999-01-01T00:00:00Z"})


def test_naive_now_and_values_are_utc() -> None:
    rule = compile_rule("user.employeeHireDate -ge system.now")
    assert rule.matches(
        {"employeeHireDate": datetime(2025, 1, 31, 12)}, RuleContext(now=datetime(2025, 1, 31, 12))
    )


@pytest.mark.parametrize(
    "bad", ["user.employeeHireDate -ge system.now -plus p", "user.employeeHireDate -contains system.now"]
)
def test_bad_date_rules(bad: str) -> None:
    with pytest.raises(RuleError):
        compile_rule(bad)
