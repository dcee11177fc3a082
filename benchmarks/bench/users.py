"""``scripts/bench users [small|medium|large]``: the first apply of ``[users] provision = "cloud_members"``
against the directory's limit, in one run.

The tenant (:mod:`benchmarks.bench.users_tenant`) is cloud-only members in assigned groups: 50 in 5 groups
(small), 20,000 in 2,000 (medium), 100,000 in 10,000 (large). The engine runs in a child process as
``writeback apply`` does (``benchmarks.bench.engine_child``) and creates an AD account for each member (a
random password set over LDAPS in the add) and the groups holding them. Then the same accounts and groups
are written by a minimal python-ldap script (:mod:`benchmarks.bench.users_limit`) into the directory as it
was before the apply, and ``ratio_users_engine_limit`` = first apply's wall time / the limit's.

Everything lives in ``OU=bench-users-<size>-<tag>`` (the engine's ``target.base_dn``): ``OU=Groups`` (its
``target.target_ou``), ``OU=Accounts`` (``[users] target_ou``), ``OU=LimitGroups`` and ``OU=LimitAccounts``.
The sandbox DC: ``--sandbox-dir``, else for small ``$WRITEBACK_SANDBOX_DIR``, else
``/var/tmp/writeback-bench-users``. In that default directory (or with ``--scratch-sandbox``) the DC is put back
as it was seeded (``writeback sandbox reset``: seconds) before the limit and at the end; elsewhere the
engine's OUs are deleted before the limit and the run's OU at the end (one object at a time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench import ldaptools, report, users_verify
from benchmarks.bench.hostcheck import host_check
from benchmarks.bench.runner import CLIENT_ID, TENANT_ID, _cpus, _engine_summary, _fresh_workdir
from benchmarks.bench.sandboxes import DEFAULT_OUT, say
from benchmarks.bench.users_limit import read_accounts, write_users_limit
from benchmarks.bench.users_report import ratios
from benchmarks.bench.users_tenant import USERS_SIZES, UsersSize, UsersTenant, generate_users_tenant
from benchmarks.bench.workspace import EngineFailed, Workspace, run_apply
from writeback.errors import WritebackError
from writeback.testbed.emulator.testing import run_emulator
from writeback.testbed.sandbox import SandboxInfo, load_info, sandbox_down, sandbox_status, sandbox_up
from writeback.testbed.sandbox.ldapconn import delete_subtree
from writeback.testbed.sandbox.lifecycle import sandbox_reset

Progress = Callable[[str], None]
DEFAULT_DIR = Path("/var/tmp/writeback-bench-users")
OUS = ("Groups", "Accounts", "LimitGroups", "LimitAccounts")


@dataclass(frozen=True)
class UsersOptions:
    profile: bool = False  # cProfile every engine run into the work directory
    keep_objects: bool = False  # leave the run's OU in AD (debugging, or a sandbox about to be reset)
    # Puts the sandbox back as seeded and returns it (None: it may not be reset, e.g. the test session's own
    # sandbox): used before the limit instead of deleting the engine's objects.
    fresh_directory: Callable[[], SandboxInfo] | None = None


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


def users_config(accounts_ou: str) -> str:
    """The [users] table of the engine's config."""
    return f'[users]\nprovision = "cloud_members"\ntarget_ou = {json.dumps(accounts_ou)}\n'


@contextlib.contextmanager
def users_ou(info: SandboxInfo, size: UsersSize, keep: bool) -> Iterator[str]:
    """A fresh ``OU=bench-users-<size>-<tag>`` with its sub-OUs; yields its DN, deletes it afterwards."""
    dn = f"OU=bench-users-{size.name}-{uuid.uuid4().hex[:8]},{info.base_dn}"
    _add_ous(info, dn)
    try:
        yield dn
    finally:
        if not keep:
            with ldaptools.connection(info) as conn:
                delete_subtree(conn, dn)


def _add_ous(info: SandboxInfo, run_ou: str, names: tuple[str, ...] = OUS) -> None:
    with ldaptools.connection(info) as conn:
        for ou in (run_ou, *(f"OU={n},{run_ou}" for n in names)):
            ldaptools.add_ou(conn, ou)


