"""The memory harness's big-group mode (``python -m benchmarks.memory biggroup``), small: it must keep running
the real engine end to end (Graph emulator, SQLite state, the directory double) and write what a DC would
hold, so its figures for 250,000 members (docs/benchmarks.md, issue 27) mean what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.memory import FULL_SCAN_TERMS, biggroup_size, run

pytestmark = pytest.mark.emulator

# Above FULL_SCAN_TERMS, so the first apply's account search reads every user, page by page, as at 250,000.
MEMBERS = FULL_SCAN_TERMS + 100


def test_a_big_group_is_written_exactly_then_left_alone_with_every_step_traced(tmp_path: Path) -> None:
    first, reconcile = run(biggroup_size(MEMBERS), tmp_path, trace=True)
    assert first["scenario"] == "first" and first["failed"] == []
    assert first["counts"]["create"] == 1 and sum(first["counts"].values()) == 1
    assert first["member_values"] == {"members_added": MEMBERS, "members_removed": 0}
    assert first["ad_member_values"] == MEMBERS
    steps = [s["step"] for s in first["tracemalloc_steps"]]
    for step in ("snapshot", "questions", "gather", "desired_state", "compute_plan", "create_group"):
        assert step in steps, steps
    assert all(s["peak_mb"] >= s["held_after_mb"] for s in first["tracemalloc_steps"])
    assert first["peak_mb"] > 0 and set(first["phases"]) == {"sync", "plan", "apply"}
    assert reconcile["scenario"] == "reconcile" and sum(reconcile["counts"].values()) == 0
    assert reconcile["ad_member_values"] == MEMBERS
