"""CLI habits: global options before or after the subcommand, usage errors exit 64 (never 2), --help lists
the exit codes."""

from __future__ import annotations

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
