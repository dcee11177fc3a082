"""Hardening through the CLI, as an administrator runs it: one writer per state, exit codes, option position,
private files, secrets never echoed, and rebuilding a damaged cloud replica."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "writeback", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_writer_per_state_readers_still_work(cloud, workspace, tmp_path, fresh_id):
    gid = cloud.create_group(f"Lock {fresh_id}", [cloud.synced_users()[0]["id"]])
    health = tmp_path / "health.json"
    ws = workspace([gid], extra=f'[service]\npoll_interval = 1\nhealth_file = "{health}"\n')
    log_file = tmp_path / "run.log"
    with open(log_file, "w") as err:
        run = subprocess.Popen(
            [sys.executable, "-m", "writeback", "--config", str(ws.config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=ws.env,
        )
    try:
        wait_for("the service's first cycle", lambda: json.loads(health.read_text() or "{}").get("status") == "ok"
                 if health.exists() else False)  # fmt: skip
        started = time.monotonic()
        applied = ws.run("apply", timeout=60)
        took = time.monotonic() - started
        assert applied.code == 1, applied.out + applied.err
        assert f"is in use by process {run.pid} (writeback run)" in applied.err, applied.err
        assert took < 20, f"apply waited {took:.1f} s instead of refusing at once"
        assert "Applied" not in applied.out  # refused before planning or writing anything

        plan = ws.run("plan")
        assert plan.code == 0, plan.out + plan.err  # the service applied the group already: nothing pending
        log = ws.run("log", "--json")
        assert log.code == 0, log.err
        assert any(e["action"] == "create" and e["cloud_id"] == gid for e in log.json())
        show = ws.run("show")
        assert show.code == 0 and f"Lock {fresh_id}" in show.out, show.out + show.err
        assert run.poll() is None, "the service must keep running"
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0, log_file.read_text()
    # Once the service stopped, apply takes the lock.
    again = ws.run("apply")
    assert again.code == 0, again.out + again.err


def test_usage_errors_are_not_changes_pending_and_help_lists_exit_codes(workspace):
    ws = workspace([])
    for argv in (["plan", "--no-such-option"], ["apply", "--allow-deletes", "lots"], [], ["nonsense"]):
        p = cli("--config", str(ws.config), *argv, env=ws.env)
        assert p.returncode == 64, (argv, p.returncode, p.stderr)
        assert "usage: writeback" in p.stderr
    helped = cli("--help")
    assert helped.returncode == 0
    assert "exit codes:" in helped.stdout and "64   usage error" in helped.stdout
    assert "2    plan: changes are pending" in helped.stdout
    assert "rebuild-replica" in helped.stdout or "state" in helped.stdout


def test_global_options_after_the_subcommand(cloud, workspace, fresh_id):
    gid = cloud.create_group(f"Position {fresh_id}", [cloud.synced_users()[0]["id"]])
    ws = workspace([gid])
    after = cli("plan", "--json", "--config", str(ws.config), "-q", env=ws.env)
    assert after.returncode == 2, after.stderr
    assert after.stderr == ""  # -q after the subcommand took effect: no progress lines
    before = cli("-q", "--config", str(ws.config), "plan", "--json", env=ws.env)
    assert before.returncode == 2
    # "scope" says why each plan is deep: the first follows the first (full) Graph sync, the second does not.
    strip = lambda doc: {  # noqa: E731
        k: v for k, v in json.loads(doc).items() if k not in ("created", "digest", "scope")
    }
    assert strip(after.stdout) == strip(before.stdout)
    assert [c["cloud_id"] for c in json.loads(after.stdout)["changes"]] == [gid]
    log_after = cli("log", "--config", str(ws.config), "--json", env=ws.env)
    assert log_after.returncode == 0 and json.loads(log_after.stdout) == []


def test_files_holding_directory_data_are_private(cloud, workspace, tmp_path, fresh_id):
    gid = cloud.create_group(f"Modes {fresh_id}", [cloud.synced_users()[0]["id"]])
    data = tmp_path / "var-lib"
    state = data / "state" / "writeback.sqlite"
    health = data / "run" / "health.json"
    ws = workspace([gid], extra=f'[service]\nhealth_file = "{health}"\n')
    text = ws.config.read_text()
    old_state = f'path = "{ws.config.parent / "state.sqlite"}"'
    assert old_state in text
    ws.config.write_text(text.replace(old_state, f'path = "{state}"'))

    plan_file = data / "plans" / "next.json"
    planned = ws.run("plan", "--out", str(plan_file))
    assert planned.code == 2, planned.err
    assert ws.run("apply", "--plan", str(plan_file)).code == 0
    # The service keeps the database open, so SQLite's -wal and -shm files exist while it runs.
    run = subprocess.Popen(
        [sys.executable, "-m", "writeback", "--config", str(ws.config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ws.env,
    )
    try:
        wait_for(
            "the health file", lambda: health.exists() and json.loads(health.read_text())["status"] == "ok"
        )
        sides = [Path(f"{state}{s}") for s in ("-wal", "-shm", "-journal") if Path(f"{state}{s}").exists()]
        assert {p.name for p in sides} >= {"writeback.sqlite-wal", "writeback.sqlite-shm"}
        files = [state, plan_file, health, Path(f"{state}.lock"), *sides]
        assert {str(f): oct(mode(f)) for f in files} == {str(f): "0o600" for f in files}
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0
    folders = [state.parent, plan_file.parent, health.parent]
    assert {str(d): oct(mode(d)) for d in folders} == {str(d): "0o700" for d in folders}
    assert oct(mode(health)) == "0o600"  # rewritten at the stop, still private
    assert json.loads(health.read_text())["status"] == "stopped"


@pytest.mark.parametrize("key", ["client_secret", "bind_password"])
def test_a_secret_pasted_as_an_env_var_name_is_never_echoed(sandbox, workspace, key):
    ws = workspace([])
    secret = sandbox.client_secret if key == "client_secret" else sandbox.bind_password
    lines = ws.config.read_text().splitlines()
    lines = [f'{key}_env = "{secret}"' if line.startswith(f"{key}_file") else line for line in lines]
    # (The [source] table is validated even with scope.mode = "none".)
    ws.config.write_text("\n".join(lines))
    for argv in (("plan",), ("config", "check"), ("run", "--once"), ("apply",)):
        result = ws.run(*argv)
        assert result.code == 1, (argv, result.out, result.err)
        assert f"{key}_env: must be the NAME of an environment variable" in result.err, result.err
        assert secret not in result.out + result.err  # the workspace fixture checks every output again


def test_rebuild_replica_repairs_a_corrupt_row_and_keeps_the_log(cloud, workspace, fresh_id):
    gid = cloud.create_group(f"Rebuild {fresh_id}", [cloud.synced_users()[0]["id"]])
    ws = workspace([gid])
    assert ws.run("apply").code == 0
    state = ws.config.parent / "state.sqlite"
    db = sqlite3.connect(state)
    db.execute("UPDATE groups SET data = '{damaged' WHERE id = ?", (gid,))
    db.commit()
    db.close()

    broken = ws.run("plan", "--no-sync", "--deep")  # a quick plan reads only the groups that changed
    assert broken.code == 1
    assert f"the groups row '{gid}' of the cloud replica is damaged" in broken.err
    assert "writeback state rebuild-replica" in broken.err

    rebuilt = ws.run("state", "rebuild-replica")
    assert rebuilt.code == 0, rebuilt.out + rebuilt.err
    assert "rebuilt from Microsoft Graph" in rebuilt.out
    assert ws.run("plan", "--no-sync", "--deep").code == 0  # the replica is whole again, AD already matches
    actions = [e["action"] for e in ws.run("log", "--json").json()]
    assert "create" in actions and actions[-1] == "rebuild_replica"


def test_an_administrators_mistakes_are_named_where_they_are(cloud, workspace, fresh_id):
    """A misspelt config key, a bad --since, an unknown --action and a file that is no saved plan: each says what
    is wrong and where, in that subcommand's words, and nothing is synced, locked or written."""
    gid = cloud.create_group(f"Wording {fresh_id}", [cloud.synced_users()[0]["id"]])
    ws = workspace([gid])
    assert ws.run("apply").code == 0
    rows = ws.run("log", "--json").json()
    assert rows and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", r["time"]) for r in rows), rows
    table = ws.run("log", "--action", "create")
    assert table.code == 0 and rows[0]["time"] in table.out, table.out

    since = ws.run("log", "--since", "yesterday")
    assert since.code == 64, since.err
    assert (
        since.err.startswith("usage: writeback log ")
        and "argument --since: 'yesterday': use 90m" in since.err
    )
    action = ws.run("log", "--action", "bogus")
    assert action.code == 64 and "invalid choice: 'bogus' (choose from 'create', 'update'" in action.err
    assert "No log entries." not in action.out

    def state_files():  # the database, its WAL and the writer lock (its holder rewrites it on each take)
        return {p.name: p.stat().st_mtime_ns for p in ws.config.parent.glob("state.sqlite*")}

    before = state_files()
    assert "state.sqlite.lock" in before
    bad = ws.config.parent / "next.json"
    bad.write_text('{"format": 1, "changes": [')
    refused = ws.run("apply", "--plan", str(bad))
    assert refused.code == 64, refused.out + refused.err
    assert refused.err.startswith("usage: writeback apply ")
    assert f"argument --plan: {bad} is not a saved plan (not JSON" in refused.err
    assert refused.out == ""
    assert state_files() == before and len(ws.run("log", "--json").json()) == len(rows)

    text = ws.config.read_text()
    assert "\ntarget_ou = " in text
    ws.config.write_text(text.replace("\ntarget_ou = ", "\ntaget_ou = "))
    misspelt = ws.run("plan")
    assert misspelt.code == 1, misspelt.err
    assert f"error: {ws.config}: target.taget_ou: unknown setting `taget_ou` in [target], did you mean " in (
        misspelt.err
    )
    assert "is required" not in misspelt.err
