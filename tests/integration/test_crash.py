"""Crash safety: a real `writeback apply` of 100+ groups killed with SIGKILL at many points, then run again.

Each case gets a fresh OU (with an unmanaged canary group in it) and a fresh state file, runs the CLI as a
user would, kills it at one point, checks what a crash may leave behind (nothing duplicated, nothing extra,
the canary untouched), then runs `apply` again and asserts the exact AD state: every in-scope cloud group
exactly once with exactly its members.

Kill points: during the Graph sync; after the k-th "[k/N] ..." progress line for k spread over the plan
(creates, then the member adds of nested groups); and, through a tiny in-process trigger, at exact LDAP
writes: right after an add (before the provisioning log records it), and between the chunks of a create
(``target.max_values_per_modify = 3``, so a 7-member group is one add and two modifies).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.testbed.ad import AdView
from tests.testbed.config import GraphApp, write_config
from tests.testbed.fixtures import connect, delete_subtree
from tests.testbed.service import (
    Cloud,
    add_canary,
    cli_argv,
    cli_env,
    converged,
    expected_members,
    group_body,
    private_cloud,
    run_cli,
    sandbox_tenant,
    synced_user_ids,
)

pytestmark = [pytest.mark.samba]

N_GROUPS = 100
CHUNK = 3  # target.max_values_per_modify
BIG_EVERY = 12  # every 12th group has 7 members: a create of one add and two modifies
NESTED_PAIRS = 6  # groups 0,2,4,... contain group 1,3,5,...: member adds after all creates
CREATES, TOTAL = N_GROUPS, N_GROUPS + NESTED_PAIRS  # the first plan: creates, then the nested member adds

# Kills at exact LDAP writes, from inside the real CLI process (the only way to hit a point between two
# writes of one change deterministically). argv: MODE N CLI-ARGS...
KILL_TRIGGER = """
import os, signal, sys
from writeback.adapters.directory import adapter
from writeback import cli
mode, target = sys.argv[1], int(sys.argv[2])
original = adapter.LdapDirectory._write
seen = {"adds": 0, "chunks": 0, "last_add": None}
def _write(self, kind, dn, values, call):
    chunk = kind == "modify" and dn == seen["last_add"]
    if chunk:
        seen["chunks"] += 1
        if mode == "before-chunk" and seen["chunks"] == target:
            os.kill(os.getpid(), signal.SIGKILL)
    original(self, kind, dn, values, call)
    if kind == "add":
        seen["adds"] += 1
        seen["last_add"] = dn
        if mode == "after-add" and seen["adds"] == target:
            os.kill(os.getpid(), signal.SIGKILL)
    if chunk and mode == "after-chunk" and seen["chunks"] == target:
        os.kill(os.getpid(), signal.SIGKILL)
