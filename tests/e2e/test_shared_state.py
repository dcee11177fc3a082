"""The service, the CLI and the console on one SQLite state at once, with `kill -9` in between (habit 14).

`writeback run` serves the console and writes the changes an administrator keeps making in the cloud, while
an operator runs dozens of CLI commands (`log`, `show`, `plan`, `allow`, `provision`) and a script reads
every console page and API. SQLite's locks are POSIX advisory locks, which belong to the process: a second
descriptor of the database file opened and closed anywhere in the service's process drops them all, and the
next CLI process to close the state then unlinks the WAL under the running service
(https://www.sqlite.org/howtocorrupt.html section 2.2). So the test checks, all along, that the service
holds no unlinked state file (``/proc/PID/fd``), that every console request succeeds, and, after a `kill -9`,
that every provisioning-log row written before it is still there, for the CLI and for the restarted console.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.testbed import service as support
from tests.testbed.ad import AdView
from tests.testbed.service import (
    Cloud,
    RunningService,
    cli_argv,
    cli_env,
    console_settings,
    converged,
    sandbox_tenant,
    service_config,
    synced_user_ids,
    wait_for,
)

from writeback.console.auth import new_token

pytestmark = [pytest.mark.samba]
service_factory = support.service_factory  # shared fixtures
cloud = support.private_cloud_fixture

# Every console page and API GET an operator uses (the pages render through the same reads as the API).
PAGES = ("/", "/log", "/groups", "/users", "/plan", "/provision", "/config")
APIS = ("/api/status", "/api/log", "/api/groups", "/api/plan", "/api/config")
STATE_FILES = ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm")


def unlinked_state_files(pid: int, home: Path) -> list[str]:
    """The state files process ``pid`` still has open although they were unlinked (``/proc/PID/fd``)."""
    wanted = {f"{home / name} (deleted)" for name in STATE_FILES}
    found = []
    fds = Path(f"/proc/{pid}/fd")
    if not fds.exists():  # the process ended: the console requests say so
        return found
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target in wanted:
            found.append(target)
    return found


class Operator:
    """Reads the console with an operator's token and runs the CLI as an operator does, keeping every
    failure to report at the end (a background thread must not fail the test from inside itself)."""

    def __init__(self, url: str, token: str, config: Path) -> None:
        self.url, self.token, self.config = url, token, config
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.failures: list[str] = []
        self.requests = 0
        self.commands = 0
        self._lock = threading.Lock()

    def get(self, path: str) -> httpx.Response | None:
        try:
            r = self.http.get(path)
        except httpx.TransportError as exc:  # the service died, or dropped the connection
            r, failure = None, f"GET {path}: {exc!r}"
        else:
            failure = f"GET {path}: {r.status_code} {r.text[:300]}" if r.status_code != 200 else None
        with self._lock:
            self.requests += 1
            if failure:
                self.failures.append(failure)
        return r

    def every_page(self) -> None:
        for path in (*PAGES, *APIS):
            self.get(path)

    def cli(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        env = {**cli_env(), "WRITEBACK_CONSOLE_TOKEN": self.token}  # `provision` asks the running service
        done = subprocess.run(
            cli_argv(self.config, *args), capture_output=True, text=True, env=env, timeout=120
        )
        with self._lock:
            self.commands += 1
            if done.returncode not in ok:
                self.failures.append(
                    f"writeback {' '.join(args)}: exit {done.returncode}: {done.stderr[-500:]}"
                )
        return done

    def log_rows(self) -> dict[int, tuple[str, str]]:
        """The provisioning log by `writeback log --json`: id -> (action, result)."""
        done = self.cli("log", "--json", "--limit", "1000000")
        return {int(e["id"]): (e["action"], e["result"]) for e in json.loads(done.stdout)}

    def console_log_rows(self) -> dict[int, tuple[str, str]]:
        """The provisioning log by the console's /api/log: id -> (action, result)."""
        r = self.get("/api/log?limit=10000")
        assert r is not None and r.status_code == 200, self.failures[-1:]
        rows = r.json()["value"]  # Graph's collection form; 10,000 is more than this test writes
        return {int(e["id"]): (e["action"], e["result"]) for e in rows}

    def ready(self, svc: RunningService) -> bool:
        assert svc.proc.poll() is None, f"writeback run ended: {svc.log_file.read_text()[-3000:]}"
        try:
            return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False


