"""The CLI's output as an administrator reads it: plurals, ISO 8601 times in `log`, `apply --plan FILE` checked
before anything is synced or locked."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from writeback.adapters.state.sqlbase import LogEntry
from writeback.cli.report import render_plan
from writeback.core.model import DirectoryGroup
from writeback.core.planning import Change, ChangeKind, GroupReport, Plan, SkippedMember
from writeback.core.text import plural

cli = importlib.import_module("writeback.cli.main")  # the package's `main` attribute is the function


@pytest.mark.parametrize(
    ("count", "expected"), [(0, "0 members"), (1, "1 member"), (2, "2 members"), (-1, "-1 members")]
)
def test_plural(count: int, expected: str) -> None:
    assert plural(count, "member") == expected


def test_plural_takes_an_irregular_form() -> None:
    assert (plural(1, "entry", "entries"), plural(3, "entry", "entries")) == ("1 entry", "3 entries")


def _change(kind: ChangeKind, members: int, **kw: Any) -> Change:
    dn = f"CN=G{kind.value},OU=W,DC=corp,DC=test"
    return Change(
        kind,
        f"id-{kind.value}",
        dn,
        f"G {kind.value}",
        members=tuple(f"CN=u{i}" for i in range(members)),
        **kw,
    )


def test_a_plan_says_1_member_and_2_members() -> None:
    one = _change(ChangeKind.ADD_MEMBERS, 1, reason="drift: edited in AD")
    two = _change(ChangeKind.REMOVE_MEMBERS, 2)
    skipped = GroupReport("id-x", "X", None, skipped=(SkippedMember("m1", "user", "cloud-only user", "Ann"),))
    text = render_plan(Plan(changes=(one, two), reports=(skipped,), held=(_change(ChangeKind.DELETE, 1),)))
    assert "(1 member)" in text and "(2 members)" in text
    assert "1 member value to add, 2 to remove" in text
    assert "Drift: 1 change reverts manual edits in AD (1 group)" in text
    assert "- delete: CN=Gdelete,OU=W,DC=corp,DC=test (1 member)" in text
    assert "  X  [id-x]\n    . 1 member not written to AD:" in text
    assert "1 members" not in text and "(s)" not in text


@pytest.mark.parametrize(("count", "line"), [(1, "1 problem found:"), (2, "2 problems found:")])
def test_config_check_counts_its_problems(
    count: int, line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.checks.check_config", lambda settings, say: ["bad"] * count)
    assert cli.cmd_config_check(argparse.Namespace()) == cli.EXIT_ERROR
    out = capsys.readouterr().out
    assert f"\n{line}\n" in out and "(s)" not in out


def test_show_counts_members(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Directory:
        def has_attribute(self, name: str) -> bool:
            return True

        def read_managed_groups(self, anchors: Any, attributes: Any) -> list[DirectoryGroup]:
            return [
                DirectoryGroup(
                    f"CN=G{n},DC=corp",
                    f"guid{n}",
                    f"Group_{n}",
                    f"G{n}",
                    -2147483640,
                    {},
                    frozenset(f"CN=u{i},DC=corp" for i in range(n)),
                )
                for n in (1, 2)
            ]

        def close(self) -> None:
            pass

    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.wiring.build_directory", lambda settings: Directory())
    assert cli.cmd_show(argparse.Namespace(json=False)) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "anchor=Group_1  1 member\n" in out and "anchor=Group_2  2 members\n" in out


# -- log: ISO 8601 times ------------------------------------------------------------------------------------

WHEN = dt.datetime(2026, 12, 7, 1, 53, 7, tzinfo=dt.UTC).timestamp()


class Store:
    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    def read_log(self, **filters: Any) -> list[LogEntry]:
        self.asked = filters
        return [
            LogEntry(1, WHEN, "run1", "g1", "Sales", "CN=Sales", "create", "success", None, {"members": 2})
        ]

    def close(self) -> None:
        pass


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    store = Store()
    monkeypatch.setattr(cli, "_settings", lambda args: object())
    monkeypatch.setattr("writeback.app.wiring.build_store", lambda settings: store)
    return store


def test_log_json_gives_iso_8601_utc_times(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["log", "--json", "--action", "create", "--since", "2026-12-01"])
    assert cli.cmd_log(args) == cli.EXIT_OK
    (row,) = json.loads(capsys.readouterr().out)
    assert row["time"] == "2026-12-07T01:53:07+00:00"
    assert (row["action"], row["detail"]) == ("create", {"members": 2})
    assert store.asked["action"] == "create"
    assert store.asked["since"] == dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


def test_log_table_gives_iso_8601_utc_times(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.cmd_log(cli.build_parser().parse_args(["log"])) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == [
        "2026-12-07T01:53:07+00:00",
        "run1",
        "create",
        "success",
        "Sales",
        "members=2",
    ]


# -- apply --plan FILE: checked first ------------------------------------------------------------------------


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if apply loads the config, syncs, locks or applies anything."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("apply went on past a bad --plan file")

    monkeypatch.setattr(cli, "_settings", refuse)
    monkeypatch.setattr("writeback.app.operations.apply", refuse)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read {file}: No such file or directory"),
        ("{not json", "{file} is not a saved plan (not JSON: "),
        (b"\xff\xfe", "{file} is not a saved plan (not JSON: "),
        ("[1, 2]", "{file} is not a saved plan ("),
        ('{"format": 1}', "{file} is not a saved plan ("),
        ("{}", "{file} is not a saved plan (unsupported plan format None"),
        (json.dumps({**Plan().to_dict(), "changes": [{"kind": "explode"}]}), "{file} is not a saved plan ("),
    ],
)
def test_a_bad_plan_file_is_a_usage_error_before_anything_runs(
    content: str | bytes | None,
    problem: str,
    tmp_path: Path,
    nothing_runs: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = tmp_path / "next.json"
    if isinstance(content, str):
        file.write_text(content)
    elif isinstance(content, bytes):
        file.write_bytes(content)
    with pytest.raises(SystemExit) as info:
        cli.main(["apply", "--plan", str(file)])
    assert info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: writeback apply ")
    assert f"writeback apply: error: argument --plan: {problem.format(file=file)}" in err
    if content is not None:
        assert "save one with `writeback plan --out FILE`" in err


def test_a_saved_plan_passes_the_check(tmp_path: Path) -> None:
    plan = Plan(changes=(_change(ChangeKind.CREATE, 1),))
    file = tmp_path / "next.json"
    file.write_text(json.dumps(plan.to_dict()))
    assert Plan.from_dict(cli._saved_plan(str(file))) == plan


@pytest.mark.parametrize(
    ("departments", "line"),
    [
        (["Sales"], "1 of 1 user matches."),
        (["Sales", "IT"], "1 of 2 users matches."),
        (["IT"] * 2, "0 of 2 users match."),
    ],
)
def test_rules_test_counts_users(
    departments: list[str], line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from writeback.cli import rules as rules_cli

    users = [{"id": str(i), "displayName": f"U{i}", "department": d} for i, d in enumerate(departments)]
    monkeypatch.setattr(rules_cli, "_load_users", lambda args, loader: users)
    args = argparse.Namespace(rule='user.department -eq "Sales"', rules_cmd="test", user=None, limit=50)
    assert rules_cli.main(args, lambda a: object()) == 0
    assert capsys.readouterr().out.splitlines()[0] == line