adapter.LdapDirectory._write = _write
sys.argv = ["writeback", *sys.argv[3:]]
sys.exit(cli.main())
"""


@dataclass(frozen=True)
class CrashCloud:
    cloud: Cloud
    ids: list[str]
    big: list[str]  # ids of the 7-member groups, in plan (creation) order


@pytest.fixture
def crash_cloud(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashCloud]:
    """100 new cloud groups with few members each (some big, some nested), in a private emulator.

    New ids for every case: each case writes its groups to AD and AD's sAMAccountNames are domain-wide, so
    the same cloud group written back again and again in fresh OUs would run out of distinct names.
    """
    users = synced_user_ids(sandbox_tenant(sandbox))
    groups = []
    for i in range(N_GROUPS):
        size = 7 if i % BIG_EVERY == 5 else 1 + i % 2
        members = [users[(i * 7 + j) % len(users)] for j in range(size)]
        groups.append(group_body(str(uuid.uuid4()), f"Crash {i:03d}", members))
    for i in range(0, 2 * NESTED_PAIRS, 2):
        groups[i]["members"].append(groups[i + 1]["id"])
    big = [g["id"] for i, g in enumerate(groups) if i % BIG_EVERY == 5]
    with private_cloud(sandbox, tmp_path_factory.mktemp("crash-emulator"), groups) as handle:
        # Small delta pages, so the first sync takes several requests (a kill can land inside it).
        handle.set_delta_settings(page_size=25)
        yield CrashCloud(Cloud(handle), [g["id"] for g in groups], big)


@pytest.fixture(scope="module")
def crash_root(sandbox: Any) -> Iterator[str]:
    """One OU for this module; each case works in its own OU below it. Deleted (with everything) at the end."""
    conn = connect(sandbox)
    dn = f"OU=t-crash-{uuid.uuid4().hex[:8]},{sandbox.base_dn}"
    conn.add_s(dn, [("objectClass", [b"top", b"organizationalUnit"])])
    try:
        yield dn
    finally:
        try:
            delete_subtree(conn, dn)
        finally:
            conn.unbind_s()


@pytest.fixture
def ldap_admin(sandbox: Any) -> Iterator[Any]:
    conn = connect(sandbox)
    yield conn
    conn.unbind_s()


@dataclass
class Case:
    config: Path
    ad: AdView
    canary_dn: str
    canary_before: Any


@pytest.fixture
def case(sandbox: Any, crash_cloud: CrashCloud, crash_root: str, ldap_admin: Any, tmp_path: Path) -> Case:
    ou = f"OU=c-{uuid.uuid4().hex[:8]},{crash_root}"
    ldap_admin.add_s(ou, [("objectClass", [b"top", b"organizationalUnit"])])
    some_user = next(iter(crash_cloud.cloud.user_dns().values()))
    canary = add_canary(ldap_admin, ou, some_user)
    ids = ", ".join(f'"{g}"' for g in crash_cloud.ids)
    config = write_config(
        tmp_path,
        sandbox,
        ou,
        graph=GraphApp.of_emulator(crash_cloud.cloud.h),
        scope=f'[scope]\nmode = "selected"\ngroup_ids = [{ids}]',
        short_timeouts=True,
    )
    text = config.read_text().replace("timeout = 5\n", f"timeout = 5\nmax_values_per_modify = {CHUNK}\n")
    config.write_text(text)
    ad = AdView(ldap_admin, ou)
    return Case(config, ad, canary, _canary_state(ad, canary))


def _canary_state(ad: AdView, dn: str) -> Any:
    (g,) = [g for g in ad.groups() if g.dn.lower() == dn.lower()]
    return (g.dn, g.members, g.guid, g.usn_changed, g.anchor)


def _check_after_crash(case: Case, crash: CrashCloud) -> dict[str, Any]:
    """What a crash may leave: some groups missing or short of members. What it must not: duplicates,
    unanchored leftovers, members that should not be there, a touched canary."""
    groups = case.ad.groups()
    anchored: dict[str, list[Any]] = {}
    for g in groups:
        if g.anchor:
            anchored.setdefault(g.anchor, []).append(g)
    unanchored = [g.dn for g in groups if not g.anchor and g.dn.lower() != case.canary_dn.lower()]
    assert not unanchored, f"groups without an anchor left behind: {unanchored}"
    assert all(len(v) == 1 for v in anchored.values()), "an anchor appears twice"
    assert set(anchored) <= set(crash.ids)
    assert _canary_state(case.ad, case.canary_dn) == case.canary_before, "the unmanaged canary was modified"
    by_id = {gid: gs[0] for gid, gs in anchored.items()}
    want = expected_members(crash.cloud, crash.ids, lambda c: by_id[c].dn if c in by_id else "CN=pending")
    for gid, g in by_id.items():
        extra = g.members - want[gid]
        assert not extra, f"{g.dn} holds members it should not: {sorted(extra)}"
    return by_id


def _resume_and_verify(case: Case, crash: CrashCloud) -> None:
    again = run_cli(case.config, "apply")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert converged(case.ad, crash.cloud, crash.ids, extra_groups=1)
    assert _canary_state(case.ad, case.canary_dn) == case.canary_before, "the unmanaged canary was modified"


def _kill_after_line(config: Path, predicate: Any, *, delay: float = 0.0) -> list[str]:
    """Run `writeback apply`, SIGKILL it once a stderr line satisfies ``predicate`` (after ``delay`` s)."""
    proc = subprocess.Popen(
        cli_argv(config, "apply"), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=cli_env()
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if predicate(line):
                if delay:
                    time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            pytest.fail("apply finished before the kill point:\n" + "\n".join(lines[-20:]))
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return lines


def test_kill_during_graph_sync(case: Case, crash_cloud: CrashCloud) -> None:
    crash_cloud.cloud.faults(latency_ms=150)  # the first sync now takes a few seconds
    try:
        _kill_after_line(case.config, lambda line: line.startswith("Reading changes"), delay=0.6)
    finally:
        crash_cloud.cloud.faults(reset=True)
    assert _check_after_crash(case, crash_cloud) == {}, "killed during the sync, yet AD was written"
    _resume_and_verify(case, crash_cloud)


@pytest.mark.parametrize("k", [1, 30, 60, 90, CREATES, CREATES + 2, TOTAL])
def test_kill_after_progress_line(k: int, case: Case, crash_cloud: CrashCloud) -> None:
    lines = _kill_after_line(case.config, lambda line: line.startswith(f"[{k}/"))
    assert lines[-1].startswith(f"[{k}/{TOTAL}]"), lines[-1]
    done = _check_after_crash(case, crash_cloud)
    if k < CREATES:
        # The kill landed mid-apply: the k-1 creates before the line are done, the last ones are not.
        errors = run_cli(case.config, "log", "--result", "error").stdout[-3000:]
        assert k - 1 <= len(done) < N_GROUPS, f"{len(done)} groups in AD; log errors:\n{errors}"
    _resume_and_verify(case, crash_cloud)


@pytest.mark.parametrize(
    ("mode", "n"),
    [("before-chunk", 3), ("after-chunk", 5), ("after-add", 40)],
    ids=["between-add-and-first-chunk", "between-two-chunks", "after-add-before-log"],
)
def test_kill_at_exact_ldap_write(mode: str, n: int, case: Case, crash_cloud: CrashCloud) -> None:
    argv = cli_argv(case.config, "apply")
    proc = subprocess.run(
        [argv[0], "-c", KILL_TRIGGER, mode, str(n), *argv[3:]],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    done = _check_after_crash(case, crash_cloud)
    if mode != "after-add":
        # Big groups are created as add (3 members) + modify (3) + modify (1): the n-th chunk modify belongs
        # to big group (n-1)//2, which the kill leaves with 3 (before its first chunk) or 6 (after it) members.
        big = crash_cloud.big[(n - 1) // 2]
        assert len(done[big].members) == (CHUNK if mode == "before-chunk" else 2 * CHUNK)
    else:
        assert len(done) == n
    _resume_and_verify(case, crash_cloud)
