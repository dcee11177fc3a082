"""Names from the cloud or AD reach the terminal with their control characters escaped (issue 23, finding 8):
``\\x1b[8m`` in a group name hid the rest of a plan. JSON output keeps them as JSON escapes."""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

import pytest

from writeback.adapters.state.sqlbase import LogEntry
from writeback.app.engine import ApplyResult, ChangeResult
from writeback.cli.report import render_plan, render_table
from writeback.core.model import DirectoryGroup, SkippedMember
from writeback.core.planning import Change, ChangeKind, GroupReport, Plan
from writeback.core.text import printable

cli = importlib.import_module("writeback.cli.main")

HOSTILE = "A\x1b[8mB"  # ESC [8m: "conceal" -- everything after it is invisible on a terminal
SHOWN = "A\\x1b[8mB"


def _no_controls(text: str) -> None:
    """Nothing a terminal would act on: only newlines between lines, no other C0 or C1 character."""
    bad = sorted({c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F})
    assert not bad, f"raw control characters in output: {bad!r}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A\x1b[8mB", "A\\x1b[8mB"),
        ("nul\x00here", "nul\\x00here"),
        ("two\nlines\r", "two\\x0alines\\x0d"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b2J", "csi\\x9b2J"),  # C1 CSI: an escape sequence in one character
        ("Ventes é ü 営業", "Ventes é ü 営業"),  # printable non-ASCII is left alone
        ("CN=R\\, D,OU=x", "CN=R\\, D,OU=x"),  # a DN reads as AD writes it
        (42, "42"),
    ],
)
def test_printable_escapes_c0_and_c1_controls_only(value: object, expected: str) -> None:
    assert printable(value) == expected


def test_render_plan_escapes_names_dns_members_and_notes() -> None:
    dn = f"CN={HOSTILE},OU=W,DC=corp,DC=test"
    changes = (
        Change(ChangeKind.CREATE, "id1", dn, HOSTILE, members=(f"CN=u{HOSTILE},DC=corp",)),
        Change(
            ChangeKind.UPDATE,
            "id1",
            dn,
            HOSTILE,
            attributes={"description": HOSTILE},
            previous={"description": "old"},
        ),
        Change(ChangeKind.MOVE, "id1", dn, HOSTILE, new_dn=f"CN=x\x1b]0;title\x07,{dn}"),
        Change(ChangeKind.ADD_MEMBERS, "id1", dn, HOSTILE, members=(f"CN=u{HOSTILE},DC=corp",)),
    )
    report = GroupReport(
        "id1",
        HOSTILE,
        dn,
        error=f"refused: {HOSTILE}",
        note=f"note {HOSTILE}",
        skipped=(SkippedMember(f"m{HOSTILE}", "user", f"why {HOSTILE}", HOSTILE),),
    )
    text = render_plan(Plan(changes=changes, reports=(report,), warnings=(f"warn {HOSTILE}",)), verbose=True)
    _no_controls(text)
    assert f"  {SHOWN}  [id1]" in text
    assert "\\x1b]0;title\\x07" in text
    assert f"        + CN=u{SHOWN},DC=corp" in text
    assert f"    ! refused: {SHOWN}" in text and f"    . note {SHOWN}" in text  # in the group's own block
    assert f"        user {SHOWN} (m{SHOWN}): why {SHOWN}" in text
    assert f"WARNING: warn {SHOWN}" in text


def test_a_name_cannot_forge_a_line_of_the_plan() -> None:
    forged = "Sales\n    - delete: CN=Domain Admins,CN=Users,DC=corp,DC=test"
    text = render_plan(Plan(changes=(Change(ChangeKind.CREATE, "id1", "CN=S,DC=corp", forged),)))
    assert "\n    - delete: CN=Domain Admins" not in text
    assert "Sales\\x0a    - delete" in text


def test_render_table_escapes_cells_and_aligns_on_what_is_shown() -> None:
    text = render_table([[HOSTILE, "x"], ["plain", "y"]], ["name", "v"])
    _no_controls(text)
    lines = text.splitlines()
    assert lines[2] == f"{SHOWN}  x"
    assert lines[3].index("y") == lines[2].rindex("x")  # widths count the escaped text, as the terminal does


class _Store:
    def read_log(self, **filters: Any) -> list[LogEntry]:
        return [
            LogEntry(
                1, 0.0, "run1", "g1", HOSTILE, f"CN={HOSTILE}", "create", "failure", f"AD: {HOSTILE}", None
            ),
            LogEntry(2, 0.0, "run1", "g2", "Plain", "CN=Plain", "update", "success", None, {"name": HOSTILE}),
        ]

    def close(self) -> None:
        pass


