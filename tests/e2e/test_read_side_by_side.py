"""The first read with users and groups side by side, and AD read meanwhile (issue 27), killed with `kill -9`
while the groups are still read: both resources are stored in one transaction with their cursors, so the
replica keeps nothing of the read, AD is untouched, and the rerun converges to what a sequential installation
sees as nothing to do."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.e2e.test_first_read import in_flight, member_reads
from tests.e2e.test_streamed_first_apply import SLOW_MEMBERS, members, slow, start, world


def replica_state(state: Path) -> tuple[dict[str, str | None], int, int]:
    """The delta links stored, and how many users and groups the replica holds (read-only: the apply may be
    writing)."""
    if not state.exists():
        return {}, 0, 0
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
    try:
        links = dict(db.execute("SELECT resource, link FROM delta_links").fetchall())
        users = db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        groups = db.execute("SELECT COUNT(*) FROM groups").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not created yet
        return {}, 0, 0
    finally:
        db.close()
    return links, int(users), int(groups)


ROUND_INDEXES = {"members_by_member", "users_by_account_sid", "users_by_account_guid"}


def indexes(state: Path) -> set[str]:
    """The replica's secondary indexes another reader of the state sees (a full round drops and builds them
    again inside its transaction: writeback.adapters.state.replica._Tx.reset)."""
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()


def test_an_apply_killed_while_the_groups_are_read_leaves_the_replica_as_before_and_the_rerun_converges(
    cloud: Any, workspace: Any, ad: Any, fresh_id: str
) -> None:
    ids, all_ids = world(cloud, fresh_id)
    ws = in_flight(workspace(all_ids), 8)
    state = ws.config.parent / "state.sqlite"
    slow(cloud, ids["slow"], page_ms=3000)  # one member a page, 3 s each: the groups' read lasts 15 s or more
    before = member_reads(cloud)
    try:
        proc = start(ws, "apply")
        deadline = time.monotonic() + 120
        # Killed once the slow group's second member page has been asked for: the users' list (one small
        # page) has long been read and stored in the open transaction, the groups are still being read.
        while member_reads(cloud) < before + 2:
            assert proc.poll() is None, "apply ended before it was killed: " + "".join(proc.communicate())
            assert time.monotonic() < deadline, "the slow group's member pages were never read"
            time.sleep(0.1)
        time.sleep(0.5)
        # Nothing of the read is visible to another reader of the state: one transaction, not committed.
        assert replica_state(state) == ({}, 0, 0)
        assert indexes(state) >= ROUND_INDEXES, "the dropped indexes are the open transaction's own"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    finally:
        slow(cloud, None)
    assert replica_state(state) == ({}, 0, 0)
    assert indexes(state) >= ROUND_INDEXES, "killed mid-read, the replica keeps its indexes"
    assert not set(all_ids) & set(members(ad)), "nothing may be written before the plan"

    rerun = ws.run("apply", "--json")
    assert rerun.code == 0, rerun.out + rerun.err
    done = rerun.json()
    assert sorted(r["cloud_id"] for r in done["results"] if r["kind"] == "create") == sorted(all_ids)
    after = members(ad)
    assert all(len(after[gid]) == 1 for gid in all_ids)  # each group once
    assert len(after[ids["slow"]][0]) == SLOW_MEMBERS
    assert indexes(state) >= ROUND_INDEXES, "built again by the rerun's full read"
    again = ws.run("apply", "--json")
    assert again.code == 0, again.out + again.err
    assert again.json()["applied"] == 0 and again.json()["plan"]["changes"] == []
    # A sequential installation (one full delta round) sees nothing to change in what was written.
    assert in_flight(workspace(all_ids), 1).run("plan").code == 0
