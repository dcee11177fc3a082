"""`writeback provision GROUP` through the CLI against the sandbox: one pass of the engine for one group.

It decides scope as the engine does (a group synced from AD is never written, whatever the scope filter says),
reports the group's own member count, ends with one line saying how it went, and its log entries (the
operator's request, then the changes) share the run id it prints.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any


def test_provision_writes_one_group_reports_its_members_and_links_its_log(cloud, workspace, ad, fresh_id):
    users = cloud.synced_users()[:3]
    gid = cloud.create_group(f"Prov {fresh_id}", [u["id"] for u in users])
    other = cloud.create_group(f"Prov other {fresh_id}", [users[0]["id"]])
    ws = workspace([gid, other])

    done = ws.run("provision", f"Prov {fresh_id}")
    assert done.code == 0, done.out + done.err
    assert f"found Prov {fresh_id} ({gid}) with 3 members" in done.out
    assert re.search(r"^scoping\s+success\s+in scope$", done.out, re.M), done.out
    last = done.out.strip().splitlines()[-1]
    assert last.startswith("succeeded") and "writeback log --run " in last, last
    run_id = last.rsplit(" ", 1)[-1].rstrip(")")
    assert {m.lower() for m in ad.anchored(gid)["member"]} == {
        u["onPremisesDistinguishedName"].lower() for u in users
    }
    assert ad.anchored(other) is None  # only the group asked for

    rows = ws.run("log", "--run", run_id, "--json").json()
    by_action = {r["action"]: r for r in rows}
    assert by_action["provision"]["actor"] and by_action["provision"]["result"] == "info"
    assert by_action["create"]["result"] == "success" and by_action["create"]["cloud_id"] == gid
    for row in rows:  # ISO 8601 times
        assert dt.datetime.fromisoformat(row["time"]).tzinfo is not None

    again = ws.run("provision", gid, "--json")
    assert again.code == 0, again.err
    doc: dict[str, Any] = again.json()
    assert doc["result"] == "success" and doc["summary"].startswith("succeeded: AD already matches")
    steps = {s["type"]: s for s in doc["steps"]}
    assert steps["scoping"]["details"] == {"in_scope": True}
    assert [s["details"].get("members") for s in doc["steps"] if s["type"] == "import"][-1] == 3
    assert all(dt.datetime.fromisoformat(s["time"]).tzinfo is not None for s in doc["steps"])


def test_provision_skips_a_group_out_of_scope_with_the_engines_reason(cloud, workspace, ad, fresh_id):
    synced = cloud.group_by_name("GG-Legacy-Fileshare")  # synced from AD: AD is its source of authority
    outside = cloud.create_group(f"Outside {fresh_id}", [cloud.synced_users()[0]["id"]])
    ws = workspace([synced["id"]])  # selected by the scope filter, and still never written

    done = ws.run("provision", synced["id"])
    assert done.code == 0, done.out + done.err
    last = done.out.strip().splitlines()[-1]
    assert last.startswith("skipped: out of scope (") and "synced from" in last.lower(), done.out
    assert "every step succeeded" not in done.out and "export" not in done.out

    out = ws.run("provision", outside, "--json")
    assert out.code == 0, out.err
    doc = out.json()
    assert doc["result"] == "skipped" and doc["summary"].startswith("skipped: out of scope")
    assert ad.anchored(outside) is None and ad.anchored(synced["id"]) is None

    missing = ws.run("provision", f"No such group {fresh_id}")
    assert missing.code == 1 and "no single cloud group" in missing.out