def _check(checks: dict[str, bool], problems: list[str], name: str, found: list[str]) -> None:
    checks[name] = not found
    problems += [f"{name}: {p}" for p in found[: users_verify.LIMIT]]


def _tenant_figures(gen: UsersTenant) -> dict[str, Any]:
    return {
        "cloud_only_members": len(gen.member_ids),
        "groups": len(gen.group_ids),
        "memberships": gen.memberships,
        "biggest_group": max((len(m) for m in gen.members.values()), default=0),
    }


def run_users(
    size: UsersSize,
    info: SandboxInfo,
    workdir: Path,
    options: UsersOptions = UsersOptions(),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The users benchmark at ``size`` on a running sandbox DC (see the module docstring)."""
    say_ = progress or _quiet
    _fresh_workdir(workdir)
    result: dict[str, Any] = {
        "kind": "users",
        "size": size.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": _cpus(), "python": platform.python_version(), "machine": platform.machine()},
    }
    checks: dict[str, bool] = {}
    problems: list[str] = []
    gen = generate_users_tenant(
        size, tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=secrets.token_urlsafe(24)
    )
    result["tenant"] = _tenant_figures(gen)
    say_(f"Tenant: {result['tenant']}")
    keep = options.keep_objects or options.fresh_directory is not None
    try:
        with users_ou(info, size, keep) as run_ou:
            groups_ou, accounts_ou, limit_groups_ou, limit_accounts_ou = (f"OU={n},{run_ou}" for n in OUS)
            with run_emulator(gen.document, workdir / "emulator") as handle:
                workspace = Workspace(
                    workdir, groups_ou, options.profile, base_dn=run_ou, extra_toml=users_config(accounts_ou)
                )
                workspace.write_config(info, handle, max_members=50_000)
                result["host_check"] = {"first_apply": host_check(info)}
                say_(f"Host check: {result['host_check']['first_apply']}")
                say_(f"First apply: {size.members:,} accounts for cloud-only members, {size.groups:,} groups")
                handle.admin("stats", {"reset": True})
                first = run_apply(workspace, "first")
                result["first_apply"] = _engine_summary(first)
                result["first_apply"]["emulator_requests"] = handle.stats().get("total")
                say_(f"  {first.wall_seconds:.1f} s, LDAP {first.ldap}, phases {first.report['phases']}")
                with ldaptools.connection(info) as conn:
                    accounts = read_accounts(conn, accounts_ou)
                    groups = ldaptools.read_groups(conn, groups_ou)
                _check(
                    checks,
                    problems,
                    "engine_accounts_exact",
                    users_verify.check_accounts(accounts, gen.member_ids, "User_"),
                )
                _check(
                    checks,
                    problems,
                    "engine_groups_exact",
                    users_verify.check_groups(groups, accounts, gen.members, "Group_", "User_"),
                )
                say_("Second apply, nothing changed (match then create: no second account)")
                second = run_apply(workspace, "second")
                result["second_apply"] = _engine_summary(second)
                checks["second_apply_zero_writes"] = second.writes == 0
                say_(f"  {second.wall_seconds:.1f} s, {second.writes} writes")
            if options.fresh_directory is not None:
                say_(
                    "The directory's limit: restoring the seeded sandbox, then the same objects by python-ldap"
                )
                info = options.fresh_directory()
                _add_ous(info, run_ou, ("LimitGroups", "LimitAccounts"))
            else:
                say_(
                    "The directory's limit: deleting the engine's objects, then the same objects by python-ldap"
                )
                with ldaptools.connection(info) as conn:
                    delete_subtree(conn, groups_ou)
                    delete_subtree(conn, accounts_ou)
            result["host_check"]["limit"] = host_check(info)
            say_(f"Host check: {result['host_check']['limit']}")
            lim = write_users_limit(
                info, accounts, groups, {groups_ou: limit_groups_ou, accounts_ou: limit_accounts_ou}
            )
            with ldaptools.connection(info) as conn:
                copies = read_accounts(conn, limit_accounts_ou)
                copied_groups = ldaptools.read_groups(conn, limit_groups_ou)
            _check(
                checks,
                problems,
                "limit_accounts_exact",
                users_verify.check_accounts(copies, gen.member_ids, "Copy_"),
            )
            _check(
                checks,
                problems,
                "limit_groups_exact",
                users_verify.check_groups(copied_groups, copies, gen.members, "Limit_", "Copy_"),
            )
            result["limit"] = {
                "wall_s": round(lim.seconds, 3),
                "ldap": lim.operations,
                "accounts": lim.accounts,
                "groups": lim.groups,
                "values": lim.values,
            }
            result.update(ratios(first.wall_seconds, first.report["phases"]["apply"], lim.seconds))
            say_(
                f"  {lim.seconds:.1f} s, {lim.operations}; engine/limit = {result['ratio_users_engine_limit']}"
            )
    except RuntimeError as exc:  # a failed apply: keep what was measured
        result["error"] = str(exc)
        checks["run_completed"] = False
        if isinstance(exc, EngineFailed) and exc.run is not None:
            result[f"{exc.label}_apply"] = {**_engine_summary(exc.run), "failed": True}
        say_(f"Run stopped: {exc}")
    result["checks"] = checks
    result["problems"] = problems
    return result


def _sandbox_dir(size: UsersSize, given: str | None) -> Path:
    if given:
        return Path(given)
    if size.name == "small" and os.environ.get("WRITEBACK_SANDBOX_DIR"):
        return Path(os.environ["WRITEBACK_SANDBOX_DIR"])
    return DEFAULT_DIR


def _reset(directory: Path) -> SandboxInfo:
    say(f"Resetting the sandbox in {directory} to its seeded state (writeback sandbox reset)")
    return sandbox_reset(directory, progress=say).info


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench users",
        description=__doc__.split("\n\n")[0],
        epilog="See docs/benchmarks.md, section 'Users'.",
    )
    parser.add_argument("size", nargs="?", default="small", choices=list(USERS_SIZES))
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--sandbox-dir",
        help=f"sandbox directory (default: for small $WRITEBACK_SANDBOX_DIR, else {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--scratch-sandbox",
        action="store_true",
        help="treat --sandbox-dir like the default directory: reset it (writeback sandbox reset) before the "
        "limit and at the end instead of deleting objects",
    )
    parser.add_argument(
        "--keep-sandbox", action="store_true", help="leave a sandbox this run started running"
    )
    parser.add_argument("--keep-objects", action="store_true", help="keep the benchmark OU in AD (debugging)")
    parser.add_argument("--profile", action="store_true", help="cProfile each engine run (work dir)")
    args = parser.parse_args(argv)
    size = USERS_SIZES[args.size]
    directory = _sandbox_dir(size, args.sandbox_dir)
    scratch = args.sandbox_dir is None or args.scratch_sandbox
    try:
        status = sandbox_status(directory)
        started = not status.dc_running
        if started:
            say(f"Bringing up the sandbox in {directory}")
            info = sandbox_up(
                directory, users=load_info(directory).users if status.provisioned else 50, progress=say
            )
        else:
            say(f"Reusing the running sandbox DC in {directory}")
            info = load_info(directory)
    except WritebackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    options = UsersOptions(
        profile=args.profile,
        keep_objects=args.keep_objects,
        fresh_directory=(lambda: _reset(directory)) if scratch and not args.keep_objects else None,
    )
    try:
        result = run_users(size, info, args.out / f"work-users-{size.name}", options, progress=say)
    finally:
        try:
            if options.fresh_directory is not None:
                options.fresh_directory()  # 2 x members accounts are gone in seconds
            if started and not args.keep_sandbox:
                say(f"Stopping the sandbox in {directory}")
                sandbox_down(directory)
        except WritebackError as exc:
            print(f"error while cleaning up {directory}: {exc}", file=sys.stderr)
    report.write_all(args.out, result)
    from benchmarks.bench.users_report import markdown

    print(markdown(result))
    print(f"Results: {args.out}/bench.md, bench.json, bench-users-{size.name}.json", file=sys.stderr)
    if result["problems"]:
        print(json.dumps(result["problems"], indent=2), file=sys.stderr)
    if "error" in result:
        print(f"error: the run stopped early: {result['error']}", file=sys.stderr)
    return 0 if all(result["checks"].values()) else 3
