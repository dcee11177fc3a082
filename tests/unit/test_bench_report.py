"""The benchmark keeps what it measured when a run stops early (a failed apply, a dead service)."""

from __future__ import annotations

from typing import Any

from benchmarks.bench.report import markdown
from benchmarks.bench.runner import _record_failure
from benchmarks.bench.workspace import EngineFailed, EngineRun


def _child_report() -> dict[str, Any]:
    return {
        "cpu_seconds": 82.1,
        "max_rss_mb": 903.0,
        "phases": {"sync": 60.0, "plan": 55.0, "apply": 514.0},
        "ldap": {"add": 4750, "modify": 120, "search": 70, "bind": 2},
        "graph": {"requests": 1100},
        "plan_counts": {"create": 10000},
        "member_values": 571893,
    }


def test_a_failed_first_apply_keeps_its_figures_and_says_why() -> None:
    result: dict[str, Any] = {"size": "large", "tenant": {"synced_users": 100_000, "groups": 10_000}}
    checks: dict[str, bool] = {}
    failure = EngineFailed(
        "the first apply did not succeed: add of CN=G|1 failed:\nTIMEOUT",
        "first",
        EngineRun(640.0, _child_report()),
    )
    _record_failure(result, checks, failure)
    assert checks == {"run_completed": False}
    assert result["first_apply"]["failed"] is True
    assert result["first_apply"]["max_rss_mb"] == 903.0 and result["first_apply"]["wall_s"] == 640.0
    table = markdown({"large": {**result, "checks": checks}})
    assert "| **First apply**: wall time (s) | 640.0 |" in table
    assert "|   peak RSS (MB) | 903 |" in table
    # The reason fits in one cell: one line, its pipe replaced.
    assert "| Run stopped by | the first apply did not succeed: add of CN=G/1 failed: TIMEOUT |" in table
    assert "| Checks FAILED | run_completed |" in table


def test_a_failure_without_an_engine_report_records_the_reason_only() -> None:
    result: dict[str, Any] = {"size": "small"}
    checks: dict[str, bool] = {"first_apply_members_exact": True}
    _record_failure(result, checks, RuntimeError("`writeback run` exited with 1"))
    assert result["error"] == "`writeback run` exited with 1"
    assert "first_apply" not in result
    assert checks == {"first_apply_members_exact": True, "run_completed": False}


def test_the_host_check_before_the_apply_and_the_limit_sits_under_the_ratio() -> None:
    result: dict[str, Any] = {
        "ratio_engine_limit": 1.65,
        "ratio_apply_phase_limit": 1.18,
        "host_check": {
            "first_apply": {"cpu_ms": 151.26, "ldap_ms": 80.4},
            "limit": {"cpu_ms": 98.7, "ldap_ms": 61.0},
        },
    }
    table = markdown({"medium": result, "small": {}})
    lines = table.splitlines()
    ratio = next(i for i, line in enumerate(lines) if line.startswith("| **Engine / limit**"))
    assert (
        lines[ratio + 1] == "|   host check before apply / limit: CPU; LDAP (ms) | - / - | 151; 80 / 99; 61 |"
    )


def test_the_dc_cpu_of_the_engine_writes_and_the_limit_sits_under_the_host_check() -> None:
    result: dict[str, Any] = {
        "ratio_apply_phase_limit": 1.71,
        "first_apply": {"dc_cpu_write_s": 32.0, "phases_s": {"apply": 51.166}},
        "limit": {"wall_s": 29.849, "dc_cpu_s": 27.71},
        "ratio_dc_cpu_write_limit": 1.15,
    }
    lines = markdown({"medium": result}).splitlines()
    host = next(i for i, line in enumerate(lines) if line.startswith("|   host check before apply"))
    row = "|   DC CPU during the writes, s (share of a core): engine / limit; ratio |"
    assert lines[host + 1] == f"{row} 32.0 (63%) / 27.7 (93%); 1.15 |"
    assert f"{row} - / -; - |" in markdown({"medium": {}})
