"""CLI habits: global options before or after the subcommand, usage errors exit 64 (never 2), --help lists
the exit codes."""

from __future__ import annotations

import argparse

import pytest

from writeback.cli.main import EXIT_CHANGES, EXIT_USAGE, build_parser, main


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "w.toml", "-v", "-q", "plan", "--json"],
        ["plan", "--config", "w.toml", "-v", "-q", "--json"],
        ["plan", "--json", "-c", "w.toml", "--verbose-log", "--quiet"],
        ["-c", "w.toml", "plan", "-v", "--json", "-q"],
    ],
)
def test_global_options_work_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.config, args.verbose_log, args.quiet, args.json) == (
        "plan",
        "w.toml",
        True,
        True,
        True,
    )


def test_global_options_default_when_not_given_anywhere() -> None:
    args = build_parser().parse_args(["log"])
    assert (args.config, args.verbose_log, args.quiet) == (None, False, False)


@pytest.mark.parametrize(
    "argv",
    [
        ["config", "check", "--config", "x.toml"],
        ["rules", "test", "Department -eq 'x'", "--config", "x.toml"],
        ["state", "rebuild-replica", "--config", "x.toml"],
        ["apply", "--plan", "p.json", "--config", "x.toml"],
    ],
)
def test_nested_subcommands_take_global_options_too(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).config == "x.toml"


@pytest.mark.parametrize(
    "argv",
    [[], ["plan", "--no-such-option"], ["nonsense"], ["log", "--limit", "many"], ["state"], ["--config"]],
)
def test_usage_errors_exit_64_never_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE == 64
    assert info.value.code != EXIT_CHANGES
    err = capsys.readouterr().err
    assert err.startswith("usage: writeback") and "error:" in err


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--help"], ["state", "rebuild-replica", "--help"]])
def test_help_lists_the_exit_codes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for line in ("0    success", "1    error", "2    plan: changes are pending", "64   usage error"):
        assert line in out


def test_help_documents_rebuild_replica(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["state", "--help"])
    out = capsys.readouterr().out
    assert "rebuild-replica" in out and "keeps the provisioning log" in out


def _parsers(
    parser: argparse.ArgumentParser, path: str = "writeback"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, top-level and each (nested) subcommand's, with its command path."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}")
    return found


def test_every_option_positional_and_subcommand_has_help_text() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["log", "--bogus"], "usage: writeback log "),
        (["plan", "--no-such-option"], "usage: writeback plan "),
        (["config", "check", "--bogus"], "usage: writeback config check "),
        (["state", "rebuild-replica", "extra"], "usage: writeback state rebuild-replica "),
        (["log", "--limit", "many"], "usage: writeback log "),
        (["--bogus", "plan"], "usage: writeback [-h]"),
    ],
)
def test_a_usage_error_prints_that_subcommands_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert err.count("usage:") == 1


INTERNAL = ("_cmd", "subcommand_parser", "func")


@pytest.mark.parametrize(
    ("argv", "required"),
    [
        (["config"], "{check}"),
        (["state"], "{rebuild-replica,migrate}"),
        (["rules"], "{check,test}"),
        (["sandbox"], "{up,reset,down,status}"),
        (["emulator"], "{serve}"),
        ([], "COMMAND"),
    ],
)
def test_a_missing_subcommand_is_named_by_its_choices(
    argv: list[str], required: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"error: the following arguments are required: {required}" in err
    assert not [word for word in INTERNAL if word in err], err


def test_no_help_or_usage_shows_an_internal_name() -> None:
    shown = {path: parser.format_help() + parser.format_usage() for path, parser in _parsers(build_parser())}
    assert len(shown) > 20
    leaks = {path: [w for w in INTERNAL if w in text] for path, text in shown.items()}
    assert {path: words for path, words in leaks.items() if words} == {}


@pytest.mark.parametrize(("option", "value"), [("--action", "bogus"), ("--result", "failed")])
def test_log_filters_take_only_known_values(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from writeback.app.logquery import LOG_ACTIONS, LOG_RESULTS

    with pytest.raises(SystemExit) as info:
        main(["log", option, value])
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: writeback log ")
    known = LOG_ACTIONS if option == "--action" else LOG_RESULTS
    assert f"argument {option}: invalid choice: {value!r} (choose from " in err
    assert all(repr(k) in err for k in known)


def test_log_filters_accept_every_known_value() -> None:
    from writeback.app.logquery import LOG_ACTIONS, LOG_RESULTS

    for action in LOG_ACTIONS:
        assert build_parser().parse_args(["log", "--action", action]).action == action
    for result in LOG_RESULTS:
        assert build_parser().parse_args(["log", "--result", result]).result == result
