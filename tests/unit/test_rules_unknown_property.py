"""Issue 28: a property the rule language does not know is a warning naming the closest known one, in
`rules check`, `rules test` and where the config loads `[[dynamic_groups]]` — valid (Entra may know it), but
never silent: `user.departmnt -eq "HR"` is "valid" and matches nobody."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import pytest

from writeback.cli import rules as rules_cli
from writeback.config import parse_settings
from writeback.core.rules import compile_rule

TARGET = {
    "ldap_urls": ["ldaps://dc1.corp.test"],
    "bind_dn": "CN=svc,DC=corp,DC=test",
    "bind_password_file": "pw",
    "base_dn": "DC=corp,DC=test",
    "target_ou": "OU=Writeback,DC=corp,DC=test",
}


def test_a_misspelt_property_warns_with_the_closest_known_one() -> None:
    rule = compile_rule('user.departmnt -eq "HR"')
    (warning,) = rule.warnings
    assert warning.startswith("unknown property 'user.departmnt', did you mean 'user.department'?")
    assert not rule.matches({"department": "HR"})  # what the warning is about: it matches nobody


@pytest.mark.parametrize(
    ("text", "suggested"),
    [
        ('user.JobTitel -eq "x"', "user.jobTitle"),
        ('user.extensionAtribute3 -eq "x"', "user.extensionAttribute3"),
        ('device.deviceOSTyp -eq "Windows"', "device.deviceOSType"),
        ('user.proxyAdresses -any (_ -startsWith "smtp:")', "user.proxyAddresses"),
    ],
)
def test_the_suggestion_comes_from_the_properties_of_the_rules_object(text: str, suggested: str) -> None:
    (warning,) = compile_rule(text).warnings
    assert f"did you mean '{suggested}'?" in warning


def test_known_properties_any_case_and_extensions_do_not_warn() -> None:
    for text in (
        'user.department -eq "HR" -and user.DEPARTMENT -ne "IT"',
        'user.extensionAttribute15 -eq "x"',
        'user.extension_c272a57b722d4eb29bfe327874ae79cb_OfficeNumber -eq "123"',
        'user.memberof -any (group.objectId -in ["a"])',
        'user.assignedPlans -any (assignedPlan.service -eq "SCO")',
    ):
        assert compile_rule(text).warnings == (), text


def test_a_property_nothing_is_close_to_warns_without_a_guess_and_once() -> None:
    (warning,) = compile_rule('user.zzqqx -eq "a" -or user.zzqqx -eq "b"').warnings
    assert warning.startswith("unknown property 'user.zzqqx' (no known property is close)")


def _args(rule: str, cmd: str) -> argparse.Namespace:
    return argparse.Namespace(rule=rule, rules_cmd=cmd, user=None, limit=50, source="cloud")


def test_rules_check_prints_the_warning_on_stderr_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_cli.main(_args('user.departmnt -eq "HR"', "check"), None) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Rule is valid")
    assert err.startswith("warning: unknown property 'user.departmnt', did you mean 'user.department'?")


def test_rules_check_of_a_known_property_says_nothing_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_cli.main(_args('user.department -eq "HR"', "check"), None) == 0
    assert capsys.readouterr().err == ""


def test_rules_test_warns_too(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    users = [{"id": "1", "displayName": "Ann", "department": "HR"}]
    monkeypatch.setattr(rules_cli, "_load_users", lambda args, loader: users)
    assert rules_cli.main(_args('user.departmnt -eq "HR"', "test"), lambda a: object()) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "0 of 1 user match."
    assert "did you mean 'user.department'?" in err


def test_a_dynamic_group_rule_with_an_unknown_property_is_logged_where_the_config_loads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    doc: dict[str, Any] = {
        "scope": {"mode": "none"},
        "target": TARGET,
        "dynamic_groups": [{"id": "hr", "name": "HR", "rule": 'user.departmnt -eq "HR"'}],
    }
    with caplog.at_level(logging.WARNING, logger="writeback.config"):
        settings = parse_settings(doc, "/etc/writeback/writeback.toml")
    assert settings.dynamic_groups[0].rule == 'user.departmnt -eq "HR"'  # loaded: a warning, not an error
    (record,) = [r for r in caplog.records if r.name == "writeback.config"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "/etc/writeback/writeback.toml: dynamic_groups[0].rule: unknown property 'user.departmnt', "
        "did you mean 'user.department'?"
    )
