"""The streamed first apply end to end (issue 27): `writeback apply` with ``source.max_in_flight = 8`` and ``stream_first_apply = true`` writes
groups read in full while the rest of the first read goes on, against the sandbox DC and the emulator.

One group's member pages are slowed in the emulator (``/_emulator/profile`` ``slow_members``: one member per
page, each page late), and AD is polled while `apply` runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
from tests.e2e.test_first_read import written

SLOW_MEMBERS = 5


def in_flight(ws: Any, n: int) -> Any:
    text = ws.config.read_text()
    stream = "stream_first_apply = true\n" if n > 1 else ""
    ws.config.write_text(
        text.replace("max_retries = 3\n", f"max_retries = 3\nmax_in_flight = {n}\n{stream}", 1)
    )
    return ws


def slow(cloud: Any, group_id: str | None, page_ms: float = 1500) -> None:
    """Slow ``group_id``'s member pages (one member a page, each ``page_ms`` late); None: none slowed."""
    admin = {"Authorization": f"Bearer {cloud.info.emulator_admin_token}"}
    body = {"slow_members": {group_id: {"page_ms": page_ms, "page_size": 1}} if group_id else {}}
    r = cloud.http.post("/_emulator/profile", json=body, headers=admin)
    assert r.status_code == httpx.codes.OK, r.text


def start(ws: Any, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "writeback", "--config", str(ws.config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ws.env,
    )


def members(ad: Any) -> dict[str, list[frozenset[str]]]:
    """Anchor -> the member DNs of each AD group carrying it (more than one: a duplicate)."""
    return {gid: [g.members for g in found] for gid, found in ad.by_anchor().items()}


def world(cloud: Any, fresh_id: str) -> tuple[dict[str, str], list[str]]:
    users = cloud.synced_users()[:8]
    ids: dict[str, str] = {}
    ids["slow"] = cloud.create_group(f"ST Slow {fresh_id}", [u["id"] for u in users[:SLOW_MEMBERS]])
    ids["fast"] = cloud.create_group(f"ST Fast {fresh_id}", [u["id"] for u in users[5:8]])
    ids["parent"] = cloud.create_group(f"ST Parent {fresh_id}", [users[7]["id"], ids["fast"]])
    ids["holder"] = cloud.create_group(f"ST Holder {fresh_id}", [users[6]["id"], ids["slow"]])
    return ids, list(ids.values())


def test_groups_are_written_while_a_slow_group_is_read_never_in_part(
    cloud: Any, workspace: Any, ad: Any, ldap_conn: Any, fresh_id: str
) -> None:
    ids, all_ids = world(cloud, fresh_id)
    # The reference: the sequential first sync (one full delta round, written when complete).
    sequential = in_flight(workspace(all_ids), 1)
    applied = sequential.run("apply")
    assert applied.code == 0, applied.out + applied.err
    reference = written(ad, all_ids)
    assert len(reference[ids["slow"]]["member"]) == SLOW_MEMBERS
    full_slow = members(ad)[ids["slow"]][0]
    for gid in all_ids:
        ldap_conn.delete_s(ad.anchored(gid)["dn"])

    streamed = in_flight(workspace(all_ids), 8)
    slow(cloud, ids["slow"])
    try:
        proc = start(streamed, "apply")
        polls: list[dict[str, list[frozenset[str]]]] = []
        while proc.poll() is None:
            polls.append(members(ad))
            time.sleep(0.1)
        out, err = proc.communicate()
    finally:
        slow(cloud, None)
    assert proc.returncode == 0, out + err
    polls.append(members(ad))

    # (a) The fast groups were in AD, parent after child, while the slow group was still being read.
    early = [p for p in polls if ids["fast"] in p and ids["slow"] not in p]
    assert early, "no poll saw a group written before the slow group's read ended"
    assert any(ids["parent"] in p for p in early)
    for p in polls:
        if ids["parent"] in p:
            assert ids["fast"] in p
        # (b) The slow group is never in AD with part of its members, nor its parent without it.
        if ids["slow"] in p:
            assert p[ids["slow"]] == [full_slow]
        if ids["holder"] in p:
            assert ids["slow"] in p and len(p[ids["holder"]][0]) == 2
    # (c) AD is what the sequential first sync wrote, each group once, and nothing is left to do.
    assert written(ad, all_ids) == reference
    assert all(len(members(ad)[gid]) == 1 for gid in all_ids)
    again = streamed.run("apply", "--json")
    assert again.code == 0, again.out + again.err
    assert again.json()["applied"] == 0 and again.json()["plan"]["changes"] == []
    assert sequential.run("plan").code == 0


def test_a_streamed_apply_killed_mid_read_is_finished_by_the_rerun(
    cloud: Any, workspace: Any, ad: Any, fresh_id: str
) -> None:
    ids, all_ids = world(cloud, fresh_id)
    ws = in_flight(workspace(all_ids), 8)
    slow(cloud, ids["slow"], page_ms=3000)
    try:
        proc = start(ws, "apply")
        deadline = time.monotonic() + 120
        while ids["parent"] not in members(ad):
            assert proc.poll() is None, "apply ended before it was killed: " + "".join(proc.communicate())
            assert time.monotonic() < deadline, "no group was written while the slow group was read"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    finally:
        slow(cloud, None)
    seen = members(ad)
    assert ids["fast"] in seen and ids["slow"] not in seen and ids["holder"] not in seen

    rerun = ws.run("apply", "--json")
    assert rerun.code == 0, rerun.out + rerun.err
    done = rerun.json()
    # Exactly what was missing: the slow group and the group that nests it, each created once.
    assert sorted(r["cloud_id"] for r in done["results"] if r["kind"] == "create") == sorted(
        [ids["slow"], ids["holder"]]
    )
    after = members(ad)
    assert all(len(after[gid]) == 1 for gid in all_ids)
    assert len(after[ids["slow"]][0]) == SLOW_MEMBERS and len(after[ids["holder"]][0]) == 2
    assert len(after[ids["parent"]][0]) == 2 and len(after[ids["fast"]][0]) == 3
    again = ws.run("apply", "--json")
    assert again.code == 0 and again.json()["applied"] == 0, again.out + again.err
