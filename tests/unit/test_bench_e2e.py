"""Issue 27 in the benchmark: the end-to-end limit's ratio and goals, the groups it writes, the report rows,
several runs, and the command line's new options."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from benchmarks.bench.__main__ import _concurrencies, _milliseconds
from benchmarks.bench.e2e_limit import GraphRead, build_groups
from benchmarks.bench.e2e_report import (
    concurrency_cell,
    e2e_goal,
    e2e_ratio,
    e2e_target,
    read_concurrency_problems,
)
from benchmarks.bench.ldaptools import GroupEntry
from benchmarks.bench.report import markdown
from benchmarks.bench.runner import _targets
from benchmarks.bench.runs import combine
from benchmarks.bench.sizes import SIZES


def _result(latency_ms: float, engine_s: float, e2e_s: float, size: str = "medium") -> dict[str, Any]:
    result: dict[str, Any] = {
        "size": size,
        "date": "2026-12-07T05:00:00+00:00",
        "graph_profile": {
            "request_ms": latency_ms,
            "per_object_ms": 0.0,
            "throttle": "tenant",
            "budget_per_10s": 8000,
        },
        "first_apply": {"wall_s": engine_s},
        "e2e_limit": {
            "wall_s": e2e_s,
            "graph_read_s": e2e_s / 2,
            "ad_read_s": 1.0,
            "build_s": 0.1,
            "ad_write_s": e2e_s / 2 - 1.1,
            "graph_requests": 208,
        },
        "ratio_engine_e2e_limit": e2e_ratio(engine_s, e2e_s),
        "graph_read_concurrency": [
            {"concurrency": 1, "seconds": 300.0, "throttled": 0, "member_refs": 10},
            {"concurrency": 16, "seconds": 20.5, "throttled": 3, "member_refs": 10},
        ],
        "checks": {"e2e_read_complete": True},
        "problems": [],
    }
    result["targets"] = _targets(SIZES[size], result)
    return result


def test_goals_are_the_issues_by_latency_profile() -> None:
    assert e2e_goal(150) == 0.7 and e2e_goal(0.0) == 1.0
    assert e2e_goal(75) is None and e2e_goal(None) is None


def test_ratio_is_engine_over_limit() -> None:
    assert e2e_ratio(70.0, 100.0) == 0.7
    assert e2e_ratio(None, 100.0) is None and e2e_ratio(5.0, 0.0) is None


def test_target_met_only_under_the_goal_of_its_profile_at_medium_and_large() -> None:
    assert _result(150, 69.0, 100.0)["targets"]["engine_e2e_limit_ratio"] == {
        "goal": "<= 0.7 at 150 ms (medium, large)",
        "value": 0.69,
        "met": True,
    }
    assert _result(150, 80.0, 100.0)["targets"]["engine_e2e_limit_ratio"]["met"] is False
    assert _result(0, 80.0, 100.0)["targets"]["engine_e2e_limit_ratio"]["met"] is True  # <= 1.0 at 0 ms
    assert _result(0, 101.0, 100.0)["targets"]["engine_e2e_limit_ratio"]["met"] is False
    assert _result(0, 80.0, 100.0, "small")["targets"]["engine_e2e_limit_ratio"]["met"] is None
    assert _result(20, 80.0, 100.0)["targets"]["engine_e2e_limit_ratio"]["met"] is None  # no goal at 20 ms
    assert e2e_target("large", {"graph_profile": {"request_ms": 150}})["met"] is None  # not measured


def test_concurrent_reads_must_read_every_membership() -> None:
    reads = [{"concurrency": 1, "member_refs": 10}, {"concurrency": 8, "member_refs": 9}]
    assert read_concurrency_problems(reads, 10) == ["8 in flight read 9 member references, the tenant has 10"]
    assert read_concurrency_problems(reads[:1], 10) == []


def test_report_shows_profile_e2e_limit_ratio_concurrency_and_goal() -> None:
    table = markdown({"medium": _result(150, 69.0, 100.0)})
    assert "| **Graph profile** (emulator) | 150 ms + 0.000 ms/object; throttling 8,000 RU / 10 s |" in table
    assert "| **Engine / end-to-end limit** (first apply) | 0.69 |" in table
    assert "100.0 (50.00 / 1.00 / 48.90); 208 requests" in table
    assert "1: 300.0; 16: 20.5 (3 throttled)" in table
    assert "engine / end-to-end limit (first apply) <= 0.7 at 150 ms (medium, large) | 0.69: **met**" in table
    assert concurrency_cell({}) == "-"


def test_several_runs_met_only_when_every_run_met() -> None:
    combined = combine([_result(150, 69.0, 100.0), _result(150, 75.0, 100.0), _result(150, 60.0, 100.0)])
    target = combined["targets"]["engine_e2e_limit_ratio"]
    assert target["value"] == [0.69, 0.75, 0.6] and target["met"] is False
    summary = combined["summary"]["engine_e2e_limit_ratio"]
    assert (summary["min"], summary["median"], summary["max"]) == (0.6, 0.69, 0.75)
    assert combined["summary"]["e2e_limit_s"]["values"] == [100.0, 100.0, 100.0]


def _group(gid: str, dn: str) -> GroupEntry:
    return GroupEntry(dn, {"msDS-ExternalDirectoryObjectId": [f"Group_{gid}".encode()]}, [])


def test_groups_written_by_the_limit_come_from_the_read() -> None:
    engine = [_group("g1", "CN=G1,OU=E"), _group("g2", "CN=G2,OU=E")]
    read = GraphRead(
        seconds=1.0,
        requests=3,
        throttled=0,
        user_sids={"u1": "S-1-5-21-1", "u2": "S-1-5-21-2", "u3": "S-1-5-21-3"},
        members={"g1": {"u1", "u2", "g2", "cloud-only"}, "g2": {"u3"}, "out-of-scope": {"u1"}},
    )
    sids = {"S-1-5-21-1": "CN=U1,OU=P", "S-1-5-21-2": "CN=U2,OU=P"}  # u3 has no AD twin
    groups = {g.dn: g for g in build_groups(read, sids, engine)}
    assert sorted(groups) == ["CN=G1,OU=E", "CN=G2,OU=E"]
    assert sorted(groups["CN=G1,OU=E"].members) == ["CN=G2,OU=E", "CN=U1,OU=P", "CN=U2,OU=P"]
    assert groups["CN=G2,OU=E"].members == []
    assert groups["CN=G1,OU=E"].attributes == engine[0].attributes


def test_command_line_options() -> None:
    assert _concurrencies("1,4,8,16") == (1, 4, 8, 16)
    assert _concurrencies("0") == ()
    assert _milliseconds("150") == 150.0
    for bad in ("x", "0,4", "300", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _concurrencies(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        _milliseconds("-1")
