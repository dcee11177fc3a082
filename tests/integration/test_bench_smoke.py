"""The small benchmark (scripts/bench small) as a CI smoke test: correctness only, never timing.

It runs the same code as ``scripts/bench`` against the session's sandbox DC, in its own OU (base and target
of its engine, deleted afterwards) with its own Graph emulator, so it cannot disturb other tests. The run
is shortened (2 latency samples, 1 and 100 changes, 2,000 users for rule evaluation) to stay well under 90 s.
It runs with a Graph profile (20 ms per request, throttling by the tenant's budget) and the concurrent read at
1 and 4 in flight, so the options of issue 27 are covered too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.bench import SIZES, Options, run_bench
from benchmarks.bench.report import write_all

from writeback.testbed.sandbox import SandboxInfo

pytestmark = [pytest.mark.samba, pytest.mark.emulator]
LATENCY_MS = 20.0


@pytest.fixture(scope="module")
def small_result(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    options = Options(
        latency_samples=2,
        rule_users=2_000,
        changes=(1, 100),
        graph_latency_ms=LATENCY_MS,
        read_concurrency=(1, 4),
    )
    return run_bench(SIZES["small"], sandbox, tmp_path_factory.mktemp("bench"), options)


def test_every_check_passes(small_result: dict[str, object]) -> None:
    assert small_result["problems"] == []
    assert small_result["checks"] == {
        "first_apply_members_exact": True,
        "limit_members_exact": True,
        "second_apply_zero_writes": True,
        "deep_apply_zero_writes": True,
        "one_change_one_modify": True,
        "after_changes_members_exact": True,
        "read_concurrency_complete": True,
        "e2e_read_complete": True,
    }


def test_first_apply_writes_every_expected_member_once(small_result: dict[str, object]) -> None:
    tenant, first, limit = small_result["tenant"], small_result["first_apply"], small_result["limit"]
    assert isinstance(tenant, dict) and isinstance(first, dict) and isinstance(limit, dict)
    assert tenant["synced_users"] == 300 and tenant["groups"] == 40
    assert tenant["memberships"] == 3_000
    # Cloud-only members are skipped, so AD gets fewer values than the cloud has memberships.
    assert 0 < tenant["ad_member_values"] < tenant["memberships"]
    assert first["member_values"]["members_added"] == tenant["ad_member_values"]
    assert first["ldap"]["add"] == 40
    assert limit["ldap"] == {"add": 40, "modify": 0}
    assert limit["values"] == tenant["ad_member_values"]


def test_no_change_means_no_write_and_one_change_one_modify(small_result: dict[str, object]) -> None:
    second = small_result["second_apply"]
    assert isinstance(second, dict)
    assert second["writes"] == 0
    assert second["ldap"]["values_written"] == 0
    changes = small_result["changes"]
    assert isinstance(changes, list)
    one, hundred = changes
    assert one["ldap"]["modify"] == 1 and one["writes"] == 1 and one["ldap"]["values_written"] == 1
    # 100 changes over 10 groups: one modify for the adds and one for the removes of each group.
    assert hundred["writes"] == hundred["minimal_modifies"] == 20
    assert hundred["ldap"]["values_written"] == 100


def test_service_carries_a_cloud_change_to_ad(small_result: dict[str, object]) -> None:
    latency = small_result["latency"]
    assert isinstance(latency, dict)
    assert len(latency["samples"]) == 2
    assert all(0 < s < 60 for s in latency["samples"])


def test_report_files_are_written(small_result: dict[str, object], tmp_path: Path) -> None:
    table = write_all(tmp_path, small_result)
    assert "| | small |" in table and "Checks FAILED | none" in table
    for name in ("bench.md", "bench.json", "bench-small.json", "bench.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_profile_end_to_end_limit_and_concurrent_read(small_result: dict[str, object]) -> None:
    profile, e2e = small_result["graph_profile"], small_result["e2e_limit"]
    reads, limit = small_result["graph_read_concurrency"], small_result["limit"]
    assert isinstance(profile, dict) and isinstance(e2e, dict) and isinstance(reads, list)
    assert isinstance(limit, dict)
    assert profile["request_ms"] == LATENCY_MS and profile["budget_per_10s"] == 5_000  # 310 users: M
    # The sequential read waits the profile's delay once per request, at least.
    assert e2e["graph_read_s"] >= e2e["graph_requests"] * LATENCY_MS / 1000
    assert e2e["ldap"] == limit["ldap"] == {"add": 40, "modify": 0}
    parts = e2e["graph_read_s"] + e2e["ad_read_s"] + e2e["build_s"] + e2e["ad_write_s"]
    assert e2e["wall_s"] == pytest.approx(parts, abs=0.01)
    assert e2e["ad_write_s"] >= limit["wall_s"]
    first = small_result["first_apply"]
    assert isinstance(first, dict)
    # From the unrounded times; the JSON's wall times are rounded, so the quotient of those may differ by 0.01.
    assert small_result["ratio_engine_e2e_limit"] == pytest.approx(first["wall_s"] / e2e["wall_s"], abs=0.015)
    one, four = reads
    assert (one["concurrency"], four["concurrency"]) == (1, 4)
    assert one["groups"] == four["groups"] == 40 and one["requests"] >= 41
    assert one["seconds"] >= one["requests"] * LATENCY_MS / 1000
    assert four["seconds"] < one["seconds"]  # requests in flight overlap
    targets = small_result["targets"]
    assert isinstance(targets, dict)
    assert targets["engine_e2e_limit_ratio"]["met"] is None  # no goal at small, nor at 20 ms
