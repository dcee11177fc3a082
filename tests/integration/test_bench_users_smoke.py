"""``scripts/bench users small`` as a CI smoke test: correctness only, never timing.

The same code as ``scripts/bench users`` against the session's sandbox DC, in its own OU (deleted afterwards)
with its own Graph emulator: 50 cloud-only members in 5 groups get AD accounts from the engine, then the same
accounts and groups are written by the minimal python-ldap script. The session's sandbox is never reset: the
engine's OUs are deleted before the limit writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from benchmarks.bench.report import write_all
from benchmarks.bench.users import run_users
from benchmarks.bench.users_tenant import USERS_SIZES

from writeback.testbed.sandbox import SandboxInfo

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


@pytest.fixture(scope="module")
def users_result(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_users(USERS_SIZES["small"], sandbox, tmp_path_factory.mktemp("bench-users"))


def test_every_check_passes(users_result: dict[str, Any]) -> None:
    assert users_result["problems"] == []
    assert users_result["checks"] == {
        "engine_accounts_exact": True,
        "engine_groups_exact": True,
        "second_apply_zero_writes": True,
        "limit_accounts_exact": True,
        "limit_groups_exact": True,
    }


def test_engine_and_limit_send_the_same_operations(users_result: dict[str, Any]) -> None:
    tenant, first, limit = users_result["tenant"], users_result["first_apply"], users_result["limit"]
    assert tenant == {"cloud_only_members": 50, "groups": 5, "memberships": 60, "biggest_group": 20}
    # One add per account (with its password) and one per group carrying its members, on both sides.
    assert first["ldap"]["add"] == 55 and first["ldap"]["modify"] == 0
    assert limit["ldap"] == {"add": 55, "modify": 0}
    assert (limit["accounts"], limit["groups"], limit["values"]) == (50, 5, 60)
    assert first["plan"]["create"] == 55
    assert users_result["ratio_users_engine_limit"] > 0 and users_result["ratio_users_apply_phase_limit"] > 0


def test_the_report_has_the_users_section(users_result: dict[str, Any], tmp_path: Path) -> None:
    table = write_all(tmp_path, users_result)
    assert "### Users: accounts for cloud-only members (small," in table
    assert "| Checks FAILED | none |" in table
    assert (tmp_path / "bench-users-small.json").stat().st_size > 0
