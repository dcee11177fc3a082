"""``scripts/bench biggroup [--members 250000 ...]``: one very big cloud group written back and kept in step.

Microsoft Entra Connect writes back "Microsoft 365 groups with up to 250,000 members" (learn.microsoft.com,
entra/identity/hybrid/connect/how-to-connect-modify-group-writeback); writeback's own default
cap is 50,000 (``members.max_members``), so the run raises it. For each ``--members N`` (in order) the run:

1. makes sure its own sandbox (``/var/tmp/writeback-bench-biggroup`` unless ``--sandbox-dir``) holds
   ``N + 2,000`` users in ``OU=BigGroupUsers`` (the 2,000 spare users are the ones the change steps add),
   seeding only the minimal users it lacks (``seed_users``: pipelined LDAP adds, measured faster than
   ``ldbadd`` into the stopped DC). The sandbox is kept (stopped) between runs, so they are seeded once;
2. generates a tenant of those users as synced cloud users and ONE assigned group holding the first ``N``;
3. times the first apply (a child process, as in the size benchmark: wall time, phases, peak RSS, LDAP
   operations) and checks AD holds exactly the ``N`` members;
4. changes 1 member (through Graph) and applies: exactly 1 LDAP modify; then 1,000 members (500 added, 500
   removed, through the emulator's admin API) and applies: 2 modifies (one per 5,000 adds, one per 5,000
   removes), exact members again; then a no-change apply: 0 writes.

The figures for 500,000 members are extrapolated (a straight line through the two biggest measured sizes,
said so in the report) unless 500,000 was measured. Results: ``DIR/bench-biggroup.json`` (merged with earlier
runs into the same directory, by member count) and a section of ``DIR/bench.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap

from benchmarks.bench import changes, ldaptools, report, verify
from benchmarks.bench.runner import CLIENT_ID, TENANT_ID, bench_ou
from benchmarks.bench.sandboxes import DEFAULT_OUT, say
from benchmarks.bench.sizes import Size
from benchmarks.bench.tenantgen import GeneratedTenant, _group
from benchmarks.bench.workspace import EngineRun, Workspace, run_apply
from writeback.errors import WritebackError
from writeback.testbed.emulator.testing import run_emulator
from writeback.testbed.sandbox import SandboxInfo, sandbox_down, sandbox_up
from writeback.testbed.sandbox.seed import Entry, add_all, paged_search, read_accounts
from writeback.testbed.sandbox.tenant import synced_user

DEFAULT_DIR = Path("/var/tmp/writeback-bench-biggroup")
USERS_OU_NAME = "BigGroupUsers"
SPARE_USERS = 2_000
CHANGES = (1, 1_000)
USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
ESTIMATE_TARGET = 500_000


def _users_ou(info: SandboxInfo) -> str:
    return f"OU={USERS_OU_NAME},{info.base_dn}"


def _existing(info: SandboxInfo) -> set[int]:
    """The numbers ``n`` of the users ``bg<n>`` in OU=BigGroupUsers (creates the OU when missing). A seeding
    that was stopped can leave gaps (adds were in flight), so the missing numbers are what is added next."""
    with ldaptools.connection(info) as conn:
        try:
            conn.search_s(_users_ou(info), ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
        except ldap.NO_SUCH_OBJECT:
            ldaptools.add_ou(conn, _users_ou(info))
            return set()
        flt = f"(&{USER_FILTER}(sAMAccountName=bg*))"
        found = set()
        for _dn, entry in paged_search(conn, _users_ou(info), flt, ["sAMAccountName"]):
            sam = entry["sAMAccountName"][0].decode()
            if sam[2:].isdigit():
                found.add(int(sam[2:]))
        return found


def _entries(users_ou: str, numbers: Iterable[int]) -> Iterator[Entry]:
    """Minimal users ``bg<n>`` for each n of ``numbers``: what the engine needs of a member (a DN, objectSid,
    objectGUID; Samba assigns both). Without a password Samba creates them disabled, as AD does. No
    userPrincipalName: the DC checks its uniqueness on every add, and the cloud twin derives one anyway."""
    for n in numbers:
        sam = f"bg{n:07d}"
        yield (
            f"CN={sam},{users_ou}",
            [
                ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
                ("sAMAccountName", [sam.encode()]),
                ("displayName", [f"Big Group User {n}".encode()]),
            ],
        )


def seed_users(info: SandboxInfo, missing: list[int]) -> float:
    """Add the users ``bg<n>`` for each n of ``missing`` over LDAP, 64 adds in flight; returns seconds.

    Measured on this 2-vCPU machine (shared with other runs, load ~5), Samba 4.17 on LMDB: ``ldbadd``
    (ldbadd(1): adds the records of an LDIF file to an ldb database) into the stopped DC's ``sam.ldb``, which
    loads Samba's module stack so SIDs and GUIDs are assigned as over LDAP, took 5.9 s for 1,000 users into
    an empty OU, 27 s for the next 2,000 in one file (one transaction, whose cost grows faster than its
    size: 22,000 in one file had done about 7,000 after 3.5 minutes and was stopped), 6.8 s for 500 and 3.6 s
    for 250 (69-74 users/s) at 3,000; pipelined LDAP adds (:func:`writeback.testbed.sandbox.seed.add_all`,
    64 in flight) took 6.5 s for the next 1,000 (154 users/s). Offline seeding is therefore not faster here,
    and LDAP is used. Either way Samba's cost per
    add grows with the directory, so big counts take long once; the sandbox keeps its users between runs.
    """
    say(f"Seeding {len(missing):,} users over LDAP (once: the sandbox keeps them)")
    started = time.perf_counter()

    def progress(n: int) -> None:
        if n % 10_000 == 0:
            say(f"  {n:,} of {len(missing):,} users ({n / (time.perf_counter() - started):.0f}/s)")

    with ldaptools.connection(info) as conn:
        add_all(conn, _entries(_users_ou(info), missing), progress=progress)
    seconds = time.perf_counter() - started
    say(f"  {len(missing):,} users in {seconds:.1f} s ({len(missing) / max(seconds, 1e-6):.0f}/s)")
    return seconds


def _tenant(accounts: list[Any], members: int) -> GeneratedTenant:
    users = [synced_user(a) for a in accounts]
    ids = [u["id"] for u in users]
    gid = str(uuid.UUID(int=random.Random(f"biggroup-{members}").getrandbits(128), version=4))
    document = {
        "tenant_id": TENANT_ID,
        "apps": [{"client_id": CLIENT_ID, "client_secret": secrets.token_urlsafe(24)}],
        "users": users,
        "groups": [_group(gid, f"Bench Big Group {members}", members=ids[:members])],
    }
    return GeneratedTenant(
        document=document,
        synced_ids=ids,
        user_dn={u["id"]: a.dn for u, a in zip(users, accounts, strict=True)},
        static_ids=[gid],
        dynamic_ids=[],
        big_id=None,
        members={gid: list(ids[:members])},
    )


def _apply(workspace: Workspace, label: str) -> tuple[EngineRun, dict[str, Any]]:
    run = run_apply(workspace, label)
    r = run.report
    return run, {
        "wall_s": round(run.wall_seconds, 3),
        "cpu_s": round(r["cpu_seconds"], 3),
        "max_rss_mb": round(r["max_rss_mb"], 1),
        "phases_s": {k: round(v, 3) for k, v in r["phases"].items()},
        "timings_s": {k: round(float(v), 3) for k, v in (r.get("timings") or {}).items()},
        "ldap": r["ldap"],
        "writes": run.writes,
    }


def big_group_size(members: int, name: str = "biggroup") -> Size:
    """The tenant of this benchmark: one assigned group of ``members`` synced users, SPARE_USERS more users for
    the change steps (the memory harness builds the same one: ``benchmarks.memory biggroup``)."""
    return Size(
        name,
        users=members + SPARE_USERS,
        groups=1,
        memberships=members,
        big_group=members,
        nested=0,
        dynamic=0,
        cloud_only=0,
        sandbox_users=0,
        changes=CHANGES,
        max_members=members + SPARE_USERS,
    )


def measure(info: SandboxInfo, members: int, workdir: Path, keep_objects: bool) -> dict[str, Any]:
    """One big group of ``members`` written, changed, re-applied; its figures and checks."""
    step: dict[str, Any] = {"members": members, "checks": {}}
    checks: dict[str, bool] = step["checks"]
    size = big_group_size(members)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, mode=0o700)
    with ldaptools.connection(info) as conn:
        started = time.perf_counter()
        accounts = read_accounts(conn, _users_ou(info), USER_FILTER, "user")[: members + SPARE_USERS]
        step["read_users_s"] = round(time.perf_counter() - started, 1)
    if len(accounts) < members + SPARE_USERS:
        raise RuntimeError(f"the sandbox has {len(accounts)} big-group users, {members + SPARE_USERS} needed")
    gen = _tenant(accounts, members)
    rng = random.Random(f"biggroup-{members}")
    with (
        bench_ou(info, size, keep_objects) as (ou, _tag),
        run_emulator(gen.document, workdir / "emulator") as handle,
    ):
        engine_ou = f"OU=Engine,{ou}"
        workspace = Workspace(workdir, engine_ou)
        workspace.write_config(info, handle, size.max_members)

        def exact(name: str) -> None:
            with ldaptools.connection(info) as conn:
                found = ldaptools.read_groups(conn, engine_ou)
            problems = verify.compare(verify.expected_counts(handle, gen), found)
            checks[name] = not problems
            step.setdefault("problems", []).extend(f"{name}: {p}" for p in problems[:5])

        say(f"{members:,} members: first apply")
        _, step["first_apply"] = _apply(workspace, "first")
        say(f"  {step['first_apply']['wall_s']:.1f} s, {step['first_apply']['max_rss_mb']:.0f} MB peak RSS")
        exact("first_apply_members_exact")
        for count in CHANGES:
            edits = changes.pick_edits(gen, count, rng)
            via = changes.make_changes(handle, gen, edits)
            run, figures = _apply(workspace, f"changes-{count}")
            figures.update(count=count, via=via, minimal_modifies=changes.minimal_modifies(edits))
            step[f"change_{count}"] = figures
            say(f"  {count} changes ({via}): {run.wall_seconds:.1f} s, {run.ldap.get('modify', 0)} modifies")
            checks[f"change_{count}_minimal_modifies"] = (
                run.writes == figures["minimal_modifies"] == run.ldap.get("modify", 0)
            )
            exact(f"after_{count}_changes_members_exact")
        run, step["no_change"] = _apply(workspace, "no-change")
        checks["no_change_zero_writes"] = run.writes == 0
        say(f"  no change: {run.wall_seconds:.1f} s, {run.writes} writes")
    if not keep_objects:
        step["delete_ou_note"] = "the benchmark OU (and the group's links) deleted after the run"
    return step


def _line(points: list[tuple[int, float]], at: int) -> float | None:
    """The straight line through the two biggest points, evaluated at ``at``."""
    if len(points) < 2:
        return None
    (x1, y1), (x2, y2) = sorted(points)[-2:]
    if x2 == x1:
        return None
    return y1 + (y2 - y1) * (at - x1) / (x2 - x1)


def estimate(steps: list[dict[str, Any]], at: int = ESTIMATE_TARGET) -> dict[str, Any] | None:
    """What ``at`` members would take: measured when a step has that many, else extrapolated linearly."""
    measured = next((s for s in steps if s.get("members") == at), None)
    if measured is not None:
        first = measured.get("first_apply") or {}
        return {
            "measured": True,
            "text": f"measured: first apply {first.get('wall_s')} s, peak RSS {first.get('max_rss_mb')} MB",
        }
    figures = {
        "first_apply_s": ("first_apply", "wall_s"),
        "first_apply_rss_mb": ("first_apply", "max_rss_mb"),
        "one_change_s": ("change_1", "wall_s"),
        "no_change_s": ("no_change", "wall_s"),
    }
    values: dict[str, float | None] = {}
    for name, (part, key) in figures.items():
        points = [
            (int(s["members"]), float(s[part][key]))
            for s in steps
            if isinstance(s.get(part), dict) and s[part].get(key) is not None
        ]
        found = _line(points, at)
        # Two sizes close together on a loaded machine can give a falling line: no estimate then.
        values[name] = found if found is not None and found > 0 else None
    if all(v is None for v in values.values()):
        return None
    basis = sorted(int(s["members"]) for s in steps if s.get("first_apply"))[-2:]
    shown = {k: "-" if v is None else f"{v:,.1f}" for k, v in values.items()}
    return {
        "measured": False,
        "basis_members": basis,
        **{k: None if v is None else round(v, 1) for k, v in values.items()},
        "text": (
            f"extrapolated (not measured), a straight line through the measured {basis[0]:,} and {basis[1]:,}"
            f" members: first apply ~{shown['first_apply_s']} s, peak RSS ~{shown['first_apply_rss_mb']} MB, "
            f"1 change ~{shown['one_change_s']} s, no-change apply ~{shown['no_change_s']} s"
        ),
    }


def _previous(out: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((out / "bench-biggroup.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [s for s in data.get("sizes", []) if isinstance(s, dict)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench biggroup", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--members",
        type=int,
        nargs="+",
        default=[250_000],
        help="group sizes to measure, in order (default 250000)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--sandbox-dir", type=Path, default=DEFAULT_DIR, help=f"its own sandbox (default {DEFAULT_DIR})"
    )
    parser.add_argument("--keep-sandbox", action="store_true", help="leave the sandbox running afterwards")
    parser.add_argument("--keep-objects", action="store_true", help="keep the benchmark OU in AD (debugging)")
    args = parser.parse_args(argv)
    if any(m < 2 for m in args.members):
        parser.error("--members must be 2 or more")
    directory: Path = args.sandbox_dir
    result: dict[str, Any] = {
        "kind": "biggroup",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": [],
    }
    steps: list[dict[str, Any]] = result["sizes"]
    try:
        say(f"Bringing up the big-group sandbox in {directory}")
        info = sandbox_up(directory, users=0, progress=say)
        want = max(args.members) + SPARE_USERS
        existing = _existing(info)
        missing = [n for n in range(want) if n not in existing]
        seed_s = seed_users(info, missing) if missing else None
        if missing and len(_existing(info) & set(range(want))) < want:
            raise RuntimeError(f"after seeding, OU={USERS_OU_NAME} lacks some of the {want} users")
        result["seed"] = {"users_needed": want, "users_added": len(missing), "seconds": seed_s}
        for members in args.members:
            step = measure(info, members, args.out / f"work-biggroup-{members}", args.keep_objects)
            steps.append(step)
    except (WritebackError, RuntimeError) as exc:
        result["error"] = str(exc)
        say(f"Run stopped: {exc}")
    finally:
        if not args.keep_sandbox and directory.exists():
            say(f"Stopping the big-group sandbox in {directory} (kept, with its users, for the next run)")
            try:
                sandbox_down(directory)
            except WritebackError as exc:
                say(f"  could not stop it: {exc}")
    # Earlier runs into the same results directory: keep the sizes this run did not measure.
    measured = {s["members"] for s in steps}
    result["sizes"] = sorted(
        [*(s for s in _previous(args.out) if s.get("members") not in measured), *steps],
        key=lambda s: s["members"],
    )
    result["estimate_500k"] = estimate(result["sizes"])
    result["checks"] = {
        f"{s['members']}_{name}": ok for s in steps for name, ok in (s.get("checks") or {}).items()
    }
    table = report.write_all(args.out, result)
    print(table)
    print(f"Results: {args.out}/bench.md, bench-biggroup.json", file=sys.stderr)
    ok = bool(steps) and "error" not in result and all(result["checks"].values())
    return 0 if ok else 3