def test_log_table_escapes_group_and_detail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.wiring.build_store", lambda settings: _Store())
    assert cli.cmd_log(cli.build_parser().parse_args(["log"])) == cli.EXIT_OK
    out = capsys.readouterr().out
    _no_controls(out)
    assert SHOWN in out and f"AD: {SHOWN}" in out and f"name={SHOWN}" in out


def test_log_json_keeps_json_escapes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.wiring.build_store", lambda settings: _Store())
    assert cli.cmd_log(cli.build_parser().parse_args(["log", "--json"])) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\u001b" in out
    assert json.loads(out)[0]["group_name"] == HOSTILE  # the value itself is unchanged


class _Directory:
    def has_attribute(self, name: str) -> bool:
        return True

    def read_managed_groups(self, anchors: Any, attributes: Any) -> list[DirectoryGroup]:
        return [
            DirectoryGroup(
                f"CN={HOSTILE},OU=W,DC=corp",
                "guid1",
                f"Group_{HOSTILE}",
                f"sam{HOSTILE}",
                -2147483640,
                {"mail": f"m{HOSTILE}@corp.test"},
                frozenset({f"CN=u{HOSTILE},DC=corp"}),
            )
        ]

    def close(self) -> None:
        pass


def test_show_escapes_dn_names_and_members(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.wiring.build_directory", lambda settings: _Directory())
    assert cli.cmd_show(argparse.Namespace(json=False)) == cli.EXIT_OK
    out = capsys.readouterr().out
    _no_controls(out)
    assert out.startswith(f"CN={SHOWN},OU=W,DC=corp\n")
    assert f"sAMAccountName=sam{SHOWN}" in out and f"anchor=Group_{SHOWN}" in out
    assert f"mail=m{SHOWN}@corp.test" in out and f"      - u{SHOWN}\n" in out


def test_show_json_keeps_json_escapes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.wiring.build_directory", lambda settings: _Directory())
    assert cli.cmd_show(argparse.Namespace(json=True)) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "\x1b" not in out and json.loads(out)[0]["dn"] == f"CN={HOSTILE},OU=W,DC=corp"


def test_apply_escapes_the_failed_changes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    change = Change(ChangeKind.CREATE, "id1", f"CN={HOSTILE},DC=corp", HOSTILE)
    result = ApplyResult(run_id="run1", results=[ChangeResult(change, ok=False, error=f"refused {HOSTILE}")])
    plan = Plan(changes=(change,))

    def apply(settings: Any, progress: Any, **kw: Any) -> tuple[Plan, ApplyResult]:
        kw["show"](plan)
        return plan, result

    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.operations.apply", apply)
    assert cli.main(["apply", "--quiet"]) == cli.EXIT_ERROR
    out = capsys.readouterr().out
    _no_controls(out)
    assert f"FAILED create {SHOWN}: refused {SHOWN}" in out


def test_provision_escapes_steps_and_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from writeback.app.provision import ProvisionOutcome

    def provision(settings: Any, group: str, emit: Any) -> ProvisionOutcome:
        emit({"type": "import", "status": "success", "description": f"read {HOSTILE}"})
        return ProvisionOutcome("success", f"created {HOSTILE}", "run1")

    monkeypatch.setattr(cli, "_settings", lambda args: argparse.Namespace())
    monkeypatch.setattr("writeback.app.operations.provision", provision)
    assert cli.main(["provision", HOSTILE, "--quiet"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    _no_controls(out)
    assert f"read {SHOWN}" in out and f"created {SHOWN}" in out


def test_an_error_message_is_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from writeback.errors import DirectoryWriteError

    def fail(args: Any) -> Any:
        raise DirectoryWriteError(f"CN={HOSTILE}: sAMAccountName contains invalid 0x1b")

    monkeypatch.setattr(cli, "_settings", fail)
    assert cli.main(["show"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    _no_controls(err)
    assert f"error: CN={SHOWN}" in err


def test_rules_test_escapes_user_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from writeback.cli import rules as rules_cli

    users = [{"id": "1", "displayName": HOSTILE, "userPrincipalName": f"u{HOSTILE}@x", "department": "Sales"}]
    monkeypatch.setattr(rules_cli, "_load_users", lambda args, loader: users)
    args = argparse.Namespace(rule='user.department -eq "Sales"', rules_cmd="test", user=None, limit=50)
    assert rules_cli.main(args, lambda a: object()) == 0
    out = capsys.readouterr().out
    _no_controls(out)
    assert f"  {SHOWN}  u{SHOWN}@x  [1]" in out