@contextmanager
def in_background(step: Any, interval: float) -> Iterator[list[BaseException]]:
    """Run ``step()`` every ``interval`` seconds in a thread until the block ends; its exceptions are collected."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                step()
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
            stop.wait(interval)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(timeout=120)


def final(rows: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """The rows whose result will not change: a ``pending`` row is finished, or removed when its change was
    never attempted, by the run that wrote it (and becomes ``interrupted`` after a kill)."""
    return {i: r for i, r in rows.items() if r[1] != "pending"}


def test_service_cli_and_console_share_one_sqlite_state_through_kill_9(
    sandbox: Any, cloud: Cloud, test_ou: str, ldap_conn: Any, tmp_path: Path, service_factory: Any
) -> None:
    users = synced_user_ids(sandbox_tenant(sandbox))
    prefix = f"Shared-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix} {i}" for i in range(3)]
    live = [cloud.create_group(name, users[2 * i : 2 * i + 2]) for i, name in enumerate(names)]
    home = tmp_path / "home"
    token = new_token()
    console, url = console_settings(tmp_path / "console", token, "operator")
    config = service_config(sandbox, cloud, test_ou, home, prefix, extra=console)
    op = Operator(url, token, config)
    ad = AdView(ldap_conn, test_ou)

    svc: RunningService = service_factory(config)
    wait_for("the console", lambda: op.ready(svc), timeout=60)
    wait_for("the first reconcile", lambda: converged(ad, cloud, live), timeout=30)

    unlinked: list[str] = []
    turn = iter(range(10_000))

    def change_the_cloud() -> None:
        """One change for the service to write: a member added to or removed from one of the groups."""
        i = next(turn)
        gid, user = live[i % len(live)], users[10 + i % 6]
        if user in cloud.members(gid):
            cloud.remove_member(gid, user)
        else:
            cloud.add_member(gid, user)

    def read_the_console() -> None:
        op.every_page()
        unlinked.extend(unlinked_state_files(svc.proc.pid, home))

    # Two dozen commands, interleaved, two at a time (about 30 s on two busy cores).
    kinds = [("log", "--limit", "1"), ("show",), ("allow", "--updates", "1"), ("plan",)]
    commands = [*kinds * 5, *[("provision", name) for name in names], ("log", "--limit", "1")]
    with (
        in_background(change_the_cloud, 0.5) as cloud_errors,
        in_background(read_the_console, 0.2) as reads,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        # plan: 2 when changes are pending (the cloud keeps changing), 3 when some are held.
        runs = [pool.submit(op.cli, *a, ok=(0, 2, 3) if a[0] == "plan" else (0,)) for a in commands]
        for run in runs:
            run.result()  # a command that hung or could not start fails here
    assert not unlinked, f"the service writes into unlinked state files: {sorted(set(unlinked))}"
    assert not op.failures, f"{len(op.failures)} failures, the first ones:\n" + "\n".join(op.failures[:6])
    assert not cloud_errors and not reads, f"{cloud_errors[:3]} {reads[:3]}"
    assert op.commands == len(commands) and op.requests >= 2 * (len(PAGES) + len(APIS))

    # Nothing the load did swallowed a change: a `writeback plan` or a provision syncs Graph into the shared
    # replica itself and consumes the delta the service's own poll would have seen, yet every change made
    # during the load is in AD within a few polls (the reconcile is hourly here: the incremental passes plan
    # every group marked pending since the last pass, whoever synced).
    wait_for("every change made during the load in AD", lambda: converged(ad, cloud, live), timeout=30)
    # And the service still writes where everyone reads: a change made now reaches AD.
    last = users[16]
    cloud.add_member(live[0], last)
    dn = cloud.user_dns()[last]
    wait_for("a change after the load in AD", lambda: dn in ad.by_anchor()[live[0]][0].members, timeout=30)
    assert not unlinked_state_files(svc.proc.pid, home)

    # Every row written before a kill -9 is there afterwards: for the CLI, and for the restarted console.
    before = final(op.log_rows()) | final(op.console_log_rows())
    assert len(before) >= 3, f"too few log rows to tell anything: {before}"
    assert svc.stop(signal.SIGKILL) == -signal.SIGKILL
    after_cli = op.log_rows()
    assert {i: after_cli.get(i) for i in before} == before, "rows lost to the kill (writeback log)"
    svc = service_factory(config)
    wait_for("the console after the restart", lambda: op.ready(svc), timeout=60)
    after_console = op.console_log_rows()
    assert {i: after_console.get(i) for i in before} == before, "rows lost to the kill (the console)"
    op.every_page()
    assert not op.failures, "\n".join(op.failures[:6])
    assert not unlinked_state_files(svc.proc.pid, home)


def test_a_change_the_plan_page_reads_first_reaches_ad_within_10_s(
    sandbox: Any,
    cloud: Cloud,
    test_ou: str,
    ldap_conn: Any,
    tmp_path: Path,
    service_factory: Any,
) -> None:
    """Issue 23: the console's Plan page syncs the service's replica, taking the Graph change its next poll
    would have seen. A viewer opening it must not delay the change to the hourly reconcile."""
    users = synced_user_ids(sandbox_tenant(sandbox))
    prefix = f"PlanPage-{uuid.uuid4().hex[:6]}"
    gid = cloud.create_group(f"{prefix} G", users[:3])
    token = new_token()
    console, url = console_settings(tmp_path / "console", token, "viewer")
    config = service_config(sandbox, cloud, test_ou, tmp_path / "home", prefix, extra=console)
    op = Operator(url, token, config)
    ad = AdView(ldap_conn, test_ou)
    svc: RunningService = service_factory(config)
    wait_for("the console", lambda: op.ready(svc), timeout=60)
    wait_for("the first reconcile", lambda: converged(ad, cloud, [gid]), timeout=30)

    for turn in range(3):
        cloud.remove_member(gid, cloud.members(gid)[0])
        started = time.monotonic()
        plan = op.get("/api/plan")  # at once: the page's sync takes the change from Graph first (usually)
        assert plan is not None and plan.status_code == 200, op.failures
        wait_for("the change in AD", lambda: converged(ad, cloud, [gid]), timeout=10)
        print(f"\na change read first by the Plan page reached AD in {time.monotonic() - started:.1f} s")
        cloud.add_member(gid, users[5 + turn])
        wait_for("the next change in AD", lambda: converged(ad, cloud, [gid]), timeout=10)
    assert not op.failures, op.failures
