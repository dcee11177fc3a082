"""`writeback pause` and `writeback resume` against the sandbox: while paused, `apply` and `provision` exit
non-zero naming how to resume and write nothing; `plan` still plans; after `resume` the change is written. Each
verb logs the OS user who ran it."""

from __future__ import annotations

import getpass
from typing import Any

import pytest

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def test_pause_blocks_apply_and_provision_until_resume(
    cloud: Any, workspace: Any, ad: Any, fresh_id: str
) -> None:
    users = cloud.synced_users()[:3]
    gid = cloud.create_group(f"Pause {fresh_id}", [users[0]["id"]])
    ws = workspace([gid])
    assert ws.run("apply").code == 0
    assert (
        ad.member_cns(gid) == {users[0]["onPremisesSamAccountName"].lower()} or len(ad.member_cns(gid)) == 1
    )

    paused = ws.run("pause")
    assert paused.code == 0 and "Paused: writeback keeps reading the cloud" in paused.out
    again = ws.run("pause")
    assert again.code == 0 and "Already paused by" in again.out

    cloud.add_member(gid, users[1]["id"])
    applied = ws.run("apply")
    assert applied.code == 1
    assert "writeback is paused by" in applied.err and "writeback resume" in applied.err
    provisioned = ws.run("provision", gid)
    assert provisioned.code == 1 and "writeback resume" in provisioned.err
    assert len(ad.member_cns(gid)) == 1, "nothing was written while paused"
    planned = ws.run("plan")
    assert planned.code == 2, "plan (a dry run) still works and sees the change pending"

    resumed = ws.run("resume")
    assert resumed.code == 0 and "Resumed (it was paused by" in resumed.out
    assert ws.run("resume").out.strip() == "Not paused: nothing to resume."
    assert ws.run("apply").code == 0
    assert len(ad.member_cns(gid)) == 2

    rows = ws.run("log", "--json").json()
    actors = {(r["action"], r["actor"]) for r in rows if r["action"] in ("pause", "resume")}
    assert actors == {("pause", getpass.getuser()), ("resume", getpass.getuser())}
    assert not any(r["action"] == "provision" for r in rows), "a refused provision is not logged as asked"


def test_pause_and_resume_help_tell_what_they_do(workspace: Any) -> None:
    ws = workspace([])
    out = ws.run("--help").out
    assert "pause" in out and "resume" in out
    assert "stop writing to AD while reading goes on" in " ".join(out.split())
